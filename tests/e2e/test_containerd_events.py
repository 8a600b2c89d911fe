"""containerd's events service on hawserd's second socket, watched by Debian's
real ``ctr events`` (one line per event: timestamp, namespace, topic and the
decoded event as JSON): namespaces and image tags made through containerd's
API, a pull and a ``run --rm`` through the hawser CLI, a pod's container
through the CRI, what the CLI did while hawserd was down (to the first
subscriber after the restart only), ctr's filters, and Publish and Forward
through the generated stubs."""

from __future__ import annotations

import datetime
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from cri_api.v1 import api_pb2

from hawser.containerd._api.events import image_pb2, task_pb2
from hawser.containerd._api.services.events.v1 import events_pb2 as pb
from hawser.containerd._api.services.events.v1 import events_pb2_grpc
from hawser.containerd.events import pack
from tests.support.cri_pods import Pods
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry

CTR = shutil.which("ctr") or "/usr/bin/ctr"
NS = "team"
SYNC_TOPIC = "/images/sync"  # passes the tests' topic filters


@dataclass(frozen=True)
class Line:
    when: datetime.datetime
    namespace: str
    topic: str
    event: dict[str, Any]


def parse(text: str) -> Line:
    """ctr's line: Go's time.Time ("2006-01-02 15:04:05.999999999 +0000 UTC"), namespace, topic, JSON."""
    date, clock, offset, _zone, namespace, topic, *rest = text.split(" ", 6)
    seconds, _, fraction = clock.partition(".")
    when = datetime.datetime.strptime(f"{date} {seconds} {offset}", "%Y-%m-%d %H:%M:%S %z")
    when += datetime.timedelta(microseconds=int((fraction or "0").ljust(9, "0")[:6]))
    return Line(when, namespace, topic, json.loads(rest[0]) if rest and rest[0].strip() else {})


class CtrEvents:
    """``ctr events [FILTER...]`` running, its lines read by a thread."""

    def __init__(self, hawserd: Hawserd, *filters: str) -> None:
        self.hawserd = hawserd
        self.proc = subprocess.Popen([CTR, "--address", hawserd.containerd_address, "events", *filters],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[Line] = []
        self.raw: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._syncs = 0
        self._from = 0  # seen() starts after the last sync marker

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for text in self.proc.stdout:
            with self._lock:
                self.raw.append(text)
                self.lines.append(parse(text.rstrip("\n")))

    def seen(self) -> list[Line]:
        """What ctr printed since the last sync marker."""
        with self._lock:
            return self.lines[self._from:]

    def every(self) -> list[Line]:
        with self._lock:
            return list(self.lines)

    def wait_for(self, predicate: Callable[[list[Line]], bool], timeout: float = 20.0) -> list[Line]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self.seen()
            if predicate(lines):
                return lines
            if self.proc.poll() is not None or time.monotonic() > deadline:
                stderr = self.proc.stderr.read() if self.proc.poll() is not None and self.proc.stderr else ""
                raise AssertionError(f"ctr events: timed out or ended; saw:\n{''.join(self.raw)}\n{stderr}")
            time.sleep(0.05)

    def sync(self, stub: events_pb2_grpc.EventsStub, namespace: str = "sync") -> list[Line]:
        """Publish a marker (in ``namespace``) until ctr prints it: from then
        on ctr is subscribed, and hawserd has read the journal up to it (an
        event another process journaled just before ctr subscribed may come
        before it).  The lines before it; ``seen`` is what comes after."""
        self._syncs += 1
        marker = f"sync-{id(self)}-{self._syncs}"
        deadline = time.monotonic() + 20
        while True:
            stub.Publish(pb.PublishRequest(topic=SYNC_TOPIC, event=pack(image_pb2.ImageUpdate(name=marker))),
                         metadata=meta(namespace))
            try:
                lines = self.wait_for(lambda ls: any(line.event.get("name") == marker for line in ls), timeout=1)
            except AssertionError:
                assert time.monotonic() < deadline and self.proc.poll() is None, "ctr events never subscribed"
                continue
            at = next(i for i, line in enumerate(lines) if line.event.get("name") == marker)
            self._from += at + 1
            return lines[:at]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def meta(namespace: str = NS) -> tuple[tuple[str, str], ...]:
    return (("containerd-namespace", namespace),)


def ctr(hawserd: Hawserd, *args: str, namespace: str = NS) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", namespace,
                           "--timeout", "20s", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def real(lines: list[Line]) -> list[Line]:
    """Without the sync markers."""
    return [line for line in lines if line.topic != SYNC_TOPIC]


def topics_of(lines: list[Line], key: str, value: str) -> list[str]:
    return [line.topic for line in lines if line.event.get(key) == value]


@pytest.fixture
def stub(hawserd: Hawserd) -> Iterator[events_pb2_grpc.EventsStub]:
    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        yield events_pb2_grpc.EventsStub(channel)


@pytest.fixture
def watch(hawserd: Hawserd) -> Iterator[Callable[..., CtrEvents]]:
    """Starts ``ctr events`` processes; every one is ended at teardown."""
    started: list[CtrEvents] = []

    def start(*filters: str) -> CtrEvents:
        events = CtrEvents(hawserd, *filters)
        started.append(events)
        return events

    try:
        yield start
    finally:
        for events in started:
            events.close()


@pytest.fixture
def pulled(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage]) -> str:
    ref, _ = busybox
    hawserd.plain_http(registry.host)
    hawserd.cli("-n", NS, "pull", "--plain-http", "-q", ref)
    return ref


