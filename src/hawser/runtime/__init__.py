"""Running containers: OCI runtime specs (pure), runc under conmon, state,
exec, attach, logs.

The spec generation (``_spec``, ``_user``, ``_seccomp``, ``_defaults``) is pure:
image config + options in, config.json out.  ``ContainerManager`` drives runc
and conmon and keeps no process of its own alive.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

    from hawser.runtime._attach import attach
    from hawser.runtime._containers import (
        CREATED,
        EXITED,
        PAUSED,
        RUNNING,
        UNKNOWN,
        ContainerInfo,
        ContainerManager,
        ContainerStatus,
        ExecResult,
    )
    from hawser.runtime._logs import LogEntry, parse_since, read_log
    from hawser.runtime._options import (
        BindMount,
        ContainerOptions,
        HostLimits,
        Namespaces,
        Resources,
        TmpfsMount,
    )
    from hawser.runtime._spec import build_spec, parse_cpus, parse_memory, stop_signal
    from hawser.runtime._user import ResolvedUser, find_executable, resolve_user

# Loaded on first use: a command imports only the modules it runs.
_EXPORTS = {
    "attach": "_attach", "LogEntry": "_logs", "parse_since": "_logs", "read_log": "_logs",
    "BindMount": "_options", "ContainerOptions": "_options", "HostLimits": "_options", "Namespaces": "_options",
    "Resources": "_options", "TmpfsMount": "_options", "build_spec": "_spec", "parse_cpus": "_spec",
    "parse_memory": "_spec", "stop_signal": "_spec", "ResolvedUser": "_user", "find_executable": "_user",
    "resolve_user": "_user",
    **dict.fromkeys(("CREATED", "EXITED", "PAUSED", "RUNNING", "UNKNOWN", "ContainerInfo", "ContainerManager",
                     "ContainerStatus", "ExecResult"), "_containers"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hawser.runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hawser.runtime.{module}"), name)


__all__ = [
    "CREATED", "EXITED", "PAUSED", "RUNNING", "UNKNOWN", "BindMount", "ContainerInfo", "ContainerManager",
    "ContainerOptions", "ContainerStatus", "ExecResult", "HostLimits", "LogEntry", "Namespaces", "ResolvedUser",
    "Resources", "TmpfsMount", "attach", "build_spec", "find_executable", "parse_cpus", "parse_memory",
    "parse_since", "read_log", "resolve_user", "stop_signal",
]
