"""A fake StreamingRuntime and helpers to run a StreamingServer inside a test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from hawser.cri.streaming import (
    AsyncReader,
    AsyncWriter,
    DuplexStream,
    StreamingServer,
    TerminalSize,
)
from hawser.errors import FailedPrecondition, NotFound, Unavailable

T = TypeVar("T")


def run(test: Callable[[], Awaitable[T]], timeout: float = 30) -> T:
    """Run an async test body on a fresh event loop, with a deadline."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await test()

    return asyncio.run(bounded())


async def copy(source: AsyncReader, sink: AsyncWriter) -> int:
    total = 0
    while data := await source.read(4096):
        total += len(data)
        await sink.write(data)
    return total


class FakeRuntime:
    """Commands are tiny programs: ``cat``, ``echo ...``, ``exit N``, ``stderr TEXT``, ``tty``,
    ``big N``, ``sleep``, ``boom``; container "missing" does not exist, "stopped" is not running.
    Port 9 refuses connections; other ports echo."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.resizes: list[TerminalSize] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.started = asyncio.Event()
        self.stdin_closed = asyncio.Event()

    def _check(self, container_id: str) -> None:
        if container_id == "missing":
            raise NotFound(f"container {container_id} not found")
        if container_id == "stopped":
            raise FailedPrecondition(f"container {container_id} is not running")

    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool, stdin: AsyncReader | None,
                   stdout: AsyncWriter | None, stderr: AsyncWriter | None,
                   resize: AsyncIterator[TerminalSize]) -> int:
        self.calls.append(("exec", container_id, tuple(cmd), tty, stdin is not None, stdout is not None,
                           stderr is not None))
        self._check(container_id)
        try:
            code = await self._program(cmd, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, resize=resize)
        except asyncio.CancelledError:
            self.cancelled.append(cmd[0])
            raise
        self.finished.append(cmd[0])
        return code

    async def _program(self, cmd: Sequence[str], *, tty: bool, stdin: AsyncReader | None,
                       stdout: AsyncWriter | None, stderr: AsyncWriter | None,
                       resize: AsyncIterator[TerminalSize]) -> int:
        name, args = cmd[0], list(cmd[1:])
        if name == "cat":
            assert stdin is not None and stdout is not None
            await copy(stdin, stdout)
            self.stdin_closed.set()
            return 0
        if name == "echo":
            assert stdout is not None
            await stdout.write(" ".join(args).encode() + b"\n")
            return 0
        if name == "exit":
            return int(args[0])
        if name == "stderr":
            assert stdout is not None and stderr is not None
            await stdout.write(b"to stdout\n")
            await stderr.write(" ".join(args).encode() + b"\n")
            return 0
        if name == "tty":
            assert stdin is not None and stdout is not None and tty
            watcher = asyncio.create_task(self._watch_resizes(resize, stdout))
            try:
                # Like a terminal's line discipline: ^D at the start of input ends it.
                while (data := await stdin.read(4096)) and data != b"\x04":
                    await stdout.write(data)
            finally:
                watcher.cancel()
                await asyncio.wait([watcher])
            return 0
        if name == "big":
            assert stdout is not None
            size, chunk = int(args[0]), bytes(range(256)) * 64
            sent = 0
            while sent < size:
                piece = chunk[:size - sent]
                await stdout.write(piece)
                sent += len(piece)
            return 0
        if name == "ticker":
            # Ignores stdin, writes forever.
            assert stdout is not None
            self.started.set()
            while True:
                await stdout.write(b"tick\n")
                await asyncio.sleep(0.01)
        if name == "sleep":
            self.started.set()
            await asyncio.Event().wait()
        if name == "boom":
            raise RuntimeError("a bug in the runtime")
        raise Unavailable(f"no such fake program {name}")

    async def _watch_resizes(self, resize: AsyncIterator[TerminalSize], stdout: AsyncWriter) -> None:
        async for size in resize:
            self.resizes.append(size)
            await stdout.write(f"resize {size.width}x{size.height}\n".encode())

    async def attach(self, container_id: str, *, tty: bool, stdin: AsyncReader | None,
                     stdout: AsyncWriter | None, stderr: AsyncWriter | None,
                     resize: AsyncIterator[TerminalSize]) -> None:
        self.calls.append(("attach", container_id, tty, stdin is not None, stdout is not None, stderr is not None))
        self._check(container_id)
        try:
            if stderr is not None:
                await stderr.write(b"attached\n")
            if stdin is not None and stdout is not None:
                if tty:
                    await self._program(["tty"], tty=tty, stdin=stdin, stdout=stdout, stderr=None, resize=resize)
                else:
                    await copy(stdin, stdout)
            elif stdout is not None:
                await stdout.write(b"main process output\n")
        except asyncio.CancelledError:
            self.cancelled.append("attach")
            raise
        self.finished.append("attach")

    async def port_forward(self, pod_sandbox_id: str, port: int, stream: DuplexStream) -> None:
        self.calls.append(("port_forward", pod_sandbox_id, port))
        if pod_sandbox_id == "missing":
            raise NotFound(f"sandbox {pod_sandbox_id} not found")
        if port == 9:
            raise Unavailable(f"connection refused: nothing listens on port {port}")
        try:
            # An echo server that says which port it is first.
            await stream.write(f"port {port}\n".encode())
            await copy(stream, stream)
            await stream.close()
        except asyncio.CancelledError:
            self.cancelled.append(f"port {port}")
            raise
        self.finished.append(f"port {port}")


@asynccontextmanager
async def serving(runtime: FakeRuntime | None = None, **options: Any) -> AsyncIterator[
        tuple[StreamingServer, FakeRuntime]]:
    """A started server on 127.0.0.1 with a fake runtime; stopped afterwards."""
    fake = runtime or FakeRuntime()
    server = StreamingServer(fake, **options)
    await server.start()
    try:
        yield server, fake
    finally:
        await server.stop()


async def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``predicate()`` holds (for effects that happen on the server's side)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)