def test_events_is_a_plugin(hawserd: Hawserd) -> None:
    rows = [line.split() for line in ctr(hawserd, "plugins", "ls").stdout.splitlines()[1:]]
    assert {(row[0], row[1]): row[-1] for row in rows}[("io.containerd.grpc.v1", "events")] == "ok"


def test_namespaces_and_image_tags_through_ctr(hawserd: Hawserd, pulled: str, registry: Registry,
                                               stub: events_pb2_grpc.EventsStub,
                                               watch: Callable[..., CtrEvents]) -> None:
    events = watch()
    events.sync(stub)
    begun = datetime.datetime.now(datetime.UTC)
    ctr(hawserd, "namespaces", "create", "evns", "tier=web")
    ctr(hawserd, "namespaces", "label", "evns", "tier=db")
    dst = f"{registry.host}/test/events-copy:v1"
    ctr(hawserd, "images", "tag", pulled, dst)
    ctr(hawserd, "images", "rm", dst)
    ctr(hawserd, "namespaces", "rm", "evns")
    lines = real(events.wait_for(lambda ls: "/namespace/delete" in [line.topic for line in ls]))
    assert [(line.namespace, line.topic, line.event) for line in lines] == [
        # A namespace's events are in the namespace of the request, as containerd's.
        (NS, "/namespace/create", {"name": "evns", "labels": {"tier": "web"}}),
        (NS, "/namespace/update", {"name": "evns", "labels": {"tier": "db"}}),
        (NS, "/images/create", {"name": dst}),
        (NS, "/images/delete", {"name": dst}),
        (NS, "/namespace/delete", {"name": "evns"})]
    assert all(begun - datetime.timedelta(seconds=1) <= line.when <= datetime.datetime.now(datetime.UTC)
               for line in lines)


def test_a_cli_pull_and_run_through_ctr_events(hawserd: Hawserd, registry: Registry,
                                               busybox: tuple[str, BuiltImage], stub: events_pb2_grpc.EventsStub,
                                               watch: Callable[..., CtrEvents]) -> None:
    ref, _ = busybox
    hawserd.plain_http(registry.host)
    events = watch()
    events.sync(stub)
    hawserd.cli("-n", NS, "pull", "--plain-http", "-q", ref)
    hawserd.cli("-n", NS, "run", "--rm", ref, "sh", "-c", "exit 3", check=False)
    lines = real(events.wait_for(lambda ls: "/containers/delete" in [line.topic for line in ls]))
    assert (lines[0].namespace, lines[0].topic, lines[0].event) == (NS, "/images/create", {"name": ref})
    (created,) = [line for line in lines if line.topic == "/containers/create"]
    container = created.event["id"]
    assert created.namespace == NS and created.event["image"] == ref
    assert created.event["runtime"] == {"name": "io.containerd.runc.v2"}
    mine = [line for line in lines if container in (line.event.get("id"), line.event.get("container_id"))]
    assert [line.topic for line in mine] == ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit",
                                             "/tasks/delete", "/containers/delete"]
    (exited,) = [line for line in mine if line.topic == "/tasks/exit"]
    assert exited.event["container_id"] == exited.event["id"] == container and exited.event["exit_status"] == 3
    assert "exited_at" in exited.event
    assert all(line.namespace == NS for line in mine)


def test_a_cri_container_through_ctr_events(pods: Pods, stub: events_pb2_grpc.EventsStub,
                                            watch: Callable[..., CtrEvents]) -> None:
    events = watch('namespace=="k8s.io"')
    events.sync(stub, namespace="k8s.io")  # ctr shows only what its filter takes
    pod = pods.pod("evpod")
    container = pods.run(pod, pods.config("box", "sleep", "1000"))
    lines = events.wait_for(lambda ls: "/tasks/start" in topics_of(ls, "container_id", container))
    assert all(line.namespace == "k8s.io" for line in lines)
    assert topics_of(lines, "id", container) == ["/containers/create"]
    assert topics_of(lines, "container_id", container) == ["/tasks/create", "/tasks/start"]
    pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=container, timeout=1))
    pods.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container))
    lines = events.wait_for(lambda ls: "/containers/delete" in topics_of(ls, "id", container))
    assert topics_of(lines, "container_id", container)[2:] == ["/tasks/exit", "/tasks/delete"]


