"""A SPDY/3.1 connection over an asyncio stream pair: streams, windows, the read loop.

Used by the streaming server (``server=True``) and by the test client.  Every
peer-opened stream is handed out by ``accept()``; the owner replies to it,
reads and writes it, half-closes it.

Flow control, and why it is lenient: Kubernetes' SPDY library (spdystream)
never sends WINDOW_UPDATE and ignores ours.  Holding to the initial 64 KiB send
window would stall every kubectl exec after 64 KiB of output, so windows are
enforced only once the peer shows it does flow control (it sent a
WINDOW_UPDATE or an INITIAL_WINDOW_SIZE setting).  From then on we hold to its
windows and it must hold to ours (else RST_STREAM FLOW_CONTROL_ERROR).  We
advertise the default 64 KiB per stream and credit it back as the consumer
reads.  A peer without flow control that outruns a consumer fills the bounded
stream buffer, which stalls the read loop and so TCP: memory stays bounded
either way.  The price: while stalled, the read loop cannot see that such a
peer hung up; the session notices at its next write, or when its consumer
finishes.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from typing import Protocol

from hawser.cri.streaming._pipe import BoundedPipe
from hawser.cri.streaming._spdy import (
    DEFAULT_WINDOW,
    FLAG_FIN,
    FLAG_UNIDIRECTIONAL,
    MAX_WINDOW,
    DataFrame,
    Frame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    GoAwayStatus,
    Headers,
    HeadersFrame,
    Ping,
    RstStatus,
    RstStream,
    SettingId,
    Settings,
    SpdyProtocolError,
    SynReply,
    SynStream,
    UnknownControl,
    WindowUpdate,
    header_value,
    parse_head,
)

log = logging.getLogger(__name__)

# Outgoing DATA frames are cut to this size so that one busy stream cannot
# hold the write lock (and the other streams) for long.
_MAX_CHUNK = 32 * 1024
# Incoming DATA payloads are read and buffered in pieces of this size, so a
# 16 MiB frame (Go's client sends one per Write call) never sits in memory whole.
_READ_PIECE = 64 * 1024


class ByteReader(Protocol):
    """The read half of a connection (asyncio.StreamReader, or a tunnel in WebSocket messages)."""

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; asyncio.IncompleteReadError at end-of-stream."""
        ...


class ByteWriter(Protocol):
    """The write half of a connection (asyncio.StreamWriter, or a tunnel in WebSocket messages)."""

    def write(self, data: bytes) -> None: ...

    async def drain(self) -> None: ...

    def is_closing(self) -> bool: ...

    def can_write_eof(self) -> bool: ...

    def write_eof(self) -> None: ...

    def close(self) -> None: ...


