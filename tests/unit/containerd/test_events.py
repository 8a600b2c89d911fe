"""containerd's Events service over a real journal in a temporary directory:
the journal's events as containerd's envelopes (topics, messages, type
URLs), containerd's event filters, topic checks, Publish and Forward into
the journal and out through Subscribe, and the changes the namespaces,
images, snapshots and content services journal."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import any_pb2

from hawser.config import Config
from hawser.containerd._api.events import container_pb2, content_pb2, image_pb2, namespace_pb2, snapshot_pb2, task_pb2
from hawser.containerd._api.services.content.v1 import content_pb2 as content_api
from hawser.containerd._api.services.events.v1 import events_pb2 as pb
from hawser.containerd._api.services.images.v1 import images_pb2 as images_api
from hawser.containerd._api.services.namespaces.v1 import namespace_pb2 as namespaces_api
from hawser.containerd._api.services.snapshots.v1 import snapshots_pb2 as snapshots_api
from hawser.containerd._api.types import descriptor_pb2
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._filters import parse_filters
from hawser.containerd.content import Content
from hawser.containerd.events import (
    MAX_EVENT_BYTES,
    MESSAGES,
    RUNTIME,
    Events,
    adaptor,
    build,
    envelopes,
    journal_topic,
    message_field,
    new_events,
    pack,
    type_url,
    unpack,
    validate_topic,
)
from hawser.containerd.images import Images
from hawser.containerd.namespaces import Namespaces
from hawser.containerd.snapshots import Snapshots
from hawser.content import LocalStore
from hawser.errors import InvalidArgument
from hawser.events import Event, Journal, image_observer
from hawser.metadata import Metadata
from hawser.oci import Digest
from hawser.snapshots import NativeSnapshotter
from tests.support.containerd_fakes import FakeContext, blocking, code_of

T = TypeVar("T")


def ev(type_: str, action: str, id_: str = "c1", *, name: str = "", namespace: str = "team", at: float = 1000.5,
       **attributes: str) -> Event:
    return Event(time=at, type=type_, action=action, id=id_, name=name, namespace=namespace, attributes=attributes)


def topics(event: Event) -> list[tuple[str, str, Any]]:
    """(namespace, topic, decoded event) of each envelope."""
    return [(e.namespace, e.topic, unpack(e.event)) for e in envelopes(event)]


# --- type URLs ------------------------------------------------------------------------------


def test_type_urls_are_containerds_proto_names() -> None:
    assert type_url(task_pb2.TaskExit()) == "containerd.events.TaskExit"
    # containerd's image events live in its images service's proto package, and are named so.
    assert type_url(image_pb2.ImageCreate()) == "containerd.services.images.v1.ImageCreate"
    assert pack(container_pb2.ContainerCreate(id="x")).type_url == "containerd.events.ContainerCreate"
    # Every event message containerd defines, and nothing else (not TaskIO's kin from other files).
    assert {"containerd.events.ContainerCreate", "containerd.events.TaskExecStarted", "containerd.events.SnapshotCommit",
            "containerd.events.ContentDelete", "containerd.events.NamespaceDelete",
            "containerd.services.images.v1.ImageUpdate",
            "containerd.events.TaskOOM", "containerd.events.TaskPaused"} <= set(MESSAGES)
    assert all(name.startswith(("containerd.events.", "containerd.services.images.v1.")) for name in MESSAGES)
    # An Any passes as is; unknown types and bad bytes decode to nothing.
    given = any_pb2.Any(type_url="example.com/Thing", value=b"\x01")
    assert pack(given) is given and unpack(given) is None
    assert unpack(any_pb2.Any(type_url="containerd.events.TaskExit", value=b"\xff\xff")) is None
    assert unpack(pack(task_pb2.TaskStart(container_id="c", pid=7))) == task_pb2.TaskStart(container_id="c", pid=7)
    # A client that packed with Any.Pack (a host prefix) is still understood.
    packed = any_pb2.Any()
    packed.Pack(task_pb2.TaskOOM(container_id="c"))
    assert unpack(packed) == task_pb2.TaskOOM(container_id="c")


# --- the journal's events as envelopes --------------------------------------------------------


def test_a_container_life_is_containers_and_tasks_topics() -> None:
    labels = {"io.kubernetes.pod.name": "p", "image": "r.io/busybox:1"}
    assert topics(ev("container", "create", **labels)) == [
        ("team", "/containers/create", container_pb2.ContainerCreate(
            id="c1", image="r.io/busybox:1", runtime=container_pb2.ContainerCreate.Runtime(name=RUNTIME))),
        ("team", "/tasks/create", task_pb2.TaskCreate(container_id="c1"))]
    assert topics(ev("container", "start", pid="42")) == [
        ("team", "/tasks/start", task_pb2.TaskStart(container_id="c1", pid=42))]
    ((_, topic, exited),) = topics(ev("container", "exit", exitCode="3", reason="Error"))
    assert topic == "/tasks/exit"
    assert (exited.container_id, exited.id, exited.exit_status) == ("c1", "c1", 3)
    assert exited.exited_at.ToNanoseconds() == 1000_500_000_000
    # Unknown codes are containerd's UnknownExitStatus; an OOM kill comes first as /tasks/oom.
    assert topics(ev("container", "exit", exitCode="", reason="exit status unknown"))[0][2].exit_status == 255
    assert [t for _, t, _ in topics(ev("container", "exit", exitCode="137", reason="OOMKilled"))] == [
        "/tasks/oom", "/tasks/exit"]
    assert [t for _, t, _ in topics(ev("container", "remove"))] == ["/tasks/delete", "/containers/delete"]
    assert topics(ev("container", "remove"))[1][2] == container_pb2.ContainerDelete(id="c1")


def test_execs_are_added_started_and_exit_with_their_id() -> None:
    assert topics(ev("container", "exec-start", execID="e1", command="sh -c true")) == [
        ("team", "/tasks/exec-added", task_pb2.TaskExecAdded(container_id="c1", exec_id="e1")),
        ("team", "/tasks/exec-started", task_pb2.TaskExecStarted(container_id="c1", exec_id="e1"))]
    ((_, topic, exited),) = topics(ev("container", "exec-exit", execID="e1", exitCode="7"))
    assert (topic, exited.container_id, exited.id, exited.exit_status) == ("/tasks/exit", "c1", "e1", 7)


def test_images_namespaces_snapshots_and_content() -> None:
    assert topics(ev("image", "pull", "sha256:ab", name="r.io/a:1")) == [
        ("team", "/images/create", image_pb2.ImageCreate(name="r.io/a:1"))]
    assert topics(ev("image", "import", name="r.io/b:1"))[0][1] == "/images/create"
    assert topics(ev("image", "create", name="r.io/a:1", **{"label.team": "web"}))[0][2] == \
        image_pb2.ImageCreate(name="r.io/a:1", labels={"team": "web"})
    assert topics(ev("image", "update", name="r.io/a:1"))[0][1] == "/images/update"
    assert topics(ev("image", "remove", name="r.io/a:1")) == [
        ("team", "/images/delete", image_pb2.ImageDelete(name="r.io/a:1"))]
    assert topics(ev("namespace", "create", "", name="web", namespace="default", **{"label.a": "b"})) == [
        ("default", "/namespace/create", namespace_pb2.NamespaceCreate(name="web", labels={"a": "b"}))]
    assert topics(ev("namespace", "update", "", name="web"))[0][1] == "/namespace/update"
    assert topics(ev("namespace", "remove", "", name="web"))[0][2] == namespace_pb2.NamespaceDelete(name="web")
    assert topics(ev("snapshot", "prepare", "k1", parent="p0"))[0][1:] == (
        "/snapshot/prepare", snapshot_pb2.SnapshotPrepare(key="k1", parent="p0"))
    assert topics(ev("snapshot", "commit", "n1", key="k1"))[0][1:] == (
        "/snapshot/commit", snapshot_pb2.SnapshotCommit(key="k1", name="n1"))
    assert topics(ev("snapshot", "remove", "n1"))[0][1:] == ("/snapshot/remove", snapshot_pb2.SnapshotRemove(key="n1"))
    assert topics(ev("content", "delete", "sha256:ab"))[0][1:] == (
        "/content/delete", content_pb2.ContentDelete(digest="sha256:ab"))


def test_what_containerd_has_no_topic_for_sends_nothing() -> None:
    for event in (ev("pod", "ready"), ev("pod", "remove"), ev("image", "pull", "", name=""),
                  ev("gc", "run", blobs="0"), ev("container", "paused-by-magic"), ev("other", "x")):
        assert envelopes(event) == [], event


def test_a_gc_run_deletes_content_per_record_and_removes_snapshots() -> None:
    class Removal(SimpleNamespace):
        pass

    report = SimpleNamespace(
        dry_run=False, blobs=[Removal(key="sha256:f")],
        records=[Removal(namespace="team", key="sha256:aa"), Removal(namespace="other", key="sha256:bb")],
        snapshots=[Removal(snapshotter="overlayfs", key="sha256:chain")], bytes_reclaimed=10, errors=[])
    journaled: list[Event] = []

    class Recorder:
        def record(self, type_: str, action: str, **kwargs: Any) -> None:
            attributes = {k: v for k, v in kwargs.items() if k not in ("namespace", "id_", "name") and v != ""}
            journaled.append(Event(time=5.0, type=type_, action=action, namespace=kwargs.get("namespace", ""),
                                   attributes=attributes))

    image_observer(Recorder())(SimpleNamespace(action="gc", error="", namespace="team", report=report))  # type: ignore[arg-type]
    (run,) = journaled
    assert run.attributes["blobs"] == "1" and run.attributes["records"] == "2"
    assert topics(run) == [("team", "/content/delete", content_pb2.ContentDelete(digest="sha256:aa")),
                           ("other", "/content/delete", content_pb2.ContentDelete(digest="sha256:bb")),
                           ("team", "/snapshot/remove", snapshot_pb2.SnapshotRemove(key="sha256:chain"))]
    # Bounded: at most GC_LISTED of each; a dry run lists nothing.
    report.records = [Removal(namespace="team", key=f"sha256:{n:02x}") for n in range(250)]
    image_observer(Recorder())(SimpleNamespace(action="gc", error="", namespace="team", report=report))  # type: ignore[arg-type]
    assert len(topics(journaled[-1])) == 101 and journaled[-1].attributes["records"] == "250"
    report.dry_run = True
    image_observer(Recorder())(SimpleNamespace(action="gc", error="", namespace="team", report=report))  # type: ignore[arg-type]
    assert topics(journaled[-1]) == []


def test_journal_topic_round_trips_any_message(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    journal_topic(journal, "team", "/tasks/paused", task_pb2.TaskPaused(container_id="c9"))
    journal_topic(journal, "team", "/custom/thing", any_pb2.Any(type_url="example.com/X", value=b"\x00\x01"),
                  timestamp_ns=1234_500_000_007)
    journal_topic(None, "team", "/tasks/paused", task_pb2.TaskPaused(container_id="c9"))  # no journal: nothing
    paused, custom = journal.read()
    assert (paused.type, paused.action, paused.id, paused.namespace) == ("containerd", "/tasks/paused", "c9", "team")
    (envelope,) = envelopes(paused)
    assert envelope.topic == "/tasks/paused" and envelope.event.type_url == "containerd.events.TaskPaused"
    assert unpack(envelope.event) == task_pb2.TaskPaused(container_id="c9")
    assert abs(envelope.timestamp.ToNanoseconds() / 1e9 - paused.time) < 1e-6
    (forwarded,) = envelopes(custom)
    assert forwarded.event == any_pb2.Any(type_url="example.com/X", value=b"\x00\x01")
    assert forwarded.timestamp.ToNanoseconds() == 1234_500_000_007
    # A hand-broken record is skipped, the rest built.
    broken = Event(time=1.0, type="containerd", action="/x/y", attributes={"topic": "/x/y", "event": "!!"})
    assert build([broken, paused]) == [envelope]


# --- filters ----------------------------------------------------------------------------------


def envelope(topic: str, message: Any, namespace: str = "team") -> pb.Envelope:
    return pb.Envelope(namespace=namespace, topic=topic, event=pack(message))


@pytest.mark.parametrize(("filters", "matches"), [
    ([], True),
    (['topic=="/tasks/exit"'], True),
    (['topic~="/tasks/"'], True),
    (['topic~="/images/"'], False),
    (["namespace==team"], True),
    (["namespace==other"], False),
    (["namespace==other", 'topic=="/tasks/exit"'], True),  # any filter
    (['namespace==team,topic~="^/images"'], False),  # all its selectors
    (["event.container_id==c1"], True),
    (["event.id==e1"], True),
    (["event.container_id==c2"], False),
    (["event.exit_status==3"], False),  # numbers are not filterable, as in containerd
    (["event.container_id"], True),
    (["event.nothing"], False),
    (["timestamp"], False),
])
def test_filters_over_the_envelope_and_its_event(filters: list[str], matches: bool) -> None:
    exit_ = envelope("/tasks/exit", task_pb2.TaskExit(container_id="c1", id="e1", exit_status=3))
    assert parse_filters(filters).matches(adaptor(exit_)) is matches


def test_event_fields_labels_nested_and_bools() -> None:
    made = container_pb2.ContainerCreate(id="c", image="r.io/a:1",
                                         runtime=container_pb2.ContainerCreate.Runtime(name=RUNTIME))
    assert message_field(made, ["runtime", "name"]) == RUNTIME
    assert message_field(made, ["runtime"]) is None and message_field(made, ["runtime", "options"]) is None
    assert message_field(container_pb2.ContainerCreate(id="c"), ["runtime", "name"]) is None
    image = image_pb2.ImageCreate(name="n", labels={"a.b/c": "x"})
    assert message_field(image, ["labels", "a.b/c"]) == "x"
    assert message_field(image, ["labels", "a", "b/c"]) == "x"  # containerd joins the rest with "."
    assert message_field(image, ["labels"]) is None and message_field(image, ["labels", "z"]) is None
    assert message_field(task_pb2.TaskIO(terminal=False), ["terminal"]) == "false"
    assert message_field(task_pb2.TaskCreate(container_id="c"), ["rootfs"]) is None
    created = envelope("/images/create", image)
    assert parse_filters(['event.labels."a.b/c"==x']).matches(adaptor(created))
    unknown = pb.Envelope(topic="/x", event=any_pb2.Any(type_url="example.com/X"))
    assert not parse_filters(["event.name"]).matches(adaptor(unknown))


@pytest.mark.parametrize("topic", ["/tasks/exit", "/a", "/a.b/c-d/e_f"])
def test_good_topics(topic: str) -> None:
    assert validate_topic(topic) == topic


@pytest.mark.parametrize(("topic", "match"), [
    ("", "empty"), ("tasks/exit", "start with"), ("/", "at least one"), ("/tasks//exit", "component"),
    ("/tasks/ex it", "component"), ("/tasks/", "component")])
def test_bad_topics(topic: str, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        validate_topic(topic)


# --- the service ------------------------------------------------------------------------------


class StreamContext(FakeContext):
    """A context whose stream's messages arrive on a queue (Subscribe runs until cancelled)."""

    def __init__(self, namespace: str | None = "team") -> None:
        super().__init__(namespace)
        self.stream: asyncio.Queue[Any] = asyncio.Queue()

    async def write(self, message: Any) -> None:
        await self.stream.put(message)


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(str(tmp_path / "events"))


