"""Running containers: OCI runtime specs (pure), runc under conmon, state,
exec, attach, logs.

The spec generation (``_spec``, ``_user``, ``_seccomp``, ``_defaults``) is pure:
image config + options in, config.json out.  ``ContainerManager`` drives runc
and conmon and keeps no process of its own alive.
"""

from __future__ import annotations

from hawser._lazy import lazy_exports

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:

    from hawser.runtime._attach import DETACH_KEYS, attach, attach_running, parse_detach_keys, start_attached
    from hawser.runtime._containers import ContainerManager
    from hawser.runtime._cp import (
        CopySide,
        archive_tree,
        container_side,
        copy_tree,
        extract_tar,
        open_source,
        tar_entries,
    )
    from hawser.runtime._image_volumes import ImageVolumeError
    from hawser.runtime._logs import LogEntry, parse_since, read_log
    from hawser.runtime._networking import ContainerNetworking, NetworkJoin, NetworkRequest, PortRequest
    from hawser.runtime._options import (
        BindMount,
        ContainerOptions,
        Device,
        HostLimits,
        ImageVolume,
        Namespaces,
        Resources,
        TmpfsMount,
        UserNamespace,
        check_id_mappings,
        devices_from_host,
        host_devices,
    )
    from hawser.runtime._runc import Runc
    from hawser.runtime._spec import build_spec, parse_cpus, parse_memory, seccomp_from_profile, stop_signal
    from hawser.runtime._stats import MAX_SAMPLE_AGE_NS, ContainerStats, ContainerStatsReader, WritableLayer, cgroup_of
    from hawser.runtime._streams import open_attach, plan_exec, run_attach, run_exec, running_container
    from hawser.runtime._types import (
        CREATED,
        EVENT_CREATED,
        EVENT_DELETED,
        EVENT_EXEC_EXITED,
        EVENT_EXEC_STARTED,
        EVENT_STARTED,
        EVENT_STOPPED,
        EXITED,
        PAUSED,
        RUNNING,
        UNKNOWN,
        ContainerInfo,
        ContainerStatus,
        ExecResult,
        ImageResolver,
        RunnableImage,
    )
    from hawser.runtime._user import ResolvedUser, find_executable, resolve_user

# Loaded on first use: a command imports only the modules it runs.
_EXPORTS = {
    **dict.fromkeys(("CopySide", "archive_tree", "container_side", "copy_tree", "extract_tar", "open_source",
                     "tar_entries"), "_cp"),
    **dict.fromkeys(("DETACH_KEYS", "attach_running", "parse_detach_keys", "start_attached"), "_attach"),
    "attach": "_attach", "ContainerManager": "_containers", "Runc": "_runc", "ImageVolumeError": "_image_volumes",
    **dict.fromkeys(("LogEntry", "parse_since", "read_log"), "_logs"),
    **dict.fromkeys(("ContainerNetworking", "NetworkJoin", "NetworkRequest", "PortRequest"), "_networking"),
    **dict.fromkeys(("BindMount", "ContainerOptions", "Device", "HostLimits", "ImageVolume", "Namespaces", "Resources",
                     "TmpfsMount", "UserNamespace", "check_id_mappings", "devices_from_host", "host_devices"),
                    "_options"),
    **dict.fromkeys(("build_spec", "parse_cpus", "parse_memory", "seccomp_from_profile", "stop_signal"), "_spec"),
    **dict.fromkeys(("MAX_SAMPLE_AGE_NS", "ContainerStats", "ContainerStatsReader", "WritableLayer", "cgroup_of"),
                    "_stats"),
    **dict.fromkeys(("open_attach", "plan_exec", "run_attach", "run_exec", "running_container"), "_streams"),
    **dict.fromkeys(("CREATED", "EVENT_CREATED", "EVENT_DELETED", "EVENT_EXEC_EXITED", "EVENT_EXEC_STARTED", "EVENT_STARTED", "EVENT_STOPPED", "EXITED", "PAUSED",
                     "RUNNING", "UNKNOWN", "ContainerInfo", "ContainerStatus", "ExecResult", "ImageResolver",
                     "RunnableImage"), "_types"),
    **dict.fromkeys(("ResolvedUser", "find_executable", "resolve_user"), "_user"),
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "CREATED",
    "DETACH_KEYS",
    "EVENT_CREATED",
    "EVENT_DELETED",
    "EVENT_EXEC_EXITED",
    "EVENT_EXEC_STARTED",
    "EVENT_STARTED",
    "EVENT_STOPPED",
    "EXITED",
    "MAX_SAMPLE_AGE_NS",
    "PAUSED",
    "RUNNING",
    "UNKNOWN",
    "BindMount",
    "ContainerInfo",
    "ContainerManager",
    "ContainerNetworking",
    "ContainerOptions",
    "ContainerStats",
    "ContainerStatsReader",
    "ContainerStatus",
    "CopySide",
    "Device",
    "ExecResult",
    "HostLimits",
    "ImageResolver",
    "ImageVolume",
    "ImageVolumeError",
    "LogEntry",
    "Namespaces",
    "NetworkJoin",
    "NetworkRequest",
    "PortRequest",
    "ResolvedUser",
    "Resources",
    "Runc",
    "RunnableImage",
    "TmpfsMount",
    "UserNamespace",
    "WritableLayer",
    "archive_tree",
    "attach",
    "attach_running",
    "build_spec",
    "cgroup_of",
    "check_id_mappings",
    "container_side",
    "copy_tree",
    "devices_from_host",
    "extract_tar",
    "find_executable",
    "host_devices",
    "open_attach",
    "open_source",
    "parse_cpus",
    "parse_detach_keys",
    "parse_memory",
    "parse_since",
    "plan_exec",
    "read_log",
    "resolve_user",
    "run_attach",
    "run_exec",
    "running_container",
    "seccomp_from_profile",
    "start_attached",
    "stop_signal",
    "tar_entries",
]
