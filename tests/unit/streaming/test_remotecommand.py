"""The remote-command protocol's pieces: status messages, resize decoding, the bounded pipe."""

from __future__ import annotations

import asyncio
import json

import pytest

from hawser.cri.streaming import TerminalSize
from hawser.cri.streaming._pipe import BoundedPipe
from hawser.cri.streaming._remotecommand import (
    ResizeEvents,
    encode_status,
    status_error,
    status_exit_code,
    status_success,
)
from hawser.errors import DeadlineExceeded, Internal, InvalidArgument, NotFound
from tests.unit.streaming.fakes import run


def test_status_messages_as_kubectl_decodes_them() -> None:
    assert json.loads(encode_status(status_success(), structured=True)) == {"metadata": {}, "status": "Success"}
    assert encode_status(status_success(), structured=False) == b""
    failure = json.loads(encode_status(status_exit_code(137, "command ['sleep']"), structured=True))
    assert failure["status"] == "Failure"
    assert failure["reason"] == "NonZeroExitCode"
    assert failure["details"]["causes"] == [{"reason": "ExitCode", "message": "137"}]
    text = encode_status(status_exit_code(2, "command ['false']"), structured=False)
    assert text.startswith(b"command terminated with non-zero exit code: ")


@pytest.mark.parametrize("error, reason, code", [
    (NotFound("container c1 not found"), "NotFound", 404),
    (InvalidArgument("bad"), "BadRequest", 400),
    (DeadlineExceeded("slow"), "Timeout", 504),
    (Internal("broken"), "InternalError", 500),
])
def test_error_statuses(error: Exception, reason: str, code: int) -> None:
    status = status_error(error)  # type: ignore[arg-type]
    assert status == {"metadata": {}, "status": "Failure", "message": str(error), "reason": reason, "code": code}


class ChunkReader:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def read(self, n: int = -1) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


async def sizes(chunks: list[bytes]) -> list[TerminalSize]:
    return [size async for size in ResizeEvents(ChunkReader(chunks))]


@pytest.mark.parametrize("chunks, expected", [
    ([b'{"Width":80,"Height":24}\n'], [(80, 24)]),
    ([b'{"Width":80,', b'"Height":24}{"width":1,"height":2}', b"\n \n"], [(80, 24), (1, 2)]),
    ([b'{"Width":80,"Height":24,"Extra":{"nested":"}"}}'], [(80, 24)]),
    ([b'{"Width":80,"Height":24}', b"not json"], [(80, 24)]),
    ([b'{"Width":-1,"Height":24}', b'{"Width":1,"Height":2}'], []),
    ([b'{"Width":true,"Height":24}'], []),
    ([b"[1,2]"], []),
    ([b'{"Width":80, "Height":'], []),
    ([b'{"a":"' + b"x" * 5000], []),
])
def test_resize_stream_decoding(chunks: list[bytes], expected: list[tuple[int, int]]) -> None:
    assert run(lambda: sizes(chunks)) == [TerminalSize(*size) for size in expected]


def test_no_resize_stream_means_no_events() -> None:
    async def main() -> list[TerminalSize]:
        return [size async for size in ResizeEvents(None)]

    assert run(main) == []


def test_bounded_pipe_applies_backpressure() -> None:
    async def main() -> None:
        pipe = BoundedPipe(limit=10)
        await pipe.feed(b"0123456789abc")  # one chunk may overshoot
        blocked = asyncio.create_task(pipe.feed(b"more"))
        await asyncio.sleep(0.01)
        assert not blocked.done()
        assert await pipe.read(2) == b"01"
        await asyncio.sleep(0.01)
        assert not blocked.done()  # 11 bytes: still at the limit
        assert await pipe.read(2) == b"23"
        await asyncio.wait_for(blocked, 1)  # 9 bytes: room again
        pipe.feed_eof()
        await pipe.feed(b"dropped")
        assert await pipe.read() == b"456789abcmore"
        assert await pipe.read() == b""
        assert pipe.at_eof

    run(main)
