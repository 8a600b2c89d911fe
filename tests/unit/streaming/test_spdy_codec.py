"""SPDY/3 framing, byte for byte, and header block compression (draft-mbelshe-httpbis-spdy-00)."""

from __future__ import annotations

import struct
import zlib

import pytest

from hawser.cri.streaming._spdy import (
    DICTIONARY,
    FLAG_FIN,
    FLAG_UNIDIRECTIONAL,
    DataFrame,
    FrameDecoder,
    FrameEncoder,
    GoAway,
    HeaderDecompressor,
    HeadersFrame,
    Ping,
    RstStream,
    Setting,
    Settings,
    SpdyProtocolError,
    SynReply,
    SynStream,
    UnknownControl,
    WindowUpdate,
    decode_header_block,
    encode_header_block,
    header_value,
    parse_head,
)


def decode(raw: bytes, decoder: FrameDecoder | None = None) -> object:
    decoder = decoder or FrameDecoder()
    return decoder.decode(parse_head(raw[:8]), raw[8:])


def test_dictionary_is_the_spdy3_one() -> None:
    assert len(DICTIONARY) == 1423
    assert DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post")
    assert b"\x00\x00\x00\x06200 OK\x00\x00\x00\x07version\x00\x00\x00\x08HTTP/1.1" in DICTIONARY
    assert b"\x00\x00\x00\x06origin100101201202205206300" in DICTIONARY
    assert DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_data_frame_bytes() -> None:
    raw = FrameEncoder().encode(DataFrame(5, b"abc", FLAG_FIN))
    assert raw == b"\x00\x00\x00\x05\x01\x00\x00\x03abc"
    assert decode(raw) == DataFrame(5, b"abc", FLAG_FIN)
    assert FrameEncoder().encode(DataFrame(0x7FFFFFFF, b"")) == b"\x7f\xff\xff\xff\x00\x00\x00\x00"


