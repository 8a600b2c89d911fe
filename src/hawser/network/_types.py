"""The pod network contract: what the CRI sandbox code asks of networking."""

from __future__ import annotations

from typing import Protocol

from hawser._dataclass import dataclass
from hawser.network._result import IPConfig, Result


@dataclass(frozen=True, slots=True)
class PortMapping:
    """A hostPort: ``host_ip:host_port`` on the node forwarded to ``container_port``."""

    container_port: int
    host_port: int
    protocol: str = "tcp"  # tcp, udp or sctp
    host_ip: str = ""  # "" for every address of the node


@dataclass(frozen=True, slots=True)
class DNSConfig:
    """The pod's DNS settings, handed to plugins declaring the "dns" capability."""

    servers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PodNetworkRequest:
    pod_id: str  # CNI_CONTAINERID: letters, digits, '_', '.', '-'
    netns: str  # path of the pod's network namespace (a pin)
    name: str = ""  # K8S_POD_NAME
    namespace: str = ""  # K8S_POD_NAMESPACE
    uid: str = ""  # K8S_POD_UID
    ifname: str = "eth0"
    port_mappings: tuple[PortMapping, ...] = ()
    dns: DNSConfig | None = None
    annotations: tuple[tuple[str, str], ...] = ()
    cgroup_parent: str = ""


@dataclass(frozen=True, slots=True)
class PodNetwork:
    """A pod attached to a network: the chain's final result."""

    pod_id: str
    network: str
    ifname: str
    netns: str
    result: Result

    @property
    def ip_configs(self) -> tuple[IPConfig, ...]:
        return self.result.sandbox_ips(self.ifname)

    @property
    def ips(self) -> tuple[str, ...]:
        """The pod's addresses, IPv4 first (CRI: ``ip`` then ``additional_ips``)."""
        return tuple(ip.ip for ip in self.ip_configs)

    @property
    def ip(self) -> str:
        return self.ips[0] if self.ips else ""


@dataclass(frozen=True, slots=True)
class NetworkStatus:
    """CRI's NetworkReady condition."""

    ready: bool
    reason: str = ""
    message: str = ""


class PodNetworks(Protocol):
    """Attach pods to the node's network and detach them."""

    def status(self) -> NetworkStatus:
        """Whether pods can be attached now.  May block (a spec 1.1 network's
        plugins are asked STATUS): call it from a worker thread.  Never raises."""
        ...

    async def setup(self, request: PodNetworkRequest) -> PodNetwork:
        """Attach the pod.  Idempotent for a pod already attached with the same
        netns.  On failure everything done is undone before the error
        (InvalidArgument, FailedPrecondition, Unavailable, DeadlineExceeded...)
        is raised."""
        ...

    async def pod_network(self, pod_id: str) -> PodNetwork | None:
        """The pod's recorded attachment, or None.  Runs no plugin."""
        ...

    async def teardown(self, pod_id: str, netns: str | None = None) -> None:
        """Detach the pod, also when its netns is gone.  Idempotent."""
        ...

    async def check(self, pod_id: str, netns: str | None = None) -> None:
        """Verify the pod's attachment.  NotFound if it is not attached."""
        ...
