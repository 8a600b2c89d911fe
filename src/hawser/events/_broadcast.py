"""Fan-out of the journal to live subscribers: the machinery every event
stream hawserd serves shares (containerd's Events.Subscribe; the CRI's
GetContainerEvents has its own copy for now).

A ``Broadcast`` follows the journal (``Tail``) under a named cursor, turns
the journal's events into what its stream sends (``build``: blocking, may
look things up), and hands each item to every subscriber whose filter takes
it.  The follower reads at once after an append by this process (the
journal's ``listeners``) while somebody listens, else every ``interval`` (for
other processes' events, the CLI's, and to keep its place).

The backlog.  The cursor (``state/events/<name>.cursor``) is the time after
the last journal event the follower handled, saved after every read whether
anybody listened or not (at the first start ever: the time of that start).  At start-up (``recover``) what was journaled since
then (what happened while hawserd was down: CLI commands, exits) is built
and kept, at most ``queue_size`` items, for the first subscriber, which gets
it before the live ones.  Events journaled while hawserd runs and nobody
listens are not kept: a stream starts at "now", as containerd's does.

Every subscriber has a bounded queue: one that falls ``queue_size`` items
behind is dropped, its stream ending with ResourceExhausted, rather than
slowing the others down or growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from hawser._logging import get_logger
from hawser.errors import ResourceExhausted
from hawser.events._journal import Event, Journal, Tail

log = get_logger("hawser.events")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# Items a subscriber may have queued before it counts as too slow; also the
# most items kept from while hawserd was down.
QUEUE_SIZE = 1024
# How often the journal is read for other processes' events.
POLL_INTERVAL = 0.2


class Blocking(Protocol):
    """Runs a blocking call off the event loop (hawserd's worker threads)."""

    def __call__(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        ...


async def _inline(fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
    return fn(*args, **kwargs)


class _Subscriber(Generic[T]):
    def __init__(self, size: int, accept: Callable[[T], bool] | None) -> None:
        self.queue: asyncio.Queue[T | None] = asyncio.Queue(maxsize=size)
        self.accept = accept


class Broadcast(Generic[T]):
    """The journal's events, built by ``build`` into items of type T, fanned
    out to subscribers.  ``cursor``: the name the follower's place is kept
    under (None: no place is kept, no backlog).  Constructing it starts
    nothing: the daemon runs ``recover`` (a Recoverer) and ``Follower`` (a
    BackgroundLoop)."""

    def __init__(self, journal: Journal, build: Callable[[list[Event]], list[T]], *, cursor: str | None,
                 blocking: Blocking = _inline, queue_size: int = QUEUE_SIZE, what: str = "event") -> None:
        self.journal = journal
        self.build = build
        self.cursor = cursor
        self.blocking = blocking
        self.queue_size = queue_size
        self.what = what  # for messages: "containerd event"
        self._subscribers: set[_Subscriber[T]] = set()
        self._backlog: deque[T] = deque(maxlen=queue_size)
        self._tail: Tail | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = asyncio.Lock()

    @property
    def listening(self) -> bool:
        return bool(self._subscribers)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def backlog(self) -> int:
        """How many items wait for the first subscriber."""
        return len(self._backlog)

    # --- start-up ----------------------------------------------------------------

    async def recover(self) -> None:
        """Keep what was journaled since the cursor as the backlog (before the
        socket serves; after the parts whose recovery journals something)."""
        since = await self.blocking(self.journal.load_cursor, self.cursor) if self.cursor else None
        self._tail = self.journal.tail(since=since)
        if since is None and self.cursor:
            # The first start: a place now, so that what the CLI does before the
            # first event is read (hawserd stopped at once) is not missed.
            await self.blocking(self.journal.start_cursor, self.cursor, time.time())
        if since is not None:
            events = await self.blocking(self._tail.poll)
            self._backlog.extend(await self.blocking(self._build_all, events))
            await self.blocking(self._save_cursor, events)

    # --- producing ---------------------------------------------------------------------

    async def follow(self, interval: float = POLL_INTERVAL) -> None:
        """Read the journal until cancelled: at once after one of this
        process's appends, else every ``interval``."""
        self._loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()
        self.journal.listeners.append(self._poke)
        try:
            while True:
                # asyncio.timeout, not wait_for: on 3.11 wait_for swallows a cancellation that
                # comes as the wait ends (a poke at shutdown), and this loop would never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(interval):
                        await wake.wait()
                wake.clear()
                try:
                    await self.poll()
                except Exception:
                    log.exception("reading the event journal failed; retrying", extra={"reader": self.cursor})
        finally:
            with contextlib.suppress(ValueError):
                self.journal.listeners.remove(self._poke)
            self._wake = None

    def _poke(self) -> None:
        """A journal listener (any thread): this process appended.  With nobody
        listening there is nobody to hurry for: the next read on the interval
        keeps the place (a busy daemon appends several events per request)."""
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and self._subscribers:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon is going away
                loop.call_soon_threadsafe(wake.set)

    async def poll(self) -> list[T]:
        """One read of the journal; publishes and returns the items built
        (none while nobody listens: building may cost lookups)."""
        async with self._reading:  # one read of the tail at a time (the follower, a first subscriber)
            if self._tail is None:
                self._tail = self.journal.tail()
            tail, listening = self._tail, bool(self._subscribers)

            def read() -> tuple[list[Event], list[T]]:
                events = tail.poll()
                built = self._build_all(events) if events and listening else []
                self._save_cursor(events)
                return events, built

            _, built = await self.blocking(read)
        for item in built:
            self.publish(item)
        return built

    def _build_all(self, events: list[Event]) -> list[T]:
        try:
            return self.build(events)
        except Exception:
            log.exception("building %ss from the journal failed", self.what)
            return []

    def _save_cursor(self, events: list[Event]) -> None:
        if events and self.cursor:
            self.journal.save_cursor(self.cursor, events[-1])

    # --- fan-out (the event loop) ------------------------------------------------------

    def publish(self, item: T) -> None:
        """Hand ``item`` to every subscriber that takes it; drop one whose queue is full."""
        for subscriber in list(self._subscribers):
            if not self._takes(subscriber, item):
                continue
            try:
                subscriber.queue.put_nowait(item)
            except asyncio.QueueFull:
                self._drop(subscriber)

    def _takes(self, subscriber: _Subscriber[T], item: T) -> bool:
        if subscriber.accept is None:
            return True
        try:
            return subscriber.accept(item)
        except Exception:
            log.exception("a %s subscriber's filter failed", self.what)
            return False

    def _drop(self, subscriber: _Subscriber[T]) -> None:
        self._subscribers.discard(subscriber)
        queue = subscriber.queue
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)  # tells the stream it was dropped
        log.warning("dropped a slow %s subscriber", self.what, extra={"queued": self.queue_size})

    async def subscribe(self, accept: Callable[[T], bool] | None = None) -> AsyncIterator[T]:
        """The items ``accept`` takes (all without it) from now on (the first
        subscriber after a restart: the backlog first), until the caller stops
        iterating.  ResourceExhausted when this subscriber fell too far behind."""
        subscriber = _Subscriber(self.queue_size, accept)
        if not self._subscribers and self._tail is not None:
            # Nobody listened, so the follower read on its interval only: what is
            # unread was journaled before this stream began, and is not its.
            await self.poll()
        while self._backlog:
            kept = self._backlog.popleft()
            if self._takes(subscriber, kept):
                subscriber.queue.put_nowait(kept)
        self._subscribers.add(subscriber)
        try:
            while True:
                item = await subscriber.queue.get()
                if item is None:
                    raise ResourceExhausted(
                        f"{self.what} stream dropped: more than {self.queue_size} events were not read",
                        hint="read the stream faster, then subscribe again")
                yield item
        finally:
            self._subscribers.discard(subscriber)


class Follower:
    """The background loop (the daemon's ``BackgroundLoop``) that feeds a Broadcast from the journal."""

    def __init__(self, broadcast: Broadcast[Any], name: str, *, interval: float = POLL_INTERVAL) -> None:
        self.broadcast = broadcast
        self.name = name
        self.interval = interval

    async def run(self) -> None:
        await self.broadcast.follow(self.interval)


__all__ = ["POLL_INTERVAL", "QUEUE_SIZE", "Blocking", "Broadcast", "Follower"]
