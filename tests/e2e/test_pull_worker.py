"""hawserd's pull worker over the CRI socket: PullImage's pulls run in one
long-lived child of hawserd (``python -m hawser.images._pull_worker``),
started by the first pull, reused, stopped when idle or when hawserd stops;
a killed worker fails its pulls (UNAVAILABLE), and the next pull starts a new
one; a cancelled PullImage stops its pull in the worker.

Slow pulls go through a fault proxy that drips a layer's bytes
(tests/support/registry_faults.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2

from hawser.images._pull_worker import CHECKER_NAME
from hawser.registry import RegistryClient
from tests.e2e.helpers import pull_request, small_image, spec
from tests.support.failpoints import failpoint_env, fired
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage, push_image
from tests.support.registry_faults import Drip, Fault, RegistryFaultProxy
from tests.support.registry_fixtures import Registry

WORKER_MODULE = "hawser.images._pull_worker"


# --- processes ----------------------------------------------------------------------------


def argv_of(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def live(pid: int) -> bool:
    """``pid`` exists and is no zombie (an orphan's zombie is init's to reap, not hawserd's)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return found


def checker(pid: int) -> bool:
    """Whether ``pid`` is a pull worker's checker (a process of its own, not a pull's)."""
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip() == CHECKER_NAME
    except OSError:
        return False


def worker_of(hawserd: Hawserd) -> int | None:
    """The pid of hawserd's pull worker, None if none is running."""
    assert hawserd.process is not None
    workers = [c for c in children(hawserd.process.pid) if WORKER_MODULE in argv_of(c) and live(c)]
    assert len(workers) <= 1, workers
    return workers[0] if workers else None


def worker_code_of(daemon_pid: int) -> list[int]:
    """Every live process running the pull worker's code for hawserd ``daemon_pid``
    (the worker and its pulls' processes, forked from it), whoever its parent is now."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    return [p for p in pids if (argv := argv_of(p)) and WORKER_MODULE in argv and argv[-1] == str(daemon_pid)
            and live(p)]


def eventually(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_with(hawserd: Hawserd, env: dict[str, str]) -> None:
    """hawserd restarted with ``env`` added to its environment only."""
    if hawserd.running:
        assert hawserd.stop() == 0, hawserd.log()
    hawserd.start(env=env)


# --- images -------------------------------------------------------------------------------


def pushed(push_client: RegistryClient, registry: Registry, name: str) -> tuple[str, BuiltImage]:
    """A one-layer image of its own at ``registry/e2e/NAME:v1``."""
    ref = f"{registry.host}/e2e/{name}:v1"
    image = small_image(name)
    push_image(push_client, ref, image, tag="v1")
    return ref, image


def layer_digest(image: BuiltImage) -> str:
    return str(image.layers[0][0].digest)


@pytest.fixture
def proxy(registry: Registry) -> Iterator[RegistryFaultProxy]:
    with RegistryFaultProxy(registry.host) as p:
        yield p


def slow(proxy: RegistryFaultProxy, image: BuiltImage, seconds: float) -> str:
    """Make the layer of ``image`` take about ``seconds`` to download through
    ``proxy``; returns the digest.  (Above the registry client's stall floor
    of 1024 bytes in 30 s only for short drips: tests end slow pulls early.)"""
    digest = layer_digest(image)
    size = image.layers[0][0].size
    interval = 0.25
    chunk = max(1, int(size * interval / seconds))
    proxy.add(Fault(digest, Drip(chunk=chunk, interval=interval)))
    return digest


def fetching(proxy: RegistryFaultProxy, digest: str) -> Callable[[], bool]:
    return lambda: bool(proxy.requests(digest, method="GET"))


def log_count(hawserd: Hawserd, msg: str) -> int:
    return hawserd.log().count(f'msg="{msg}"')


# --- tests --------------------------------------------------------------------------------


def test_pulls_share_one_worker_started_by_the_first(hawserd: Hawserd, registry: Registry,
                                                     push_client: RegistryClient) -> None:
    hawserd.plain_http(registry.host)
    refs = dict(pushed(push_client, registry, f"worker-share-{i}") for i in range(3))
    images = hawserd.client().images
    assert worker_of(hawserd) is None  # nothing before the first pull
    first, *others = refs
    assert images.PullImage(pull_request(first)).image_ref == str(refs[first].config_desc.digest)
    worker = worker_of(hawserd)
    assert worker is not None
    # Two images at once, in the same worker.
    calls = {ref: images.PullImage.future(pull_request(ref)) for ref in others}
    for ref, call in calls.items():
        assert call.result(timeout=120).image_ref == str(refs[ref].config_desc.digest)
    # The image present: a pull again, in the same worker still.
    assert images.PullImage(pull_request(first)).image_ref == str(refs[first].config_desc.digest)
    assert worker_of(hawserd) == worker
    assert log_count(hawserd, "pull worker started") == 1
    listed = {tag for i in images.ListImages(api_pb2.ListImagesRequest()).images for tag in i.repo_tags}
    assert listed == set(refs)


def test_a_killed_worker_fails_its_pull_and_the_next_pull_starts_another(
        hawserd: Hawserd, registry: Registry, push_client: RegistryClient, proxy: RegistryFaultProxy) -> None:
    hawserd.plain_http(proxy.host)
    _, image = pushed(push_client, registry, "worker-killed")
    ref = f"{proxy.host}/e2e/worker-killed:v1"
    digest = slow(proxy, image, 60)
    images = hawserd.client().images
    call = images.PullImage.future(pull_request(ref))
    eventually(fetching(proxy, digest), what="the layer's download")
    worker = worker_of(hawserd)
    assert worker is not None
    pulling = children(worker)
    assert pulling, "the pull runs in a process of the worker's"
    os.kill(worker, signal.SIGKILL)
    with pytest.raises(grpc.RpcError) as caught:
        call.result(timeout=30)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert f"the pull worker (pid {worker}) died (killed by SIGKILL) while pulling {ref}" in \
        caught.value.details()  # type: ignore[attr-defined]
    # Reaped by hawserd; its pull's process died with it (PR_SET_PDEATHSIG).
    eventually(lambda: not os.path.exists(f"/proc/{worker}") and not any(live(p) for p in pulling),
               what="the worker and its pull to be gone")
    assert 'msg="pull worker died"' in hawserd.log()
    assert hawserd.running
    # Nothing is lost: the same pull completes in a new worker.
    proxy.clear()
    assert images.PullImage(pull_request(ref)).image_ref == str(image.config_desc.digest)
    assert worker_of(hawserd) not in (None, worker)
    assert log_count(hawserd, "pull worker started") == 2


def test_a_cancelled_pull_stops_in_the_worker_and_the_others_go_on(
        hawserd: Hawserd, registry: Registry, push_client: RegistryClient, proxy: RegistryFaultProxy) -> None:
    hawserd.plain_http(proxy.host)
    _, victim_image = pushed(push_client, registry, "worker-cancelled")
    _, other_image = pushed(push_client, registry, "worker-bystander")
    victim, other = f"{proxy.host}/e2e/worker-cancelled:v1", f"{proxy.host}/e2e/worker-bystander:v1"
    victim_digest = slow(proxy, victim_image, 120)
    other_digest = slow(proxy, other_image, 12)
    images = hawserd.client().images
    bystander = images.PullImage.future(pull_request(other))
    # The client gives up on this one (kubelet's deadline): its pull must stop, not run on.
    cancelled = images.PullImage.future(pull_request(victim), timeout=3)
    eventually(fetching(proxy, victim_digest), what="the victim's download")
    eventually(fetching(proxy, other_digest), what="the bystander's download")
    worker = worker_of(hawserd)
    assert worker is not None
    pulls = [p for p in children(worker) if not checker(p)]  # its checker is a child of its own
    assert len(pulls) == 2, pulls
    with pytest.raises(grpc.RpcError) as caught:
        cancelled.result(timeout=30)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # type: ignore[attr-defined]
    # One of the two processes goes (SIGTERM, SIGKILL after TERM_GRACE), the other pull completes.
    eventually(lambda: len([p for p in pulls if live(p)]) == 1, 8, "the cancelled pull's process to stop")
    assert 'msg="pull cancelled: stopping it"' in hawserd.log()
    assert bystander.result(timeout=60).image_ref == str(other_image.config_desc.digest)
    assert not any(live(p) for p in pulls)
    assert worker_of(hawserd) == worker
    status = images.ImageStatus(api_pb2.ImageStatusRequest(image=spec(victim)))
    assert not status.HasField("image")
    # Pulled again, it completes in the same worker.
    proxy.clear()
    assert images.PullImage(pull_request(victim)).image_ref == str(victim_image.config_desc.digest)
    assert worker_of(hawserd) == worker


def test_a_pull_whose_process_dies_fails_alone(hawserd: Hawserd, registry: Registry, push_client: RegistryClient,
                                              tmp_path: Path) -> None:
    """A pull's process killed mid-pull (as by a crashing codec: the unpack.before-commit
    failpoint's SIGKILL) fails that pull UNAVAILABLE, not as hawserd's bug; the worker
    stays; the store keeps what the pull made, and the next pull finishes it."""
    log = tmp_path / "failpoints.log"
    start_with(hawserd, failpoint_env("unpack.before-commit=kill", log))
    hawserd.plain_http(registry.host)
    ref, image = pushed(push_client, registry, "worker-crash")
    images = hawserd.client().images
    for attempt in (1, 2):
        with pytest.raises(grpc.RpcError) as caught:
            images.PullImage(pull_request(ref))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        assert "the pull's process died (killed by SIGKILL)" in caught.value.details()  # type: ignore[attr-defined]
        assert fired(log) == [("unpack.before-commit", "kill")] * attempt
    assert log_count(hawserd, "pull worker started") == 1
    worker = worker_of(hawserd)
    assert worker is not None
    start_with(hawserd, {})
    assert hawserd.client().images.PullImage(pull_request(ref)).image_ref == str(image.config_desc.digest)
    assert not os.path.exists(f"/proc/{worker}")


def test_an_idle_worker_exits_and_the_next_pull_starts_another(hawserd: Hawserd, registry: Registry,
                                                               push_client: RegistryClient) -> None:
    start_with(hawserd, {"HAWSER_PULL_WORKER_IDLE": "1"})
    hawserd.plain_http(registry.host)
    ref, image = pushed(push_client, registry, "worker-idle")
    images = hawserd.client().images
    images.PullImage(pull_request(ref))
    worker = worker_of(hawserd)
    assert worker is not None
    # Gone, and reaped by hawserd (no zombie left behind).
    eventually(lambda: not os.path.exists(f"/proc/{worker}"), 10, "the idle worker to exit")
    assert worker_of(hawserd) is None
    assert 'msg="pull worker idle: stopping it"' in hawserd.log()
    assert images.PullImage(pull_request(ref)).image_ref == str(image.config_desc.digest)
    assert worker_of(hawserd) not in (None, worker)


def test_a_bad_idle_period_is_refused_at_start(hawserd: Hawserd) -> None:
    assert hawserd.stop() == 0
    proc = subprocess.run(hawserd.argv(), capture_output=True, text=True, timeout=30,
                          env={**os.environ, "HAWSER_PULL_WORKER_IDLE": "soon"})
    assert proc.returncode == 1, proc.stderr
    assert "hawserd cannot start" in proc.stderr and "HAWSER_PULL_WORKER_IDLE" in proc.stderr, proc.stderr


def test_hawserd_stopping_stops_and_reaps_its_worker(hawserd: Hawserd, registry: Registry,
                                                    push_client: RegistryClient) -> None:
    hawserd.plain_http(registry.host)
    ref, _ = pushed(push_client, registry, "worker-stop")
    hawserd.client().images.PullImage(pull_request(ref))
    worker = worker_of(hawserd)
    assert worker is not None and hawserd.process is not None
    daemon = hawserd.process.pid
    assert hawserd.stop() == 0
    assert not os.path.exists(f"/proc/{worker}")
    assert worker_code_of(daemon) == []
    assert 'msg="pull worker stopped"' in hawserd.log()


def test_a_killed_hawserd_takes_its_worker_and_pulls_along(
        hawserd: Hawserd, registry: Registry, push_client: RegistryClient, proxy: RegistryFaultProxy) -> None:
    hawserd.plain_http(proxy.host)
    _, image = pushed(push_client, registry, "worker-orphan")
    ref = f"{proxy.host}/e2e/worker-orphan:v1"
    digest = slow(proxy, image, 60)
    call = hawserd.client().images.PullImage.future(pull_request(ref))
    eventually(fetching(proxy, digest), what="the layer's download")
    assert hawserd.process is not None
    daemon = hawserd.process.pid
    assert len(worker_code_of(daemon)) == 3  # the worker, its checker and its pull
    hawserd.process.kill()
    hawserd.process.wait()
    with pytest.raises(grpc.RpcError):
        call.result(timeout=30)
    eventually(lambda: worker_code_of(daemon) == [], 15, "the worker and its pull to exit")
    hawserd.start()  # the store opens again, whatever the pull left
    proxy.clear()
    assert hawserd.client().images.PullImage(pull_request(ref)).image_ref == str(image.config_desc.digest)
