"""SPDY/3 framing: frame objects, their byte encoding, and header block compression.

Only the wire format lives here; streams, windows and the read loop are in
``_spdy_conn``.  The layout follows draft-mbelshe-httpbis-spdy-00 (SPDY/3),
which is what Kubernetes speaks under the "SPDY/3.1" upgrade token (its Go
framer implements SPDY/3 framing, with session-level WINDOW_UPDATE the only
3.1 addition that matters).

Header blocks are compressed with one zlib stream per direction for the whole
connection, primed with the dictionary from the spec, and sync-flushed after
every block: compressor and decompressor state therefore depends on the order
frames cross the wire, so a connection encodes under its write lock and
decodes in its single read loop.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from enum import IntEnum

from hawser._dataclass import dataclass

VERSION = 3

# Headers travel as (name, value) pairs; a value holding several values joins
# them with NUL, as the spec says.
Headers = tuple[tuple[str, str], ...]

FLAG_FIN = 0x01
FLAG_UNIDIRECTIONAL = 0x02  # SYN_STREAM only
FLAG_CLEAR_SETTINGS = 0x01  # SETTINGS only

# The largest payload a 24-bit length field can carry.
MAX_FRAME_PAYLOAD = 0xFFFFFF
MAX_WINDOW = 0x7FFFFFFF
DEFAULT_WINDOW = 65536


class FrameType(IntEnum):
    SYN_STREAM = 1
    SYN_REPLY = 2
    RST_STREAM = 3
    SETTINGS = 4
    PING = 6
    GOAWAY = 7
    HEADERS = 8
    WINDOW_UPDATE = 9


class RstStatus(IntEnum):
    PROTOCOL_ERROR = 1
    INVALID_STREAM = 2
    REFUSED_STREAM = 3
    UNSUPPORTED_VERSION = 4
    CANCEL = 5
    INTERNAL_ERROR = 6
    FLOW_CONTROL_ERROR = 7
    STREAM_IN_USE = 8
    STREAM_ALREADY_CLOSED = 9
    FRAME_TOO_LARGE = 11


class GoAwayStatus(IntEnum):
    OK = 0
    PROTOCOL_ERROR = 1
    INTERNAL_ERROR = 11


class SettingId(IntEnum):
    UPLOAD_BANDWIDTH = 1
    DOWNLOAD_BANDWIDTH = 2
    ROUND_TRIP_TIME = 3
    MAX_CONCURRENT_STREAMS = 4
    CURRENT_CWND = 5
    DOWNLOAD_RETRANS_RATE = 6
    INITIAL_WINDOW_SIZE = 7
    CLIENT_CERTIFICATE_VECTOR_SIZE = 8


class SpdyProtocolError(Exception):
    """The peer broke the framing rules.

    ``stream_id`` 0 means the whole session is unusable (answer with GOAWAY);
    otherwise only that stream is (answer with RST_STREAM ``status``).
    """

    def __init__(self, message: str, *, stream_id: int = 0, status: int = RstStatus.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.stream_id = stream_id
        self.status = status


@dataclass(frozen=True, slots=True)
class DataFrame:
    stream_id: int
    data: bytes
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True, slots=True)
class SynStream:
    stream_id: int
    headers: Headers
    flags: int = 0
    associated_to: int = 0
    priority: int = 0
    slot: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)

    @property
    def unidirectional(self) -> bool:
        return bool(self.flags & FLAG_UNIDIRECTIONAL)


@dataclass(frozen=True, slots=True)
class SynReply:
    stream_id: int
    headers: Headers = ()
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True, slots=True)
class RstStream:
    stream_id: int
    status: int


@dataclass(frozen=True, slots=True)
class Setting:
    id: int
    value: int
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Settings:
    entries: tuple[Setting, ...]
    flags: int = 0


@dataclass(frozen=True, slots=True)
class Ping:
    ping_id: int


@dataclass(frozen=True, slots=True)
class GoAway:
    last_good_stream_id: int
    status: int = GoAwayStatus.OK


@dataclass(frozen=True, slots=True)
class HeadersFrame:
    stream_id: int
    headers: Headers
    flags: int = 0

    @property
    def fin(self) -> bool:
        return bool(self.flags & FLAG_FIN)


@dataclass(frozen=True, slots=True)
class WindowUpdate:
    stream_id: int  # 0: the whole session (SPDY/3.1)
    delta: int


@dataclass(frozen=True, slots=True)
class UnknownControl:
    """A control frame of a type this codec does not know; the spec says: ignore it."""

    frame_type: int
    flags: int
    payload: bytes


Frame = (
    DataFrame | SynStream | SynReply | RstStream | Settings | Ping | GoAway | HeadersFrame | WindowUpdate
    | UnknownControl
)


def _dictionary() -> bytes:
    # The SPDY/3 header compression dictionary (spec section 2.6.10.1): common
    # header names and values, each with a 32-bit length prefix, then a run of
    # raw status codes, reason phrases, dates and media types.
    words = (
        "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset", "accept-encoding",
        "accept-language", "accept-ranges", "age", "allow", "authorization", "cache-control", "connection",
        "content-base", "content-encoding", "content-language", "content-length", "content-location",
        "content-md5", "content-range", "content-type", "date", "etag", "expect", "expires", "from", "host",
        "if-match", "if-modified-since", "if-none-match", "if-range", "if-unmodified-since", "last-modified",
        "location", "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
        "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via",
        "warning", "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
        "public", "set-cookie", "keep-alive", "origin",
    )
    tail = (
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request"
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented"
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 "
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    )
    out = bytearray()
    for word in words:
        out += struct.pack(">I", len(word)) + word.encode("ascii")
    out += tail.encode("ascii")
    return bytes(out)


DICTIONARY = _dictionary()


def encode_header_block(headers: Iterable[tuple[str, str]]) -> bytes:
    """The uncompressed name/value block: a 32-bit count, then length-prefixed names and values."""
    pairs = list(headers)
    out = bytearray(struct.pack(">I", len(pairs)))
    for name, value in pairs:
        # Names are lowercase on the wire: Go's framer rejects the whole
        # frame (and so the connection) otherwise.
        raw_name = name.lower().encode("utf-8")
        raw_value = value.encode("utf-8")
        out += struct.pack(">I", len(raw_name)) + raw_name + struct.pack(">I", len(raw_value)) + raw_value
    return bytes(out)


def decode_header_block(block: bytes) -> Headers:
    """Parse an uncompressed name/value block; duplicate names are merged NUL-separated."""
    if not block:
        return ()
    view = memoryview(block)
    if len(view) < 4:
        raise SpdyProtocolError("header block shorter than its count")
    (count,) = struct.unpack_from(">I", view, 0)
    offset = 4
    # Each pair takes at least 8 bytes: a count beyond that is a lie.
    if count > (len(view) - 4) // 8:
        raise SpdyProtocolError(f"header block claims {count} pairs in {len(view)} bytes")
    merged: dict[str, str] = {}
    for _ in range(count):
        fields: list[str] = []
        for _part in ("name", "value"):
            if offset + 4 > len(view):
                raise SpdyProtocolError("header block truncated")
            (length,) = struct.unpack_from(">I", view, offset)
            offset += 4
            if offset + length > len(view):
                raise SpdyProtocolError("header block truncated")
            try:
                fields.append(bytes(view[offset:offset + length]).decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise SpdyProtocolError("header block is not UTF-8") from exc
            offset += length
        name, value = fields
        if not name:
            raise SpdyProtocolError("empty header name")
        name = name.lower()
        merged[name] = f"{merged[name]}\0{value}" if name in merged else value
    if offset != len(view):
        raise SpdyProtocolError("trailing bytes after the header block")
    return tuple(merged.items())


def header_value(headers: Headers, name: str) -> str | None:
    """The value of header ``name`` (lowercase), or None."""
    for key, value in headers:
        if key == name:
            return value
    return None


class HeaderCompressor:
    """One direction's zlib stream for header blocks."""

    def __init__(self) -> None:
        self._zlib = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, 15, 8, zlib.Z_DEFAULT_STRATEGY,
                                      zdict=DICTIONARY)

    def compress(self, headers: Iterable[tuple[str, str]]) -> bytes:
        raw = encode_header_block(headers)
        return self._zlib.compress(raw) + self._zlib.flush(zlib.Z_SYNC_FLUSH)