class SpdyStream:
    """One SPDY stream: a byte stream each way, half-closable, resettable."""

    def __init__(self, conn: SpdyConnection, stream_id: int, headers: Headers, *, send_window: int,
                 buffer_limit: int) -> None:
        self._conn = conn
        self.stream_id = stream_id
        self.headers = headers
        self._inbound = BoundedPipe(buffer_limit)
        self._send_window = send_window
        # What the peer may still send us: our advertised window minus data received plus credits sent.
        self._recv_window = DEFAULT_WINDOW
        self._unacked = 0
        self._discard = False
        self._remote_closed = False
        self._local_closed = False
        self._reset = False
        self._replied = asyncio.Event()
        self._write_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<SpdyStream {self.stream_id} {dict(self.headers)!r}>"

    def header(self, name: str) -> str | None:
        """The value of request header ``name`` (case-insensitive), or None."""
        return header_value(self.headers, name.lower())

    @property
    def remote_closed(self) -> bool:
        """The peer sent FIN (or reset the stream): nothing more will arrive."""
        return self._remote_closed

    @property
    def local_closed(self) -> bool:
        """We sent FIN (or the stream was reset): nothing more can be written."""
        return self._local_closed

    @property
    def is_reset(self) -> bool:
        return self._reset

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (any amount when n < 0); b"" once the peer half-closed or reset the stream."""
        data = await self._inbound.read(n)
        if data:
            await self._conn._credit(self, len(data))
        return data

    async def read_all(self, limit: int = 16 * 1024 * 1024) -> bytes:
        """Everything until the peer half-closes, at most ``limit`` bytes."""
        chunks = bytearray()
        while chunk := await self.read():
            chunks += chunk
            if len(chunks) > limit:
                raise ValueError(f"stream {self.stream_id} carried more than {limit} bytes")
        return bytes(chunks)

    async def write(self, data: bytes) -> None:
        """Send ``data`` in DATA frames, waiting on the send window and TCP.

        Bytes written after the stream was half-closed or reset, or after the
        connection went away, are dropped: the session's owner notices the
        loss through the connection and cancels whoever writes.
        """
        view = memoryview(data)
        async with self._write_lock:
            while view:
                size = await self._conn._reserve(self, len(view))
                if size == 0:
                    return
                try:
                    await self._conn._send(DataFrame(self.stream_id, bytes(view[:size])))
                except ConnectionError:
                    return
                view = view[size:]

    async def close(self) -> None:
        """Half-close: send FIN. Idempotent."""
        async with self._write_lock:
            if self._local_closed:
                return
            self._local_closed = True
            await self._conn._send_quietly(DataFrame(self.stream_id, b"", FLAG_FIN))
            self._conn._forget_if_done(self)

    async def reset(self, status: int = RstStatus.CANCEL) -> None:
        """Abort the stream both ways with RST_STREAM ``status``. Idempotent."""
        if self._reset:
            return
        self._on_reset()
        await self._conn._send_quietly(RstStream(self.stream_id, status))

    def discard_inbound(self) -> None:
        """Drop whatever the peer sends from now on (a stream we only write, or one we are done with).

        Bytes already buffered stay readable; a read loop waiting for room in
        this stream's buffer is released.
        """
        self._discard = True
        self._inbound.feed_eof()

    async def wait_reply(self) -> None:
        """Wait for the peer's SYN_REPLY to a stream we opened; ConnectionResetError if it reset it."""
        await self._replied.wait()
        if self._reset:
            raise ConnectionResetError(f"stream {self.stream_id} was reset by the peer")

    # Called by the connection.

    def _on_remote_fin(self) -> None:
        self._remote_closed = True
        self._inbound.feed_eof()
        self._conn._forget_if_done(self)

    def _on_reset(self) -> None:
        self._reset = True
        self._remote_closed = True
        self._local_closed = True
        self._inbound.feed_eof()
        self._replied.set()
        self._conn._forget_if_done(self)
        self._conn._window_changed()