def test_published_and_forwarded_events_reach_subscribers_by_their_filters(journal: Journal) -> None:
    async def main() -> None:
        broadcast, followers = new_events(journal, blocking=blocking)
        await broadcast.recover()
        service = Events(ContainerdDeps(store=None, blocking=blocking, journal=journal, events=broadcast))  # type: ignore[arg-type]
        follower = asyncio.create_task(followers[0].run())
        everything, tasks_only = StreamContext(None), StreamContext("other")  # Subscribe needs no namespace
        subscriptions = [
            asyncio.create_task(service.Subscribe(pb.SubscribeRequest(), everything)),  # type: ignore[func-returns-value]
            asyncio.create_task(service.Subscribe(pb.SubscribeRequest(filters=['topic~="^/tasks/"']), tasks_only)),  # type: ignore[func-returns-value]
        ]
        while broadcast.subscribers < 2:
            await asyncio.sleep(0.01)
        try:
            await service.Publish(pb.PublishRequest(topic="/images/create", event=pack(image_pb2.ImageCreate(name="i"))),
                                  StreamContext("team"))
            stamp = pb.Envelope(namespace="web", topic="/tasks/exit",
                                event=pack(task_pb2.TaskExit(container_id="c", exit_status=1)))
            stamp.timestamp.FromNanoseconds(1_700_000_000_123_456_789)
            await service.Forward(pb.ForwardRequest(envelope=stamp), StreamContext(None))
            first = await asyncio.wait_for(everything.stream.get(), 5)
            second = await asyncio.wait_for(everything.stream.get(), 5)
            assert (first.namespace, first.topic, unpack(first.event)) == (
                "team", "/images/create", image_pb2.ImageCreate(name="i"))
            assert first.timestamp.seconds >= int(time.time()) - 5
            assert second == stamp
            assert await asyncio.wait_for(tasks_only.stream.get(), 5) == stamp
            assert tasks_only.stream.empty()
        finally:
            for task in (*subscriptions, follower):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        # Both are in the journal: a subscriber after a restart gets them if it came while hawserd was down.
        assert [e.action for e in journal.read()] == ["/images/create", "/tasks/exit"]

    asyncio.run(main())


