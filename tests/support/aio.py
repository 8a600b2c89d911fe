"""Small helpers tests share: run a coroutine with a deadline, wait for a
condition, find processes by an argument (and the conmons of a state dir)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def run(body: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    """``asyncio.run(body())``, failing after ``timeout`` seconds."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await body()

    return asyncio.run(bounded())


async def eventually(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        await asyncio.sleep(0.02)


def processes_where(match: Callable[[list[bytes]], bool]) -> list[int]:
    """Pids of the processes whose argv (``/proc/PID/cmdline``, split) ``match`` takes."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
            except OSError:
                continue
            if match(argv):
                found.append(int(entry))
    return found


def processes_running(marker: str) -> list[int]:
    """Pids of the processes with ``marker`` as one of their arguments."""
    return processes_where(lambda argv: marker.encode() in argv)


def conmons_of(state: str) -> list[int]:
    """Pids of the conmon processes working for the hawser state dir ``state``."""
    return processes_where(lambda argv: bool(argv) and argv[0].endswith(b"conmon")
                           and any(state.encode() in a for a in argv))
