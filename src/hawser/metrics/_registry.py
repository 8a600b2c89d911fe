"""hawserd's one registry and what is on it."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector

from hawser._dataclass import dataclass
from hawser.metrics._cadvisor import CgroupCollector, CgroupSource
from hawser.metrics._requests import RequestMetrics
from hawser.metrics._states import StateCollector


@dataclass(frozen=True, slots=True)
class Metrics:
    registry: CollectorRegistry
    requests: RequestMetrics


def new_metrics(version: str, *, containers: Callable[[], Iterable[str]],
                pods: Callable[[], Iterable[str]], cgroups: CgroupSource | None = None) -> Metrics:
    """A registry of hawserd's own with every family of this slice on it; with
    ``cgroups``, cAdvisor's container families too."""
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
    return Metrics(registry=registry, requests=RequestMetrics(registry))


def process_threads(stat_path: str = "/proc/self/stat") -> float:
    """num_threads, the 20th field of /proc/self/stat (counted after the command's closing paren)."""
    try:
        with open(stat_path, "rb") as f:
            text = f.read()
    except OSError:
        return float("nan")
    return float(text[text.rindex(b")") + 2:].split()[17])
