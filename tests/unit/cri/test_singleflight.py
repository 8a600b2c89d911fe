"""SingleFlight (PullImage's merging of concurrent pulls): the work is shared,
survives a caller that goes away, and is cancelled when every caller did."""

from __future__ import annotations

import asyncio

import pytest

from hawser.cri._singleflight import SingleFlight
from tests.support.aio import run


def test_a_call_that_goes_away_leaves_the_work_to_the_others() -> None:
    async def body() -> None:
        flight: SingleFlight[str, int] = SingleFlight()
        started = 0
        release = asyncio.Event()

        async def work() -> int:
            nonlocal started
            started += 1
            await release.wait()
            return 42

        first = asyncio.create_task(flight.run("k", work))
        second = asyncio.create_task(flight.run("k", work))
        await asyncio.sleep(0.01)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        release.set()
        assert await second == (42, True)
        assert started == 1 and flight.merged == 1 and len(flight) == 0

    run(body)


def test_work_nobody_waits_for_is_cancelled_and_the_next_call_starts_afresh() -> None:
    async def body() -> None:
        flight: SingleFlight[str, str] = SingleFlight()
        cancelled = asyncio.Event()
        calls = 0

        async def work() -> str:
            nonlocal calls
            calls += 1
            if calls > 1:
                return "fresh"
            try:
                await asyncio.sleep(60)
            except asyncio.CancelledError:
                # A cancelled pull takes a while to stop: the next call must not join it meanwhile.
                cancelled.set()
                await asyncio.sleep(0.1)
                raise
            return "stale"

        callers = [asyncio.create_task(flight.run("k", work)) for _ in range(2)]
        await asyncio.sleep(0.01)
        for caller in callers:
            caller.cancel()
        await asyncio.wait(callers)
        await asyncio.wait_for(cancelled.wait(), 5)
        assert await flight.run("k", work) == ("fresh", False)
        assert calls == 2

    run(body)
