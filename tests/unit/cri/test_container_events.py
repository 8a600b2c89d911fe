"""The container event hub: fan-out, slow subscribers, STOPPED once; the exit
watcher; the CPU rate of the stats reader."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cri_api.v1 import api_pb2

from hawser.cri._container_options import CRI_METADATA
from hawser.cri.container_events import ContainerEvents, ExitWatcher
from hawser.errors import NotFound, ResourceExhausted
from hawser.metadata import Container
from hawser.pods import LABEL_KIND, LABEL_SANDBOX_ID, Sandbox
from hawser.runtime import (
    EVENT_CREATED,
    EVENT_DELETED,
    EVENT_STARTED,
    EVENT_STOPPED,
    EXITED,
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
        self.observers: list[Callable[[str, Container], None]] = []
        self.states: dict[str, ContainerStatus] = {}
        self.status_calls = 0

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
        self.status_calls += 1
        return self.states.get(r.id, ContainerStatus(RUNNING, pid=10))

    def bundle(self, id_: str) -> str:
        return f"/b/{id_}"

    def container_log_path(self, r: Container) -> str:
        return ""


class FakeSandboxes:
    def get(self, sandbox_id: str) -> Sandbox:
        if sandbox_id != POD:
            raise NotFound(sandbox_id)
        return make_sandbox(ips=("10.88.0.5",))


async def blocking(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def hub(tmp_path: Path, *records: Container, queue_size: int = 16) -> tuple[ContainerEvents, FakeManager]:
    manager = FakeManager(str(tmp_path), list(records))
    events = ContainerEvents(manager, FakeSandboxes(), blocking=blocking,  # type: ignore[arg-type]
                             queue_size=queue_size).attach()
    return events, manager


async def take(stream: Any, n: int, timeout: float = 5.0) -> list[api_pb2.ContainerEventResponse]:
    return [await asyncio.wait_for(anext(stream), timeout) for _ in range(n)]


def notify(manager: FakeManager, kind: str, r: Container) -> Any:
    """As ContainerManager does: every observer, in a worker thread."""
    def run() -> None:
        for observer in manager.observers:
            observer(kind, r)
    return asyncio.to_thread(run)


def test_fan_out_in_order_with_pod_status(tmp_path: Path) -> None:
    async def main() -> None:
        a, other = record("a" * 64), record("c" * 64, pod="elsewhere")
        events, manager = hub(tmp_path, a, other)
        first, second = events.subscribe(), events.subscribe()
        pending = [asyncio.ensure_future(take(first, 4)), asyncio.ensure_future(take(second, 4))]
        await asyncio.sleep(0.05)  # both subscribed
        for kind in (EVENT_CREATED, EVENT_STARTED, EVENT_STOPPED, EVENT_DELETED):
            await notify(manager, kind, a)
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


def test_stopped_once_and_cli_containers_ignored(tmp_path: Path) -> None:
    async def main() -> None:
        a, cli = record("a" * 64), record("d" * 64, kind="")
        events, manager = hub(tmp_path, a, cli)
        stream = events.subscribe()
        pending = asyncio.ensure_future(take(stream, 2))
        await asyncio.sleep(0.05)
        await notify(manager, EVENT_STARTED, cli)
        await notify(manager, EVENT_STOPPED, a)
        await notify(manager, EVENT_STOPPED, a)  # the watcher saw it too
        await notify(manager, EVENT_DELETED, a)
        got = await pending
        assert [(e.container_id, e.container_event_type) for e in got] == [
            (a.id, api_pb2.CONTAINER_STOPPED_EVENT), (a.id, api_pb2.CONTAINER_DELETED_EVENT)]
        await stream.aclose()
    asyncio.run(main())


def test_nothing_is_built_without_subscribers(tmp_path: Path) -> None:
    async def main() -> None:
        a = record("a" * 64)
        _, manager = hub(tmp_path, a)
        await notify(manager, EVENT_CREATED, a)
        assert manager.status_calls == 0
    asyncio.run(main())


def test_a_slow_subscriber_is_dropped_and_the_others_carry_on(tmp_path: Path) -> None:
    async def main() -> None:
        a = record("a" * 64)
        events, manager = hub(tmp_path, a, queue_size=3)
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
            await notify(manager, EVENT_STARTED, a)
            await asyncio.sleep(0.01)
        await asyncio.wait_for(reader, 5)
        assert len(fast_events) == 6
        assert (await first).container_id == a.id
        with pytest.raises(ResourceExhausted, match="dropped"):
            await asyncio.wait_for(anext(slow), 5)
        assert events.listening  # the fast one is still subscribed
        await fast.aclose()
    asyncio.run(main())


def test_exit_watcher_reports_new_exits(tmp_path: Path) -> None:
    async def main() -> None:
        a, b = record("a" * 64), record("b" * 64)
        events, manager = hub(tmp_path, a, b)
        (tmp_path / a.id).write_text("0")  # exited before anyone looked: not news
        watcher = ExitWatcher(events, blocking, interval=0.01)
        stream = events.subscribe()
        pending = asyncio.ensure_future(take(stream, 1))
        await asyncio.sleep(0.02)
        assert await watcher.scan() == []
        manager.states[b.id] = ContainerStatus(EXITED, exit_code=2)
        (tmp_path / b.id).write_text("2")
        (tmp_path / ("f" * 64)).write_text("1")  # not a container of the store
        assert await watcher.scan() == sorted([b.id, "f" * 64])
        (event,) = await pending
        assert (event.container_id, event.container_event_type) == (b.id, api_pb2.CONTAINER_STOPPED_EVENT)
        assert [s.exit_code for s in event.containers_statuses if s.id == b.id] == [2]
        assert await watcher.scan() == []
        await stream.aclose()
    asyncio.run(main())


def test_the_first_subscriber_starts_a_watcher_when_the_daemon_runs_none(tmp_path: Path) -> None:
    async def main() -> None:
        a = record("a" * 64)
        events, _ = hub(tmp_path, a)
        stream = events.subscribe()
        pending = asyncio.ensure_future(take(stream, 1))
        await asyncio.sleep(0.5)  # the watcher took its first look
        (tmp_path / a.id).write_text("0")
        (event,) = await pending
        assert event.container_event_type == api_pb2.CONTAINER_STOPPED_EVENT
        await stream.aclose()
        assert events._own_watcher is None

        # With the daemon's loop running, no second one is started.
        loop = asyncio.ensure_future(ExitWatcher(events, blocking, interval=0.01).run())
        await asyncio.sleep(0.05)
        again = events.subscribe()
        waiting = asyncio.ensure_future(anext(again))
        await asyncio.sleep(0.05)
        assert events.watchers == 1 and events._own_watcher is None
        waiting.cancel()
        loop.cancel()
        await asyncio.gather(waiting, loop, return_exceptions=True)
    asyncio.run(main())


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
