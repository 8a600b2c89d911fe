"""What the kernel's overlayfs can do here, found by asking it.

``index=off`` is passed when the kernel knows the option (containerd does the
same): with the index on, a lower directory may only be used by one overlay
with a matching upper, which breaks shared image layers.  ``userxattr`` is
needed only inside a user namespace (rootless), where the trusted.* xattrs
that mark whiteouts and opaque dirs are out of reach; hawser runs in the
initial user namespace, where the trusted.* form is right.
"""

from __future__ import annotations

import os
import shutil
import threading

from hawser._dataclass import dataclass
from hawser.host._mount import mount, unmount

_cache: dict[str, bool] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class OverlayFeatures:
    index_option: bool  # the "index=" mount option is understood
    redirect_dir_option: bool  # the "redirect_dir=" option is understood (not used by hawser)
    in_user_namespace: bool  # True: whiteouts need "userxattr" and user.overlay.* xattrs


def overlay_features() -> OverlayFeatures:
    """Module parameters of the loaded overlay driver and our user namespace."""
    params = "/sys/module/overlay/parameters"
    return OverlayFeatures(
        index_option=os.path.exists(os.path.join(params, "index")),
        redirect_dir_option=os.path.exists(os.path.join(params, "redirect_dir")),
        in_user_namespace=_in_user_namespace(),
    )


def _in_user_namespace() -> bool:
    try:
        with open("/proc/self/uid_map") as f:
            fields = f.read().split()
    except OSError:
        return False
    # The initial namespace maps the whole 32-bit range: "0 0 4294967295".
    return fields[:3] != ["0", "0", "4294967295"]


def overlay_mount_options(lowers: list[str], upper: str | None = None, work: str | None = None) -> list[str]:
    """The option list hawser uses for an overlay mount of these dirs (lowers nearest first)."""
    options: list[str] = []
    features = overlay_features()
    if features.index_option:
        options.append("index=off")
    if features.in_user_namespace:
        options.append("userxattr")
    if upper is not None and work is not None:
        options += [f"workdir={work}", f"upperdir={upper}"]
    options.append("lowerdir=" + ":".join(lowers))
    return options


def probe_overlay(root: str) -> bool:
    """Whether an overlay with an upper dir on ``root``'s filesystem mounts here.

    Tries a real mount in a temporary dir under ``root`` (created if missing),
    so it also catches upper filesystems overlay refuses (no d_type, overlay on
    overlay, no trusted xattrs).  The answer is cached per root.  Never raises
    for a failed probe; returns False."""
    key = os.path.realpath(root)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
    result = _probe(root)
    with _cache_lock:
        _cache[key] = result
    return result


def _probe(root: str) -> bool:
    # No look at /proc/filesystems first: the module may just not be loaded
    # yet, and mount(2) loads it.
    try:
        os.makedirs(root, mode=0o711, exist_ok=True)
        import tempfile  # the probe runs once per new store

        base = tempfile.mkdtemp(prefix="overlay-check-", dir=root)
    except OSError:
        return False
    merged = os.path.join(base, "merged")
    mounted = False
    try:
        for name in ("lower1", "lower2", "upper", "work", "merged"):
            os.mkdir(os.path.join(base, name))
        with open(os.path.join(base, "lower2", "f"), "w") as f:
            f.write("x")
        options = overlay_mount_options([os.path.join(base, "lower1"), os.path.join(base, "lower2")],
                                        os.path.join(base, "upper"), os.path.join(base, "work"))
        mount("overlay", "overlay", merged, options)
        mounted = True
        # A copy-up and a whiteout exercise the upper filesystem for real.
        with open(os.path.join(merged, "f"), "a") as f:
            f.write("y")
        os.unlink(os.path.join(merged, "f"))
        return True
    except OSError:
        return False
    finally:
        if mounted:
            try:
                unmount(merged)
            except OSError:
                unmount(merged, detach=True)
        shutil.rmtree(base, ignore_errors=True)
