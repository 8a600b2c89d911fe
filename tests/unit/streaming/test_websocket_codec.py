"""WebSocket framing (RFC 6455), using the RFC's own examples, and the k8s channel framing."""

from __future__ import annotations

import asyncio
import os

import pytest

from hawser.cri.streaming._websocket import (
    CloseCode,
    MessageAssembler,
    Opcode,
    WebSocketProtocolError,
    WsFrame,
    WsMessage,
    accept_key,
    apply_mask,
    encode_close_payload,
    encode_frame,
    parse_close_payload,
    read_frame,
    valid_client_key,
)
from hawser.cri.streaming._wschannel import decode_channel_message, encode_channel_message


def read(raw: bytes, *, expect_masked: bool, max_payload: int = 1 << 20) -> WsFrame:
    async def main() -> WsFrame:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_frame(reader, expect_masked=expect_masked, max_payload=max_payload)

    return asyncio.run(main())


def test_accept_key_example_from_the_rfc() -> None:
    # RFC 6455 section 1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert valid_client_key("dGhlIHNhbXBsZSBub25jZQ==")
    assert not valid_client_key("c2hvcnQ=")
    assert not valid_client_key("not base64!!")


def test_rfc_examples() -> None:
    # RFC 6455 section 5.7.
    unmasked_hello = bytes([0x81, 0x05, 0x48, 0x65, 0x6C, 0x6C, 0x6F])
    masked_hello = bytes([0x81, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
    assert encode_frame(WsFrame(Opcode.TEXT, b"Hello")) == unmasked_hello
    assert encode_frame(WsFrame(Opcode.TEXT, b"Hello"), mask_key=bytes([0x37, 0xFA, 0x21, 0x3D])) == masked_hello
    assert read(unmasked_hello, expect_masked=False) == WsFrame(Opcode.TEXT, b"Hello")
    assert read(masked_hello, expect_masked=True) == WsFrame(Opcode.TEXT, b"Hello")
    first = bytes([0x01, 0x03, 0x48, 0x65, 0x6C])
    second = bytes([0x80, 0x02, 0x6C, 0x6F])
    assert encode_frame(WsFrame(Opcode.TEXT, b"Hel", fin=False)) == first
    assert encode_frame(WsFrame(Opcode.CONTINUATION, b"lo")) == second
    assert encode_frame(WsFrame(Opcode.PING, b"Hello")) == bytes([0x89, 0x05]) + b"Hello"
    assert encode_frame(WsFrame(Opcode.PONG, b"Hello"), mask_key=bytes([0x37, 0xFA, 0x21, 0x3D])) == bytes(
        [0x8A, 0x85, 0x37, 0xFA, 0x21, 0x3D, 0x7F, 0x9F, 0x4D, 0x51, 0x58])
    assert encode_frame(WsFrame(Opcode.BINARY, bytes(256)))[:4] == bytes([0x82, 0x7E, 0x01, 0x00])
    assert encode_frame(WsFrame(Opcode.BINARY, bytes(65536)))[:10] == bytes(
        [0x82, 0x7F, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00])


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 200_000])
def test_lengths_and_masking_round_trip(size: int) -> None:
    payload = os.urandom(size)
    key = os.urandom(4)
    raw = encode_frame(WsFrame(Opcode.BINARY, payload), mask_key=key)
    assert read(raw, expect_masked=True) == WsFrame(Opcode.BINARY, payload)
    assert apply_mask(apply_mask(payload, key), key) == payload


@pytest.mark.parametrize("raw, expect_masked, code", [
    (encode_frame(WsFrame(Opcode.TEXT, b"x")), True, 1002),  # a client must mask
    (encode_frame(WsFrame(Opcode.TEXT, b"x"), mask_key=b"abcd"), False, 1002),  # a server must not
    (bytes([0xC1, 0x00]), False, 1002),  # RSV1 without an extension
    (bytes([0x83, 0x00]), False, 1002),  # reserved opcode
    (bytes([0x09, 0x00]), False, 1002),  # fragmented ping
    (bytes([0x89, 0x7E, 0x00, 0x7E]) + bytes(126), False, 1002),  # 126-byte ping
    (bytes([0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]), False, 1002),  # 64-bit length with the top bit
    (bytes([0x82, 0x7E, 0x04, 0x01]) + bytes(1025), False, 1009),  # over max_payload
])
def test_malformed_frames(raw: bytes, expect_masked: bool, code: int) -> None:
    with pytest.raises(WebSocketProtocolError) as error:
        read(raw, expect_masked=expect_masked, max_payload=1024)
    assert error.value.code == code


def test_truncated_frame_is_a_hang_up() -> None:
    with pytest.raises(asyncio.IncompleteReadError):
        read(bytes([0x82, 0x05, 0x01]), expect_masked=False)


def test_fragmented_messages_are_reassembled() -> None:
    assembler = MessageAssembler(max_message=100)
    assert assembler.feed(WsFrame(Opcode.BINARY, b"ab", fin=False)) is None
    assert assembler.feed(WsFrame(Opcode.CONTINUATION, b"cd", fin=False)) is None
    assert assembler.feed(WsFrame(Opcode.CONTINUATION, b"ef")) == WsMessage(b"abcdef", False)
    assert assembler.feed(WsFrame(Opcode.TEXT, "é".encode())) == WsMessage("é".encode(), True)
    # A multi-byte character split across fragments is fine once joined.
    assert assembler.feed(WsFrame(Opcode.TEXT, b"\xc3", fin=False)) is None
    assert assembler.feed(WsFrame(Opcode.CONTINUATION, b"\xa9")) == WsMessage("é".encode(), True)


@pytest.mark.parametrize("frames, code", [
    ([WsFrame(Opcode.CONTINUATION, b"x")], 1002),
    ([WsFrame(Opcode.BINARY, b"x", fin=False), WsFrame(Opcode.TEXT, b"y")], 1002),
    ([WsFrame(Opcode.TEXT, b"\xff")], 1007),
    ([WsFrame(Opcode.BINARY, bytes(60), fin=False), WsFrame(Opcode.CONTINUATION, bytes(60))], 1009),
])
def test_bad_fragment_sequences(frames: list[WsFrame], code: int) -> None:
    assembler = MessageAssembler(max_message=100)
    with pytest.raises(WebSocketProtocolError) as error:
        for frame in frames:
            assembler.feed(frame)
    assert error.value.code == code


def test_close_payloads() -> None:
    assert encode_close_payload(1000, "bye") == b"\x03\xe8bye"
    assert encode_close_payload(None) == b""
    assert parse_close_payload(b"") == (CloseCode.NO_STATUS, "")
    assert parse_close_payload(b"\x03\xe8bye") == (1000, "bye")
    assert parse_close_payload(b"\x0f\xa0") == (4000, "")
    for bad in (b"\x03", b"\x03\xed", b"\x03\xee", b"\x00\x00", b"\x03\xe8\xff"):
        with pytest.raises(WebSocketProtocolError):
            parse_close_payload(bad)


def test_channel_framing() -> None:
    assert encode_channel_message(1, b"out", base64_text=False) == (b"\x01out", False)
    assert encode_channel_message(3, b"{}", base64_text=True) == (b"3e30=", True)
    assert decode_channel_message(WsMessage(b"\x00in", False)) == (0, b"in")
    assert decode_channel_message(WsMessage(b"0aGk=", True)) == (0, b"hi")
    assert decode_channel_message(WsMessage(b"\xff\x00", False)) == (255, b"\x00")
    assert decode_channel_message(WsMessage(b"", False)) is None
    with pytest.raises(ValueError):
        decode_channel_message(WsMessage(b"0!!", True))
