"""Container starts and exits (an observer of the CRI's ``ContainerManager``),
and hawserd's own life: when it started, how often it has started on this
state dir (``record_start``, in ``_starts``), and what its recovery found.
``hawser_daemon_start_time_seconds`` tells when this one began, as
``process_start_time_seconds`` does for any process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from hawser.runtime import CREATED, EVENT_STARTED, EVENT_STOPPED, EXITED, RUNNING, UNKNOWN

# An exit's reason as ContainerManager reports it; any other ("exit status unknown", ...) counts as Unknown.
EXIT_REASONS = ("Completed", "Error", "OOMKilled", "Unknown")
# What PodService.recover counts: pods by outcome, containers by the state their files show.
RECOVERED = {"pod": ("ready", "lost", "notready"), "container": (RUNNING, CREATED, EXITED, UNKNOWN)}


class ContainerMetrics:
    """``hawser_container_starts_total`` and ``hawser_container_exits_total{reason}``.

    ``observe`` is a ``ContainerManager`` observer.  An exit is heard once,
    by whichever process reads it first (hawserd's exit watcher, as a rule)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._starts = Counter("hawser_container_starts", "Containers started.", registry=registry)
        exits = Counter("hawser_container_exits", "Containers exited, by reason (Completed: status 0; Error: "
                        "another status; OOMKilled; Unknown: the status was lost).", ["reason"], registry=registry)
        self._exits = {reason: exits.labels(reason) for reason in EXIT_REASONS}

    def observe(self, kind: str, record: object, details: Mapping[str, str]) -> None:
        if kind == EVENT_STARTED:
            self._starts.inc()
        elif kind == EVENT_STOPPED:
            self._exits.get(details.get("reason", ""), self._exits["Unknown"]).inc()


class DaemonCollector(Collector):
    """``hawser_daemon_start_time_seconds``, ``hawser_daemon_starts_total`` (on
    this state dir) and ``hawser_recovered_total{kind,outcome}``: what the
    start-up recovery found, read from ``recovered`` ({"pod": {outcome: n},
    "container": {state: n}}; empty until it has run)."""

    def __init__(self, *, started: float, starts: int,
                 recovered: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self.started = started
        self.starts = starts
        self.recovered = recovered

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield from self._families(self.recovered())

    def describe(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield from self._families({})

    def _families(self, recovered: Mapping[str, Mapping[str, int]]
                  ) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily("hawser_daemon_start_time_seconds", "When this hawserd started, in seconds "
                                "since the epoch.", value=self.started)
        yield CounterMetricFamily("hawser_daemon_starts", "Starts of hawserd on this state dir (kept in "
                                  "state/daemon-starts: since the last boot).", value=self.starts)
        family = CounterMetricFamily("hawser_recovered", "What hawserd's start-up recovery found: pods by "
                                     "outcome (ready, lost: ready before and not now, notready), containers by "
                                     "state.", labels=["kind", "outcome"])
        for kind, outcomes in RECOVERED.items():
            found = recovered.get(kind, {})
            for outcome in [*outcomes, *sorted(set(found) - set(outcomes))]:
                family.add_metric([kind, outcome], found.get(outcome, 0))
        yield family
