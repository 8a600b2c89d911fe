"""Kubernetes' channel framing over one WebSocket (the *.channel.k8s.io subprotocols).

Every message starts with its channel number.  Binary subprotocols carry the
number as one byte and the data raw; the base64 ones (``v4.base64...``) send
text messages: the number as an ASCII digit, then the data in base64.
``v5.channel.k8s.io`` adds one signal: a message on channel 255 whose single
data byte names a channel the sender will not write again (kubectl uses it to
half-close stdin).
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Iterable

from hawser.cri.streaming._pipe import BoundedPipe
from hawser.cri.streaming._websocket import CloseCode, WsMessage
from hawser.cri.streaming._ws_conn import WebSocketConnection

log = logging.getLogger(__name__)

CLOSE_SIGNAL = 255
_MAX_CHUNK = 32 * 1024


def encode_channel_message(channel: int, data: bytes, *, base64_text: bool) -> tuple[bytes, bool]:
    """Payload and text flag of a message carrying ``data`` on ``channel``."""
    if base64_text:
        return chr(ord("0") + channel).encode("ascii") + base64.b64encode(data), True
    return bytes([channel]) + data, False


def decode_channel_message(message: WsMessage) -> tuple[int, bytes] | None:
    """Channel and data of a received message; None for an empty message (nothing to deliver).

    ValueError when a base64 message does not decode.
    """
    if not message.payload:
        return None
    if message.text:
        channel = message.payload[0] - ord("0")
        try:
            return channel, base64.b64decode(message.payload[1:], validate=True)
        except binascii.Error as exc:
            raise ValueError(f"channel {channel} message is not base64") from exc
    return message.payload[0], message.payload[1:]


class ChannelReader:
    """The bytes a client sends on one channel (implements AsyncReader)."""

    def __init__(self, pipe: BoundedPipe) -> None:
        self._pipe = pipe

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes; b"" once the client closed the channel or the connection."""
        return await self._pipe.read(n)


class ChannelWriter:
    """The bytes sent to the client on one channel (implements AsyncWriter)."""

    def __init__(self, mux: WsChannels, channel: int) -> None:
        self._mux = mux
        self._channel = channel
        self._closed = False

    async def write(self, data: bytes) -> None:
        """Send ``data`` as one or more messages; dropped once closed or the connection is gone."""
        if self._closed:
            return
        for start in range(0, len(data), _MAX_CHUNK):
            if not await self._mux.send(self._channel, data[start:start + _MAX_CHUNK]):
                return

    async def close(self) -> None:
        """Stop writing this channel.

        Nothing goes on the wire: v4 has no way to say it, and the session's
        end (status, then the close handshake) tells the client anyway.
        """
        self._closed = True


class ChannelDuplex:
    """One channel both ways: a port-forward connection (implements DuplexStream)."""

    def __init__(self, reader: ChannelReader, writer: ChannelWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, n: int = -1) -> bytes:
        """Bytes from the client; b"" once the connection is gone."""
        return await self._reader.read(n)

    async def write(self, data: bytes) -> None:
        """Bytes to the client."""
        await self._writer.write(data)

    async def close(self) -> None:
        """Stop writing to the client."""
        await self._writer.close()


class WsChannels:
    """Demultiplexes one WebSocket into per-channel readers and writers."""

    def __init__(self, ws: WebSocketConnection, *, base64_text: bool, close_signal: bool,
                 readable: Iterable[int], buffer_limit: int = 64 * 1024) -> None:
        self._ws = ws
        self._base64 = base64_text
        self._close_signal = close_signal
        self._pipes = {channel: BoundedPipe(buffer_limit) for channel in readable}

    def reader(self, channel: int) -> ChannelReader:
        return ChannelReader(self._pipes[channel])

    def writer(self, channel: int) -> ChannelWriter:
        return ChannelWriter(self, channel)

    async def send(self, channel: int, data: bytes) -> bool:
        """Send one message on ``channel``; False if the connection can take no more."""
        payload, text = encode_channel_message(channel, data, base64_text=self._base64)
        try:
            await self._ws.send(payload, text=text)
        except (ConnectionError, OSError, RuntimeError):
            # The client is gone or closing.  Say so now: the demux loop may be
            # stalled behind a full channel buffer and unable to notice.
            self.stop_reading()
            self._ws.abort()
            return False
        return True

    def stop_reading(self) -> None:
        """End every inbound channel; later client data is dropped (the session is over)."""
        for pipe in self._pipes.values():
            pipe.feed_eof()

    async def run(self) -> None:
        """Deliver client messages until the WebSocket closes; then every reader sees end-of-stream."""
        try:
            while (message := await self._ws.receive()) is not None:
                try:
                    decoded = decode_channel_message(message)
                except ValueError as exc:
                    log.info("WebSocket channel client sent garbage: %s", exc)
                    # Keep reading: the peer's answering close frame arrives here.
                    await self._ws.start_close(CloseCode.INVALID_DATA, "bad channel message")
                    self.stop_reading()
                    continue
                if decoded is None:
                    continue
                channel, data = decoded
                if channel == CLOSE_SIGNAL and self._close_signal:
                    target = self._pipes.get(data[0]) if data else None
                    if target is not None:
                        target.feed_eof()
                    continue
                pipe = self._pipes.get(channel)
                if pipe is not None and data:
                    await pipe.feed(data)
                # Data on channels the client may not write (stdout, ...) is ignored, as the kubelet does.
        finally:
            self.stop_reading()
