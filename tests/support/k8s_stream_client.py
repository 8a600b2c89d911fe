"""The client side of the Kubernetes streaming protocols, for tests.

It speaks what kubectl and the kubelet speak to a CRI streaming server:

* SPDY/3.1 with the remote-command protocols (v4.channel.k8s.io, v3, v2)
  and with portforward.k8s.io;
* WebSocket with v5.channel.k8s.io / v4.channel.k8s.io (and the base64
  variant) for exec and attach, and for port forward the channel protocols
  or the SPDY session tunnelled in WebSocket messages.

Typical use::

    async with spdy_exec(url, stdin=True) as session:
        await session.write_stdin(b"hello")
        await session.close_stdin()
        out = await session.read_all()
    assert session.exit_code == 0

Framing comes from hawser's codecs (``_spdy``, ``_websocket``), which have
their own byte-level tests; the session logic here is the client's own.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from hawser.cri.streaming._spdy import DEFAULT_WINDOW, Setting, SettingId, Settings
from hawser.cri.streaming._spdy_conn import SpdyConnection, SpdyStream
from hawser.cri.streaming._tunnel import TunnelReader, TunnelWriter
from hawser.cri.streaming._websocket import accept_key
from hawser.cri.streaming._ws_conn import WebSocketConnection

V2 = "v2.channel.k8s.io"
V3 = "v3.channel.k8s.io"
V4 = "v4.channel.k8s.io"
V4_BASE64 = "v4.base64.channel.k8s.io"
V5 = "v5.channel.k8s.io"
PORT_FORWARD = "portforward.k8s.io"
PORT_FORWARD_TUNNEL = "SPDY/3.1+portforward.k8s.io"

STDIN, STDOUT, STDERR, ERROR, RESIZE = range(5)
CLOSE_SIGNAL = 255

DEFAULT_TIMEOUT = 10.0


class UpgradeRefused(Exception):
    """The server answered the upgrade request with something other than 101."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        super().__init__(f"upgrade refused: HTTP {status}: {body.decode('utf-8', 'replace').strip()}")
        self.status = status
        self.headers = headers
        self.body = body


@dataclass(frozen=True)
class Upgraded:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    headers: dict[str, str]  # response headers, names lowercased (last value wins)


