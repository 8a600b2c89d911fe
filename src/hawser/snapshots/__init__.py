"""Snapshotters: overlayfs, and a native copying fallback where overlayfs is missing.

Implementations load on first use: the unpack worker imports
``hawser.snapshots._types`` only and must not pay for SQLite and the host
helpers.
"""

from __future__ import annotations

from hawser._lazy import lazy_exports
from hawser.snapshots._types import ApplyTarget, Info, Kind, Mount, Snapshotter, Usage

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:

    from hawser.snapshots._native import NativeSnapshotter
    from hawser.snapshots._overlay import OverlaySnapshotter
    from hawser.snapshots._store import SnapshotterBase, disk_usage, leftover_dirs, mount_all, unmount_all

SNAPSHOTTERS = ("overlayfs", "native")

_LAZY = {
    "NativeSnapshotter": "_native", "OverlaySnapshotter": "_overlay", "SnapshotterBase": "_store",
    "disk_usage": "_store", "leftover_dirs": "_store", "mount_all": "_store", "unmount_all": "_store",
}


__getattr__ = lazy_exports(__name__, _LAZY)


def new_snapshotter(name: str, root: str) -> SnapshotterBase:
    """The snapshotter called ``name`` ("overlayfs" or "native") owning ``root``
    (created if missing). InvalidArgument for another name."""
    from hawser.errors import InvalidArgument

    if name == "overlayfs":
        from hawser.snapshots._overlay import OverlaySnapshotter

        return OverlaySnapshotter(root)
    if name == "native":
        from hawser.snapshots._native import NativeSnapshotter

        return NativeSnapshotter(root)
    raise InvalidArgument(f"unknown snapshotter {name!r}", hint=f"choose one of {', '.join(SNAPSHOTTERS)}")


def overlay_supported(root: str) -> bool:
    """Whether overlayfs works with upper dirs under ``root``: tries a real
    mount in a temporary dir there (created if missing). Cached per root; never raises."""
    import os

    from hawser.host import probe_overlay

    return probe_overlay(os.path.abspath(root))


__all__ = [
    "SNAPSHOTTERS", "ApplyTarget", "Info", "Kind", "Mount", "NativeSnapshotter", "OverlaySnapshotter", "Snapshotter",
    "SnapshotterBase", "Usage", "disk_usage", "leftover_dirs", "mount_all", "new_snapshotter", "overlay_supported", "unmount_all",
]
