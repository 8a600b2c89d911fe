"""ListMetricDescriptors: "gets the descriptors for the metrics that will be
returned in ListPodSandboxMetrics." ListPodSandboxMetrics: "gets pod sandbox
metrics from CRI Runtime." (cri-api api.proto)

kubelet's PodAndContainerStatsFromCRI exposes these as they come: one
Prometheus family per descriptor (its name, help and label keys), each Metric
a sample of it with the label values in the descriptor's order.  The names
and labels are cAdvisor's, the same as hawserd's /metrics endpoint serves
(``metrics/_cadvisor.py``; a unit test holds the two lists together): per pod,
its cgroup's counters with ``container=""`` and its network's per interface
with ``container="POD"``; per container, its cgroup's.  Values are integers
(UInt64Value): CPU time in whole seconds, as CRI-O reports it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from cri_api.v1 import api_pb2

from hawser._dataclass import dataclass
from hawser.cri._containers import cri_list, image_spec, sandbox_id
from hawser.cri._containers import cri_metadata as container_metadata
from hawser.cri.types import CriDeps
from hawser.pods import InterfaceUsage, Sandbox, read_pod_stats
from hawser.runtime import cgroup_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hawser.metadata import Container

LABELS = ("container", "id", "image", "namespace", "pod")
NETWORK_LABELS = (*LABELS, "interface")
POD_CONTAINER = "POD"


class CgroupStats(Protocol):
    """The counters of a cgroup sample read here (host's CgroupStats; the CRI does not import host)."""

    @property
    def cpu_usage_ns(self) -> int: ...
    @property
    def memory_working_set(self) -> int: ...
    @property
    def memory_rss(self) -> int: ...
    @property
    def memory_usage(self) -> int: ...
    @property
    def oom_kills(self) -> int: ...
    @property
    def pids_current(self) -> int: ...
    @property
    def blkio_read_bytes(self) -> int: ...
    @property
    def blkio_write_bytes(self) -> int: ...


@dataclass(frozen=True, slots=True)
class _Family:
    name: str
    help: str
    type: api_pb2.MetricType.ValueType
    value: Callable[[CgroupStats], int]


@dataclass(frozen=True, slots=True)
class _NetworkFamily:
    name: str
    help: str
    value: Callable[[InterfaceUsage], int]


CGROUP_FAMILIES = (
    _Family("container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", api_pb2.COUNTER,
            lambda s: s.cpu_usage_ns // 10**9),
    _Family("container_memory_working_set_bytes", "Current working set in bytes.", api_pb2.GAUGE,
            lambda s: s.memory_working_set),
    _Family("container_memory_rss", "Size of RSS in bytes.", api_pb2.GAUGE, lambda s: s.memory_rss),
    _Family("container_memory_usage_bytes",
            "Current memory usage in bytes, including all memory regardless of when it was accessed.", api_pb2.GAUGE,
            lambda s: s.memory_usage),
    _Family("container_oom_events_total", "Count of out of memory events observed for the container.",
            api_pb2.COUNTER, lambda s: s.oom_kills),
    _Family("container_processes", "Number of processes running inside the container.", api_pb2.GAUGE,
            lambda s: s.pids_current),
    _Family("container_fs_reads_bytes_total", "Cumulative count of bytes read.", api_pb2.COUNTER,
            lambda s: s.blkio_read_bytes),
    _Family("container_fs_writes_bytes_total", "Cumulative count of bytes written.", api_pb2.COUNTER,
            lambda s: s.blkio_write_bytes),
)
NETWORK_FAMILIES = (
    _NetworkFamily("container_network_receive_bytes_total", "Cumulative count of bytes received.",
                   lambda i: i.rx_bytes),
    _NetworkFamily("container_network_receive_errors_total",
                   "Cumulative count of errors encountered while receiving.", lambda i: i.rx_errors),
    _NetworkFamily("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.",
                   lambda i: i.tx_bytes),
    _NetworkFamily("container_network_transmit_errors_total",
                   "Cumulative count of errors encountered while transmitting.", lambda i: i.tx_errors),
)


def descriptors() -> list[api_pb2.MetricDescriptor]:
    return [*(api_pb2.MetricDescriptor(name=f.name, help=f.help, label_keys=LABELS) for f in CGROUP_FAMILIES),
            *(api_pb2.MetricDescriptor(name=f.name, help=f.help, label_keys=NETWORK_LABELS)
              for f in NETWORK_FAMILIES)]


async def list_metric_descriptors(
        deps: CriDeps, request: api_pb2.ListMetricDescriptorsRequest) -> api_pb2.ListMetricDescriptorsResponse:
    return api_pb2.ListMetricDescriptorsResponse(descriptors=descriptors())


async def list_pod_sandbox_metrics(
        deps: CriDeps, request: api_pb2.ListPodSandboxMetricsRequest) -> api_pb2.ListPodSandboxMetricsResponse:
    return api_pb2.ListPodSandboxMetricsResponse(pod_metrics=await deps.blocking(_list, deps))


def _list(deps: CriDeps) -> list[api_pb2.PodSandboxMetrics]:
    """Every pod's metrics and its containers'. Blocking (records, cgroups, /proc)."""
    sandboxes = deps.require_sandboxes().all()
    by_pod: dict[str, list[Container]] = {}
    for record in cri_list(deps.require_containers()):
        by_pod.setdefault(sandbox_id(record), []).append(record)
    layout = deps.container_stats.layout()
    out = []
    for sandbox in sandboxes:
        pod = api_pb2.PodSandboxMetrics(pod_sandbox_id=sandbox.id)
        stats = read_pod_stats(sandbox, layout)
        pod_id = _cgroup_id(sandbox.cgroup_parent) if sandbox.cgroup_parent else ""
        if stats.cgroup is not None:
            pod.metrics.extend(_cgroup_metrics(["", pod_id, "", sandbox.namespace, sandbox.name], stats.cgroup,
                                               stats.timestamp_ns))
        for interface in stats.interfaces or ():
            labels = [POD_CONTAINER, pod_id, "", sandbox.namespace, sandbox.name, interface.name]
            pod.metrics.extend(_metric(f.name, api_pb2.COUNTER, labels, f.value(interface), stats.timestamp_ns)
                               for f in NETWORK_FAMILIES)
        for record in by_pod.get(sandbox.id, ()):
            container = _container_metrics(deps, record, sandbox)
            if container is not None:
                pod.container_metrics.append(container)
        out.append(pod)
    return out


def _container_metrics(deps: CriDeps, record: Container, sandbox: Sandbox) -> api_pb2.ContainerMetrics | None:
    sample = deps.container_stats.read(record, writable_layer=False)
    if sample.cgroup is None:  # its cgroup is gone: no series, as cAdvisor has none
        return None
    labels = [container_metadata(record).name, _cgroup_id(cgroup_of(record)), image_spec(record).image,
              sandbox.namespace, sandbox.name]
    return api_pb2.ContainerMetrics(container_id=record.id,
                                    metrics=_cgroup_metrics(labels, sample.cgroup, sample.timestamp_ns))


def _cgroup_metrics(labels: list[str], sample: CgroupStats, timestamp_ns: int) -> list[api_pb2.Metric]:
    return [_metric(f.name, f.type, labels, f.value(sample), timestamp_ns) for f in CGROUP_FAMILIES]


def _metric(name: str, kind: api_pb2.MetricType.ValueType, labels: list[str], value: int,
            timestamp_ns: int) -> api_pb2.Metric:
    metric = api_pb2.Metric(name=name, timestamp=timestamp_ns, metric_type=kind, label_values=labels)
    metric.value.value = max(0, int(value))
    return metric


def _cgroup_id(cgroup: str) -> str:
    """cAdvisor's ``id``: the cgroup's path from the hierarchy's root."""
    return cgroup if cgroup.startswith("/") else f"/{cgroup}"