class SpdyConnection:
    """Both ends of a SPDY session share this class; ``server`` picks stream-id parity."""

    def __init__(self, reader: ByteReader, writer: ByteWriter, *, server: bool,
                 max_control_frame: int = 1024 * 1024, max_streams: int = 1024,
                 stream_buffer: int = DEFAULT_WINDOW, flow_control: bool | None = None) -> None:
        self._reader = reader
        self._writer = writer
        self._server = server
        self._max_control_frame = max_control_frame
        self._max_streams = max_streams
        self._stream_buffer = stream_buffer
        # None: flow control once the peer shows it does it (what a server
        # must do, see above); True: from the start, by the spec; False: never,
        # like Go's spdystream (tests play a kubectl with it).
        self._flow_mode = flow_control
        self._encoder = FrameEncoder()
        self._decoder = FrameDecoder()
        self._write_lock = asyncio.Lock()
        self._eof_sent = False
        self._streams: dict[int, SpdyStream] = {}
        self._next_stream_id = 2 if server else 1
        self._last_peer_stream_id = 0
        self._incoming: asyncio.Queue[SpdyStream | None] = asyncio.Queue()
        # True while windows count: we hold to the peer's, it must hold to ours.
        self._flow_enforced = flow_control is True
        self._initial_send_window = DEFAULT_WINDOW
        self._session_send_window = DEFAULT_WINDOW
        self._session_unacked = 0
        self._window_event = asyncio.Event()
        self._next_ping_id = 2 if server else 1
        self._pings: dict[int, asyncio.Future[None]] = {}
        self._goaway_sent = False
        self.goaway_received = False
        self.protocol_error: str | None = None
        self._closed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # Lifecycle.

    def start(self) -> None:
        """Start the read loop; it runs until the peer or ``aclose`` ends the connection."""
        if self._task is None:
            self._task = asyncio.create_task(self._serve(), name=f"spdy-{'server' if self._server else 'client'}")

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    async def wait_closed(self) -> None:
        """Wait until the read loop ended (peer gone, protocol error, or ``aclose``)."""
        await self._closed.wait()

    async def shutdown(self, *, linger: float = 2.0) -> None:
        """End gracefully: GOAWAY, half-close TCP, let the peer read and hang up, then close.

        Waiting for the peer's hang-up before closing matters: closing a socket
        with unread input makes the kernel send RST, which can destroy output
        the peer has not read yet.
        """
        try:
            await self.goaway()
            async with self._write_lock:
                if not self._eof_sent and not self._writer.is_closing():
                    self._eof_sent = True
                    with suppress(OSError, RuntimeError):
                        if self._writer.can_write_eof():
                            self._writer.write_eof()
            # Whatever the peer still sends is read and dropped meanwhile.
            for stream in list(self._streams.values()):
                stream.discard_inbound()
            with suppress(TimeoutError):
                async with asyncio.timeout(linger):
                    await self._closed.wait()
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Close the transport at once and wait for the read loop to end."""
        self._writer.close()
        task = self._task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.wait([task])
        self._teardown()

    async def goaway(self, status: int = GoAwayStatus.OK) -> None:
        """Tell the peer no new streams will be accepted (sent once)."""
        if self._goaway_sent:
            return
        self._goaway_sent = True
        await self._send_quietly(GoAway(self._last_peer_stream_id, status))

    # Streams.

    async def accept(self) -> SpdyStream | None:
        """The next stream the peer opened, or None once the connection ended."""
        if self._closed.is_set() and self._incoming.empty():
            return None
        stream = await self._incoming.get()
        if stream is None:
            self._incoming.put_nowait(None)  # let later callers see the end too
        return stream

    async def reply(self, stream: SpdyStream, headers: Headers = (), *, fin: bool = False) -> None:
        """Answer a peer-opened stream with SYN_REPLY (the peer waits for it before using the stream)."""
        if fin:
            stream._local_closed = True
        await self._send(SynReply(stream.stream_id, headers, FLAG_FIN if fin else 0))
        if fin:
            self._forget_if_done(stream)

    async def open_stream(self, headers: Headers, *, fin: bool = False) -> SpdyStream:
        """Open a stream with SYN_STREAM; ``wait_reply()`` on it waits for the peer's answer."""
        async with self._write_lock:
            self._check_writable()
            stream_id = self._next_stream_id
            self._next_stream_id += 2
            stream = SpdyStream(self, stream_id, headers, send_window=self._initial_send_window,
                                buffer_limit=self._stream_buffer)
            if fin:
                stream._local_closed = True
            self._streams[stream_id] = stream
            # Ids must hit the wire in increasing order: allocate and send under one lock.
            self._writer.write(self._encoder.encode(SynStream(stream_id, headers, FLAG_FIN if fin else 0)))
            await self._writer.drain()
        return stream

    async def ping(self, timeout: float = 10.0) -> None:
        """Send PING and wait for its echo."""
        ping_id = self._next_ping_id
        self._next_ping_id += 2
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pings[ping_id] = waiter
        try:
            await self._send(Ping(ping_id))
            async with asyncio.timeout(timeout):
                await waiter
        finally:
            self._pings.pop(ping_id, None)

    async def send_frame(self, frame: Frame) -> None:
        """Send one raw frame (tests use it to misbehave on purpose)."""
        await self._send(frame)

    # Internals shared with SpdyStream.

    def _check_writable(self) -> None:
        if self._eof_sent or self._writer.is_closing():
            if not self._eof_sent:
                self._teardown()  # the transport died under us (see _send)
            raise ConnectionResetError("SPDY connection is closed")

    async def _send(self, frame: Frame) -> None:
        async with self._write_lock:
            self._check_writable()
            try:
                # Encoding under the lock keeps the header compressor's state in
                # the same order as the bytes on the wire.
                self._writer.write(self._encoder.encode(frame))
                await self._writer.drain()
            except (ConnectionError, OSError):
                # The peer is gone.  Say so now: the read loop may be stalled
                # behind a full stream buffer and unable to notice.
                self._teardown()
                raise

    async def _send_quietly(self, frame: Frame) -> None:
        with suppress(ConnectionError, OSError, RuntimeError):
            await self._send(frame)

    def _window_changed(self) -> None:
        event, self._window_event = self._window_event, asyncio.Event()
        event.set()

    async def _reserve(self, stream: SpdyStream, wanted: int) -> int:
        """How many bytes ``stream`` may send now (waiting for window); 0 if it can send no more."""
        while True:
            if stream._local_closed or self._closed.is_set() or self._eof_sent:
                return 0
            size = min(wanted, _MAX_CHUNK)
            if self._flow_enforced:
                size = min(size, stream._send_window, self._session_send_window)
            if size > 0:
                # Windows are counted even while not enforced, so they are
                # right if the peer turns out to do flow control after all.
                stream._send_window -= size
                self._session_send_window -= size
                return size
            await self._window_event.wait()

    async def _credit(self, stream: SpdyStream | None, size: int) -> None:
        """Give consumed bytes back to the peer's send windows, in batches of half a window."""
        if self._flow_mode is False:
            return
        updates: list[WindowUpdate] = []
        if stream is not None and not stream._remote_closed:
            stream._unacked += size
            if stream._unacked >= DEFAULT_WINDOW // 2:
                updates.append(WindowUpdate(stream.stream_id, stream._unacked))
                stream._recv_window += stream._unacked
                stream._unacked = 0
        self._session_unacked += size
        if self._session_unacked >= DEFAULT_WINDOW // 2:
            updates.append(WindowUpdate(0, self._session_unacked))
            self._session_unacked = 0
        for update in updates:
            await self._send_quietly(update)

    def _forget_if_done(self, stream: SpdyStream) -> None:
        if stream._local_closed and stream._remote_closed:
            self._streams.pop(stream.stream_id, None)

    # The read loop.

    async def _serve(self) -> None:
        try:
            while await self._read_one():
                pass
        except SpdyProtocolError as exc:
            self.protocol_error = str(exc)
            log.info("SPDY peer broke the protocol: %s", exc)
            await self.goaway(GoAwayStatus.PROTOCOL_ERROR)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            pass  # the peer went away mid-frame: same as a hang-up
        finally:
            self._teardown()
            self._writer.close()

    def _teardown(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for stream in list(self._streams.values()):
            stream._remote_closed = stream._local_closed = True
            stream._inbound.feed_eof()
            stream._replied.set()
        self._streams.clear()
        self._incoming.put_nowait(None)
        for waiter in self._pings.values():
            if not waiter.done():
                waiter.set_exception(ConnectionResetError("SPDY connection closed"))
        self._window_changed()

    async def _read_one(self) -> bool:
        try:
            raw_head = await self._reader.readexactly(8)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise
            return False
        head = parse_head(raw_head)
        if not head.control:
            await self._on_data(head.stream_id, head.flags, head.length)
            return True
        if head.length > self._max_control_frame:
            raise SpdyProtocolError(f"control frame of {head.length} bytes exceeds {self._max_control_frame}")
        payload = await self._reader.readexactly(head.length)
        try:
            frame = self._decoder.decode(head, payload)
        except SpdyProtocolError as exc:
            if not exc.stream_id:
                raise
            await self._send_quietly(RstStream(exc.stream_id, exc.status))
            return True
        await self._dispatch(frame)
        return True

    async def _on_data(self, stream_id: int, flags: int, length: int) -> None:
        if stream_id == 0:
            raise SpdyProtocolError("data frame on stream 0")
        stream = self._streams.get(stream_id)
        if stream is None or stream._remote_closed:
            await self._skip(length)
            await self._credit(None, length)
            if stream is None:
                await self._send_quietly(RstStream(stream_id, RstStatus.INVALID_STREAM))
            elif not stream._reset:
                await self._send_quietly(RstStream(stream_id, RstStatus.STREAM_ALREADY_CLOSED))
            return
        stream._recv_window -= length
        if self._flow_enforced and stream._recv_window < 0:
            # A peer that does flow control broke our window.  Blocking the
            # read loop on it could deadlock the session (our own writes wait
            # for WINDOW_UPDATEs queued behind this data), so reset instead.
            await self._skip(length)
            await self._credit(None, length)
            stream._on_reset()
            await self._send_quietly(RstStream(stream_id, RstStatus.FLOW_CONTROL_ERROR))
            return
        remaining = length
        while remaining:
            piece = await self._reader.readexactly(min(remaining, _READ_PIECE))
            remaining -= len(piece)
            if stream._discard or stream._reset:
                await self._credit(stream, len(piece))
            else:
                await stream._inbound.feed(piece)
        if flags & FLAG_FIN:
            stream._on_remote_fin()

    async def _skip(self, length: int) -> None:
        while length:
            piece = await self._reader.readexactly(min(length, _READ_PIECE))
            length -= len(piece)

    async def _dispatch(self, frame: Frame) -> None:
        match frame:
            case SynStream():
                await self._on_syn_stream(frame)
            case SynReply(stream_id=stream_id, flags=flags) | HeadersFrame(stream_id=stream_id, flags=flags):
                stream = self._streams.get(stream_id)
                if stream is not None:
                    stream._replied.set()
                    if flags & FLAG_FIN:
                        stream._on_remote_fin()
            case RstStream(stream_id=stream_id):
                stream = self._streams.get(stream_id)
                if stream is not None:
                    stream._on_reset()
            case Settings(entries=entries):
                for entry in entries:
                    if entry.id == SettingId.INITIAL_WINDOW_SIZE:
                        if entry.value > MAX_WINDOW:
                            raise SpdyProtocolError(f"initial window {entry.value} too large")
                        delta = entry.value - self._initial_send_window
                        self._initial_send_window = entry.value
                        for stream in self._streams.values():
                            stream._send_window += delta
                        self._flow_enforced = self._flow_mode is not False
                        self._window_changed()
            case Ping(ping_id=ping_id):
                if ping_id % 2 == self._next_ping_id % 2:
                    waiter = self._pings.get(ping_id)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                else:
                    await self._send_quietly(frame)
            case GoAway():
                self.goaway_received = True
            case WindowUpdate(stream_id=stream_id, delta=delta):
                self._on_window_update(stream_id, delta)
            case UnknownControl():
                pass  # the spec: ignore control frames of unknown type
            case DataFrame():  # pragma: no cover - data frames are streamed by _on_data
                raise AssertionError("data frame reached dispatch")

    async def _on_syn_stream(self, frame: SynStream) -> None:
        stream_id = frame.stream_id
        peer_parity = 1 if self._server else 0
        if stream_id % 2 != peer_parity or stream_id <= self._last_peer_stream_id:
            raise SpdyProtocolError(f"SYN_STREAM id {stream_id} is not a new peer stream id")
        self._last_peer_stream_id = stream_id
        if self._goaway_sent or len(self._streams) >= self._max_streams:
            await self._send_quietly(RstStream(stream_id, RstStatus.REFUSED_STREAM))
            return
        stream = SpdyStream(self, stream_id, frame.headers, send_window=self._initial_send_window,
                            buffer_limit=self._stream_buffer)
        self._streams[stream_id] = stream
        if frame.flags & FLAG_UNIDIRECTIONAL:
            stream._local_closed = True
        if frame.flags & FLAG_FIN:
            stream._on_remote_fin()
        self._incoming.put_nowait(stream)

    def _on_window_update(self, stream_id: int, delta: int) -> None:
        self._flow_enforced = self._flow_mode is not False
        if stream_id == 0:
            self._session_send_window = min(self._session_send_window + delta, MAX_WINDOW)
        else:
            stream = self._streams.get(stream_id)
            if stream is None:
                return
            # A window past 2^31-1 is the peer's bug; clamping keeps us going.
            stream._send_window = min(stream._send_window + delta, MAX_WINDOW)
        self._window_changed()