@pytest.mark.parametrize("frame, raw", [
    (RstStream(3, 5), b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x05"),
    (Ping(7), b"\x80\x03\x00\x06\x00\x00\x00\x04\x00\x00\x00\x07"),
    (GoAway(9, 1), b"\x80\x03\x00\x07\x00\x00\x00\x08\x00\x00\x00\x09\x00\x00\x00\x01"),
    (WindowUpdate(1, 32768), b"\x80\x03\x00\x09\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x80\x00"),
    (WindowUpdate(0, 1), b"\x80\x03\x00\x09\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01"),
    (Settings((Setting(7, 65536, 1), Setting(4, 100))),
     b"\x80\x03\x00\x04\x00\x00\x00\x14\x00\x00\x00\x02"
     b"\x01\x00\x00\x07\x00\x01\x00\x00" b"\x00\x00\x00\x04\x00\x00\x00\x64"),
])
def test_fixed_control_frames(frame: object, raw: bytes) -> None:
    assert FrameEncoder().encode(frame) == raw  # type: ignore[arg-type]
    assert decode(raw) == frame


def test_header_block_layout() -> None:
    block = encode_header_block([("StreamType", "error"), ("port", "80")])
    assert block == (b"\x00\x00\x00\x02" b"\x00\x00\x00\x0astreamtype" b"\x00\x00\x00\x05error"
                     b"\x00\x00\x00\x04port" b"\x00\x00\x00\x0280")
    assert decode_header_block(block) == (("streamtype", "error"), ("port", "80"))
    # Names arrive lowercased, duplicates merge NUL-separated, as the spec joins multiple values.
    dup = b"\x00\x00\x00\x02" + (b"\x00\x00\x00\x01A" b"\x00\x00\x00\x01x") + (b"\x00\x00\x00\x01a" b"\x00\x00\x00\x01y")
    assert decode_header_block(dup) == (("a", "x\0y"),)


@pytest.mark.parametrize("block", [
    b"\x00\x00\x01",  # shorter than its count
    b"\x00\x00\x10\x00",  # claims 4096 pairs
    b"\x00\x00\x00\x01\x00\x00\x00\x05ab",  # name truncated
    b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00\x00",  # empty name
    b"\x00\x00\x00\x01\x00\x00\x00\x01a\x00\x00\x00\x01\xff",  # value not UTF-8
    b"\x00\x00\x00\x00junk",  # trailing bytes
])
def test_malformed_header_blocks(block: bytes) -> None:
    with pytest.raises(SpdyProtocolError):
        decode_header_block(block)


def test_syn_stream_layout_and_compression_with_the_dictionary() -> None:
    headers = (("streamtype", "stdin"),)
    raw = FrameEncoder().encode(SynStream(1, headers, FLAG_FIN | FLAG_UNIDIRECTIONAL, associated_to=0, priority=3))
    head = parse_head(raw[:8])
    assert raw[:4] == b"\x80\x03\x00\x01"
    assert head.flags == 3 and head.length == len(raw) - 8
    stream_id, associated, priority, slot = struct.unpack(">IIBB", raw[8:18])
    assert (stream_id, associated, priority, slot) == (1, 0, 3 << 5, 0)
    # An independent zlib inflater primed with the dictionary reads the block.
    inflater = zlib.decompressobj(zdict=DICTIONARY)
    assert inflater.decompress(raw[18:]) == encode_header_block(headers)
    frame = decode(raw)
    assert isinstance(frame, SynStream)
    assert frame.headers == headers and frame.fin and frame.unidirectional and frame.priority == 3


def test_header_compression_context_spans_frames_both_ways() -> None:
    encoder, decoder = FrameEncoder(), FrameDecoder()
    frames = [
        SynStream(1, (("streamtype", "error"),)),
        SynStream(3, (("streamtype", "stdin"),)),
        SynReply(3),
        HeadersFrame(3, (("x", "y"),), FLAG_FIN),
        SynStream(5, (("streamtype", "stdout"), ("port", "8080"), ("requestid", "0"))),
    ]
    for frame in frames:
        assert decode(encoder.encode(frame), decoder) == frame
    # The later blocks depend on the earlier ones: a fresh decoder cannot read one alone.
    late = encoder.encode(frames[1])
    with pytest.raises(SpdyProtocolError):
        decode(late, FrameDecoder())


def test_blocks_from_another_compressor_decode() -> None:
    # Go's framer compresses at BestCompression; any zlib stream with the dictionary must do.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, zdict=DICTIONARY)
    decoder = FrameDecoder()
    for stream_id, kind in ((1, "error"), (3, "stdout")):
        block = compressor.compress(encode_header_block([("streamtype", kind)])) + compressor.flush(zlib.Z_SYNC_FLUSH)
        payload = struct.pack(">IIBB", stream_id, 0, 0, 0) + block
        raw = struct.pack(">HHI", 0x8003, 1, len(payload)) + payload
        assert decode(raw, decoder) == SynStream(stream_id, (("streamtype", kind),))


def test_header_bombs_are_refused() -> None:
    compressor = zlib.compressobj(zdict=DICTIONARY)
    block = compressor.compress(encode_header_block([("x", "a" * 100_000)])) + compressor.flush(zlib.Z_SYNC_FLUSH)
    with pytest.raises(SpdyProtocolError, match="inflates past"):
        HeaderDecompressor(max_size=1000).decompress(block)
    with pytest.raises(SpdyProtocolError, match="does not inflate"):
        HeaderDecompressor(max_size=1000).decompress(b"\x78\xbb garbage")


@pytest.mark.parametrize("raw, stream_error", [
    (b"\x80\x02\x00\x06\x00\x00\x00\x04\x00\x00\x00\x01", False),  # SPDY/2
    (b"\x80\x03\x00\x06\x00\x00\x00\x05\x00\x00\x00\x01\x00", False),  # PING of 5 bytes
    (b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x01\x00\x00\x00\x00", False),  # RST status 0
    (b"\x80\x03\x00\x03\x00\x00\x00\x08\x00\x00\x00\x00\x00\x00\x00\x01", False),  # RST stream 0
    (b"\x80\x03\x00\x07\x00\x00\x00\x04\x00\x00\x00\x01", False),  # GOAWAY without status
    (b"\x80\x03\x00\x04\x00\x00\x00\x0c\x00\x00\x00\x02\x00\x00\x00\x07\x00\x00\x00\x01", False),  # 2 settings, 1 sent
    (b"\x80\x03\x00\x01\x00\x00\x00\x04\x00\x00\x00\x01", False),  # SYN_STREAM too short
    (b"\x80\x03\x00\x02\x00\x00\x00\x02\x00\x01", False),  # SYN_REPLY too short
    (b"\x00\x00\x00\x00\x00\x00\x00\x00", False),  # data on stream 0
    (b"\x80\x03\x00\x09\x00\x00\x00\x08\x00\x00\x00\x03\x00\x00\x00\x00", True),  # window delta 0
])
def test_malformed_frames(raw: bytes, stream_error: bool) -> None:
    with pytest.raises(SpdyProtocolError) as error:
        decode(raw)
    assert bool(error.value.stream_id) == stream_error


def test_unknown_control_frames_are_kept_for_ignoring() -> None:
    raw = b"\x80\x03\x00\x0a\x00\x00\x00\x02hi"  # CREDENTIAL (type 10), unused by anyone
    assert decode(raw) == UnknownControl(10, 0, b"hi")


def test_header_value_lookup() -> None:
    headers = (("streamtype", "data"), ("port", "80"))
    assert header_value(headers, "port") == "80"
    assert header_value(headers, "requestid") is None
