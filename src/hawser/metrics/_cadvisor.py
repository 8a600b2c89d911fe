"""cAdvisor's container families, per CRI container and per pod, from their
cgroups, computed at scrape time (``CgroupCollector``).

The names, help texts and labels are cAdvisor's (``namespace``, ``pod``,
``container``, ``image``, ``id``: the cgroup path), so that dashboards written
against kubelet's /metrics/cadvisor work unchanged.  As cAdvisor does, a pod's
own cgroup (the sum of its containers') is reported with ``container=""``
and its network usage, per interface, with ``container="POD"``.

A scrape reads each CRI container's cgroup once (``host.read_stats``: no page
faults, no writable layer, no subprocess) and each pod's cgroup and network
counters once (``pods.read_pod_stats``).  A container whose cgroup is gone
(exited and cleaned up) has no series, as in cAdvisor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hawser._dataclass import dataclass
from hawser.errors import InvalidArgument, NotFound
from hawser.pods import LABEL_SANDBOX_ID

if TYPE_CHECKING:
    from hawser.host import CgroupLayout, CgroupStats
    from hawser.metadata import Container
    from hawser.pods import InterfaceUsage, PodService, PodStats, Sandbox
    from hawser.runtime import ContainerManager

COUNTER, GAUGE = "counter", "gauge"
LABELS = ("container", "id", "image", "namespace", "pod")
NETWORK_LABELS = (*LABELS, "interface")
# cAdvisor's name for the pod-level (infra) container, which carries the pod's network.
POD_CONTAINER = "POD"
# What the CRI records of a container (cri/_container_options.py): its metadata and image as asked.
_CRI_METADATA, _CRI_IMAGE = "cri.metadata", "cri.image"


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


@dataclass(frozen=True, slots=True, kw_only=True)
class CgroupSource:
    """What the collector reads: the CRI's containers and pods, and one sample
    of each (None: the container's cgroup is gone).  All blocking."""

    containers: Callable[[], Iterable[Container]]
    pods: Callable[[], Iterable[Sandbox]]
    read_container: Callable[[Container], CgroupStats | None]
    read_pod: Callable[[Sandbox], PodStats]


def cgroup_source(manager: ContainerManager, sandboxes: PodService,
                  layout: Callable[[], CgroupLayout] | None = None) -> CgroupSource:
    """The CRI's containers (those of a pod) of ``manager`` and the pods of ``sandboxes``,
    read from the host's cgroups (the layout detected at the first scrape)."""
    from hawser.pods import read_pod_stats

    detected: list[CgroupLayout] = []

    def host_layout() -> CgroupLayout:
        if layout is not None:
            return layout()
        if not detected:
            from hawser.host import CgroupLayout

            detected.append(CgroupLayout.detect())
        return detected[0]

    def containers() -> list[Container]:
        return [r for r in manager.records.list() if r.labels.get(LABEL_SANDBOX_ID)]

    def read_container(record: Container) -> CgroupStats | None:
        from hawser.host import read_stats
        from hawser.runtime import cgroup_of

        cgroup = cgroup_of(record)
        if not cgroup:
            return None
        try:
            return read_stats(host_layout(), cgroup)
        except (NotFound, InvalidArgument):
            return None

    return CgroupSource(containers=containers, pods=sandboxes.all, read_container=read_container,
                        read_pod=lambda sandbox: read_pod_stats(sandbox, host_layout()))


def container_name(record: Container) -> str:
    """The container's name as kubelet gave it (its CRI metadata), else its record's."""
    meta = record.config.get(_CRI_METADATA) or {}
    return str(meta.get("name") or record.name)


def container_image(record: Container) -> str:
    return str(record.config.get(_CRI_IMAGE) or record.image)


def cgroup_id(cgroup: str) -> str:
    """cAdvisor's ``id``: the cgroup's path from the hierarchy's root."""
    return cgroup if cgroup.startswith("/") else f"/{cgroup}"


class CgroupCollector(Collector):
    """cAdvisor's per-container and per-pod families, read at scrape time."""

    def __init__(self, source: CgroupSource) -> None:
        self.source = source

    def describe(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        # Registering must not read cgroups: describe() without collect()'s work.
        cgroups, networks = _families()
        yield from cgroups.values()
        yield from networks.values()

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        from hawser.runtime import cgroup_of

        cgroups, networks = _families()
        source = self.source
        pods = {sandbox.id: sandbox for sandbox in source.pods()}
        for record in source.containers():
            sample = source.read_container(record)
            if sample is None:
                continue
            pod = pods.get(str(record.labels.get(LABEL_SANDBOX_ID) or ""))
            labels = [container_name(record), cgroup_id(cgroup_of(record)), container_image(record),
                      pod.namespace if pod else "", pod.name if pod else ""]
            _add(cgroups, labels, sample)
        for sandbox in pods.values():
            stats = source.read_pod(sandbox)
            if stats.cgroup is not None:
                _add(cgroups, ["", cgroup_id(sandbox.cgroup_parent), "", sandbox.namespace, sandbox.name],
                     stats.cgroup)
            for interface in stats.interfaces or ():
                labels = [POD_CONTAINER, cgroup_id(sandbox.cgroup_parent) if sandbox.cgroup_parent else "", "",
                          sandbox.namespace, sandbox.name, interface.name]
                for family in NETWORK_FAMILIES:
                    networks[family.name].add_metric(labels, family.value(interface))
        yield from cgroups.values()
        yield from networks.values()


def _families() -> tuple[dict[str, CounterMetricFamily | GaugeMetricFamily], dict[str, CounterMetricFamily]]:
    cgroups: dict[str, CounterMetricFamily | GaugeMetricFamily] = {
        f.name: (CounterMetricFamily if f.kind == COUNTER else GaugeMetricFamily)(f.name, f.help, labels=LABELS)
        for f in CGROUP_FAMILIES}
    networks = {f.name: CounterMetricFamily(f.name, f.help, labels=NETWORK_LABELS) for f in NETWORK_FAMILIES}
    return cgroups, networks


def _add(families: dict[str, CounterMetricFamily | GaugeMetricFamily], labels: list[str],
         sample: CgroupStats) -> None:
    for family in CGROUP_FAMILIES:
        families[family.name].add_metric(labels, family.value(sample))
