"""Merge concurrent calls for one key into one (CRI-O merges parallel pulls so).

The shared work runs in a task of its own, not in the first caller's: a caller
whose RPC is cancelled (kubelet's deadline) stops waiting, the others still get
the result, and nothing is started twice.  When the last caller stops waiting,
the work is cancelled (nobody wants its result) and forgotten at once: a call
for the key after that starts afresh, it does not join a cancelled one.

``merged`` counts the calls that joined one in flight instead of starting
their own (hawserd's ``hawser_image_pulls_merged_total``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self) -> None:
        self._inflight: dict[K, asyncio.Task[V]] = {}
        self._waiting: dict[asyncio.Task[V], int] = {}  # callers awaiting each task
        self.merged = 0  # calls that joined one in flight; touched on the event loop only

    def __len__(self) -> int:
        return len(self._inflight)

    async def run(self, key: K, work: Callable[[], Coroutine[Any, Any, V]]) -> tuple[V, bool]:
        """``(result, shared)``: the result of the call in flight for ``key``
        (``shared`` True), or of ``work()`` started now.  Its exception is
        raised in every caller; the work is cancelled when every caller was.
        Must be called on the event loop."""
        task = self._inflight.get(key)
        shared = task is not None
        if shared:
            self.merged += 1
        if task is None:
            task = asyncio.get_running_loop().create_task(work())
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        self._waiting[task] = self._waiting.get(task, 0) + 1
        try:
            return await asyncio.shield(task), shared
        finally:
            self._left(key, task)

    def _left(self, key: K, task: asyncio.Task[V]) -> None:
        waiting = self._waiting[task] - 1
        if waiting:
            self._waiting[task] = waiting
            return
        del self._waiting[task]
        if not task.done():  # every caller was cancelled
            if self._inflight.get(key) is task:
                del self._inflight[key]
            task.cancel()

    def _done(self, key: K, task: asyncio.Task[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        # Every waiter may have gone away: retrieve the outcome so that asyncio
        # does not report an exception "never retrieved".
        if not task.cancelled():
            task.exception()

    async def wait(self) -> None:
        """Wait for the calls in flight now (used at shutdown)."""
        pending = list(self._inflight.values())
        if pending:
            await asyncio.wait(pending)
