"""The overlayfs snapshotter (after containerd's): each snapshot's ``fs`` dir
is one layer, stacked at mount time.

Mounts, as containerd makes them:

* active, no parent: a read-write bind mount of its own ``fs``;
* active on parents: ``overlay`` with ``upperdir=fs``, ``workdir=work`` and
  ``lowerdir=`` the parents' ``fs`` dirs, nearest first (plus ``index=off``
  where the kernel has the option, so shared lowers stay usable by many
  overlays);
* view of one committed layer: a read-only bind mount of that layer;
* view of several: ``overlay`` with only ``lowerdir`` (read-only by nature);
* view of nothing: a read-only bind mount of its own empty ``fs``.

Because a layer's upper dir holds only that layer's changes, a layer can be
unpacked before its parents exist and committed onto them afterwards
(``commit(..., parent=...)``, ``supports_rebase``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from hawser.host import overlay_mount_options
from hawser.snapshots._store import Record, SnapshotterBase
from hawser.snapshots._types import ApplyTarget, Kind, Mount


class OverlaySnapshotter(SnapshotterBase):
    """Snapshots as overlayfs layers under ``root``; see the module docstring."""

    name = "overlayfs"
    supports_rebase = True

    def _populate(self, tmp: str, kind: Kind, chain: Sequence[Record]) -> None:
        os.mkdir(os.path.join(tmp, "fs"), 0o755)
        if kind is Kind.ACTIVE:
            os.mkdir(os.path.join(tmp, "work"), 0o711)

    def _mounts(self, rec: Record, chain: Sequence[Record]) -> list[Mount]:
        if not chain:
            mode = "ro" if rec.kind is Kind.VIEW else "rw"
            return [Mount(type="bind", source=self._fs(rec), options=("rbind", mode))]
        lowers = [self._fs(r) for r in chain]
        if rec.kind is Kind.VIEW:
            if len(lowers) == 1:
                return [Mount(type="bind", source=lowers[0], options=("rbind", "ro"))]
            # overlay needs two lowers at least when there is no upper dir
            return [Mount(type="overlay", source="overlay", options=tuple(overlay_mount_options(lowers)))]
        options = overlay_mount_options(lowers, self._fs(rec), self._work(rec))
        return [Mount(type="overlay", source="overlay", options=tuple(options))]

    def _apply_target(self, rec: Record, chain: Sequence[Record]) -> ApplyTarget:
        return ApplyTarget(path=self._fs(rec), overlay_whiteouts=True, lowers=tuple(self._fs(r) for r in chain))