class HeaderDecompressor:
    """The other direction's zlib stream, with a cap on the inflated size (zip bombs)."""

    def __init__(self, max_size: int) -> None:
        self._zlib = zlib.decompressobj(zdict=DICTIONARY)
        self._max_size = max_size

    def decompress(self, block: bytes) -> Headers:
        try:
            raw = self._zlib.decompress(block, self._max_size + 1)
        except zlib.error as exc:
            raise SpdyProtocolError(f"header block does not inflate: {exc}") from exc
        if len(raw) > self._max_size or self._zlib.unconsumed_tail:
            raise SpdyProtocolError(f"header block inflates past {self._max_size} bytes")
        return decode_header_block(raw)


@dataclass(frozen=True, slots=True)
class FrameHead:
    """The fixed 8 bytes every frame starts with."""

    control: bool
    version: int  # control frames only
    frame_type: int  # control frames only
    stream_id: int  # data frames only
    flags: int
    length: int


def parse_head(head: bytes) -> FrameHead:
    """Split the 8-byte frame head; the payload length tells the reader what to read next."""
    if len(head) != 8:
        raise SpdyProtocolError("frame head must be 8 bytes")
    first, second = struct.unpack(">II", head)
    flags, length = second >> 24, second & 0xFFFFFF
    if first & 0x80000000:
        return FrameHead(True, (first >> 16) & 0x7FFF, first & 0xFFFF, 0, flags, length)
    return FrameHead(False, 0, 0, first & 0x7FFFFFFF, flags, length)


