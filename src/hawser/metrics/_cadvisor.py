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
from hawser.pods import (
    CGROUP_FAMILIES,
    COUNTER,
    LABEL_SANDBOX_ID,
    LABELS,
    NETWORK_FAMILIES,
    NETWORK_LABELS,
    POD_CONTAINER,
    cgroup_id,
)

if TYPE_CHECKING:
    from hawser.host import CgroupLayout, CgroupStats
    from hawser.metadata import Container
    from hawser.pods import PodService, PodStats, Sandbox
    from hawser.runtime import ContainerManager

# What the CRI records of a container (cri/_container_options.py): its metadata and image as asked.
_CRI_METADATA, _CRI_IMAGE = "cri.metadata", "cri.image"


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
