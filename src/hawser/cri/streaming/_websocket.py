"""WebSocket framing (RFC 6455): the opening handshake's accept key, frames,
masking, and reassembly of fragmented messages.

Only the wire format lives here; the connection (ping/pong, the close
handshake) is in ``_ws_conn``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from enum import IntEnum

from hawser._dataclass import dataclass

# RFC 6455 section 1.3: the GUID the server appends to the client's key.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Opcode(IntEnum):
    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


_OPCODES = frozenset(int(opcode) for opcode in Opcode)


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005  # never sent: "the close frame had no code"
    ABNORMAL = 1006  # never sent: "the connection dropped without a close frame"
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011


class WebSocketProtocolError(Exception):
    """The peer broke RFC 6455; ``code`` is the close code to answer with."""

    def __init__(self, message: str, code: int = CloseCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.code = code


def accept_key(key: str) -> str:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key."""
    digest = hashlib.sha1(key.strip().encode("ascii") + _ACCEPT_GUID, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def valid_client_key(key: str) -> bool:
    """A Sec-WebSocket-Key must be base64 of 16 bytes."""
    try:
        return len(base64.b64decode(key.strip(), validate=True)) == 16
    except ValueError:
        return False


def apply_mask(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the 4-byte masking ``key`` (masking and unmasking are the same)."""
    if not data:
        return b""
    # One big-integer XOR is far faster in CPython than a byte loop.
    size = len(data)
    repeated = (key * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "big") ^ int.from_bytes(repeated, "big")).to_bytes(size, "big")


@dataclass(frozen=True, slots=True)
class WsFrame:
    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0  # the three RSV bits; nonzero only with a negotiated extension (none here)


def encode_frame(frame: WsFrame, *, mask_key: bytes | None = None) -> bytes:
    """Frame to bytes; clients pass a fresh random ``mask_key``, servers pass none."""
    first = (0x80 if frame.fin else 0) | ((frame.rsv & 0x7) << 4) | (frame.opcode & 0xF)
    size = len(frame.payload)
    mask_bit = 0x80 if mask_key is not None else 0
    if size < 126:
        head = struct.pack(">BB", first, mask_bit | size)
    elif size < 1 << 16:
        head = struct.pack(">BBH", first, mask_bit | 126, size)
    else:
        head = struct.pack(">BBQ", first, mask_bit | 127, size)
    if mask_key is None:
        return head + frame.payload
    if len(mask_key) != 4:
        raise ValueError("mask key must be 4 bytes")
    return head + mask_key + apply_mask(frame.payload, mask_key)


async def read_frame(reader: asyncio.StreamReader, *, expect_masked: bool, max_payload: int) -> WsFrame:
    """Read one frame, unmasked; WebSocketProtocolError on a malformed one.

    ``expect_masked``: a server requires masked frames from clients, a client
    requires unmasked frames from servers (section 5.1).  Raises
    ``asyncio.IncompleteReadError`` when the connection ends mid-frame.
    """
    first, second = await reader.readexactly(2)
    fin = bool(first & 0x80)
    rsv = (first >> 4) & 0x7
    opcode = first & 0xF
    masked = bool(second & 0x80)
    size = second & 0x7F
    if rsv:
        raise WebSocketProtocolError("reserved bits set without an extension")
    if opcode not in _OPCODES:
        raise WebSocketProtocolError(f"unknown opcode {opcode:#x}")
    if masked != expect_masked:
        raise WebSocketProtocolError("frame masking is wrong for its direction")
    if size == 126:
        (size,) = struct.unpack(">H", await reader.readexactly(2))
    elif size == 127:
        (size,) = struct.unpack(">Q", await reader.readexactly(8))
        if size >> 63:
            raise WebSocketProtocolError("payload length has its top bit set")
    if opcode >= Opcode.CLOSE:
        if not fin:
            raise WebSocketProtocolError("fragmented control frame")
        if size > 125:
            raise WebSocketProtocolError("control frame payload over 125 bytes")
    if size > max_payload:
        raise WebSocketProtocolError(f"frame of {size} bytes exceeds {max_payload}", CloseCode.MESSAGE_TOO_BIG)
    key = await reader.readexactly(4) if masked else b""
    payload = await reader.readexactly(size)
    if masked:
        payload = apply_mask(payload, key)
    return WsFrame(opcode, payload, fin, rsv)


@dataclass(frozen=True, slots=True)
class WsMessage:
    """A complete data message: ``text`` True for a text message (payload is UTF-8)."""

    payload: bytes
    text: bool


class MessageAssembler:
    """Joins data frames into messages (section 5.4); control frames are the caller's business."""

    def __init__(self, max_message: int) -> None:
        self._max_message = max_message
        self._parts: list[bytes] = []
        self._size = 0
        self._opcode: int | None = None

    def feed(self, frame: WsFrame) -> WsMessage | None:
        """Take a TEXT, BINARY or CONTINUATION frame; a message when it completes one."""
        if frame.opcode == Opcode.CONTINUATION:
            if self._opcode is None:
                raise WebSocketProtocolError("continuation frame without a message to continue")
        elif frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            if self._opcode is not None:
                raise WebSocketProtocolError("new message started before the previous one finished")
            self._opcode = frame.opcode
        else:
            raise ValueError(f"not a data frame: opcode {frame.opcode:#x}")
        self._size += len(frame.payload)
        if self._size > self._max_message:
            raise WebSocketProtocolError(f"message exceeds {self._max_message} bytes", CloseCode.MESSAGE_TOO_BIG)
        self._parts.append(frame.payload)
        if not frame.fin:
            return None
        payload = b"".join(self._parts)
        text = self._opcode == Opcode.TEXT
        self._parts, self._size, self._opcode = [], 0, None
        if text:
            try:
                payload.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise WebSocketProtocolError("text message is not UTF-8", CloseCode.INVALID_DATA) from exc
        return WsMessage(payload, text)


def encode_close_payload(code: int | None, reason: str = "") -> bytes:
    """The body of a close frame: nothing, or a 2-byte code and a UTF-8 reason (<= 123 bytes)."""
    if code is None:
        return b""
    return struct.pack(">H", code) + reason.encode("utf-8")[:123]


def parse_close_payload(payload: bytes) -> tuple[int, str]:
    """Code and reason of a received close frame (1005 when it carried no code)."""
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        raise WebSocketProtocolError("close frame with a 1-byte body")
    (code,) = struct.unpack(">H", payload[:2])
    # Section 7.4: 1000-1003, 1007-1011 are defined; 3000-4999 are for
    # libraries and applications; the rest may not appear on the wire.
    if not (code in (1000, 1001, 1002, 1003) or 1007 <= code <= 1014 or 3000 <= code <= 4999):
        raise WebSocketProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebSocketProtocolError("close reason is not UTF-8", CloseCode.INVALID_DATA) from exc
    return code, reason
