"""Pods: the pod sandbox lifecycle between the runtime and network parts and
the front ends. Pinned namespaces, the pid-namespace holder, CNI wiring, pod
cgroups, pod records and pod stats; the CRI's pod calls are thin layers on it.
"""

from __future__ import annotations

from hawser._lazy import lazy_exports
from hawser.pods._metrics import (
    CGROUP_FAMILIES,
    COUNTER,
    GAUGE,
    LABELS,
    NETWORK_FAMILIES,
    NETWORK_LABELS,
    POD_CONTAINER,
    CgroupFamily,
    NetworkFamily,
    cgroup_id,
)
from hawser.pods._types import (
    CONTAINER,
    LABEL_KIND,
    LABEL_SANDBOX_ID,
    NODE,
    POD,
    REASON_KEY,
    SANDBOX_NOTREADY,
    SANDBOX_READY,
    TARGET,
    PodPort,
    PodSpec,
    RunBlocking,
    Sandbox,
    SandboxLookup,
)

TYPE_CHECKING = False  # typing stays unimported at run time
if TYPE_CHECKING:
    from hawser.host import CgroupStats as CgroupStats  # the samples the metric families read
    from hawser.pods._container_networks import ContainerNetworks, parse_add_host, parse_port
    from hawser.pods._host import connect_in_pod
    from hawser.pods._service import PodService
    from hawser.pods._stats import InterfaceUsage, PodStats, read_pod_stats

# The service pulls in the network and runtime parts: loaded on first use.
_EXPORTS = {
    "PodService": "_service", "connect_in_pod": "_host", "InterfaceUsage": "_stats", "PodStats": "_stats",
    "read_pod_stats": "_stats",
    **dict.fromkeys(("ContainerNetworks", "parse_add_host", "parse_port"), "_container_networks"),
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "CGROUP_FAMILIES",
    "CONTAINER",
    "COUNTER",
    "GAUGE",
    "LABELS",
    "LABEL_KIND",
    "LABEL_SANDBOX_ID",
    "NETWORK_FAMILIES",
    "NETWORK_LABELS",
    "NODE",
    "POD",
    "POD_CONTAINER",
    "REASON_KEY",
    "SANDBOX_NOTREADY",
    "SANDBOX_READY",
    "TARGET",
    "CgroupFamily",
    "ContainerNetworks",
    "InterfaceUsage",
    "NetworkFamily",
    "PodPort",
    "PodService",
    "PodSpec",
    "PodStats",
    "RunBlocking",
    "Sandbox",
    "SandboxLookup",
    "cgroup_id",
    "connect_in_pod",
    "parse_add_host",
    "parse_port",
    "read_pod_stats",
]
