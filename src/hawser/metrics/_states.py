"""``hawser_containers{state}`` and ``hawser_pods{state}``, counted at scrape time.

Records only: a scrape must stay cheap however often Prometheus comes, so no
``runc state`` and no cgroup reads.  A pod's state is its record's; a
container's is read from the files its lifecycle leaves (conmon's exit file,
the bundle's ``started`` mark), which is what ``ContainerManager.status``
starts from too, without asking runc (a paused container counts as running).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hawser.metadata import SandboxRecords
from hawser.runtime import CREATED, EXITED, RUNNING, UNKNOWN, ContainerManager

CONTAINER_STATES = (CREATED, RUNNING, EXITED, UNKNOWN)
POD_STATES = ("ready", "notready")


def container_states(manager: ContainerManager) -> Callable[[], Iterable[str]]:
    """The state of each of ``manager``'s containers, from its files."""

    def states() -> Iterator[str]:
        for record in manager.records.list():
            if os.path.exists(os.path.join(manager.exits_dir, record.id)):
                yield EXITED
                continue
            bundle = manager.bundle(record.id)
            if not os.path.isdir(bundle):
                yield UNKNOWN
            elif os.path.exists(os.path.join(bundle, "started")):
                yield RUNNING
            else:
                yield CREATED

    return states


def pod_states(records: SandboxRecords) -> Callable[[], Iterable[str]]:
    """The state of each pod sandbox in ``records``, as recorded ("ready", "notready")."""
    return lambda: (record.state for record in records.list())


class StateCollector(Collector):
    """Containers and pods by state.  Every known state is reported, 0 when
    none is in it, so that a series does not vanish when its last member goes."""

    def __init__(self, *, containers: Callable[[], Iterable[str]], pods: Callable[[], Iterable[str]]) -> None:
        self.containers = containers
        self.pods = pods

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield _family("hawser_containers", "Containers, by state.", CONTAINER_STATES, self.containers())
        yield _family("hawser_pods", "Pod sandboxes, by state.", POD_STATES, self.pods())

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering must not list the records: describe() without collect()'s work.
        yield GaugeMetricFamily("hawser_containers", "Containers, by state.", labels=["state"])
        yield GaugeMetricFamily("hawser_pods", "Pod sandboxes, by state.", labels=["state"])


def _family(name: str, documentation: str, known: Iterable[str], states: Iterable[str]) -> GaugeMetricFamily:
    counts = Counter(states)
    family = GaugeMetricFamily(name, documentation, labels=["state"])
    for state in [*known, *sorted(set(counts) - set(known))]:
        family.add_metric([state], counts.get(state, 0))
    return family
