"""A bounded in-memory byte pipe: the buffer between a connection's read loop
and whoever consumes one of its streams (the runtime's stdin, a port-forward).

Feeding waits while the buffer is over its limit, so a fast client and a slow
consumer end up stalling the read loop, and with it the TCP window, instead of
growing memory without bound.
"""

from __future__ import annotations

import asyncio


class BoundedPipe:
    """Bytes in from one task, out to another, with end-of-stream."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("limit must be positive")
        self._limit = limit
        self._buffer = bytearray()
        self._eof = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()

    @property
    def at_eof(self) -> bool:
        """True once end-of-stream was fed and every byte was read."""
        return self._eof and not self._buffer

    def __len__(self) -> int:
        return len(self._buffer)

    async def feed(self, data: bytes) -> None:
        """Append data, first waiting while the buffer is full; dropped after end-of-stream."""
        while len(self._buffer) >= self._limit and not self._eof:
            self._writable.clear()
            await self._writable.wait()
        if self._eof or not data:
            return
        self._buffer += data
        self._readable.set()

    def feed_eof(self) -> None:
        """Mark end-of-stream: readers drain what is buffered, then get b""; feeders are released."""
        self._eof = True
        self._readable.set()
        self._writable.set()

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all buffered bytes when n < 0), waiting for some; b"" at end-of-stream."""
        if n == 0:
            return b""
        while not self._buffer and not self._eof:
            self._readable.clear()
            await self._readable.wait()
        if not self._buffer:
            return b""
        if n < 0 or n >= len(self._buffer):
            chunk = bytes(self._buffer)
            self._buffer.clear()
        else:
            chunk = bytes(self._buffer[:n])
            del self._buffer[:n]
        if len(self._buffer) < self._limit:
            self._writable.set()
        return chunk
