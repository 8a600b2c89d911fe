"""ContainerStreams.port_forward over loopback (a hostNetwork pod: no namespace
to enter, so no root): half-close, the pod closing first, refusal, cancellation;
and the sandbox checks the PortForward handler relies on."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

from hawser._dataclass import replace
from hawser.cri._stream_runtime import ContainerStreams
from hawser.cri.streaming._pipe import BoundedPipe
from hawser.errors import FailedPrecondition, NotFound, Unavailable, Unimplemented
from hawser.pods import SANDBOX_NOTREADY, SANDBOX_READY, Sandbox
from tests.unit.streaming.fakes import run

T = TypeVar("T")

POD = Sandbox(id="a" * 64, name="pod", namespace="default", uid="u", attempt=0, state=SANDBOX_READY,
              created_at=time.time(), netns=None)


class Sandboxes:
    def __init__(self, *pods: Sandbox) -> None:
        self.pods = {pod.id: pod for pod in pods}

    def get(self, sandbox_id: str) -> Sandbox:
        try:
            return self.pods[sandbox_id]
        except KeyError:
            raise NotFound(f"pod sandbox {sandbox_id} not found") from None


async def to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def streams(*pods: Sandbox) -> ContainerStreams:
    return ContainerStreams(containers=None, sandboxes=Sandboxes(*pods), blocking=to_thread)  # type: ignore[arg-type]


class Duplex:
    """The client's side of one forwarded connection."""

    def __init__(self) -> None:
        self.upstream = BoundedPipe(1 << 20)
        self.received = bytearray()
        self.closed = asyncio.Event()

    async def read(self, n: int = -1) -> bytes:
        return await self.upstream.read(n)

    async def write(self, data: bytes) -> None:
        self.received += data

    async def close(self) -> None:
        self.closed.set()


class Pod:
    """A server on 127.0.0.1 standing in for one in the pod."""

    def __init__(self, handler: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Any]) -> None:
        self.handler = handler
        self.server: asyncio.Server | None = None
        self.peer_closed = asyncio.Event()

    async def __aenter__(self) -> int:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self.handler(reader, writer)
            finally:
                writer.close()
                self.peer_closed.set()

        self.server = await asyncio.start_server(serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def test_the_clients_half_close_reaches_the_pod_and_the_answer_comes_back() -> None:
    async def answer_after_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read()  # to EOF: the client's half-close
        writer.write(request.upper() + b" bye")
        await writer.drain()

    async def body() -> None:
        async with Pod(answer_after_eof) as port:
            client = Duplex()
            await client.upstream.feed(b"hello")
            client.upstream.feed_eof()
            await streams(POD).port_forward(POD.id, port, client)
            assert bytes(client.received) == b"HELLO bye"

    run(body)


def test_the_pod_closing_ends_the_forward_while_the_client_still_sends() -> None:
    async def greet_and_close(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"greeting")
        await writer.drain()

    async def body() -> None:
        async with Pod(greet_and_close) as port:
            client = Duplex()  # never half-closes
            await asyncio.wait_for(streams(POD).port_forward(POD.id, port, client), 5)
            assert bytes(client.received) == b"greeting"

    run(body)


def test_cancelled_forward_closes_the_connection_into_the_pod() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()

    async def body() -> None:
        pod = Pod(echo)
        async with pod as port:
            client = Duplex()
            forward = asyncio.create_task(streams(POD).port_forward(POD.id, port, client))
            await client.upstream.feed(b"ping")
            while bytes(client.received) != b"ping":
                await asyncio.sleep(0.01)
            forward.cancel()  # the client left
            with pytest.raises(asyncio.CancelledError):
                await forward
            await asyncio.wait_for(pod.peer_closed.wait(), 5)

    run(body)


def test_a_refused_connection_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: refused

        async def body() -> None:
            with pytest.raises(Unavailable, match="connection refused"):
                await streams(POD).port_forward(POD.id, port, Duplex())

        run(body)


def test_sandbox_checks() -> None:
    stopped = replace(POD, id="b" * 64, state=SANDBOX_NOTREADY)
    runtime = streams(POD, stopped)
    assert runtime.ready_sandbox(POD.id) is POD
    with pytest.raises(FailedPrecondition, match="not ready"):
        runtime.ready_sandbox(stopped.id)
    with pytest.raises(NotFound):
        runtime.ready_sandbox("c" * 64)
    no_pods = ContainerStreams(containers=None, sandboxes=None, blocking=to_thread)  # type: ignore[arg-type]
    with pytest.raises(Unimplemented):
        no_pods.ready_sandbox(POD.id)

    async def body() -> None:
        with pytest.raises(FailedPrecondition):
            await runtime.port_forward(stopped.id, 80, Duplex())

    run(body)
