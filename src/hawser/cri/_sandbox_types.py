"""A pod sandbox as the CRI handlers see it: its record plus what setup made.

Everything a container of the pod needs to join it is here: the pinned
namespace files, the pod's resolv.conf, hostname file and /dev/shm, its cgroup
parent and log directory.  Built by :class:`hawser.cri._sandboxes.Sandboxes`
from the SQLite record (``metadata.SandboxRecord``); never mutated.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from hawser._dataclass import dataclass, field

# SandboxRecord.state values, as the CRI names them.
SANDBOX_READY = "ready"
SANDBOX_NOTREADY = "notready"

# Labels put on the containers of a pod (``Container.labels`` in metadata), so
# that list filters and removal find them; the CRI's own labels and
# annotations are kept under "cri.labels"/"cri.annotations" in the record's config.
LABEL_SANDBOX_ID = "io.hawser.cri.sandbox-id"
LABEL_KIND = "io.hawser.cri.kind"  # "container"


@dataclass(frozen=True, slots=True, kw_only=True)
class Sandbox:
    id: str
    # PodSandboxMetadata
    name: str
    namespace: str
    uid: str
    attempt: int
    state: str  # SANDBOX_READY | SANDBOX_NOTREADY
    created_at: float  # seconds since the epoch
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    runtime_handler: str = ""
    hostname: str = ""
    log_directory: str = ""
    # The cgroup under which the pod's containers get theirs: "<parent>/<container id>".
    cgroup_parent: str = ""
    # Namespaces to join, by pinned path; None means the host's (hostNetwork,
    # hostIPC, hostPID).  ``pid`` is only set when the pod shares one pid
    # namespace (NamespaceMode POD): /proc/<infra pid>/ns/pid.
    netns: str | None = None
    ipc: str | None = None
    uts: str | None = None
    pid: str | None = None
    host_pid: bool = False
    # Files and mounts the pod's containers bind: /etc/resolv.conf,
    # /etc/hostname and /dev/shm (None with the host's IPC namespace).
    resolv_conf: str | None = None
    hostname_file: str | None = None
    shm: str | None = None
    ips: tuple[str, ...] = ()
    privileged: bool = False
    sysctls: Mapping[str, str] = field(default_factory=dict)
    # The PodSandboxConfig as JSON (protobuf field names), for verbose status.
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.state == SANDBOX_READY


class SandboxLookup(Protocol):
    """How container handlers find their pod."""

    def get(self, sandbox_id: str) -> Sandbox:
        """The sandbox with this id (or a unique id prefix). NotFound otherwise.
        Blocking (SQLite): call it through ``deps.blocking``."""
        ...
