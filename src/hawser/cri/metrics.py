"""ListMetricDescriptors: "gets the descriptors for the metrics that will be
returned in ListPodSandboxMetrics." ListPodSandboxMetrics: "gets pod sandbox
metrics from CRI Runtime." (cri-api api.proto)

kubelet's PodAndContainerStatsFromCRI exposes these as they come: one
Prometheus family per descriptor (its name, help and label keys), each Metric
a sample of it with the label values in the descriptor's order.  The names
and labels are cAdvisor's, one definition shared with hawserd's /metrics
endpoint (``pods/_metrics.py``): per pod,
its cgroup's counters with ``container=""`` and its network's per interface
with ``container="POD"``; per container, its cgroup's.  Values are integers
(UInt64Value): CPU time in whole seconds, as CRI-O reports it.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._containers import cri_list, image_spec, sandbox_id
from hawser.cri._containers import cri_metadata as container_metadata
from hawser.cri.types import CriDeps
from hawser.pods import (
    CGROUP_FAMILIES,
    COUNTER,
    GAUGE,
    LABELS,
    NETWORK_FAMILIES,
    NETWORK_LABELS,
    POD_CONTAINER,
    CgroupFamily,
    Sandbox,
    cgroup_id,
    read_pod_stats,
)
from hawser.runtime import cgroup_of

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hawser.metadata import Container
    from hawser.pods import CgroupStats

# The families are the endpoint's (``pods.CGROUP_FAMILIES``); their kinds as the CRI names them.
_TYPES = {COUNTER: api_pb2.COUNTER, GAUGE: api_pb2.GAUGE}


def metric_type(family: CgroupFamily) -> api_pb2.MetricType.ValueType:
    return _TYPES[family.kind]


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
        pod_id = cgroup_id(sandbox.cgroup_parent) if sandbox.cgroup_parent else ""
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
    labels = [container_metadata(record).name, cgroup_id(cgroup_of(record)), image_spec(record).image,
              sandbox.namespace, sandbox.name]
    return api_pb2.ContainerMetrics(container_id=record.id,
                                    metrics=_cgroup_metrics(labels, sample.cgroup, sample.timestamp_ns))


def _cgroup_metrics(labels: list[str], sample: CgroupStats, timestamp_ns: int) -> list[api_pb2.Metric]:
    return [_metric(f.name, metric_type(f), labels, f.value(sample), timestamp_ns) for f in CGROUP_FAMILIES]


def _metric(name: str, kind: api_pb2.MetricType.ValueType, labels: list[str], value: float,
            timestamp_ns: int) -> api_pb2.Metric:
    metric = api_pb2.Metric(name=name, timestamp=timestamp_ns, metric_type=kind, label_values=labels)
    metric.value.value = max(0, int(value))  # UInt64Value: CPU time in whole seconds
    return metric
