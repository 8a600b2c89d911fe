"""Kubernetes port forwarding over SPDY (portforward.k8s.io) and WebSocket.

SPDY: one connection carries any number of forwarded connections.  For each,
the client opens a pair of streams with the same ``port`` and ``requestID``
headers: an ``error`` stream (first) and a ``data`` stream.  Data flows both
ways on the data stream; a failure is reported as text on the error stream.
A pair that stays incomplete past the stream timeout is dropped.

WebSocket (the *.channel.k8s.io subprotocols): the ports are fixed by the
request; port i gets channel 2i for data and 2i+1 for errors, and the server
first writes the port number (2 bytes, little-endian) on both channels.
Recent kubectl prefers the SPDY session itself tunnelled through a WebSocket
(``SPDY/3.1+portforward.k8s.io``), served by ``serve_spdy`` as well.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Coroutine, Sequence
from typing import Any

from hawser._dataclass import dataclass
from hawser.cri.streaming._spdy import RstStatus
from hawser.cri.streaming._spdy_conn import SpdyConnection, SpdyStream
from hawser.cri.streaming._tunnel import PROTOCOL as TUNNEL_PROTOCOL
from hawser.cri.streaming._types import AsyncWriter, DuplexStream, PortForwardRequest, StreamingRuntime
from hawser.cri.streaming._ws_conn import WebSocketConnection
from hawser.cri.streaming._wschannel import ChannelDuplex, WsChannels
from hawser.errors import HawserError, InvalidArgument

log = logging.getLogger(__name__)

SPDY_PROTOCOLS = ("portforward.k8s.io",)
# The first one is SPDY tunnelled through the WebSocket (see ``_tunnel``); the
# others are the channel protocols.
WEBSOCKET_PROTOCOLS = (TUNNEL_PROTOCOL, "v4.channel.k8s.io", "v4.base64.channel.k8s.io", "channel.k8s.io",
                       "base64.channel.k8s.io")


def parse_port(text: str | None) -> int:
    """A port number from a header or query value; InvalidArgument unless it is 1-65535."""
    if text is None or not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise InvalidArgument(f"invalid port {text!r}")
    return int(text)


async def forward(runtime: StreamingRuntime, request: PortForwardRequest, port: int, data: DuplexStream,
                  error: AsyncWriter) -> None:
    """Run one forwarded connection; failures go to ``error`` as text, then both streams end."""
    sandbox = request.pod_sandbox_id
    try:
        if request.port and port not in request.port:
            raise InvalidArgument(f"port {port} was not requested for sandbox {sandbox}",
                                  hint=f"requested ports: {', '.join(map(str, request.port))}")
        await runtime.port_forward(sandbox, port, data)
    except HawserError as exc:
        await error.write(f"error forwarding port {port} to pod {sandbox}: {exc}".encode())
    except Exception as exc:
        log.exception("port forward to sandbox %s port %d failed", sandbox, port)
        await error.write(f"error forwarding port {port} to pod {sandbox}: internal error: "
                          f"{type(exc).__name__}".encode())
    finally:
        await data.close()
        await error.close()


@dataclass(slots=True)
class _Pair:
    request_id: str
    port: int
    data: SpdyStream | None = None
    error: SpdyStream | None = None


def _describe(stream: SpdyStream) -> tuple[str, int, str]:
    kind = (stream.header("streamtype") or "").lower()
    if kind not in ("data", "error"):
        raise InvalidArgument(f"stream type {kind!r} is neither data nor error")
    port = parse_port(stream.header("port"))
    request_id = stream.header("requestid")
    if request_id is None:
        # Clients from before the requestID header open the error stream,
        # then the data stream, so the pair is named after the error stream.
        request_id = str(stream.stream_id if kind == "error" else stream.stream_id - 2)
    return kind, port, request_id


async def serve_spdy(conn: SpdyConnection, runtime: StreamingRuntime, request: PortForwardRequest, *,
                     stream_timeout: float) -> None:
    """Pair the client's streams and forward each pair until the client leaves."""
    pairs: dict[str, _Pair] = {}
    tasks: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def expire(pair: _Pair) -> None:
        await asyncio.sleep(stream_timeout)
        if pairs.get(pair.request_id) is not pair:
            return
        del pairs[pair.request_id]
        log.info("port forward %s: the client opened only part of a stream pair", pair.request_id)
        if pair.error is not None:
            await pair.error.write(f"timed out waiting for the data stream of port {pair.port}".encode())
            await pair.error.close()
        for stream in (pair.data, pair.error):
            if stream is not None:
                await stream.reset(RstStatus.CANCEL)

    async def run_pair(pair: _Pair) -> None:
        assert pair.data is not None and pair.error is not None
        try:
            await forward(runtime, request, pair.port, pair.data, pair.error)
        finally:
            # Whatever the client still sends on a finished pair is dropped,
            # so it cannot stall the shared read loop.
            pair.data.discard_inbound()

    try:
        while (stream := await conn.accept()) is not None:
            try:
                kind, port, request_id = _describe(stream)
            except InvalidArgument as exc:
                log.info("port forward: refusing stream %d: %s", stream.stream_id, exc)
                await stream.reset(RstStatus.PROTOCOL_ERROR)
                continue
            pair = pairs.get(request_id)
            if pair is None:
                pair = pairs[request_id] = _Pair(request_id, port)
                spawn(expire(pair))
            if pair.port != port or (pair.data if kind == "data" else pair.error) is not None:
                await stream.reset(RstStatus.PROTOCOL_ERROR)
                continue
            await conn.reply(stream)
            if kind == "data":
                pair.data = stream
            else:
                pair.error = stream
                stream.discard_inbound()
            if pair.data is not None and pair.error is not None:
                del pairs[request_id]
                spawn(run_pair(pair))
    finally:
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.wait(list(tasks))


async def serve_websocket(ws: WebSocketConnection, runtime: StreamingRuntime, request: PortForwardRequest,
                          ports: Sequence[int], *, protocol: str) -> None:
    """Forward one connection per port over channel pairs; the caller closes ``ws``."""
    channels = WsChannels(ws, base64_text="base64" in protocol, close_signal=False,
                          readable=[2 * index for index in range(len(ports))])
    demux = asyncio.create_task(channels.run())
    forwards: list[asyncio.Task[None]] = []
    try:
        for index, port in enumerate(ports):
            prefix = struct.pack("<H", port)
            await channels.send(2 * index, prefix)
            await channels.send(2 * index + 1, prefix)
        for index, port in enumerate(ports):
            duplex = ChannelDuplex(channels.reader(2 * index), channels.writer(2 * index))
            forwards.append(asyncio.create_task(
                forward(runtime, request, port, duplex, channels.writer(2 * index + 1))))
        pending: set[asyncio.Task[None]] = set(forwards)
        while pending and not demux.done():
            _done, pending = await asyncio.wait(pending | {demux}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(demux)
        if not pending:
            channels.stop_reading()
            await ws.close()
        else:
            log.info("WebSocket port-forward client for sandbox %s left", request.pod_sandbox_id)
    finally:
        tasks = [*forwards, demux]
        for task in tasks:
            task.cancel()
        await asyncio.wait(tasks)
