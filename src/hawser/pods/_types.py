"""The pod part's values and roles: what a pod is asked to be (``PodSpec``),
what it is (``Sandbox``), and the roles its users take.

A ``Sandbox`` holds everything a container of the pod needs to join it: the
pinned namespace files, the pod's resolv.conf, hostname file and /dev/shm, its
cgroup parent and log directory.  Built by :class:`hawser.pods.PodService`
from the SQLite record (``metadata.SandboxRecord``); never mutated.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, Protocol, TypeVar

from hawser._dataclass import dataclass, field

P = ParamSpec("P")
T = TypeVar("T")

# Namespace modes (the CRI's NamespaceMode names): the pod's own (POD), the
# host's (NODE), each container's own (CONTAINER), another container's (TARGET).
NODE, POD, CONTAINER, TARGET = "NODE", "POD", "CONTAINER", "TARGET"

# SandboxRecord.state values, as the CRI names them.
SANDBOX_READY = "ready"
SANDBOX_NOTREADY = "notready"
# Where a pod's record says why it is not ready when the host took it from it.
REASON_KEY = "not_ready_reason"

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
    runtime_handler: str = ""  # as RunPodSandbox asked ("": the default)
    # The configured handler that runs the pod's containers: runtime_handler, or the
    # default's name when that was "" ("" in a record older than handlers: the default).
    runtime: str = ""
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
    # The pod's own user namespace (pinned) and its maps; None: the host's.
    userns: str | None = None
    uid_map: tuple[tuple[int, int, int], ...] = ()
    gid_map: tuple[tuple[int, int, int], ...] = ()
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
    # Why a pod is not ready when it did not stop by request (a namespace lost).
    reason: str = ""

    @property
    def ready(self) -> bool:
        return self.state == SANDBOX_READY


@dataclass(frozen=True, slots=True, kw_only=True)
class PodPort:
    container_port: int
    host_port: int
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PodSpec:
    """What a pod is asked to be (RunPodSandbox's request, parsed)."""

    name: str
    namespace: str
    uid: str
    attempt: int = 0
    hostname: str = ""
    log_directory: str = ""
    dns_servers: tuple[str, ...] = ()
    dns_searches: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()
    has_dns: bool = False
    ports: tuple[PodPort, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    cgroup_parent: str = ""
    sysctls: Mapping[str, str] = field(default_factory=dict)
    network_mode: str = POD
    pid_mode: str = CONTAINER
    ipc_mode: str = POD
    privileged: bool = False
    runtime_handler: str = ""
    # runtime_handler resolved to a configured handler's name (the default's for "").
    runtime: str = ""
    # A user namespace of the pod's own (the CRI's userns_options mode POD):
    # its uid and gid maps, (container id, host id, size) each; None: the host's.
    uid_map: tuple[tuple[int, int, int], ...] | None = None
    gid_map: tuple[tuple[int, int, int], ...] = ()
    # The request's PodSandboxConfig as JSON, kept for verbose status.
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The unique name kubelet's retries share: name_namespace_uid_attempt."""
        return f"{self.name}_{self.namespace}_{self.uid}_{self.attempt}"


class RunBlocking(Protocol):
    """Run a blocking call (SQLite, a pull, a directory walk) off the event loop."""

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[T]:
        """Await ``fn(*args, **kwargs)`` run in a worker thread; its exception is re-raised."""
        ...


class SandboxLookup(Protocol):
    """How container handlers find their pod."""

    def get(self, sandbox_id: str) -> Sandbox:
        """The sandbox with this id (or a unique id prefix). NotFound otherwise.
        Blocking (SQLite): call it through a ``RunBlocking``."""
        ...
