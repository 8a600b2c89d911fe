"""The host: the one place hawser makes raw syscalls (mount, umount, syncfs,
flock) and asks the kernel what it supports.  Everything else goes through
these helpers so tests and reviews know where the sharp edges are."""

from hawser.host._libc import syncfs
from hawser.host._lock import FileLock, lock_fd, try_lock_fd
from hawser.host._mount import (
    MNT_DETACH,
    MountOptions,
    is_mountpoint,
    mount,
    parse_options,
    unmount,
    unmount_all,
)
from hawser.host._overlay import OverlayFeatures, overlay_features, overlay_mount_options, probe_overlay

__all__ = [
    "MNT_DETACH", "FileLock", "MountOptions", "OverlayFeatures", "is_mountpoint", "lock_fd", "mount",
    "overlay_features", "overlay_mount_options", "parse_options", "probe_overlay", "syncfs", "try_lock_fd",
    "unmount", "unmount_all",
]