def test_publish_and_forward_check_what_containerd_checks(journal: Journal) -> None:
    service = Events(ContainerdDeps(store=None, blocking=blocking, journal=journal))  # type: ignore[arg-type]
    event = pack(task_pb2.TaskOOM(container_id="c"))
    assert code_of(service.Publish(pb.PublishRequest(topic="/tasks/oom", event=event), StreamContext(None))) \
        == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(service.Publish(pb.PublishRequest(topic="tasks", event=event), StreamContext())) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(service.Publish(pb.PublishRequest(topic="/tasks/oom"), StreamContext())) \
        == grpc.StatusCode.INVALID_ARGUMENT
    good = pb.Envelope(namespace="team", topic="/tasks/oom", event=event)
    good.timestamp.GetCurrentTime()
    for bad in (pb.Envelope(namespace="team", topic="/tasks/oom", event=event),  # no timestamp
                pb.Envelope(namespace="bad ns", topic="/tasks/oom", event=event, timestamp=good.timestamp),
                pb.Envelope(namespace="team", topic="/", event=event, timestamp=good.timestamp)):
        assert code_of(service.Forward(pb.ForwardRequest(envelope=bad), StreamContext())) \
            == grpc.StatusCode.INVALID_ARGUMENT, bad
    # An event too big for the journal to keep its history around it.
    huge = any_pb2.Any(type_url="example.com/Huge", value=b"x" * (MAX_EVENT_BYTES + 1))
    assert code_of(service.Publish(pb.PublishRequest(topic="/tasks/oom", event=huge), StreamContext())) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(service.Forward(pb.ForwardRequest(envelope=pb.Envelope(
        namespace="team", topic="/tasks/oom", event=huge, timestamp=good.timestamp)), StreamContext())) \
        == grpc.StatusCode.INVALID_ARGUMENT
    assert list(journal.read()) == []
    asyncio.run(service.Forward(pb.ForwardRequest(envelope=good), StreamContext()))
    assert [e.action for e in journal.read()] == ["/tasks/oom"]
    # Without a hub or a journal: UNIMPLEMENTED.
    bare = Events(ContainerdDeps(store=None, blocking=blocking))  # type: ignore[arg-type]
    assert code_of(bare.Subscribe(pb.SubscribeRequest(), StreamContext())) == grpc.StatusCode.UNIMPLEMENTED
    assert code_of(bare.Publish(pb.PublishRequest(topic="/tasks/oom", event=event), StreamContext())) \
        == grpc.StatusCode.UNIMPLEMENTED
    assert code_of(service.Subscribe(pb.SubscribeRequest(filters=["topic~=("]), StreamContext())) \
        == grpc.StatusCode.INVALID_ARGUMENT


