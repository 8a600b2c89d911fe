"""The pull, GC, store, container and daemon families: their collectors and
observers fed with the services' own event types, read back through the
exposition (names, labels, values, histogram buckets)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hawser.cri._singleflight import SingleFlight
from hawser.images import GC, PULL, ImageEvent, PullStats
from hawser.images._meter import STAGES as METER_STAGES
from hawser.images._meter import PullMeter
from hawser.images._pull_process import _stats
from hawser.metadata import GCError, GCReport, Metadata, Removal
from hawser.metrics import (
    ContainerMetrics,
    DaemonCollector,
    ImageMetrics,
    MergedPulls,
    SnapshotUsage,
    StoreSizeCollector,
    content_bytes,
    new_metrics,
    record_start,
)
from hawser.metrics import _images as images_family
from hawser.metrics._images import GC_BUCKETS, STAGE_BUCKETS
from hawser.runtime import EVENT_CREATED, EVENT_STARTED, EVENT_STOPPED
from hawser.snapshots import Info, Kind, Usage

Key = tuple[str, frozenset[tuple[str, str]]]


def values(registry: CollectorRegistry) -> dict[Key, float]:
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def key(name: str, **labels: str) -> Key:
    return name, frozenset(labels.items())


def stats(**seconds: float) -> PullStats:
    return PullStats(bytes_fetched=1000, layers_fetched=2, layers_present=1, seconds=seconds)


# --- pulls -----------------------------------------------------------------------------


def test_constants_agree_with_the_parts_they_mirror() -> None:
    assert (images_family.PULL, images_family.GC) == (PULL, GC)
    assert images_family.STAGES == METER_STAGES
    assert {"NotFound", "Unavailable", "PermissionDenied", "Internal"} <= images_family.ERROR_KINDS
    assert "HawserError" not in images_family.ERROR_KINDS


def test_every_fixed_series_is_there_at_zero() -> None:
    registry = CollectorRegistry()
    ImageMetrics(registry)
    ContainerMetrics(registry)
    got = values(registry)
    for result in ("ok", "failed"):
        assert got[key("hawser_image_pulls_total", result=result)] == 0
    for how in ("fetched", "present"):
        assert got[key("hawser_image_pull_layers_total", how=how)] == 0
    for stage in ("resolve", "fetch", "unpack", "commit"):
        assert got[key("hawser_image_pull_stage_seconds_count", stage=stage)] == 0
    for kind in ("blob", "snapshot", "record", "lease", "ingest", "leftover"):
        assert got[key("hawser_gc_removed_total", kind=kind)] == 0
    for reason in ("Completed", "Error", "OOMKilled", "Unknown"):
        assert got[key("hawser_container_exits_total", reason=reason)] == 0
    assert got[key("hawser_image_pull_bytes_total")] == 0
    assert got[key("hawser_gc_runs_total")] == 0
    assert got[key("hawser_container_starts_total")] == 0


def test_a_pull_with_stats_counts_bytes_layers_and_stage_seconds() -> None:
    registry = CollectorRegistry()
    metrics = ImageMetrics(registry)
    metrics.observe(ImageEvent(action=PULL, namespace="k8s.io", name="r/a:1", digest="sha256:1",
                               stats=stats(resolve=0.02, fetch=3.0, unpack=2.0, commit=0.004, bogus=1.0)))
    metrics.observe(ImageEvent(action=PULL, namespace="k8s.io", name="r/b:1", digest="sha256:2"))  # no stats
    got = values(registry)
    assert got[key("hawser_image_pulls_total", result="ok")] == 2
    assert got[key("hawser_image_pulls_total", result="failed")] == 0
    assert got[key("hawser_image_pull_bytes_total")] == 1000
    assert got[key("hawser_image_pull_layers_total", how="fetched")] == 2
    assert got[key("hawser_image_pull_layers_total", how="present")] == 1
    assert got[key("hawser_image_pull_stage_seconds_sum", stage="fetch")] == 3.0
    assert got[key("hawser_image_pull_stage_seconds_bucket", stage="fetch", le="2.5")] == 0
    assert got[key("hawser_image_pull_stage_seconds_bucket", stage="fetch", le="5.0")] == 1
    assert got[key("hawser_image_pull_stage_seconds_bucket", stage="commit", le="0.005")] == 1
    assert got[key("hawser_image_pull_stage_seconds_bucket", stage="resolve", le="0.01")] == 0
    assert got[key("hawser_image_pull_stage_seconds_bucket", stage="resolve", le="0.025")] == 1
    # An unknown stage is no new label value: the set stays bounded.
    assert not any(name.startswith("hawser_image_pull_stage") and ("stage", "bogus") in labels
                   for name, labels in got)


def test_failed_pulls_by_error_kind_with_a_bounded_label() -> None:
    registry = CollectorRegistry()
    metrics = ImageMetrics(registry)
    for error in ("NotFound", "NotFound", "Unavailable", "SomethingElse"):
        metrics.observe(ImageEvent(action=PULL, namespace="k8s.io", name="r/a:1", error=error,
                                   stats=stats(fetch=1.0)))
    got = values(registry)
    assert got[key("hawser_image_pulls_total", result="failed")] == 4
    assert got[key("hawser_image_pulls_total", result="ok")] == 0
    assert got[key("hawser_image_pull_failures_total", kind="NotFound")] == 2
    assert got[key("hawser_image_pull_failures_total", kind="Unavailable")] == 1
    assert got[key("hawser_image_pull_failures_total", kind="Unknown")] == 1
    assert got[key("hawser_image_pull_bytes_total")] == 0  # a failed pull's stats are not added


def test_imports_and_removals_are_not_pulls() -> None:
    registry = CollectorRegistry()
    metrics = ImageMetrics(registry)
    for action in ("import", "remove"):
        metrics.observe(ImageEvent(action=action, namespace="k8s.io", name="r/a:1"))
    got = values(registry)
    assert got[key("hawser_image_pulls_total", result="ok")] == 0


def test_stage_buckets_reach_from_milliseconds_to_minutes() -> None:
    assert list(STAGE_BUCKETS) == sorted(STAGE_BUCKETS) and STAGE_BUCKETS[0] <= 0.005 and STAGE_BUCKETS[-1] >= 300
    assert list(GC_BUCKETS) == sorted(GC_BUCKETS) and GC_BUCKETS[0] <= 0.001 and GC_BUCKETS[-1] >= 30


# --- GC --------------------------------------------------------------------------------


def test_a_collection_counts_runs_duration_removals_and_bytes() -> None:
    registry = CollectorRegistry()
    metrics = ImageMetrics(registry)
    report = GCReport(dry_run=False, blobs=(Removal("blob", "sha256:a", "unreferenced", size=300),
                                            Removal("blob", "sha256:b", "unreferenced", size=200)),
                      records=(Removal("record", "sha256:a", "unreferenced", namespace="k8s.io"),),
                      snapshots=(Removal("snapshot", "sha256:c", "unreferenced", snapshotter="overlayfs",
                                         size=4096),),
                      errors=(GCError("blob", "sha256:d", "busy"),), bytes_reclaimed=4596, duration=0.03)
    metrics.observe(ImageEvent(action=GC, namespace="k8s.io", report=report))
    metrics.observe(ImageEvent(action=GC, namespace="k8s.io", report=GCReport(dry_run=False, duration=0.0005)))
    got = values(registry)
    assert got[key("hawser_gc_runs_total")] == 2
    assert got[key("hawser_gc_duration_seconds_count")] == 2
    assert got[key("hawser_gc_duration_seconds_bucket", le="0.001")] == 1
    assert got[key("hawser_gc_duration_seconds_bucket", le="0.05")] == 2
    assert got[key("hawser_gc_removed_total", kind="blob")] == 2
    assert got[key("hawser_gc_removed_total", kind="record")] == 1
    assert got[key("hawser_gc_removed_total", kind="snapshot")] == 1
    assert got[key("hawser_gc_removed_total", kind="lease")] == 0
    assert got[key("hawser_gc_freed_bytes_total")] == 4596
    assert got[key("hawser_gc_errors_total")] == 1


# --- pulls merged ----------------------------------------------------------------------------


def test_merged_pulls_are_read_at_scrape_time() -> None:
    count = [0]
    registry = CollectorRegistry(auto_describe=True)
    registry.register(MergedPulls(lambda: count[0]))
    assert values(registry)[key("hawser_image_pulls_merged_total")] == 0
    count[0] = 3
    assert values(registry)[key("hawser_image_pulls_merged_total")] == 3


def test_single_flight_counts_the_calls_it_merged() -> None:
    async def main() -> tuple[list[tuple[int, bool]], int]:
        flight: SingleFlight[str, int] = SingleFlight()
        gate = asyncio.Event()
        started = []

        async def work() -> int:
            started.append(1)
            await gate.wait()
            return 7

        calls = [asyncio.create_task(flight.run("img", work)) for _ in range(3)]
        await asyncio.sleep(0)
        gate.set()
        results = [await call for call in calls]
        assert len(started) == 1
        await flight.run("img", work)  # nothing in flight any more: not merged
        return results, flight.merged

    results, merged = asyncio.run(main())
    assert sorted(results) == [(7, False), (7, True), (7, True)]
    assert merged == 2


# --- store sizes -----------------------------------------------------------------------------


class FakeSnapshotter:
    def __init__(self) -> None:
        self.snapshots: dict[str, tuple[Kind, int]] = {}
        self.measured: list[str] = []

    def walk(self) -> Iterator[Info]:
        for name, (kind, _) in list(self.snapshots.items()):
            yield Info(key=name, kind=kind, created=1.0)

    def usage(self, key: str) -> Usage:
        self.measured.append(key)
        return Usage(size=self.snapshots[key][1], inodes=1)


def test_snapshot_usage_measures_a_committed_snapshot_once_and_active_ones_each_time() -> None:
    snapshotter = FakeSnapshotter()
    snapshotter.snapshots = {"layer1": (Kind.COMMITTED, 1000), "layer2": (Kind.COMMITTED, 500),
                             "rw": (Kind.ACTIVE, 10)}
    usage = SnapshotUsage(snapshotter)
    assert usage() == 1510
    snapshotter.snapshots["rw"] = (Kind.ACTIVE, 50)
    assert usage() == 1550
    assert sorted(snapshotter.measured) == ["layer1", "layer2", "rw", "rw"]
    del snapshotter.snapshots["layer2"]
    assert usage() == 1050


def test_store_sizes_are_cached_for_the_interval() -> None:
    now = [100.0]
    calls: list[str] = []

    def content() -> int:
        calls.append("content")
        return 10 * len(calls)

    registry = CollectorRegistry(auto_describe=True)
    collector = StoreSizeCollector(content=content, snapshots=lambda: 7, interval=30.0, clock=lambda: now[0])
    registry.register(collector)
    assert calls == []  # registering measures nothing
    got = values(registry)
    assert got[key("hawser_store_content_bytes")] == 10
    assert got[key("hawser_store_snapshots_bytes")] == 7
    now[0] += 29
    assert values(registry)[key("hawser_store_content_bytes")] == 10
    now[0] += 1
    assert values(registry)[key("hawser_store_content_bytes")] == 20
    assert calls == ["content", "content"]


def test_content_bytes_counts_each_blob_once_across_namespaces(tmp_path: Path) -> None:
    metadata = Metadata(tmp_path / "metadata.db")
    try:
        metadata.namespaces.create("k8s.io")  # "default" is there from the start
        a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
        metadata.blobs.record(a, 100, namespace="default")
        metadata.blobs.record(a, 100, namespace="k8s.io")
        metadata.blobs.record(b, 23, namespace="k8s.io")
        assert content_bytes(metadata) == 123
    finally:
        metadata.close()


# --- containers ------------------------------------------------------------------------------


def test_container_starts_and_exits_by_bounded_reason() -> None:
    registry = CollectorRegistry()
    metrics = ContainerMetrics(registry)
    record = SimpleNamespace(id="c1")
    metrics.observe(EVENT_CREATED, record, {})
    for _ in range(2):
        metrics.observe(EVENT_STARTED, record, {})
    for reason in ("Completed", "Error", "Error", "OOMKilled", "exit status unknown", ""):
        metrics.observe(EVENT_STOPPED, record, {"exitCode": "3", "reason": reason})
    got = values(registry)
    assert got[key("hawser_container_starts_total")] == 2
    assert got[key("hawser_container_exits_total", reason="Completed")] == 1
    assert got[key("hawser_container_exits_total", reason="Error")] == 2
    assert got[key("hawser_container_exits_total", reason="OOMKilled")] == 1
    assert got[key("hawser_container_exits_total", reason="Unknown")] == 2
    assert {labels for name, labels in got if name == "hawser_container_exits_total"} == {
        frozenset({("reason", r)}) for r in ("Completed", "Error", "OOMKilled", "Unknown")}


# --- the daemon ----------------------------------------------------------------------------


def test_starts_are_counted_in_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert [record_start(str(state)) for _ in range(3)] == [1, 2, 3]
    assert (state / "daemon-starts").read_text() == "3\n"
    (state / "daemon-starts").write_text("garbage")
    assert record_start(str(state)) == 1


def test_daemon_collector_reports_start_and_what_recovery_found() -> None:
    recovered: dict[str, dict[str, int]] = {}
    registry = CollectorRegistry(auto_describe=True)
    registry.register(DaemonCollector(started=1700000000.5, starts=4, recovered=lambda: recovered))
    got = values(registry)
    assert got[key("hawser_daemon_start_time_seconds")] == 1700000000.5
    assert got[key("hawser_daemon_starts_total")] == 4
    assert got[key("hawser_recovered_total", kind="pod", outcome="ready")] == 0
    recovered.update(pod={"ready": 2, "lost": 1}, container={"running": 3, "exited": 1, "odd": 1})
    got = values(registry)
    assert got[key("hawser_recovered_total", kind="pod", outcome="ready")] == 2
    assert got[key("hawser_recovered_total", kind="pod", outcome="lost")] == 1
    assert got[key("hawser_recovered_total", kind="pod", outcome="notready")] == 0
    assert got[key("hawser_recovered_total", kind="container", outcome="running")] == 3
    assert got[key("hawser_recovered_total", kind="container", outcome="exited")] == 1
    assert got[key("hawser_recovered_total", kind="container", outcome="unknown")] == 0
    assert got[key("hawser_recovered_total", kind="container", outcome="odd")] == 1


def test_the_whole_registry_lints_clean() -> None:
    metrics = new_metrics("1.0", containers=list, pods=list, merged_pulls=lambda: 1,
                          store=StoreSizeCollector(content=lambda: 5, snapshots=lambda: 6),
                          daemon=DaemonCollector(started=1.0, starts=1, recovered=dict))
    metrics.images.observe(ImageEvent(action=PULL, namespace="k8s.io", name="r/a:1", stats=stats(fetch=1.0)))
    metrics.images.observe(ImageEvent(action=PULL, namespace="k8s.io", name="r/a:1", error="NotFound"))
    metrics.containers.observe(EVENT_STOPPED, SimpleNamespace(id="c"), {"reason": "Error"})
    text = generate_latest(metrics.registry).decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    assert {"hawser_image_pulls", "hawser_image_pull_failures", "hawser_image_pull_bytes",
            "hawser_image_pull_layers", "hawser_image_pull_stage_seconds", "hawser_image_pulls_merged",
            "hawser_gc_runs", "hawser_gc_duration_seconds", "hawser_gc_removed", "hawser_gc_freed_bytes",
            "hawser_store_content_bytes", "hawser_store_snapshots_bytes", "hawser_container_starts",
            "hawser_container_exits", "hawser_daemon_start_time_seconds", "hawser_daemon_starts",
            "hawser_recovered"} <= names
    assert "# TYPE hawser_image_pulls_total counter" in text or "# TYPE hawser_image_pulls counter" in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (scripts/setup.sh installs it; the e2e tier requires it)")
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


# --- what a pull measures ----------------------------------------------------------------------


def test_the_meter_counts_overlapping_work_of_a_stage_once() -> None:
    now = [0.0]
    meter = PullMeter(clock=lambda: now[0])
    meter.begin("fetch")  # t=0: layer 1
    now[0] = 1.0
    meter.begin("fetch")  # t=1: layer 2, overlapping
    now[0] = 3.0
    meter.end("fetch")
    now[0] = 4.0
    meter.end("fetch")  # busy from 0 to 4
    now[0] = 10.0
    with meter.stage("fetch"):
        now[0] = 11.0  # and 10 to 11
    meter.begin("commit")  # still open: counts up to stats()
    now[0] = 11.5
    meter.fetched(300)
    meter.fetched(200)
    meter.present()
    meter.add_bytes(7)
    meter.end("unpack")  # never begun: ignored
    got = meter.stats()
    assert got.seconds == {"resolve": 0.0, "fetch": 5.0, "unpack": 0.0, "commit": 0.5}
    assert (got.bytes_fetched, got.layers_fetched, got.layers_present) == (507, 2, 1)
    assert PullStats.from_json(got.to_json()) == got


def test_the_meter_is_safe_across_threads() -> None:
    meter = PullMeter()

    def layer() -> None:
        for _ in range(200):
            with meter.stage("fetch"):
                meter.fetched(1)

    threads = [threading.Thread(target=layer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = meter.stats()
    assert got.layers_fetched == 800 and got.bytes_fetched == 800
    assert got.seconds["fetch"] >= 0.0


def test_the_parent_reads_the_childs_stats_or_none() -> None:
    sent = PullStats(bytes_fetched=5, layers_fetched=1, layers_present=0, seconds={"fetch": 0.5})
    import json

    assert _stats(json.dumps({"stats": sent.to_json()}).encode()) == sent
    assert _stats(b"noise\n" + json.dumps({"stats": sent.to_json()}).encode() + b"\n") == sent
    assert _stats(b"") is None
    assert _stats(b"not json") is None
    assert _stats(b'{"other": 1}') is None
    assert _stats(b"[1, 2]") is None