def _control(frame_type: int, flags: int, payload: bytes) -> bytes:
    if len(payload) > MAX_FRAME_PAYLOAD:
        raise ValueError("control frame payload too large")
    return struct.pack(">HHI", 0x8000 | VERSION, frame_type, (flags << 24) | len(payload)) + payload


def _stream_id(stream_id: int) -> int:
    if not 0 < stream_id <= MAX_WINDOW:
        raise ValueError(f"invalid stream id {stream_id}")
    return stream_id


class FrameEncoder:
    """Frames to bytes, for one direction of one connection (it owns that direction's compressor)."""

    def __init__(self) -> None:
        self._headers = HeaderCompressor()

    def encode(self, frame: Frame) -> bytes:
        match frame:
            case DataFrame(stream_id, data, flags):
                if len(data) > MAX_FRAME_PAYLOAD:
                    raise ValueError("data frame payload too large")
                return struct.pack(">II", _stream_id(stream_id), (flags << 24) | len(data)) + data
            case SynStream(stream_id, headers, flags, associated_to, priority, slot):
                fixed = struct.pack(">IIBB", _stream_id(stream_id), associated_to & MAX_WINDOW,
                                    (priority & 0x7) << 5, slot)
                return _control(FrameType.SYN_STREAM, flags, fixed + self._headers.compress(headers))
            case SynReply(stream_id, headers, flags):
                return _control(FrameType.SYN_REPLY, flags,
                                struct.pack(">I", _stream_id(stream_id)) + self._headers.compress(headers))
            case HeadersFrame(stream_id, headers, flags):
                return _control(FrameType.HEADERS, flags,
                                struct.pack(">I", _stream_id(stream_id)) + self._headers.compress(headers))
            case RstStream(stream_id, status):
                return _control(FrameType.RST_STREAM, 0, struct.pack(">II", _stream_id(stream_id), status))
            case Settings(entries, flags):
                body = struct.pack(">I", len(entries)) + b"".join(
                    struct.pack(">II", (entry.flags << 24) | (entry.id & 0xFFFFFF), entry.value) for entry in entries)
                return _control(FrameType.SETTINGS, flags, body)
            case Ping(ping_id):
                return _control(FrameType.PING, 0, struct.pack(">I", ping_id))
            case GoAway(last_good, status):
                return _control(FrameType.GOAWAY, 0, struct.pack(">II", last_good & MAX_WINDOW, status))
            case WindowUpdate(stream_id, delta):
                if not 0 < delta <= MAX_WINDOW:
                    raise ValueError(f"invalid window delta {delta}")
                return _control(FrameType.WINDOW_UPDATE, 0, struct.pack(">II", stream_id & MAX_WINDOW, delta))
            case UnknownControl(frame_type, flags, payload):
                return _control(frame_type, flags, payload)
        raise TypeError(f"not a SPDY frame: {frame!r}")


