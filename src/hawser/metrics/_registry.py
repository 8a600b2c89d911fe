"""hawserd's one registry and what is on it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from hawser._dataclass import dataclass
from hawser.metrics._cadvisor import CgroupCollector, CgroupSource
from hawser.metrics._images import ImageMetrics, MergedPulls
from hawser.metrics._lifecycle import ContainerMetrics, DaemonCollector
from hawser.metrics._requests import RequestMetrics
from hawser.metrics._states import StateCollector
from hawser.metrics._store import StoreSizeCollector


@dataclass(frozen=True, slots=True)
class Metrics:
    """The registry, and the observers the daemon attaches: ``requests`` to
    its gRPC server, ``images.observe`` to the CRI's ImageService,
    ``containers.observe`` to its ContainerManager."""

    registry: CollectorRegistry
    requests: RequestMetrics
    images: ImageMetrics
    containers: ContainerMetrics
    daemon: DaemonCollector | None = None


def new_metrics(version: str, *, containers: Callable[[], Iterable[str]],
                pods: Callable[[], Iterable[str]], cgroups: CgroupSource | None = None,
                merged_pulls: Callable[[], int] | None = None, store: StoreSizeCollector | None = None,
                daemon: DaemonCollector | None = None) -> Metrics:
    """A registry of hawserd's own with every family of this slice on it; with
    ``cgroups``, cAdvisor's container families too; with ``merged_pulls``
    (read at scrape time), ``hawser_image_pulls_merged_total``; with
    ``store``, the store's sizes; with ``daemon``, hawserd's starts and what
    its recovery found.  The pull, GC and container families are always
    there, fed by the observers on the answer."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)  # process_*: RSS, CPU, open fds, start time
    GCCollector(registry=registry)  # python_gc_*
    # ProcessCollector has no thread count; gRPC's and the workers' threads are the kernel's to count.
    Gauge("hawser_process_threads", "Threads of the hawserd process (the kernel's count).",
          registry=registry).set_function(process_threads)
    Gauge("hawser_build_info", "hawserd's build: its version; always 1.", ["version"],
          registry=registry).labels(version).set(1)
    registry.register(StateCollector(containers=containers, pods=pods))
    if cgroups is not None:
        registry.register(CgroupCollector(cgroups))
    for collector in (MergedPulls(merged_pulls) if merged_pulls is not None else None, store, daemon):
        if collector is not None:
            registry.register(collector)
    return Metrics(registry=registry, requests=RequestMetrics(registry), images=ImageMetrics(registry),
                   containers=ContainerMetrics(registry), daemon=daemon)


def process_threads(stat_path: str = "/proc/self/stat") -> float:
    """num_threads, the 20th field of /proc/self/stat (counted after the command's closing paren)."""
    try:
        with open(stat_path, "rb") as f:
            text = f.read()
    except OSError:
        return float("nan")
    return float(text[text.rindex(b")") + 2:].split()[17])
