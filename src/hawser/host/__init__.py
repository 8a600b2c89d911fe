"""The host: the one place hawser makes raw syscalls (mount, umount, syncfs,
flock) and asks the kernel what it supports.  Everything else goes through
these helpers so tests and reviews know where the sharp edges are.

Submodules load on first use, so the unpack worker can import
``hawser.host._libc`` (syncfs) without subprocess and friends.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

    from hawser.host._cgroups import (
        CgroupLayout,
        CgroupStats,
        cgroup_exists,
        cgroup_pids,
        kill_cgroup,
        oom_kills,
        read_stats,
        remove_cgroup,
    )
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
    from hawser.host._namespaces import (
        NAMESPACE_KINDS,
        is_netns,
        namespace_kind,
        pin_namespaces,
        remove_pin_dir,
        run_in_namespaces,
        run_in_netns,
        unpin_namespace,
    )
    from hawser.host._overlay import OverlayFeatures, overlay_features, overlay_mount_options, probe_overlay
    from hawser.host._proc import ProcStat, proc_stat

_LAZY = {
    "CgroupLayout": "_cgroups", "CgroupStats": "_cgroups", "cgroup_exists": "_cgroups", "cgroup_pids": "_cgroups",
    "kill_cgroup": "_cgroups", "oom_kills": "_cgroups", "read_stats": "_cgroups", "remove_cgroup": "_cgroups",
    "syncfs": "_libc",
    "FileLock": "_lock", "lock_fd": "_lock", "try_lock_fd": "_lock",
    "MNT_DETACH": "_mount", "MountOptions": "_mount", "is_mountpoint": "_mount", "mount": "_mount",
    "parse_options": "_mount", "unmount": "_mount", "unmount_all": "_mount",
    "OverlayFeatures": "_overlay", "overlay_features": "_overlay", "overlay_mount_options": "_overlay",
    "probe_overlay": "_overlay",
    "ProcStat": "_proc", "proc_stat": "_proc",
    "NAMESPACE_KINDS": "_namespaces", "is_netns": "_namespaces", "namespace_kind": "_namespaces",
    "pin_namespaces": "_namespaces", "remove_pin_dir": "_namespaces", "run_in_namespaces": "_namespaces",
    "run_in_netns": "_namespaces", "unpin_namespace": "_namespaces",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hawser.host' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hawser.host.{module}"), name)


__all__ = [
    "MNT_DETACH", "NAMESPACE_KINDS", "CgroupLayout", "CgroupStats", "FileLock", "MountOptions", "OverlayFeatures",
    "ProcStat", "cgroup_exists", "cgroup_pids", "is_mountpoint", "is_netns", "kill_cgroup", "lock_fd", "mount", "namespace_kind",
    "oom_kills", "overlay_features", "overlay_mount_options", "parse_options", "pin_namespaces", "probe_overlay",
    "proc_stat", "read_stats", "remove_cgroup", "remove_pin_dir", "run_in_namespaces", "run_in_netns", "syncfs", "try_lock_fd",
    "unmount", "unmount_all", "unpin_namespace",
]