def test_what_the_cli_did_while_hawserd_was_down_reaches_the_first_ctr_events(
        hawserd: Hawserd, pulled: str, stub: events_pb2_grpc.EventsStub,
        watch: Callable[..., CtrEvents]) -> None:
    assert hawserd.stop() == 0
    down = datetime.datetime.now(datetime.UTC)
    hawserd.cli("-n", NS, "run", "--rm", pulled, "true")
    hawserd.cli("-n", NS, "rmi", pulled)
    hawserd.start()
    up = datetime.datetime.now(datetime.UTC)
    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = events_pb2_grpc.EventsStub(channel)
        first = watch()
        backlog = first.sync(stub)
        if backlog and backlog[0].topic == "/images/create":
            # The pull, when hawserd stopped before reading it (it reads other processes' events every 0.2 s).
            assert backlog.pop(0).event == {"name": pulled}
        topics = [line.topic for line in backlog]
        assert topics[:7] == ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete",
                              "/containers/delete", "/images/delete"], topics
        assert backlog[6].event == {"name": pulled}
        # rmi collected what the image alone held: its blob records and snapshots.
        assert "/content/delete" in topics[7:] and "/snapshot/remove" in topics[7:]
        assert set(topics[7:]) == {"/content/delete", "/snapshot/remove"}
        assert all(line.namespace == NS and down <= line.when <= up for line in backlog)
        # A second subscriber gets what comes next, not the backlog again.
        second = watch()
        assert second.sync(stub) == []
        ctr(hawserd, "namespaces", "create", "later")
        for events in (first, second):
            events.wait_for(lambda ls: "/namespace/create" in [line.topic for line in ls])
        assert len(real(second.every())) == 1


def test_ctr_filters(hawserd: Hawserd, pulled: str, registry: Registry, stub: events_pb2_grpc.EventsStub,
                     watch: Callable[..., CtrEvents]) -> None:
    images = watch('topic~="/images/"')
    dst = f"{registry.host}/test/filtered:v1"
    by_name = watch(f'event.name=="{dst}"', 'topic=="/images/sync"')
    for events in (images, by_name):
        events.sync(stub)
    ctr(hawserd, "namespaces", "create", "filtered")
    ctr(hawserd, "images", "tag", pulled, dst)
    ctr(hawserd, "images", "rm", dst)
    ctr(hawserd, "namespaces", "rm", "filtered")
    for events in (images, by_name):
        lines = real(events.wait_for(lambda ls: "/images/delete" in [line.topic for line in ls]))
        assert [(line.topic, line.event["name"]) for line in lines] == [("/images/create", dst),
                                                                        ("/images/delete", dst)]
    # Neither saw the namespaces (the last change, and all are delivered in order).
    everything = watch()
    everything.sync(stub)
    ctr(hawserd, "namespaces", "create", "after")
    everything.wait_for(lambda ls: "/namespace/create" in [line.topic for line in ls])
    images.sync(stub)
    assert not any(line.topic.startswith("/namespace/") for line in images.every() + by_name.every())


def test_publish_and_forward_through_the_stub(hawserd: Hawserd, stub: events_pb2_grpc.EventsStub,
                                              watch: Callable[..., CtrEvents]) -> None:
    events = watch()
    events.sync(stub)
    stub.Publish(pb.PublishRequest(topic="/tasks/oom", event=pack(task_pb2.TaskOOM(container_id="c1"))),
                 metadata=meta())
    envelope = pb.Envelope(namespace="other", topic="/tasks/paused",
                           event=pack(task_pb2.TaskPaused(container_id="c2")))
    envelope.timestamp.FromDatetime(datetime.datetime(2024, 5, 1, 12, 0, 0, 250000))
    stub.Forward(pb.ForwardRequest(envelope=envelope))
    lines = real(events.wait_for(lambda ls: "/tasks/paused" in [line.topic for line in ls]))
    assert [(line.namespace, line.topic, line.event) for line in lines] == [
        (NS, "/tasks/oom", {"container_id": "c1"}), ("other", "/tasks/paused", {"container_id": "c2"})]
    assert lines[1].when == datetime.datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=datetime.UTC)
    # The stub's own subscription sees the same; and containerd's checks answer INVALID_ARGUMENT.
    with pytest.raises(grpc.RpcError) as failed:
        stub.Publish(pb.PublishRequest(topic="no-slash", event=pack(task_pb2.TaskOOM())), metadata=meta())
    assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as failed:
        stub.Publish(pb.PublishRequest(topic="/tasks/oom", event=pack(task_pb2.TaskOOM())))
    assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    subscription = stub.Subscribe(pb.SubscribeRequest(filters=['topic=="/tasks/resumed"']), timeout=20)
    try:
        deadline = time.monotonic() + 20
        got: list[pb.Envelope] = []

        def read() -> None:
            got.extend(next(iter(subscription)) for _ in range(1))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        while not got and time.monotonic() < deadline:
            stub.Publish(pb.PublishRequest(topic="/tasks/resumed",
                                           event=pack(task_pb2.TaskResumed(container_id="c3"))), metadata=meta())
            reader.join(timeout=0.5)
        assert got and got[0].topic == "/tasks/resumed" and got[0].namespace == NS
        assert got[0].event.type_url == "containerd.events.TaskResumed"
    finally:
        subscription.cancel()