# --- what the other services journal -------------------------------------------------------------


@pytest.fixture
def parts(tmp_path: Path, journal: Journal) -> Iterator[SimpleNamespace]:
    metadata = Metadata(tmp_path / "metadata.db")
    snapshotter = NativeSnapshotter(str(tmp_path / "native"))
    store = SimpleNamespace(metadata=metadata, content=LocalStore(tmp_path / "content"), snapshotter=snapshotter,
                            config=Config())
    deps = ContainerdDeps(store=store, blocking=blocking, journal=journal)  # type: ignore[arg-type]
    try:
        yield SimpleNamespace(store=store, deps=deps, journal=journal)
    finally:
        snapshotter.close()
        metadata.close()


def sent(journal: Journal) -> list[tuple[str, str, Any]]:
    return [(e.namespace, e.topic, unpack(e.event)) for e in build(journal.read())]


def test_namespaces_are_journaled(parts: SimpleNamespace) -> None:
    service = Namespaces(parts.deps)
    asyncio.run(service.Create(namespaces_api.CreateNamespaceRequest(
        namespace=namespaces_api.Namespace(name="web", labels={"a": "1"})), StreamContext("default")))
    asyncio.run(service.Update(namespaces_api.UpdateNamespaceRequest(
        namespace=namespaces_api.Namespace(name="web", labels={"b": "2"})), StreamContext("default")))
    asyncio.run(service.Delete(namespaces_api.DeleteNamespaceRequest(name="web"), StreamContext("default")))
    # A failed call journals nothing.
    code_of(service.Delete(namespaces_api.DeleteNamespaceRequest(name="web"), StreamContext("default")))
    assert sent(parts.journal) == [
        ("default", "/namespace/create", namespace_pb2.NamespaceCreate(name="web", labels={"a": "1"})),
        ("default", "/namespace/update", namespace_pb2.NamespaceUpdate(name="web", labels={"b": "2"})),
        ("default", "/namespace/delete", namespace_pb2.NamespaceDelete(name="web"))]


