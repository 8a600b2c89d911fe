"""The streaming server: HTTP/1.1 on a TCP port, routing ``/exec|attach|portforward/<token>``
to the SPDY or WebSocket protocol the client upgrades to.

The CRI daemon registers each Exec/Attach/PortForward request and returns
the URL; the kubelet (or crictl) then connects to that URL.  As in the
kubelet's own streaming server, the registered request decides what the
session does; query parameters a client adds (``command=...&stdin=1``) are
accepted and ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Self

from hawser.cri.streaming._http import HttpError, HttpRequest, read_request, render_error, render_response
from hawser.cri.streaming._tokens import TokenCache
from hawser.cri.streaming._types import (
    AttachRequest,
    ExecRequest,
    PortForwardRequest,
    StreamingRuntime,
    StreamRequest,
)
from hawser.errors import FailedPrecondition, InvalidArgument

# The protocols (SPDY, WebSocket, remote command, port forward) are imported by the
# first session's upgrade: a hawserd nobody execs into, attaches to or forwards
# through never holds them (~0.4 MB).
if TYPE_CHECKING:
    from hawser.cri.streaming._spdy_conn import SpdyConnection

log = logging.getLogger(__name__)

_ROUTES: dict[str, type[ExecRequest] | type[AttachRequest] | type[PortForwardRequest]] = {
    "exec": ExecRequest,
    "attach": AttachRequest,
    "portforward": PortForwardRequest,
}

Session = Callable[[], Awaitable[None]]


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _negotiate(offered: list[str], supported: tuple[str, ...]) -> str | None:
    # The client's order wins, as in Kubernetes' own handshake.
    for protocol in offered:
        if protocol in supported:
            return protocol
    return None


class StreamingServer:
    """Serves exec, attach and port-forward sessions for URLs handed out by the CRI daemon.

    Constructing it starts nothing; ``start()`` binds the port, ``stop()``
    closes the port and every session (runtime calls are cancelled).
    """

    def __init__(self, runtime: StreamingRuntime, *, address: str = "127.0.0.1", port: int = 0,
                 token_ttl: float | timedelta = 60.0, stream_creation_timeout: float | timedelta = 30.0,
                 handshake_timeout: float | timedelta = 10.0, max_pending_tokens: int = 1000,
                 max_connections: int = 256, advertise_address: str | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._runtime = runtime
        self._address = address
        self._port = port
        self._advertise = advertise_address or address
        self._stream_timeout = _seconds(stream_creation_timeout)
        self._handshake_timeout = _seconds(handshake_timeout)
        self._max_connections = max_connections
        self._tokens: TokenCache[StreamRequest] = TokenCache(ttl=_seconds(token_ttl),
                                                              max_pending=max_pending_tokens, clock=clock)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        """Bind and listen. Unavailable-style OSError if the port is taken."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._on_connection, host=self._address, port=self._port,
                                                  limit=64 * 1024)
        self._port = self._server.sockets[0].getsockname()[1]
        log.info("streaming server listening on %s", self.base_url)

    async def stop(self) -> None:
        """Stop listening, end every session (cancelling its runtime call), forget every token. Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        connections = list(self._connections)
        for task in connections:
            task.cancel()
        if connections:
            await asyncio.wait(connections)
        if server is not None:
            await server.wait_closed()
        self._tokens.clear()

    @property
    def base_url(self) -> str:
        """``http://host:port`` of the listening socket. FailedPrecondition before ``start()``."""
        if self._server is None:
            raise FailedPrecondition("the streaming server is not started")
        host = f"[{self._advertise}]" if ":" in self._advertise else self._advertise
        return f"http://{host}:{self._port}"

    @property
    def active_sessions(self) -> int:
        """Connections being served right now (handshakes included)."""
        return len(self._connections)

    def exec_url(self, request: ExecRequest) -> str:
        """Validate and register an exec; its single-use URL.

        InvalidArgument for a request the CRI contract forbids,
        ResourceExhausted when too many URLs are pending.
        """
        request.validate()
        return f"{self.base_url}/exec/{self._tokens.insert(request)}"

    def attach_url(self, request: AttachRequest) -> str:
        """Validate and register an attach; its single-use URL (errors as ``exec_url``)."""
        request.validate()
        return f"{self.base_url}/attach/{self._tokens.insert(request)}"

    def port_forward_url(self, request: PortForwardRequest) -> str:
        """Validate and register a port forward; its single-use URL (errors as ``exec_url``)."""
        request.validate()
        return f"{self.base_url}/portforward/{self._tokens.insert(request)}"

    # Connections.

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            if self._server is None or len(self._connections) > self._max_connections:
                await self._refuse(writer, HttpError(503, "too many streaming connections"))
                return
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    request = await read_request(reader)
                    session = await self._handshake(request, reader, writer)
            except HttpError as exc:
                log.info("streaming request refused: %d %s", exc.status, exc.message)
                await self._refuse(writer, exc)
                return
            await session()
        except (TimeoutError, ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # a slow or vanished client ends only its own connection
        except Exception:
            log.exception("streaming connection failed")
        finally:
            writer.close()
            self._connections.discard(task)

    async def _refuse(self, writer: asyncio.StreamWriter, error: HttpError) -> None:
        writer.write(render_error(error))
        async with asyncio.timeout(self._handshake_timeout):
            await writer.drain()

    async def _handshake(self, request: HttpRequest, reader: asyncio.StreamReader,
                         writer: asyncio.StreamWriter) -> Session:
        if request.method not in ("GET", "POST"):
            raise HttpError(405, f"method {request.method} not allowed", headers=[("Allow", "GET, POST")])
        segments = request.path.strip("/").split("/")
        if len(segments) != 2 or segments[0] not in _ROUTES or not segments[1]:
            raise HttpError(404, f"no such streaming endpoint: {request.path}")
        kind, token = segments
        registered = self._tokens.consume(token)
        if registered is None or not isinstance(registered, _ROUTES[kind]):
            raise HttpError(404, f"{kind} session not found: the URL is unknown, used or expired",)
        upgrades = [item.lower() for item in request.header_tokens("upgrade")]
        if "upgrade" not in (item.lower() for item in request.header_tokens("connection")) or not upgrades:
            raise HttpError(400, "unable to upgrade: missing upgrade headers in request")
        if "websocket" in upgrades:
            return await self._upgrade_websocket(request, registered, reader, writer)
        if "spdy/3.1" in upgrades:
            return await self._upgrade_spdy(request, registered, reader, writer)
        raise HttpError(400, f"unable to upgrade: unsupported protocol {request.header('upgrade')!r}",)

    async def _upgrade_spdy(self, request: HttpRequest, registered: StreamRequest, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> Session:
        from hawser.cri.streaming import _portforward, _remotecommand
        from hawser.cri.streaming._spdy_conn import SpdyConnection

        forwarding = isinstance(registered, PortForwardRequest)
        supported = _portforward.SPDY_PROTOCOLS if forwarding else _remotecommand.SPDY_PROTOCOLS
        offered = request.header_tokens("x-stream-protocol-version")
        protocol = _negotiate(offered, supported)
        if protocol is None:
            raise HttpError(403, f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                 f"server accepts {list(supported)}",
                            headers=[("X-Accepted-Stream-Protocol-Versions", item) for item in supported])
        writer.write(render_response(101, [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
                                           ("X-Stream-Protocol-Version", protocol)]))
        await writer.drain()
        conn = SpdyConnection(reader, writer, server=True)
        return lambda: self._serve_spdy(conn, registered, protocol)

    async def _serve_spdy(self, conn: SpdyConnection, registered: StreamRequest, protocol: str) -> None:
        from hawser.cri.streaming import _portforward, _remotecommand

        conn.start()
        try:
            if isinstance(registered, PortForwardRequest):
                await _portforward.serve_spdy(conn, self._runtime, registered, stream_timeout=self._stream_timeout)
            else:
                await _remotecommand.serve_spdy(conn, self._runtime, registered, protocol=protocol,
                                                stream_timeout=self._stream_timeout)
        except BaseException:
            await conn.aclose()
            raise
        await conn.shutdown()

    async def _upgrade_websocket(self, request: HttpRequest, registered: StreamRequest,
                                 reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Session:
        from hawser.cri.streaming import _portforward, _remotecommand
        from hawser.cri.streaming._spdy_conn import SpdyConnection
        from hawser.cri.streaming._tunnel import PROTOCOL as TUNNEL_PROTOCOL
        from hawser.cri.streaming._tunnel import TunnelReader, TunnelWriter
        from hawser.cri.streaming._websocket import accept_key, valid_client_key
        from hawser.cri.streaming._ws_conn import WebSocketConnection

        if request.method != "GET":
            raise HttpError(400, "a WebSocket handshake must be a GET request")
        if request.header("sec-websocket-version") != "13":
            raise HttpError(426, "unsupported WebSocket version", headers=[("Sec-WebSocket-Version", "13")])
        key = request.header("sec-websocket-key")
        if key is None or not valid_client_key(key):
            raise HttpError(400, "missing or malformed Sec-WebSocket-Key")
        forwarding = isinstance(registered, PortForwardRequest)
        supported = _portforward.WEBSOCKET_PROTOCOLS if forwarding else _remotecommand.WEBSOCKET_PROTOCOLS
        offered = request.header_tokens("sec-websocket-protocol")
        protocol = _negotiate(offered, supported)
        if protocol is None:
            raise HttpError(400, f"unable to upgrade: unable to negotiate protocol: client supports {offered}, "
                                 f"server accepts {list(supported)}")
        ports: list[int] = []
        if isinstance(registered, PortForwardRequest) and protocol != TUNNEL_PROTOCOL:
            ports = list(registered.port)
            if not ports:
                # The CRI request named no port: take them from the URL, as the kubelet does.
                try:
                    ports = [_portforward.parse_port(item) for name in ("port", "ports")
                             for value in request.query_values(name) for item in value.split(",")]
                except InvalidArgument as exc:
                    raise HttpError(400, str(exc)) from exc
            if not ports:
                raise HttpError(400, "a WebSocket port forward needs at least one port")
        writer.write(render_response(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                           ("Sec-WebSocket-Accept", accept_key(key)),
                                           ("Sec-WebSocket-Protocol", protocol)]))
        await writer.drain()
        ws = WebSocketConnection(reader, writer, client=False, subprotocol=protocol)
        if protocol == TUNNEL_PROTOCOL:
            tunnel = SpdyConnection(TunnelReader(ws), TunnelWriter(ws), server=True)
            return lambda: self._serve_spdy(tunnel, registered, protocol)

        async def session() -> None:
            try:
                if isinstance(registered, PortForwardRequest):
                    await _portforward.serve_websocket(ws, self._runtime, registered, ports, protocol=protocol)
                else:
                    await _remotecommand.serve_websocket(ws, self._runtime, registered, protocol=protocol)
            finally:
                ws.abort()

        return session
