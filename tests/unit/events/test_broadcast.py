"""The journal's fan-out (``Broadcast``): live events to every subscriber
that takes them, woken at once by this process's appends and by polling for
other processes', a backlog of what was journaled while the follower was
not running for the first subscriber only, slow subscribers dropped."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from hawser.errors import ResourceExhausted
from hawser.events import Broadcast, Event, Follower, Journal


def ids(events: list[Event]) -> list[str]:
    """A build that keeps container events only, as their ids."""
    return [e.id for e in events if e.type == "container"]


def new(journal: Journal, *, cursor: str | None = "test", queue_size: int = 16) -> Broadcast[str]:
    return Broadcast(journal, ids, cursor=cursor, blocking=_threaded, queue_size=queue_size)


async def _threaded(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kwargs)


async def take(stream: AsyncIterator[str], n: int, timeout: float = 5.0) -> list[str]:
    return [await asyncio.wait_for(anext(stream), timeout) for _ in range(n)]


@contextlib.asynccontextmanager
async def following(broadcast: Broadcast[str], interval: float = 0.05) -> AsyncIterator[None]:
    task = asyncio.create_task(Follower(broadcast, "test", interval=interval).run())
    await asyncio.sleep(0)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def subscribed(broadcast: Broadcast[str], accept: Callable[[str], bool] | None = None
                     ) -> AsyncIterator[str]:
    """A subscription that is registered once this returns (generators start lazily)."""
    stream = broadcast.subscribe(accept)
    before = broadcast.subscribers
    first = asyncio.ensure_future(anext(stream))
    while broadcast.subscribers == before:
        await asyncio.sleep(0)

    async def rest() -> AsyncIterator[str]:
        try:
            yield await first
            async for item in stream:
                yield item
        finally:
            first.cancel()
            await stream.aclose()

    return rest()


def test_live_events_reach_every_subscriber_that_takes_them(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))

    async def main() -> None:
        broadcast = new(journal)
        await broadcast.recover()
        async with following(broadcast, interval=10):  # no polling: the appends wake it
            everything = await subscribed(broadcast)
            odd = await subscribed(broadcast, lambda item: item.endswith(("1", "3")))
            for n in range(4):
                journal.record("container", "start", id_=f"c{n}")
            journal.record("image", "pull", name="ignored")
            assert await take(everything, 4) == ["c0", "c1", "c2", "c3"]
            assert await take(odd, 2) == ["c1", "c3"]
            await everything.aclose()
            await odd.aclose()
        assert not broadcast.listening

    asyncio.run(main())


def test_another_process_appends_are_found_by_polling(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    other = Journal(str(tmp_path))  # another writer: its appends wake nobody here

    async def main() -> None:
        broadcast = new(journal)
        await broadcast.recover()
        async with following(broadcast, interval=0.05):
            stream = await subscribed(broadcast)
            other.record("container", "create", id_="cli")
            assert await take(stream, 1) == ["cli"]
            await stream.aclose()

    asyncio.run(main())


def test_what_came_while_down_goes_to_the_first_subscriber_only(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))

    async def main() -> None:
        # A first run: reads up to c0 and keeps its place.
        first = new(journal)
        await first.recover()
        journal.record("container", "create", id_="c0")
        await first.poll()
        assert first.backlog == 0
        # Down: the CLI goes on.
        journal.record("container", "stop", id_="c1")
        journal.record("container", "remove", id_="c2")
        # The next run: the backlog waits for a subscriber.
        again = new(journal)
        await again.recover()
        assert again.backlog == 2
        async with following(again):
            stream = await subscribed(again)
            journal.record("container", "create", id_="c3")
            assert await take(stream, 3) == ["c1", "c2", "c3"]
            second = await subscribed(again)
            journal.record("container", "create", id_="c4")
            assert await take(second, 1) == ["c4"]
            assert await take(stream, 1) == ["c4"]
            await stream.aclose()
            await second.aclose()

    asyncio.run(main())


def test_a_restart_without_news_has_no_backlog_and_no_cursor_keeps_none(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))
    journal.record("container", "create", id_="old")

    async def main() -> None:
        never = new(journal)  # never ran: its first start replays nothing
        await never.recover()
        assert never.backlog == 0
        await never.poll()
        journal.record("container", "create", id_="seen")
        await never.poll()
        restarted = new(journal)
        await restarted.recover()
        assert restarted.backlog == 0
        # Without a cursor nothing is kept, whatever happened.
        journal.record("container", "create", id_="lost")
        placeless = new(journal, cursor=None)
        await placeless.recover()
        assert placeless.backlog == 0
        assert not list(tmp_path.glob("None.cursor"))

    asyncio.run(main())


def test_the_backlog_is_filtered_by_the_first_subscriber(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))

    async def main() -> None:
        first = new(journal)
        await first.recover()
        await first.poll()
        journal.save_cursor("test", Event(time=time.time() - 1, type="x", action="y"))
        for n in range(3):
            journal.record("container", "create", id_=f"c{n}")
        again = new(journal)
        await again.recover()
        stream = await subscribed(again, lambda item: item != "c1")
        assert await take(stream, 2) == ["c0", "c2"]
        assert again.backlog == 0
        await stream.aclose()

    asyncio.run(main())


def test_a_slow_subscriber_is_dropped_and_the_others_go_on(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))

    async def main() -> None:
        broadcast = new(journal, queue_size=4)
        slow = await subscribed(broadcast)
        fast = await subscribed(broadcast)
        for n in range(3):
            broadcast.publish(f"e{n}")
        assert await take(fast, 3) == ["e0", "e1", "e2"]
        for n in range(3, 9):
            broadcast.publish(f"e{n}")
            if n < 8:
                assert await take(fast, 1) == [f"e{n}"]
        # The slow one had 4 queued when the fifth came: its stream ends with ResourceExhausted.
        with pytest.raises(ResourceExhausted, match="more than 4"):
            await take(slow, 5)
        assert await take(fast, 1) == ["e8"]
        broadcast.publish("e9")
        assert await take(fast, 1) == ["e9"]
        await fast.aclose()

    asyncio.run(main())


def test_a_failing_filter_or_build_loses_events_not_the_stream(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))

    def build(events: list[Event]) -> list[str]:
        if any(e.id == "bad" for e in events):
            raise ValueError("broken")
        return ids(events)

    async def main() -> None:
        broadcast: Broadcast[str] = Broadcast(journal, build, cursor="b", blocking=_threaded)
        await broadcast.recover()

        def picky(item: str) -> bool:
            if item == "boom":
                raise KeyError(item)
            return True

        stream = await subscribed(broadcast, picky)
        broadcast.publish("boom")
        journal.record("container", "create", id_="bad")
        assert await broadcast.poll() == []
        journal.record("container", "create", id_="good")
        assert await broadcast.poll() == ["good"]
        assert await take(stream, 1) == ["good"]
        await stream.aclose()

    asyncio.run(main())


def test_the_follower_stops_listening_when_cancelled(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path))

    async def main() -> None:
        broadcast = new(journal)
        async with following(broadcast):
            await asyncio.sleep(0.01)
            assert len(journal.listeners) == 1
        assert journal.listeners == []

    asyncio.run(main())


@pytest.mark.parametrize("journaled_before", [True, False])
def test_a_first_start_keeps_a_place_before_any_event(tmp_path: Path, journaled_before: bool) -> None:
    journal = Journal(str(tmp_path / "events"))  # made by the first append, or the first start
    if journaled_before:
        journal.record("container", "create", id_="before-the-first-start")

    async def main() -> None:
        first = new(journal)
        await first.recover()  # nothing read, nothing handled: its place is its start
        assert journal.load_cursor("test") is not None
        journal.record("container", "create", id_="while-down")
        again = new(journal)
        await again.recover()
        stream = await subscribed(again)
        assert await take(stream, 1) == ["while-down"]
        await stream.aclose()

    asyncio.run(main())


def test_the_follower_stops_when_cancelled_even_as_it_is_woken(tmp_path: Path) -> None:
    """A cancellation that comes as the follower's wait ends (hawserd's own append at shutdown)
    stops it: on Python 3.11 asyncio.wait_for can swallow such a cancellation, and a daemon
    would then never stop."""

    async def main() -> None:
        journal = Journal(str(tmp_path))
        # The cancellation lands 0 to 4 turns of the loop after the wake-up: one of them is the
        # turn in which the wait has ended and the follower has not yet run.
        for turns in range(5):
            broadcast: Broadcast[Event] = Broadcast(journal, lambda events: [], cursor=None)
            follower = asyncio.ensure_future(broadcast.follow(interval=60))
            await asyncio.sleep(0.01)  # waiting on its wake-up event
            assert broadcast._wake is not None
            broadcast._wake.set()
            for _ in range(turns):
                await asyncio.sleep(0)
            follower.cancel()
            done, _ = await asyncio.wait([follower], timeout=2)
            assert done, f"the follower did not stop when cancelled {turns} turns after its wake-up"

    asyncio.run(main())