def test_images_are_journaled(parts: SimpleNamespace) -> None:
    service = Images(parts.deps)
    target = descriptor_pb2.Descriptor(media_type="application/vnd.oci.image.manifest.v1+json",
                                       digest=str(Digest.of(b"m")), size=10)
    image = images_api.Image(name="r.io/a:1", target=target, labels={"containerd.io/gc.root": "x"})
    asyncio.run(service.Create(images_api.CreateImageRequest(image=image), StreamContext()))
    asyncio.run(service.Update(images_api.UpdateImageRequest(image=images_api.Image(
        name="r.io/a:1", target=target, labels={"team": "web"})), StreamContext()))
    asyncio.run(service.Delete(images_api.DeleteImageRequest(name="r.io/a:1"), StreamContext()))
    assert sent(parts.journal) == [
        ("team", "/images/create", image_pb2.ImageCreate(name="r.io/a:1", labels={"containerd.io/gc.root": "x"})),
        ("team", "/images/update", image_pb2.ImageUpdate(name="r.io/a:1", labels={"team": "web"})),
        ("team", "/images/delete", image_pb2.ImageDelete(name="r.io/a:1"))]
    assert [(e.type, e.action, e.name) for e in parts.journal.read()] == [
        ("image", "create", "r.io/a:1"), ("image", "update", "r.io/a:1"), ("image", "remove", "r.io/a:1")]


