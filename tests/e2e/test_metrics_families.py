"""The pull, GC, store, container and restart families on hawserd's /metrics,
driven over the CRI socket as kubelet drives it: pulls (one merged, one of a
missing tag), an image removed (a collection), a container that exits 3 in a
pod, then hawserd restarted on the same state dir; the exposition checked
against what was done and linted by promtool."""

from __future__ import annotations

import io
import secrets
import shutil
import subprocess
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
from cri_api.v1 import api_pb2

from tests.e2e.helpers import Samples, samples, scrape, spec, status_code
from tests.support.cri_pods import Pods
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.registry_fixtures import Registry


def small_image() -> BuiltImage:
    """One layer of one file of random bytes: blobs no other image shares."""
    data = secrets.token_bytes(64 << 10)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("random.bin")
        info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
        tar.addfile(info, io.BytesIO(data))
    return build_image([buf.getvalue()])


def get(got: Samples, name: str, **labels: str) -> float:
    return got.get((name, frozenset(labels.items())), 0.0)


def wait_for(port: int, name: str, value: float, timeout: float = 20.0, **labels: str) -> Samples:
    deadline = time.monotonic() + timeout
    while True:
        got = samples(scrape(port)[1])
        if get(got, name, **labels) == value or time.monotonic() > deadline:
            assert get(got, name, **labels) == value, (name, labels, get(got, name, **labels))
            return got
        time.sleep(0.1)


def promtool_check(text: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/setup.sh installs Debian's prometheus package"
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_pull_gc_container_and_restart_families(hawserd: Hawserd, metrics_port: int, pods: Pods,
                                                registry: Registry, push_client: object,
                                                busybox: tuple[str, BuiltImage]) -> None:
    _, busybox_image = busybox
    images = hawserd.client().images
    got = samples(scrape(metrics_port)[1])
    # The pods fixture pulled busybox: every layer fetched, each stage observed once.
    layers = len(busybox_image.layers)
    assert get(got, "hawser_image_pulls_total", result="ok") == 1
    assert get(got, "hawser_image_pull_layers_total", how="fetched") == layers
    assert get(got, "hawser_image_pull_layers_total", how="present") == 0
    assert get(got, "hawser_image_pull_bytes_total") >= sum(desc.size for desc, _ in busybox_image.layers)
    for stage in ("resolve", "fetch", "unpack", "commit"):
        assert get(got, "hawser_image_pull_stage_seconds_count", stage=stage) == 1, stage
    assert get(got, "hawser_image_pull_stage_seconds_sum", stage="fetch") > 0
    # Every start on this state dir counts: the fixture's, then its restart with metrics.
    assert get(got, "hawser_daemon_starts_total") == 2
    started = get(got, "hawser_daemon_start_time_seconds")
    assert time.time() - 120 < started <= time.time()

    # A missing tag: a failure of kind NotFound.
    missing = f"{registry.host}/test/busybox:absent-{secrets.token_hex(3)}"
    code, _ = status_code(images.PullImage, api_pb2.PullImageRequest(image=spec(missing)))
    assert code == grpc.StatusCode.NOT_FOUND

    # Three PullImage calls at once for one new image: one pull, the others merged into it.
    small = small_image()
    ref = f"{registry.host}/test/metrics-gc:{secrets.token_hex(3)}"
    push_image(push_client, ref, small, tag=ref.rsplit(":", 1)[1])
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: images.PullImage(api_pb2.PullImageRequest(image=spec(ref))), range(3)))
    assert len({a.image_ref for a in answers}) == 1
    got = samples(scrape(metrics_port)[1])
    merged = get(got, "hawser_image_pulls_merged_total")
    assert 1 <= merged <= 2
    assert get(got, "hawser_image_pulls_total", result="ok") == 1 + (3 - merged)
    assert get(got, "hawser_image_pulls_total", result="failed") == 1
    assert get(got, "hawser_image_pull_failures_total", kind="NotFound") == 1
    assert get(got, "hawser_image_pull_layers_total", how="fetched") == layers + 1
    assert get(got, "hawser_store_content_bytes") >= sum(desc.size for desc, _ in busybox_image.layers)
    assert get(got, "hawser_store_snapshots_bytes") > 0
    assert get(got, "hawser_gc_runs_total") == 0

    # Removing it collects its blobs (layer, config, manifest) and its snapshot.
    images.RemoveImage(api_pb2.RemoveImageRequest(image=spec(ref)))
    got = samples(scrape(metrics_port)[1])
    assert get(got, "hawser_gc_runs_total") == 1
    assert get(got, "hawser_gc_duration_seconds_count") == 1
    assert get(got, "hawser_gc_removed_total", kind="blob") >= 3
    assert get(got, "hawser_gc_removed_total", kind="snapshot") >= 1
    assert get(got, "hawser_gc_freed_bytes_total") >= small.layers[0][0].size

    # A container that exits 3: one start, one exit for Error.
    pod = pods.pod("families")
    failing = pods.run(pod, pods.config("fails", "sh", "-c", "exit 3"))
    assert pods.wait_exit(failing).exit_code == 3
    got = wait_for(metrics_port, "hawser_container_exits_total", 1, reason="Error")
    assert get(got, "hawser_container_starts_total") == 1
    assert get(got, "hawser_container_exits_total", reason="Completed") == 0
    assert get(got, "hawser_container_exits_total", reason="OOMKilled") == 0
    assert get(got, "hawser_recovered_total", kind="pod", outcome="ready") == 0  # nothing there at start

    # Restarted on the same state dir: counted, and what it found recovered.
    assert hawserd.stop() == 0
    hawserd.start()
    _, text = scrape(metrics_port)
    got = samples(text)
    assert get(got, "hawser_daemon_starts_total") == 3
    assert get(got, "hawser_daemon_start_time_seconds") >= started
    assert get(got, "hawser_recovered_total", kind="pod", outcome="ready") == 1
    assert get(got, "hawser_recovered_total", kind="pod", outcome="lost") == 0
    assert get(got, "hawser_recovered_total", kind="container", outcome="exited") == 1
    assert get(got, "hawser_recovered_total", kind="container", outcome="running") == 0
    # A new process: its counters start again from 0.
    assert get(got, "hawser_image_pulls_total", result="ok") == 0
    assert "# TYPE hawser_image_pull_stage_seconds histogram" in text
    promtool_check(text)
