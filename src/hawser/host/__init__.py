"""The host: the one place hawser makes raw syscalls (mount, umount, syncfs,
flock) and asks the kernel what it supports.  Everything else goes through
these helpers so tests and reviews know where the sharp edges are.

Submodules load on first use, so the unpack worker can import
``hawser.host._libc`` (syncfs) without subprocess and friends.
"""

from __future__ import annotations

from hawser._lazy import lazy_exports

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:

    from hawser.host._cgroups import (
        CgroupLayout,
        CgroupStats,
        cgroup_exists,
        cgroup_pids,
        kill_cgroup,
        oom_kills,
        page_faults,
        read_stats,
        remove_cgroup,
    )
    from hawser.host._files import atomic_write, fsync_dir
    from hawser.host._infra import pid_namespace_alive, start_pid_namespace, stop_pid_namespace
    from hawser.host._libc import syncfs
    from hawser.host._lock import FileLock, lock_fd, lock_held, try_lock_fd
    from hawser.host._memory import limit_malloc_arenas, trim_heap
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
        pin_namespace_of,
        pin_namespaces,
        remove_pin_dir,
        run_in_namespaces,
        run_in_netns,
        unpin_namespace,
    )
    from hawser.host._overlay import OverlayFeatures, overlay_features, overlay_mount_options, probe_overlay
    from hawser.host._proc import ProcStat, proc_stat
    from hawser.host._process import (
        Process,
        ProcessResult,
        ProcessTimedOut,
        die_with_parent,
        kill_process,
        run_process,
        run_process_async,
        spawn_process,
        uncancellable,
    )
    from hawser.host._resolve import open_in_root, private_mount_namespace
    from hawser.host._userns import (
        IdMapping,
        detach,
        idmapped_mount,
        idmapped_mounts_supported,
        pin_user_namespace,
    )

_LAZY = {
    "CgroupLayout": "_cgroups", "CgroupStats": "_cgroups", "cgroup_exists": "_cgroups", "cgroup_pids": "_cgroups",
    "kill_cgroup": "_cgroups", "oom_kills": "_cgroups", "read_stats": "_cgroups", "remove_cgroup": "_cgroups",
    "syncfs": "_libc", "page_faults": "_cgroups",
    "pid_namespace_alive": "_infra", "start_pid_namespace": "_infra", "stop_pid_namespace": "_infra",
    "limit_malloc_arenas": "_memory", "trim_heap": "_memory",
    "FileLock": "_lock", "lock_fd": "_lock", "lock_held": "_lock", "try_lock_fd": "_lock",
    "MNT_DETACH": "_mount", "MountOptions": "_mount", "is_mountpoint": "_mount", "mount": "_mount",
    "parse_options": "_mount", "unmount": "_mount", "unmount_all": "_mount",
    "OverlayFeatures": "_overlay", "overlay_features": "_overlay", "overlay_mount_options": "_overlay",
    "probe_overlay": "_overlay",
    "ProcStat": "_proc", "proc_stat": "_proc", "open_in_root": "_resolve",
    "private_mount_namespace": "_resolve",
    "Process": "_process", "ProcessResult": "_process", "ProcessTimedOut": "_process", "run_process": "_process", "kill_process": "_process",
    "die_with_parent": "_process", "run_process_async": "_process", "spawn_process": "_process", "uncancellable": "_process",
    "atomic_write": "_files", "fsync_dir": "_files",
    "NAMESPACE_KINDS": "_namespaces", "is_netns": "_namespaces", "namespace_kind": "_namespaces",
    "pin_namespace_of": "_namespaces", "pin_namespaces": "_namespaces", "remove_pin_dir": "_namespaces", "run_in_namespaces": "_namespaces",
    "run_in_netns": "_namespaces", "unpin_namespace": "_namespaces",
    "IdMapping": "_userns", "detach": "_userns", "idmapped_mount": "_userns",
    "idmapped_mounts_supported": "_userns", "pin_user_namespace": "_userns",
}


__getattr__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "MNT_DETACH",
    "NAMESPACE_KINDS",
    "CgroupLayout",
    "CgroupStats",
    "FileLock",
    "IdMapping",
    "MountOptions",
    "OverlayFeatures",
    "ProcStat",
    "Process",
    "ProcessResult",
    "ProcessTimedOut",
    "atomic_write",
    "cgroup_exists",
    "cgroup_pids",
    "detach",
    "die_with_parent",
    "fsync_dir",
    "idmapped_mount",
    "idmapped_mounts_supported",
    "is_mountpoint",
    "is_netns",
    "kill_cgroup",
    "kill_process",
    "limit_malloc_arenas",
    "lock_fd",
    "lock_held",
    "mount",
    "namespace_kind",
    "oom_kills",
    "open_in_root",
    "overlay_features",
    "overlay_mount_options",
    "page_faults",
    "parse_options",
    "pid_namespace_alive",
    "pin_namespace_of",
    "pin_namespaces",
    "pin_user_namespace",
    "private_mount_namespace",
    "probe_overlay",
    "proc_stat",
    "read_stats",
    "remove_cgroup",
    "remove_pin_dir",
    "run_in_namespaces",
    "run_in_netns",
    "run_process",
    "run_process_async",
    "spawn_process",
    "start_pid_namespace",
    "stop_pid_namespace",
    "syncfs",
    "trim_heap",
    "try_lock_fd",
    "uncancellable",
    "unmount",
    "unmount_all",
    "unpin_namespace",
]