def test_ctr_run_and_task_operations_through_ctr_events(hawserd: Hawserd, pulled: str,
                                                        stub: events_pb2_grpc.EventsStub,
                                                        watch: Callable[..., CtrEvents]) -> None:
    """What containerd's Containers and Tasks services did reaches ``ctr events`` as containerd sends it."""
    events = watch()
    events.sync(stub)
    ctr(hawserd, "run", "--rm", pulled, "ev-run", "sh", "-c", "exit 0")
    ctr(hawserd, "run", "-d", pulled, "ev-bg", "sleep", "1000")
    ctr(hawserd, "tasks", "exec", "--exec-id", "ev-exec", "ev-bg", "true")
    ctr(hawserd, "tasks", "pause", "ev-bg")
    ctr(hawserd, "tasks", "resume", "ev-bg")
    ctr(hawserd, "tasks", "kill", "-s", "SIGKILL", "ev-bg")
    ctr(hawserd, "tasks", "rm", "-f", "ev-bg")
    ctr(hawserd, "containers", "label", "ev-bg", "k=v")
    ctr(hawserd, "containers", "rm", "ev-bg")
    lines = real(events.wait_for(lambda ls: ("/containers/delete", "ev-bg") in
                                 [(line.topic, line.event.get("id")) for line in ls]))
    ran = [line.topic for line in lines if "ev-run" in (line.event.get("id"), line.event.get("container_id"))]
    assert ran[0] == "/containers/create" and ran[-1] == "/containers/delete"
    assert [t for t in ran if t.startswith("/tasks/")] == ["/tasks/create", "/tasks/start", "/tasks/exit",
                                                           "/tasks/delete"]
    (exit_,) = [line for line in lines if line.topic == "/tasks/exit" and line.event.get("container_id") == "ev-run"]
    assert exit_.event.get("exit_status", 0) == 0
    bg = [line.topic for line in lines if "ev-bg" in (line.event.get("id"), line.event.get("container_id"))]
    for topic in ("/tasks/exec-added", "/tasks/exec-started", "/tasks/paused", "/tasks/resumed", "/tasks/exit",
                  "/tasks/delete", "/containers/update", "/containers/delete"):
        assert topic in bg, (topic, bg)
    assert bg.index("/tasks/paused") < bg.index("/tasks/resumed") < bg.index("/tasks/delete")


def test_a_task_that_ends_on_its_own_is_an_event_at_once(hawserd: Hawserd, pulled: str,
                                                         stub: events_pb2_grpc.EventsStub,
                                                         watch: Callable[..., CtrEvents]) -> None:
    """Nobody waits for these: hawserd's exit watcher sees every namespace's exits, as containerd's shims report
    theirs, so ``/tasks/exit`` comes when the process ends, not when somebody next asks."""
    events = watch()
    events.sync(stub)
    ctr(hawserd, "run", "-d", pulled, "ends-alone", "sh", "-c", "sleep 0.3; exit 6")
    cli = hawserd.cli("-n", NS, "run", "-d", pulled, "sh", "-c", "sleep 0.3; exit 7").stdout.strip()
    lines = real(events.wait_for(lambda ls: {("ends-alone", 6), (cli, 7)} <= {
        (line.event.get("container_id"), line.event.get("exit_status")) for line in ls if line.topic == "/tasks/exit"}))
    assert {line.namespace for line in lines if line.topic == "/tasks/exit"} == {NS}
    ctr(hawserd, "tasks", "rm", "ends-alone")
    ctr(hawserd, "containers", "rm", "ends-alone")
    hawserd.cli("-n", NS, "rm", cli)
