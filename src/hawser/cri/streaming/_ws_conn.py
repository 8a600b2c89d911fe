"""A WebSocket connection over an asyncio stream pair: messages, ping/pong, the close handshake.

Used by the streaming server (``client=False``) and by the test client.  One
task calls ``receive()`` in a loop; any task may send.
"""

from __future__ import annotations

import asyncio
import logging
import os
from contextlib import suppress

from hawser.cri.streaming._websocket import (
    CloseCode,
    MessageAssembler,
    Opcode,
    WebSocketProtocolError,
    WsFrame,
    WsMessage,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
    read_frame,
)

log = logging.getLogger(__name__)


class WebSocketConnection:
    """Message-level WebSocket on an already-upgraded connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, client: bool,
                 subprotocol: str | None = None, max_message: int = 16 * 1024 * 1024) -> None:
        self._reader = reader
        self._writer = writer
        self._client = client
        self.subprotocol = subprotocol
        self._max_message = max_message
        self._assembler = MessageAssembler(max_message)
        self._write_lock = asyncio.Lock()
        self._close_sent = False
        self._peer_closed = asyncio.Event()
        # What the peer's close frame said; None until it arrives (or 1006 if it never will).
        self.close_code: int | None = None
        self.close_reason = ""
        self.protocol_error: str | None = None
        self.pongs = 0

    def is_closing(self) -> bool:
        """We started the close handshake or the transport is gone: nothing more can be sent."""
        return self._close_sent or self._writer.is_closing()

    @property
    def closed(self) -> bool:
        """The peer closed (close frame, hang-up or protocol error): receive() returns None from now on."""
        return self._peer_closed.is_set()

    async def receive(self) -> WsMessage | None:
        """The next data message; None once the connection is closing or gone.

        Pings are answered, fragments joined, the peer's close echoed.  A
        protocol error closes the connection with the matching code.
        """
        while not self._peer_closed.is_set():
            try:
                frame = await read_frame(self._reader, expect_masked=not self._client,
                                         max_payload=self._max_message)
                if frame.opcode == Opcode.PING:
                    await self._send_quietly(WsFrame(Opcode.PONG, frame.payload))
                elif frame.opcode == Opcode.PONG:
                    self.pongs += 1
                elif frame.opcode == Opcode.CLOSE:
                    code, reason = parse_close_payload(frame.payload)
                    self.close_code, self.close_reason = code, reason
                    self._peer_closed.set()
                    # Section 5.5.1: answer a close with a close, echoing its code.
                    await self._send_close(None if code == CloseCode.NO_STATUS else code, "")
                else:
                    message = self._assembler.feed(frame)
                    if message is not None:
                        return message
            except WebSocketProtocolError as exc:
                self.protocol_error = str(exc)
                log.info("WebSocket peer broke the protocol: %s", exc)
                self.close_code = CloseCode.ABNORMAL
                self._peer_closed.set()
                await self._send_close(exc.code, str(exc)[:100])
            except (asyncio.IncompleteReadError, ConnectionError, OSError):
                self.close_code = CloseCode.ABNORMAL
                self._peer_closed.set()
        return None

    async def send(self, payload: bytes, *, text: bool = False, fragment_size: int | None = None) -> None:
        """Send one data message, in fragments of ``fragment_size`` if given.

        ConnectionResetError once the close handshake started or the transport is gone.
        """
        opcode = Opcode.TEXT if text else Opcode.BINARY
        frames: list[WsFrame] = []
        if fragment_size is None or len(payload) <= fragment_size:
            frames.append(WsFrame(opcode, payload))
        else:
            pieces = [payload[i:i + fragment_size] for i in range(0, len(payload), fragment_size)]
            for index, piece in enumerate(pieces):
                frames.append(WsFrame(opcode if index == 0 else Opcode.CONTINUATION, piece,
                                      fin=index == len(pieces) - 1))
        async with self._write_lock:
            if self._close_sent:
                raise ConnectionResetError("WebSocket is closing")
            for frame in frames:
                await self._write(frame)

    async def ping(self, payload: bytes = b"") -> None:
        """Send a ping (the answer only bumps ``pongs``)."""
        async with self._write_lock:
            if self._close_sent:
                raise ConnectionResetError("WebSocket is closing")
            await self._write(WsFrame(Opcode.PING, payload))

    async def send_raw(self, data: bytes) -> None:
        """Write raw bytes (tests use it to send malformed frames)."""
        async with self._write_lock:
            self._writer.write(data)
            await self._writer.drain()

    async def close(self, code: int = CloseCode.NORMAL, reason: str = "", *, timeout: float = 2.0) -> None:
        """Close handshake: send close, wait (bounded) for the peer's, then drop TCP.

        Someone must keep calling ``receive()`` meanwhile: that is where the
        peer's close frame is read.
        """
        await self._send_close(code, reason)
        with suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._peer_closed.wait()
        self.abort()

    async def start_close(self, code: int = CloseCode.NORMAL, reason: str = "") -> None:
        """Send the close frame without waiting for the answer (the receive loop will see it)."""
        await self._send_close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection without a handshake."""
        self._writer.close()
        if not self._peer_closed.is_set():
            self.close_code = CloseCode.ABNORMAL
            self._peer_closed.set()

    async def _send_close(self, code: int | None, reason: str) -> None:
        async with self._write_lock:
            if self._close_sent:
                return
            self._close_sent = True
            with suppress(ConnectionError, OSError, RuntimeError):
                await self._write(WsFrame(Opcode.CLOSE, encode_close_payload(code, reason)))

    async def _send_quietly(self, frame: WsFrame) -> None:
        async with self._write_lock:
            if self._close_sent:
                return
            with suppress(ConnectionError, OSError, RuntimeError):
                await self._write(frame)

    async def _write(self, frame: WsFrame) -> None:
        if self._writer.is_closing():
            raise ConnectionResetError("WebSocket transport is closed")
        mask = os.urandom(4) if self._client else None
        self._writer.write(encode_frame(frame, mask_key=mask))
        await self._writer.drain()
