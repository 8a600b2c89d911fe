"""The container and pod metrics as cAdvisor names them: each family's name,
help, kind and how it reads a cgroup sample or an interface's counters.  One
definition for hawserd's /metrics endpoint (``metrics``) and the CRI's
ListMetricDescriptors and ListPodSandboxMetrics (``cri``), so the two never
disagree."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from hawser._dataclass import dataclass

if TYPE_CHECKING:
    from hawser.host import CgroupStats
    from hawser.pods._stats import InterfaceUsage

COUNTER, GAUGE = "counter", "gauge"
LABELS = ("container", "id", "image", "namespace", "pod")
NETWORK_LABELS = (*LABELS, "interface")
# cAdvisor's name for the pod-level (infra) container, which carries the pod's network.
POD_CONTAINER = "POD"


@dataclass(frozen=True, slots=True)
class CgroupFamily:
    name: str
    help: str
    kind: str  # COUNTER or GAUGE
    value: Callable[[CgroupStats], float]


@dataclass(frozen=True, slots=True)
class NetworkFamily:
    name: str
    help: str
    value: Callable[[InterfaceUsage], float]


CGROUP_FAMILIES = (
    CgroupFamily("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", COUNTER,
                 lambda s: s.cpu_usage_ns / 1e9),
    CgroupFamily("container_memory_working_set_bytes", "Current working set in bytes.", GAUGE,
                 lambda s: s.memory_working_set),
    CgroupFamily("container_memory_rss", "Size of RSS in bytes.", GAUGE, lambda s: s.memory_rss),
    CgroupFamily("container_memory_usage_bytes",
                 "Current memory usage in bytes, including all memory regardless of when it was accessed.", GAUGE,
                 lambda s: s.memory_usage),
    CgroupFamily("container_oom_events_total", "Count of out of memory events observed for the container.",
                 COUNTER, lambda s: s.oom_kills),
    CgroupFamily("container_processes", "Number of processes running inside the container.", GAUGE,
                 lambda s: s.pids_current),
    CgroupFamily("container_fs_reads_bytes_total", "Cumulative count of bytes read.", COUNTER,
                 lambda s: s.blkio_read_bytes),
    CgroupFamily("container_fs_writes_bytes_total", "Cumulative count of bytes written.", COUNTER,
                 lambda s: s.blkio_write_bytes),
)
NETWORK_FAMILIES = (
    NetworkFamily("container_network_receive_bytes_total", "Cumulative count of bytes received.",
                  lambda i: i.rx_bytes),
    NetworkFamily("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.",
                  lambda i: i.rx_errors),
    NetworkFamily("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.",
                  lambda i: i.tx_bytes),
    NetworkFamily("container_network_transmit_errors_total",
                  "Cumulative count of errors encountered while transmitting.", lambda i: i.tx_errors),
)


def cgroup_id(cgroup: str) -> str:
    """cAdvisor's ``id``: the cgroup's path from the hierarchy's root."""
    return cgroup if cgroup.startswith("/") else f"/{cgroup}"