async def http_upgrade(url: str, headers: Iterable[tuple[str, str]], *, method: str = "GET",
                       query: dict[str, Any] | None = None, timeout: float = DEFAULT_TIMEOUT) -> Upgraded:
    """Send an upgrade request to ``url``; the connection after a 101, else UpgradeRefused."""
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    if query:
        target += ("&" if "?" in target else "?") + urlencode(query, doseq=True)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, parts.port), timeout)
    lines = [f"{method} {target} HTTP/1.1", f"Host: {parts.netloc}", *(f"{k}: {v}" for k, v in headers)]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    await writer.drain()
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        writer.close()
        raise UpgradeRefused(0, {}, b"connection closed during the handshake") from exc
    status_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    status = int(status_line.split(" ")[1])
    response_headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        response_headers[name.strip().lower()] = value.strip()
    if status != 101:
        body = b""
        length = int(response_headers.get("content-length", "0"))
        with suppress(asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            body = await asyncio.wait_for(reader.readexactly(length), timeout)
        writer.close()
        raise UpgradeRefused(status, response_headers, body)
    return Upgraded(reader, writer, response_headers)


def spdy_upgrade_headers(protocols: Sequence[str]) -> list[tuple[str, str]]:
    # Go's client sends one X-Stream-Protocol-Version line per protocol.
    return [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
            *(("X-Stream-Protocol-Version", protocol) for protocol in protocols)]


def websocket_upgrade_headers(protocols: Sequence[str], key: str) -> list[tuple[str, str]]:
    return [("Connection", "Upgrade"), ("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13"),
            ("Sec-WebSocket-Key", key), ("Sec-WebSocket-Protocol", ", ".join(protocols))]


async def connect_spdy(url: str, protocols: Sequence[str], *, method: str = "POST",
                       query: dict[str, Any] | None = None, flow_control: bool = True,
                       timeout: float = DEFAULT_TIMEOUT) -> tuple[SpdyConnection, str]:
    """Upgrade to SPDY; the started client connection and the negotiated protocol.

    ``flow_control=True`` is a by-the-spec SPDY/3.1 peer: it announces its
    window, holds to the server's from the start and credits what it reads.
    ``flow_control=False`` behaves like Kubernetes' Go client: no SETTINGS,
    no WINDOW_UPDATE, no window held to.
    """
    upgraded = await http_upgrade(url, spdy_upgrade_headers(protocols), method=method, query=query,
                                  timeout=timeout)
    conn = SpdyConnection(upgraded.reader, upgraded.writer, server=False,
                          flow_control=flow_control)
    conn.start()
    if flow_control:
        await conn.send_frame(Settings((Setting(SettingId.INITIAL_WINDOW_SIZE, DEFAULT_WINDOW),)))
    return conn, upgraded.headers.get("x-stream-protocol-version", "")


async def connect_websocket(url: str, protocols: Sequence[str], *, query: dict[str, Any] | None = None,
                            timeout: float = DEFAULT_TIMEOUT) -> WebSocketConnection:
    """Upgrade to WebSocket (checking the accept key); the client connection."""
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    upgraded = await http_upgrade(url, websocket_upgrade_headers(protocols, key), query=query, timeout=timeout)
    if upgraded.headers.get("sec-websocket-accept") != accept_key(key):
        upgraded.writer.close()
        raise UpgradeRefused(101, upgraded.headers, b"wrong Sec-WebSocket-Accept")
    return WebSocketConnection(upgraded.reader, upgraded.writer, client=True,
                               subprotocol=upgraded.headers.get("sec-websocket-protocol"))


class _Collector:
    """Accumulates one output stream; readers wait on it by position."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.done = False
        self._changed = asyncio.Event()
        self._cursor = 0

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        self._changed.set()

    def finish(self) -> None:
        self.done = True
        self._changed.set()

    async def wait_for(self, marker: bytes) -> bytes:
        """Everything since the last call up to and including ``marker``."""
        while True:
            index = self.data.find(marker, self._cursor)
            if index >= 0:
                end = index + len(marker)
                chunk, self._cursor = bytes(self.data[self._cursor:end]), end
                return chunk
            if self.done:
                raise EOFError(f"stream ended before {marker!r}; got {bytes(self.data[self._cursor:])!r}")
            self._changed.clear()
            await self._changed.wait()

    async def wait_done(self) -> bytes:
        while not self.done:
            self._changed.clear()
            await self._changed.wait()
        return bytes(self.data)


class RemoteCommandSession:
    """A running exec or attach, whatever the transport."""

    protocol: str

    def __init__(self) -> None:
        self._stdout = _Collector()
        self._stderr = _Collector()
        self._error = _Collector()
        self.status: dict[str, Any] | None = None

    @property
    def stdout(self) -> bytes:
        return bytes(self._stdout.data)

    @property
    def stderr(self) -> bytes:
        return bytes(self._stderr.data)

    @property
    def error_text(self) -> str:
        """The raw error-stream message."""
        return self._error.data.decode("utf-8", "replace")

    @property
    def exit_code(self) -> int | None:
        """0 on success, the command's code for NonZeroExitCode, None for any other failure or no status yet."""
        if self.status is None:
            return None
        if self.status.get("status") == "Success":
            return 0
        if self.status.get("reason") == "NonZeroExitCode":
            for cause in self.status.get("details", {}).get("causes", []):
                if cause.get("reason") == "ExitCode":
                    return int(cause["message"])
        return None

    async def write_stdin(self, data: bytes) -> None:
        raise NotImplementedError

    async def close_stdin(self) -> None:
        raise NotImplementedError

    async def resize(self, width: int, height: int) -> None:
        raise NotImplementedError

    async def read_until(self, marker: bytes, *, stream: str = "stdout", timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Output of ``stream`` since the last call, up to and including ``marker``."""
        collector = self._stderr if stream == "stderr" else self._stdout
        return await asyncio.wait_for(collector.wait_for(marker), timeout)

    async def read_all(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """Wait for the session to end; all of stdout (stderr and status are attributes)."""
        await asyncio.wait_for(self._finished(), timeout)
        return self.stdout

    async def wait(self, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any] | None:
        """Wait for the session to end; its status (None when the server sent none)."""
        await self.read_all(timeout)
        return self.status

    async def _finished(self) -> None:
        for collector in (self._stdout, self._stderr, self._error):
            await collector.wait_done()
        self._decode_status()

    def _decode_status(self) -> None:
        raw = bytes(self._error.data)
        if not raw:
            # v4/v5 clients read an empty error stream as success; v2/v3 servers send nothing on success.
            self.status = {"status": "Success"} if self._ended_cleanly() else None
        elif self.protocol in (V2, V3):
            self.status = {"status": "Failure", "message": raw.decode("utf-8", "replace")}
        else:
            self.status = json.loads(raw)

    def _ended_cleanly(self) -> bool:
        return True


class SpdyRemoteCommand(RemoteCommandSession):
    def __init__(self, conn: SpdyConnection, protocol: str) -> None:
        super().__init__()
        self.conn = conn
        self.protocol = protocol
        self.streams: dict[str, SpdyStream] = {}
        self._pumps: list[asyncio.Task[None]] = []

    async def open(self, *, stdin: bool, stdout: bool, stderr: bool, tty: bool, timeout: float) -> None:
        # The order kubectl uses: error first, then stdin, stdout, stderr, resize,
        # each waiting for the server's reply.
        kinds = ["error"]
        kinds += ["stdin"] if stdin else []
        kinds += ["stdout"] if stdout else []
        kinds += ["stderr"] if stderr and not tty else []
        kinds += ["resize"] if tty and self.protocol != V2 else []
        for kind in kinds:
            stream = await self.conn.open_stream((("streamtype", kind),))
            await asyncio.wait_for(stream.wait_reply(), timeout)
            self.streams[kind] = stream
        for kind, collector in (("stdout", self._stdout), ("stderr", self._stderr), ("error", self._error)):
            if kind in self.streams:
                self._pumps.append(asyncio.create_task(_pump(self.streams[kind], collector)))
            else:
                collector.finish()

    async def write_stdin(self, data: bytes) -> None:
        await self.streams["stdin"].write(data)

    async def close_stdin(self) -> None:
        await self.streams["stdin"].close()

    async def resize(self, width: int, height: int) -> None:
        # Go's json.Encoder: one object per line.
        await self.streams["resize"].write(json.dumps({"Width": width, "Height": height}).encode() + b"\n")

    async def aclose(self) -> None:
        for task in self._pumps:
            task.cancel()
        await self.conn.aclose()
        if self._pumps:
            await asyncio.wait(self._pumps)


async def _pump(stream: SpdyStream, collector: _Collector) -> None:
    try:
        while chunk := await stream.read():
            collector.add(chunk)
    finally:
        collector.finish()


class WebSocketRemoteCommand(RemoteCommandSession):
    def __init__(self, ws: WebSocketConnection) -> None:
        super().__init__()
        self.ws = ws
        self.protocol = ws.subprotocol or ""
        self._base64 = self.protocol == V4_BASE64
        self._reader: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._reader = asyncio.create_task(self._demux())

    async def _demux(self) -> None:
        try:
            while (message := await self.ws.receive()) is not None:
                if not message.payload:
                    continue
                if message.text:
                    channel = message.payload[0] - ord("0")
                    data = base64.b64decode(message.payload[1:])
                else:
                    channel, data = message.payload[0], message.payload[1:]
                target = {STDOUT: self._stdout, STDERR: self._stderr, ERROR: self._error}.get(channel)
                if target is not None and data:
                    target.add(data)
        finally:
            for collector in (self._stdout, self._stderr, self._error):
                collector.finish()

    async def send_channel(self, channel: int, data: bytes) -> None:
        if self._base64:
            await self.ws.send(str(channel).encode() + base64.b64encode(data), text=True)
        else:
            await self.ws.send(bytes([channel]) + data)

    async def write_stdin(self, data: bytes) -> None:
        await self.send_channel(STDIN, data)

    async def close_stdin(self) -> None:
        if self.protocol != V5:
            raise RuntimeError(f"{self.protocol} cannot half-close stdin (v5.channel.k8s.io can)")
        await self.ws.send(bytes([CLOSE_SIGNAL, STDIN]))

    async def resize(self, width: int, height: int) -> None:
        await self.send_channel(RESIZE, json.dumps({"Width": width, "Height": height}).encode())

    def _ended_cleanly(self) -> bool:
        return self.ws.close_code == 1000

    async def aclose(self) -> None:
        if self._reader is not None and not self._reader.done():
            await _close_handshake(self.ws, self._reader)
        self.ws.abort()


@asynccontextmanager
async def spdy_exec(url: str, *, stdin: bool = False, stdout: bool = True, stderr: bool = True, tty: bool = False,
                    protocols: Sequence[str] = (V4,), query: dict[str, Any] | None = None,
                    flow_control: bool = True, timeout: float = DEFAULT_TIMEOUT
                    ) -> AsyncIterator[SpdyRemoteCommand]:
    """An exec (or attach: same protocol) session over SPDY, streams opened as kubectl opens them."""
    conn, protocol = await connect_spdy(url, protocols, query=query, flow_control=flow_control, timeout=timeout)
    session = SpdyRemoteCommand(conn, protocol)
    try:
        await session.open(stdin=stdin, stdout=stdout, stderr=stderr, tty=tty, timeout=timeout)
        yield session
    finally:
        await session.aclose()


spdy_attach = spdy_exec


@asynccontextmanager
async def ws_exec(url: str, *, protocols: Sequence[str] = (V5,), query: dict[str, Any] | None = None,
                  timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[WebSocketRemoteCommand]:
    """An exec (or attach) session over WebSocket; the server's registered request picks the channels."""
    ws = await connect_websocket(url, protocols, query=query, timeout=timeout)
    session = WebSocketRemoteCommand(ws)
    session.start()
    try:
        yield session
    finally:
        await session.aclose()


ws_attach = ws_exec


class ForwardedConnection:
    """One connection through a SPDY port forward: a data stream and its error stream."""

    def __init__(self, data: SpdyStream, error: SpdyStream) -> None:
        self.data = data
        self.error = error

    async def write(self, payload: bytes) -> None:
        await self.data.write(payload)

    async def close_write(self) -> None:
        await self.data.close()

    async def read(self, n: int = -1) -> bytes:
        return await self.data.read(n)

    async def read_all(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        return await asyncio.wait_for(self.data.read_all(), timeout)

    async def error_message(self, timeout: float = DEFAULT_TIMEOUT) -> str:
        """What the server wrote on the error stream, once it closed it ("" if all went well)."""
        return (await asyncio.wait_for(self.error.read_all(), timeout)).decode("utf-8", "replace")


class SpdyPortForward:
    def __init__(self, conn: SpdyConnection, timeout: float) -> None:
        self.conn = conn
        self._timeout = timeout
        self._request_id = 0

    async def open(self, port: int, *, request_id: str | None = None) -> ForwardedConnection:
        """A new forwarded connection to ``port``: the error stream, then the data stream, as kubectl does."""
        if request_id is None:
            request_id = str(self._request_id)
            self._request_id += 1
        streams = []
        for kind in ("error", "data"):
            stream = await self.conn.open_stream((("streamtype", kind), ("port", str(port)),
                                                  ("requestid", request_id)))
            await asyncio.wait_for(stream.wait_reply(), self._timeout)
            streams.append(stream)
        error, data = streams
        await error.close()  # kubectl never writes on the error stream
        return ForwardedConnection(data, error)


@asynccontextmanager
async def spdy_port_forward(url: str, *, flow_control: bool = True,
                            timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[SpdyPortForward]:
    conn, _protocol = await connect_spdy(url, (PORT_FORWARD,), flow_control=flow_control, timeout=timeout)
    try:
        yield SpdyPortForward(conn, timeout)
    finally:
        await conn.aclose()


@asynccontextmanager
async def ws_tunnel_port_forward(url: str, *, timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[SpdyPortForward]:
    """The SPDY port-forward session tunnelled through a WebSocket, as kubectl 1.30+ tries first."""
    ws = await connect_websocket(url, (PORT_FORWARD_TUNNEL,), timeout=timeout)
    conn = SpdyConnection(TunnelReader(ws), TunnelWriter(ws), server=False, flow_control=False)
    conn.start()
    try:
        yield SpdyPortForward(conn, timeout)
    finally:
        await conn.aclose()


class WsPortForward:
    """A WebSocket port forward: per port a data channel (2i) and an error channel (2i+1)."""

    def __init__(self, ws: WebSocketConnection, ports: Sequence[int]) -> None:
        self.ws = ws
        self.ports = list(ports)
        self._base64 = "base64" in (ws.subprotocol or "")
        self._data = [_Collector() for _ in self.ports]
        self._errors = [_Collector() for _ in self.ports]
        self._prefixes: dict[int, bytes] = {}
        self._reader = asyncio.create_task(self._demux())

    async def _demux(self) -> None:
        try:
            while (message := await self.ws.receive()) is not None:
                if message.text:
                    channel = message.payload[0] - ord("0")
                    data = base64.b64decode(message.payload[1:])
                else:
                    channel, data = message.payload[0], message.payload[1:]
                if channel not in self._prefixes:
                    # The first message on every channel is its port number.
                    self._prefixes[channel] = data
                    continue
                index, is_error = divmod(channel, 2)
                (self._errors if is_error else self._data)[index].add(data)
        finally:
            for collector in (*self._data, *self._errors):
                collector.finish()

    def announced_port(self, channel: int) -> int | None:
        raw = self._prefixes.get(channel)
        return struct.unpack("<H", raw)[0] if raw is not None and len(raw) == 2 else None

    async def write(self, index: int, payload: bytes) -> None:
        channel = 2 * index
        if self._base64:
            await self.ws.send(str(channel).encode() + base64.b64encode(payload), text=True)
        else:
            await self.ws.send(bytes([channel]) + payload)

    async def read_until(self, index: int, marker: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        return await asyncio.wait_for(self._data[index].wait_for(marker), timeout)

    async def error_message(self, index: int, timeout: float = DEFAULT_TIMEOUT) -> str:
        return (await asyncio.wait_for(self._errors[index].wait_done(), timeout)).decode()

    async def aclose(self) -> None:
        await _close_handshake(self.ws, self._reader)
        self.ws.abort()


@asynccontextmanager
async def ws_port_forward(url: str, ports: Sequence[int], *, protocols: Sequence[str] = (V4,),
                          timeout: float = DEFAULT_TIMEOUT) -> AsyncIterator[WsPortForward]:
    """A WebSocket port forward to ``ports`` (also sent in the query, which the server uses when the CRI request named none)."""
    query = {"port": [str(port) for port in ports]}
    ws = await connect_websocket(url, protocols, query=query, timeout=timeout)
    forward = WsPortForward(ws, ports)
    try:
        yield forward
    finally:
        await forward.aclose()


async def _close_handshake(ws: Any, reader: asyncio.Task[Any]) -> None:
    """Start the WebSocket close, give the reader 2 s to see the peer's answer, then stop it."""
    with suppress(ConnectionError, OSError):
        await ws.start_close()
    with suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(reader), 2)
    reader.cancel()
    await asyncio.wait([reader])
