"""A byte stream carried in WebSocket binary messages, for SPDY tunnelled over WebSocket.

kubectl (1.30 and later) first tries port forwarding over WebSocket with the
subprotocol ``SPDY/3.1+portforward.k8s.io``: the very same SPDY session as
with the plain upgrade, its bytes cut into binary messages at whatever
boundaries the sender likes.  These adapters give ``SpdyConnection`` the
reader and writer it expects.
"""

from __future__ import annotations

import asyncio

from hawser.cri.streaming._ws_conn import WebSocketConnection

PROTOCOL = "SPDY/3.1+portforward.k8s.io"


class TunnelReader:
    """``readexactly`` over the payloads of received messages (pulled on demand: TCP is the backpressure)."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._buffer = bytearray()

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes; asyncio.IncompleteReadError once the WebSocket closed."""
        while len(self._buffer) < n:
            message = await self._ws.receive()
            if message is None:
                partial = bytes(self._buffer)
                self._buffer.clear()
                raise asyncio.IncompleteReadError(partial, n)
            self._buffer += message.payload
        chunk = bytes(self._buffer[:n])
        del self._buffer[:n]
        return chunk


class TunnelWriter:
    """Buffers ``write``s and sends them as one binary message per ``drain``."""

    def __init__(self, ws: WebSocketConnection) -> None:
        self._ws = ws
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        self._pending.append(data)

    async def drain(self) -> None:
        """Send what was written; ConnectionResetError once the WebSocket is closing."""
        if not self._pending:
            return
        payload = b"".join(self._pending)
        self._pending.clear()
        await self._ws.send(payload)

    def is_closing(self) -> bool:
        return self._ws.is_closing()

    def can_write_eof(self) -> bool:
        # A WebSocket has no half-close.
        return False

    def write_eof(self) -> None:
        raise RuntimeError("a WebSocket tunnel cannot half-close")

    def close(self) -> None:
        self._ws.abort()
