"""Exec and attach over WebSocket (v5.channel.k8s.io, v4 and its base64 variant), over real TCP."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from hawser.cri.streaming import AttachRequest, ExecRequest, TerminalSize
from hawser.cri.streaming._websocket import Opcode, WsFrame, encode_frame
from tests.support.k8s_stream_client import (
    V4,
    V4_BASE64,
    V5,
    UpgradeRefused,
    connect_websocket,
    http_upgrade,
    websocket_upgrade_headers,
    ws_attach,
    ws_exec,
)
from tests.unit.streaming.fakes import eventually, run, serving


def test_v5_exec_cat_with_close_signal_on_stdin() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True, stderr=True))
            async with ws_exec(url) as session:
                assert session.protocol == V5
                await session.write_stdin(b"line one\n")
                assert await session.read_until(b"\n") == b"line one\n"
                await session.write_stdin(b"line two\n")
                await session.close_stdin()
                out = await session.read_all()
            assert out == b"line one\nline two\n"
            assert session.status == {"metadata": {}, "status": "Success"}
            assert session.exit_code == 0
            assert session.ws.close_code == 1000
            assert fake.finished == ["cat"]

    run(main)


def test_client_protocol_preference_wins() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("echo", "hi"), stdout=True))
            async with ws_exec(url, protocols=["v9.channel.k8s.io", V4, V5]) as session:
                assert session.protocol == V4
                assert await session.read_all() == b"hi\n"
            assert session.exit_code == 0

    run(main)


def test_base64_variant() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("stderr", "b64"), stdout=True, stderr=True))
            async with ws_exec(url, protocols=[V4_BASE64]) as session:
                assert session.protocol == V4_BASE64
                await session.read_all()
            assert session.stdout == b"to stdout\n"
            assert session.stderr == b"b64\n"

            url = server.exec_url(ExecRequest("c1", ("tty",), tty=True, stdin=True, stdout=True))
            async with ws_exec(url, protocols=[V4_BASE64]) as session:
                await session.resize(100, 30)
                await session.read_until(b"resize 100x30\n")
                await session.write_stdin(b"\x00\xffbinary")
                assert await session.read_until(b"binary") == b"\x00\xffbinary"

    run(main)


def test_stderr_and_exit_code() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("exit", "42"), stdout=True, stderr=True))
            async with ws_exec(url) as session:
                status = await session.wait()
            assert status is not None and status["reason"] == "NonZeroExitCode"
            assert session.exit_code == 42

            url = server.exec_url(ExecRequest("missing", ("echo",), stdout=True))
            async with ws_exec(url) as session:
                status = await session.wait()
            assert status is not None
            assert (status["status"], status["reason"]) == ("Failure", "NotFound")

    run(main)


def test_tty_resize_and_input() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("tty",), tty=True, stdin=True, stdout=True))
            async with ws_exec(url) as session:
                await session.resize(80, 25)
                await session.read_until(b"resize 80x25\n")
                await session.write_stdin(b"echo hi\r")
                await session.read_until(b"echo hi\r")
                await session.resize(81, 26)
                await session.read_until(b"resize 81x26\n")
                await session.close_stdin()
                await session.read_all()
            assert fake.resizes == [TerminalSize(80, 25), TerminalSize(81, 26)]

    run(main)


def test_attach() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.attach_url(AttachRequest("c1", stdin=True, stdout=True, stderr=True))
            async with ws_attach(url) as session:
                await session.write_stdin(b"to the main process\n")
                await session.close_stdin()
                await session.read_all()
            assert session.stdout == b"to the main process\n"
            assert session.stderr == b"attached\n"
            assert fake.calls == [("attach", "c1", False, True, True, True)]

    run(main)


def test_fragmented_messages_pings_and_large_output() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True))
            async with ws_exec(url) as session:
                payload = os.urandom(100_000)
                # One stdin message in 7 KiB fragments, with pings in between from another task.
                await session.ws.ping(b"are you there")
                await session.ws.send(b"\x00" + payload, fragment_size=7 * 1024)
                await session.ws.ping(b"still there")
                await session.close_stdin()
                out = await session.read_all()
            assert out == payload
            assert session.ws.pongs == 2

            size = 3 * 1024 * 1024
            url = server.exec_url(ExecRequest("c1", ("big", str(size)), stdout=True))
            async with ws_exec(url) as session:
                assert len(await session.read_all()) == size

    run(main)


def test_control_frame_interleaved_in_a_fragmented_message() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True))
            async with ws_exec(url) as session:
                key = b"\x01\x02\x03\x04"
                raw = (encode_frame(WsFrame(Opcode.BINARY, b"\x00frag", fin=False), mask_key=key)
                       + encode_frame(WsFrame(Opcode.PING, b"mid"), mask_key=key)
                       + encode_frame(WsFrame(Opcode.CONTINUATION, b"mented"), mask_key=key))
                await session.ws.send_raw(raw)
                assert await session.read_until(b"fragmented") == b"fragmented"
                await session.close_stdin()
                await session.read_all()
            assert session.ws.pongs == 1

    run(main)


@pytest.mark.parametrize("raw, code", [
    (encode_frame(WsFrame(Opcode.BINARY, b"\x00unmasked")), 1002),
    (encode_frame(WsFrame(Opcode.BINARY, b"\x00x", rsv=4), mask_key=b"abcd"), 1002),
    (encode_frame(WsFrame(0x3, b"x"), mask_key=b"abcd"), 1002),
    (encode_frame(WsFrame(Opcode.CONTINUATION, b"x"), mask_key=b"abcd"), 1002),
    (encode_frame(WsFrame(Opcode.PING, b"x", fin=False), mask_key=b"abcd"), 1002),
    (encode_frame(WsFrame(Opcode.TEXT, b"0\xff\xfe"), mask_key=b"abcd"), 1007),
    (encode_frame(WsFrame(Opcode.TEXT, b"0not base64!"), mask_key=b"abcd"), 1007),
    (encode_frame(WsFrame(Opcode.CLOSE, b"\x03\xed"), mask_key=b"abcd"), 1002),  # code 1005 on the wire
])
def test_protocol_violations_close_the_session_with_the_right_code(raw: bytes, code: int) -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("sleep",), stdin=True, stdout=True))
            async with ws_exec(url) as session:
                await asyncio.wait_for(fake.started.wait(), 5)
                await session.ws.send_raw(raw)
                await asyncio.wait_for(session.read_all(), 5)
            assert session.ws.close_code == code
            await eventually(lambda: fake.cancelled == ["sleep"])
            await eventually(lambda: server.active_sessions == 0)

            url = server.exec_url(ExecRequest("c1", ("echo", "ok"), stdout=True))
            async with ws_exec(url) as session:
                assert await session.read_all() == b"ok\n"

    run(main)


def test_client_close_and_drop_cancel_the_runtime_call() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("sleep",), stdin=True, stdout=True))
            async with ws_exec(url) as session:
                await asyncio.wait_for(fake.started.wait(), 5)
                await session.ws.start_close()
                await session.read_all()
            assert session.ws.close_code == 1000
            await eventually(lambda: fake.cancelled == ["sleep"])

            fake.started.clear()
            url = server.exec_url(ExecRequest("c1", ("sleep",), stdin=True, stdout=True))
            async with ws_exec(url) as session:
                await asyncio.wait_for(fake.started.wait(), 5)
                session.ws._writer.transport.abort()
            await eventually(lambda: fake.cancelled == ["sleep", "sleep"])
            await eventually(lambda: server.active_sessions == 0)

    run(main)


def test_v4_cannot_half_close_but_ends_with_the_process() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("echo", "v4"), stdin=True, stdout=True))
            async with ws_exec(url, protocols=[V4]) as session:
                with pytest.raises(RuntimeError, match="cannot half-close"):
                    await session.close_stdin()
                assert await session.read_all() == b"v4\n"

    run(main)


def test_handshake_errors() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            def url() -> str:
                return server.exec_url(ExecRequest("c1", ("echo",), stdout=True))

            key = base64.b64encode(os.urandom(16)).decode()
            cases = [
                (dict(websocket_upgrade_headers([V5], key)) | {"Sec-WebSocket-Version": "8"}, 426),
                (dict(websocket_upgrade_headers([V5], "short")), 400),
                (dict(websocket_upgrade_headers(["chat", "superchat"], key)), 400),
                ({k: v for k, v in websocket_upgrade_headers([V5], key) if k != "Sec-WebSocket-Protocol"}, 400),
            ]
            for headers, status in cases:
                with pytest.raises(UpgradeRefused) as refused:
                    await http_upgrade(url(), list(headers.items()))
                assert refused.value.status == status, refused.value
            with pytest.raises(UpgradeRefused) as refused:
                await http_upgrade(url(), websocket_upgrade_headers([V5], key), method="POST")
            assert refused.value.status == 400
            without_version = [(k, v) for k, v in websocket_upgrade_headers([V5], key) if k != "Sec-WebSocket-Version"]
            with pytest.raises(UpgradeRefused) as refused:
                await http_upgrade(url(), without_version)
            assert refused.value.status == 426
            assert refused.value.headers["sec-websocket-version"] == "13"

            ws = await connect_websocket(url(), [V5])
            assert ws.subprotocol == V5
            ws.abort()

    run(main)


def test_client_vanishing_behind_unread_stdin_is_noticed_at_the_next_write() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("ticker",), stdin=True, stdout=True))
            async with ws_exec(url) as session:
                await asyncio.wait_for(fake.started.wait(), 5)

                async def write_many() -> None:
                    # Many small messages, as kubectl sends them: the server reads
                    # whole messages until its stdin buffer is full, then stalls.
                    for _ in range(256):
                        await session.write_stdin(bytes(32 * 1024))

                flood = asyncio.create_task(write_many())
                await session.read_until(b"tick\n")
                await asyncio.sleep(0.2)
                session.ws._writer.transport.abort()
                flood.cancel()
                await asyncio.wait([flood])
            await eventually(lambda: fake.cancelled == ["ticker"])
            await eventually(lambda: server.active_sessions == 0)

    run(main)
