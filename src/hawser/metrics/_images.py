"""The pull and garbage collection families, fed by an observer of the CRI's
``ImageService`` (``ImageMetrics.observe``), and the pulls merged, read from
the CRI's single-flight at scrape time (``MergedPulls``).

The metrics part may not import ``images``: the events are taken by their
shape (``ImageEventLike``), as the event journal takes them.  Every series
with a fixed set of label values is there from the start at 0, so that a rate
over it never begins with a gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from hawser import errors

if TYPE_CHECKING:
    from hawser.metadata import GCReport

# images' PULL and GC actions (images/_events.py), by value: metrics may not import images.
PULL, GC = "pull", "gc"
# PullStats.seconds' keys, in pipeline order (images/_meter.py says what each measures).
STAGES = ("resolve", "fetch", "unpack", "commit")
# GC's Removal.kind values (metadata/_gc.py).
GC_KINDS = ("lease", "record", "blob", "ingest", "snapshot", "leftover")
# The error kinds (hawser.errors): a failure's ``kind`` label is one of these or "Unknown".
ERROR_KINDS = frozenset(name for name, value in vars(errors).items()
                        if isinstance(value, type) and issubclass(value, errors.HawserError)
                        and value is not errors.HawserError)

# A stage takes from milliseconds (resolve from a near registry, commit) to
# minutes (fetching a large layer over a slow link).
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# A collection walks SQLite and a few directories: milliseconds, seconds on a large store.
GC_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class PullStatsLike(Protocol):
    @property
    def bytes_fetched(self) -> int: ...
    @property
    def layers_fetched(self) -> int: ...
    @property
    def layers_present(self) -> int: ...
    @property
    def seconds(self) -> Mapping[str, float]: ...


class ImageEventLike(Protocol):
    """``images.ImageEvent`` as the metrics read it."""

    @property
    def action(self) -> str: ...
    @property
    def error(self) -> str: ...
    @property
    def stats(self) -> PullStatsLike | None: ...
    @property
    def report(self) -> GCReport | None: ...


class ImageMetrics:
    """``hawser_image_pulls_total{result}``, ``hawser_image_pull_failures_total{kind}``,
    ``hawser_image_pull_bytes_total``, ``hawser_image_pull_layers_total{how}``,
    ``hawser_image_pull_stage_seconds{stage}``; ``hawser_gc_runs_total``,
    ``hawser_gc_duration_seconds``, ``hawser_gc_removed_total{kind}``,
    ``hawser_gc_freed_bytes_total`` and ``hawser_gc_errors_total``.

    ``observe`` is an ``ImageService`` observer: it runs in the thread that
    pulled or collected, and only adds to counters."""

    def __init__(self, registry: CollectorRegistry) -> None:
        pulls = Counter("hawser_image_pulls", "Image pulls finished, by result (ok, failed); merged pulls "
                        "count once.", ["result"], registry=registry)
        self._ok, self._failed = pulls.labels("ok"), pulls.labels("failed")
        self._failures = Counter("hawser_image_pull_failures", "Image pulls failed, by error kind "
                                 "(NotFound, Unavailable, PermissionDenied, ...).", ["kind"], registry=registry)
        self._bytes = Counter("hawser_image_pull_bytes", "Bytes fetched from registries by pulls (compressed "
                              "layers, configs and manifests; a blob stored already is not fetched).",
                              registry=registry)
        layers = Counter("hawser_image_pull_layers", "Layers of pulled images, by how they were had: fetched "
                         "from the registry or present in the content store already.", ["how"], registry=registry)
        self._fetched, self._present = layers.labels("fetched"), layers.labels("present")
        stages = Histogram("hawser_image_pull_stage_seconds", "Wall time of each stage of a pull: resolve "
                           "(reference to manifest and config), fetch (layer downloads), unpack (decompress and "
                           "apply; overlaps fetch), commit (snapshots, records).", ["stage"],
                           buckets=STAGE_BUCKETS, registry=registry)
        self._stages = {stage: stages.labels(stage) for stage in STAGES}
        self._stage_family = stages
        self._gc_runs = Counter("hawser_gc_runs", "Garbage collections run (not dry runs).", registry=registry)
        self._gc_duration = Histogram("hawser_gc_duration_seconds", "Time a garbage collection took.",
                                      buckets=GC_BUCKETS, registry=registry)
        removed = Counter("hawser_gc_removed", "What garbage collection removed, by kind (blob, snapshot, "
                          "record, lease, ingest, leftover).", ["kind"], registry=registry)
        self._removed = {kind: removed.labels(kind) for kind in GC_KINDS}
        self._removed_family = removed
        self._freed = Counter("hawser_gc_freed_bytes", "Bytes garbage collection freed (blobs, ingests, "
                              "snapshots).", registry=registry)
        self._gc_errors = Counter("hawser_gc_errors", "Removals garbage collection could not make (retried by "
                                  "the next run).", registry=registry)

    def observe(self, event: ImageEventLike) -> None:
        """An ImageService observer (``ImageService.observers.append(metrics.observe)``)."""
        if event.action == PULL:
            self._pull(event)
        elif event.action == GC and event.report is not None:
            self._gc(event.report)

    def _pull(self, event: ImageEventLike) -> None:
        if event.error:
            self._failed.inc()
            self._failures.labels(event.error if event.error in ERROR_KINDS else "Unknown").inc()
            return
        self._ok.inc()
        stats = event.stats
        if stats is None:
            return
        self._bytes.inc(max(0, stats.bytes_fetched))
        self._fetched.inc(max(0, stats.layers_fetched))
        self._present.inc(max(0, stats.layers_present))
        for stage, seconds in stats.seconds.items():
            histogram = self._stages.get(stage)
            if histogram is not None:  # an unknown stage would be a label value without bound
                histogram.observe(max(0.0, seconds))

    def _gc(self, report: GCReport) -> None:
        self._gc_runs.inc()
        self._gc_duration.observe(max(0.0, report.duration))
        for removal in report.removed:
            counter = self._removed.get(removal.kind)
            if counter is None:
                counter = self._removed[removal.kind] = self._removed_family.labels(removal.kind)
            counter.inc()
        self._freed.inc(max(0, report.bytes_reclaimed))
        self._gc_errors.inc(len(report.errors))


class MergedPulls(Collector):
    """``hawser_image_pulls_merged_total``: PullImage calls that joined a pull
    of the same image (and credentials) in flight instead of starting one,
    read at scrape time from ``merged`` (the CRI's single-flight counter)."""

    def __init__(self, merged: Callable[[], int]) -> None:
        self.merged = merged

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("hawser_image_pulls_merged", "PullImage calls merged into a pull of the same "
                                  "image already in flight.", value=self.merged())

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("hawser_image_pulls_merged", "PullImage calls merged into a pull of the same "
                                  "image already in flight.")