class FrameDecoder:
    """Bytes to frames, for the other direction (it owns that direction's decompressor)."""

    def __init__(self, *, max_header_size: int = 256 * 1024) -> None:
        self._headers = HeaderDecompressor(max_header_size)

    def decode(self, head: FrameHead, payload: bytes) -> Frame:
        """Decode one frame whose head was parsed and whose payload was read in full."""
        if len(payload) != head.length:
            raise SpdyProtocolError("frame payload shorter than its length")
        if not head.control:
            if head.stream_id == 0:
                raise SpdyProtocolError("data frame on stream 0")
            return DataFrame(head.stream_id, payload, head.flags)
        if head.version != VERSION:
            raise SpdyProtocolError(f"unsupported SPDY version {head.version}", status=RstStatus.UNSUPPORTED_VERSION)
        kind, flags = head.frame_type, head.flags
        if kind == FrameType.SYN_STREAM:
            if len(payload) < 10:
                raise SpdyProtocolError("SYN_STREAM too short")
            stream_id, associated, priority, slot = struct.unpack_from(">IIBB", payload)
            headers = self._headers.decompress(payload[10:])
            return SynStream(_nonzero(stream_id & MAX_WINDOW, "SYN_STREAM"), headers, flags, associated & MAX_WINDOW,
                             priority >> 5, slot)
        if kind in (FrameType.SYN_REPLY, FrameType.HEADERS):
            if len(payload) < 4:
                raise SpdyProtocolError(f"{FrameType(kind).name} too short")
            (stream_id,) = struct.unpack_from(">I", payload)
            headers = self._headers.decompress(payload[4:])
            stream_id = _nonzero(stream_id & MAX_WINDOW, FrameType(kind).name)
            if kind == FrameType.SYN_REPLY:
                return SynReply(stream_id, headers, flags)
            return HeadersFrame(stream_id, headers, flags)
        if kind == FrameType.RST_STREAM:
            stream_id, status = _fixed(payload, ">II", "RST_STREAM")
            if status == 0:
                raise SpdyProtocolError("RST_STREAM with status 0")
            return RstStream(_nonzero(stream_id & MAX_WINDOW, "RST_STREAM"), status)
        if kind == FrameType.SETTINGS:
            if len(payload) < 4:
                raise SpdyProtocolError("SETTINGS too short")
            (count,) = struct.unpack_from(">I", payload)
            if len(payload) != 4 + 8 * count:
                raise SpdyProtocolError("SETTINGS length does not match its entry count")
            entries = []
            for index in range(count):
                id_flags, value = struct.unpack_from(">II", payload, 4 + 8 * index)
                entries.append(Setting(id_flags & 0xFFFFFF, value, id_flags >> 24))
            return Settings(tuple(entries), flags)
        if kind == FrameType.PING:
            (ping_id,) = _fixed(payload, ">I", "PING")
            return Ping(ping_id)
        if kind == FrameType.GOAWAY:
            last_good, status = _fixed(payload, ">II", "GOAWAY")
            return GoAway(last_good & MAX_WINDOW, status)
        if kind == FrameType.WINDOW_UPDATE:
            stream_id, delta = _fixed(payload, ">II", "WINDOW_UPDATE")
            delta &= MAX_WINDOW
            if delta == 0:
                raise SpdyProtocolError("WINDOW_UPDATE with delta 0", stream_id=stream_id & MAX_WINDOW)
            return WindowUpdate(stream_id & MAX_WINDOW, delta)
        return UnknownControl(kind, flags, payload)


def _fixed(payload: bytes, layout: str, what: str) -> tuple[int, ...]:
    if len(payload) != struct.calcsize(layout):
        raise SpdyProtocolError(f"{what} must be {struct.calcsize(layout)} bytes, got {len(payload)}")
    return struct.unpack(layout, payload)


def _nonzero(stream_id: int, what: str) -> int:
    if stream_id == 0:
        raise SpdyProtocolError(f"{what} on stream 0")
    return stream_id
