"""Running containers: OCI runtime specs (pure), runc under conmon, state,
exec, attach, logs.

The spec generation (``_spec``, ``_user``, ``_seccomp``, ``_defaults``) is pure:
image config + options in, config.json out.  ``ContainerManager`` drives runc
and conmon and keeps no process of its own alive.
"""

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

__all__ = [
    "CREATED", "EXITED", "PAUSED", "RUNNING", "UNKNOWN", "BindMount", "ContainerInfo", "ContainerManager",
    "ContainerOptions", "ContainerStatus", "ExecResult", "HostLimits", "LogEntry", "Namespaces", "ResolvedUser",
    "Resources", "TmpfsMount", "attach", "build_spec", "find_executable", "parse_cpus", "parse_memory",
    "parse_since", "read_log", "resolve_user", "stop_signal",
]
