"""What unit tests of containerd's services (src/hawser/containerd) call them
with: a servicer context naming a namespace, a blocking runner, and the
status code a call aborts with."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import pytest

T = TypeVar("T")


class Aborted(Exception):
    """What ``context.abort`` raises: the call's status code and details."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code, self.details = code, details


class FakeContext:
    """A servicer context with the ``containerd-namespace`` header (none when
    ``namespace`` is None); a stream's messages are kept in ``written``."""

    def __init__(self, namespace: str | None = "default") -> None:
        self._metadata = (("containerd-namespace", namespace),) if namespace is not None else ()
        self.written: list[Any] = []

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def write(self, message: Any) -> None:
        self.written.append(message)

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        raise Aborted(code, details)


async def blocking(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """The services' RunBlocking, as hawserd's: a worker thread."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def call(coro: Any) -> Any:
    return asyncio.run(coro)


def code_of(coro: Any) -> grpc.StatusCode:
    """The status code ``coro`` (a service call) aborts with; fails if it answers."""
    with pytest.raises(Aborted) as aborted:
        call(coro)
    return aborted.value.code