def test_snapshots_and_content_are_journaled(parts: SimpleNamespace) -> None:
    service = Snapshots(parts.deps)
    sn = parts.store.snapshotter.name
    asyncio.run(service.Prepare(snapshots_api.PrepareSnapshotRequest(snapshotter=sn, key="k1"), StreamContext()))
    asyncio.run(service.Commit(snapshots_api.CommitSnapshotRequest(snapshotter=sn, name="n1", key="k1"),
                               StreamContext()))
    asyncio.run(service.Prepare(snapshots_api.PrepareSnapshotRequest(snapshotter=sn, key="k2", parent="n1"),
                                StreamContext()))
    asyncio.run(service.Remove(snapshots_api.RemoveSnapshotRequest(snapshotter=sn, key="k2"), StreamContext()))
    data = b"blob"
    digest = Digest.of(data)
    with parts.store.content.writer("t", expected=digest, total=len(data)) as w:
        w.write(data)
        w.commit()
    parts.store.metadata.blobs.record(digest, len(data), {}, namespace="team")
    asyncio.run(Content(parts.deps).Delete(content_api.DeleteContentRequest(digest=str(digest)), StreamContext()))
    assert sent(parts.journal) == [
        ("team", "/snapshot/prepare", snapshot_pb2.SnapshotPrepare(key="k1")),
        ("team", "/snapshot/commit", snapshot_pb2.SnapshotCommit(key="k1", name="n1")),
        ("team", "/snapshot/prepare", snapshot_pb2.SnapshotPrepare(key="k2", parent="n1")),
        ("team", "/snapshot/remove", snapshot_pb2.SnapshotRemove(key="k2")),
        ("team", "/content/delete", content_pb2.ContentDelete(digest=str(digest)))]


def test_journal_events_encode_their_event_in_base64(journal: Journal) -> None:
    journal_topic(journal, "team", "/tasks/resumed", task_pb2.TaskResumed(container_id="c"))
    (event,) = journal.read()
    assert base64.b64decode(event.attributes["event"]) == task_pb2.TaskResumed(container_id="c").SerializeToString()
    assert event.attributes["typeUrl"] == "containerd.events.TaskResumed"
