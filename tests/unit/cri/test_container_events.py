"""The container event hub over the journal: fan-out, the CRI's containers
of its namespace only, slow subscribers, in-process wake-ups, what was
journaled while hawserd was down; the exit watcher; the CPU rate of the
stats reader."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cri_api.v1 import api_pb2

from hawser._dataclass import replace
from hawser.cri._container_options import CRI_METADATA
from hawser.cri.container_events import ContainerEvents, ExitWatcher, record_unseen_exits
from hawser.errors import NotFound, ResourceExhausted
from hawser.events import Journal, container_observer
from hawser.metadata import Container
from hawser.pods import LABEL_KIND, LABEL_SANDBOX_ID, Sandbox
from hawser.runtime import (
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_STARTED,
    EVENT_STOPPED,
    MAX_SAMPLE_AGE_NS,
    RUNNING,
    ContainerStatsReader,
    ContainerStatus,
)
from tests.support.cri_fakes import make_sandbox

T = TypeVar("T")
POD = make_sandbox().id


def record(id_: str, *, pod: str = POD, kind: str = "container") -> Container:
    return Container(namespace="default", id=id_, name=id_, image="img", image_id="sha256:" + "b" * 64,
                     snapshotter="overlayfs", snapshot_key=f"k-{id_}", config={CRI_METADATA: {"name": id_}},
                     labels={LABEL_SANDBOX_ID: pod, LABEL_KIND: kind}, created_at=1.0)


class FakeManager:
    """What the hub and the watcher use of a ContainerManager."""

    namespace = "default"

    def __init__(self, exits_dir: str, records: list[Container]) -> None:
        self.exits_dir = exits_dir
        self._by_id = {r.id: r for r in records}
        self.states: dict[str, ContainerStatus] = {}
        self.status_calls: list[str] = []

    @property
    def records(self) -> FakeManager:
        """The container records store (this fake plays it too)."""
        return self

    def list(self, *, namespace: str | None = None) -> list[Container]:
        return list(self._by_id.values())

    def get(self, id_: str, *, namespace: str | None = None) -> Container:
        if id_ not in self._by_id:
            raise NotFound(id_)
        return self._by_id[id_]

    def status(self, r: Container) -> ContainerStatus:
        self.status_calls.append(r.id)
        return self.states.get(r.id, ContainerStatus(RUNNING, pid=10))

    def bundle(self, id_: str) -> str:
        return os.path.join(self.exits_dir, "bundles", id_)

    def container_log_path(self, r: Container) -> str:
        return ""


class FakeSandboxes:
    def get(self, sandbox_id: str) -> Sandbox:
        if sandbox_id != POD:
            raise NotFound(sandbox_id)
        return make_sandbox(ips=("10.88.0.5",))


async def blocking(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def hub(tmp_path: Path, *records: Container, queue_size: int = 16) -> tuple[ContainerEvents, FakeManager, Journal]:
    exits = tmp_path / "exits"
    exits.mkdir(exist_ok=True)
    manager = FakeManager(str(exits), list(records))
    journal = Journal(str(tmp_path / "events"))
    events = ContainerEvents(manager, FakeSandboxes(), journal, blocking=blocking,  # type: ignore[arg-type]
                             queue_size=queue_size)
    return events, manager, journal


async def take(stream: Any, n: int, timeout: float = 5.0) -> list[api_pb2.ContainerEventResponse]:
    return [await asyncio.wait_for(anext(stream), timeout) for _ in range(n)]


def journal_it(journal: Journal, kind: str, r: Container, **details: str) -> None:
    """As the daemon's (or the CLI's) container observer does."""
    container_observer(journal)(kind, r, details)


def test_fan_out_in_order_with_pod_status(tmp_path: Path) -> None:
    async def main() -> None:
        a, other = record("a" * 64), record("c" * 64, pod="elsewhere")
        events, _, journal = hub(tmp_path, a, other)
        await events.recover()
        first, second = events.subscribe(), events.subscribe()
        pending = [asyncio.ensure_future(take(first, 4)), asyncio.ensure_future(take(second, 4))]
        await asyncio.sleep(0.05)  # both subscribed
        for kind in (EVENT_CREATED, EVENT_STARTED, EVENT_STOPPED, EVENT_DELETED):
            journal_it(journal, kind, a)
        await events.poll()
        got_first, got_second = await asyncio.gather(*pending)
        kinds = [e.container_event_type for e in got_first]
        assert kinds == [api_pb2.CONTAINER_CREATED_EVENT, api_pb2.CONTAINER_STARTED_EVENT,
                         api_pb2.CONTAINER_STOPPED_EVENT, api_pb2.CONTAINER_DELETED_EVENT]
        assert [e.container_event_type for e in got_second] == kinds
        event = got_first[1]
        assert event.container_id == a.id and event.created_at > 0
        assert event.pod_sandbox_status.id == POD and event.pod_sandbox_status.network.ip == "10.88.0.5"
        assert event.pod_sandbox_status.state == api_pb2.SANDBOX_READY
        # Only the pod's own containers.
        assert [(s.id, s.state) for s in event.containers_statuses] == [(a.id, api_pb2.CONTAINER_RUNNING)]
        await first.aclose()
        await second.aclose()
        assert not events.listening
    asyncio.run(main())


def test_only_the_cri_containers_of_its_namespace(tmp_path: Path) -> None:
    async def main() -> None:
        a, cli = record("a" * 64), record("d" * 64, kind="")
        elsewhere = replace(a, namespace="other")
        events, _, journal = hub(tmp_path, a, cli)
        await events.recover()
        stream = events.subscribe()
        pending = asyncio.ensure_future(take(stream, 2))
        await asyncio.sleep(0.05)
        journal_it(journal, EVENT_STARTED, cli)
        journal_it(journal, EVENT_STARTED, elsewhere)
        journal.record("image", "pull", name="x", namespace="default")
        journal_it(journal, EVENT_STOPPED, a, exitCode="0", reason="Completed")
        journal_it(journal, EVENT_DELETED, a)
        await events.poll()
        got = await pending
        assert [(e.container_id, e.container_event_type) for e in got] == [
            (a.id, api_pb2.CONTAINER_STOPPED_EVENT), (a.id, api_pb2.CONTAINER_DELETED_EVENT)]
        await stream.aclose()
    asyncio.run(main())


def test_nothing_is_built_without_subscribers(tmp_path: Path) -> None:
    async def main() -> None:
        a = record("a" * 64)
        events, manager, journal = hub(tmp_path, a)
        await events.recover()
        journal_it(journal, EVENT_CREATED, a)
        assert await events.poll() == []
        assert manager.status_calls == []
    asyncio.run(main())


def test_a_slow_subscriber_is_dropped_and_the_others_carry_on(tmp_path: Path) -> None:
    async def main() -> None:
        a = record("a" * 64)
        events, _, journal = hub(tmp_path, a, queue_size=3)
        await events.recover()
        slow, fast = events.subscribe(), events.subscribe()
        fast_events: list[api_pb2.ContainerEventResponse] = []

        async def read_fast() -> None:
            async for event in fast:
                fast_events.append(event)
                if len(fast_events) == 6:
                    return

        # Start both streams (the slow one reads its first event, then stalls).
        reader = asyncio.ensure_future(read_fast())
        first = asyncio.ensure_future(anext(slow))
        await asyncio.sleep(0.05)
        for _ in range(6):
            journal_it(journal, EVENT_STARTED, a)
            await events.poll()
            await asyncio.sleep(0.01)
        await asyncio.wait_for(reader, 5)
        assert len(fast_events) == 6
        assert (await first).container_id == a.id
        with pytest.raises(ResourceExhausted, match="dropped"):
            await asyncio.wait_for(anext(slow), 5)
        assert events.listening  # the fast one is still subscribed
        await fast.aclose()
    asyncio.run(main())


def test_an_append_in_this_process_wakes_the_reader_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        a = record("a" * 64)
        events, _, journal = hub(tmp_path, a)
        await events.recover()
        follower = asyncio.ensure_future(events.follow(interval=3600))  # it never polls on its own
        stream = events.subscribe()
        pending = asyncio.ensure_future(take(stream, 1))
        await asyncio.sleep(0.05)
        await asyncio.to_thread(journal_it, journal, EVENT_STARTED, a)
        (event,) = await pending
        assert event.container_event_type == api_pb2.CONTAINER_STARTED_EVENT
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        assert journal.listeners == []
        await stream.aclose()
    asyncio.run(main())


def test_what_was_journaled_while_down_goes_to_the_first_subscriber(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = record("a" * 64), record("b" * 64)
        events, _, journal = hub(tmp_path, a, b)
        await events.recover()  # the first start ever: no place yet, nothing kept
        journal_it(journal, EVENT_CREATED, a)
        await events.poll()  # handled (by nobody): the place moves on
        # hawserd stops; the CLI starts and removes containers meanwhile; b exits on its own.
        journal_it(journal, EVENT_STARTED, a)
        journal_it(journal, EVENT_DELETED, a)
        (tmp_path / "exits" / b.id).write_text("3")

        again, manager, _ = hub(tmp_path, a, b)
        await again.recover()
        # Recovery read b's exit first (the real manager journals it), then built the backlog.
        assert manager.status_calls[0] == b.id
        first = again.subscribe()
        got = await take(first, 2)
        assert [(e.container_id, e.container_event_type) for e in got] == [
            (a.id, api_pb2.CONTAINER_STARTED_EVENT), (a.id, api_pb2.CONTAINER_DELETED_EVENT)]
        # The backlog went to the first subscriber only; both get what comes next.
        second = again.subscribe()
        pending = [asyncio.ensure_future(take(first, 1)), asyncio.ensure_future(take(second, 1))]
        await asyncio.sleep(0.05)
        journal_it(journal, EVENT_STOPPED, b, exitCode="3", reason="Error")
        await again.poll()
        for (event,) in await asyncio.gather(*pending):
            assert (event.container_id, event.container_event_type) == (b.id, api_pb2.CONTAINER_STOPPED_EVENT)
        await first.aclose()
        await second.aclose()

        # Restarted with nothing new since: no backlog.
        third, _, _ = hub(tmp_path, a, b)
        await third.recover()
        assert third.broadcast.backlog == 0
    asyncio.run(main())


def test_exit_watcher_reads_new_exits(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = record("a" * 64), record("b" * 64)
        _, manager, _ = hub(tmp_path, a, b)
        exits = tmp_path / "exits"
        (exits / a.id).write_text("0")  # exited before the daemon started: recovery's to read
        watcher = ExitWatcher(manager, blocking, interval=0.01)  # type: ignore[arg-type]
        assert await watcher.scan() == []
        (exits / b.id).write_text("2")
        (exits / ("f" * 64)).write_text("1")  # not a container of the store
        assert await watcher.scan() == sorted([b.id, "f" * 64])
        assert manager.status_calls == [b.id]
        assert await watcher.scan() == []
    asyncio.run(main())


def test_recovery_reads_only_exits_nobody_has_seen(tmp_path: Path) -> None:
    a, b = record("a" * 64), record("b" * 64)
    _, manager, _ = hub(tmp_path, a, b)
    for r in (a, b):
        (tmp_path / "exits" / r.id).write_text("0")
    os.makedirs(manager.bundle(a.id))
    Path(manager.bundle(a.id), "exit-seen").touch()
    assert record_unseen_exits(manager) == [b.id]  # type: ignore[arg-type]
    assert manager.status_calls == [b.id]


def test_cpu_rate() -> None:
    reader = ContainerStatsReader()
    assert reader.nano_cores("a", 1_000_000_000, 5_000_000) is None  # the first sample
    assert reader.nano_cores("a", 3_000_000_000, 1_005_000_000) == 500_000_000  # 1 s of CPU in 2 s
    assert reader.nano_cores("a", 3_000_000_000, 1_005_000_000) is None  # no time passed
    assert reader.nano_cores("a", 4_000_000_000, 5_000) is None  # the counter went back (a new cgroup)
    assert reader.nano_cores("a", 4_000_000_000 + MAX_SAMPLE_AGE_NS + 1, 10_000) is None  # too old to average
    reader.nano_cores("b", 1, 1)
    reader.forget_except({"b"})
    assert reader.nano_cores("a", 10**12, 10) is None
