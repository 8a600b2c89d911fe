"""Exec and attach over SPDY/3.1 with the remote-command protocols, over real TCP."""

from __future__ import annotations

import asyncio
import json

import pytest

from hawser.cri.streaming import AttachRequest, ExecRequest, TerminalSize
from hawser.cri.streaming._spdy import GoAway, Ping, RstStream
from tests.support.k8s_stream_client import (
    V2,
    V3,
    V4,
    UpgradeRefused,
    connect_spdy,
    http_upgrade,
    spdy_attach,
    spdy_exec,
    spdy_upgrade_headers,
)
from tests.unit.streaming.fakes import eventually, run, serving


def test_exec_cat_with_stdin_half_close() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True, stderr=True))
            async with spdy_exec(url, stdin=True) as session:
                assert session.protocol == V4
                await session.write_stdin(b"hello ")
                await session.write_stdin(b"world\n")
                assert await session.read_until(b"\n") == b"hello world\n"
                await session.close_stdin()
                out = await session.read_all()
            assert out == b"hello world\n"
            assert session.stderr == b""
            assert session.status == {"metadata": {}, "status": "Success"}
            assert session.exit_code == 0
            assert fake.calls == [("exec", "c1", ("cat",), False, True, True, True)]

    run(main)


def test_exec_without_stdin_and_stderr_stream() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("stderr", "oops"), stdout=True, stderr=True))
            async with spdy_exec(url) as session:
                await session.read_all()
            assert session.stdout == b"to stdout\n"
            assert session.stderr == b"oops\n"
            assert session.exit_code == 0

    run(main)


def test_exec_non_zero_exit_status_is_what_kubectl_reads() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("exit", "3"), stdout=True))
            async with spdy_exec(url, stderr=False) as session:
                status = await session.wait()
            assert status is not None
            assert status["status"] == "Failure"
            assert status["reason"] == "NonZeroExitCode"
            assert status["details"] == {"causes": [{"reason": "ExitCode", "message": "3"}]}
            assert "exit" in status["message"]
            assert session.exit_code == 3

    run(main)


def test_runtime_error_becomes_a_failure_status_with_its_message() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("missing", ("echo", "x"), stdout=True))
            async with spdy_exec(url, stderr=False) as session:
                status = await session.wait()
            assert status is not None
            assert status["status"] == "Failure"
            assert status["reason"] == "NotFound"
            assert status["code"] == 404
            assert status["message"] == "container missing not found"
            assert session.exit_code is None

            url = server.exec_url(ExecRequest("stopped", ("echo", "x"), stdout=True))
            async with spdy_exec(url, stderr=False) as session:
                status = await session.wait()
            assert status is not None and status["message"] == "container stopped is not running"

    run(main)


def test_runtime_bug_is_an_internal_error_not_a_crash(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("boom",), stdout=True))
            async with spdy_exec(url, stderr=False) as session:
                status = await session.wait()
            assert status is not None
            assert status["reason"] == "InternalError"
            assert "RuntimeError" in status["message"]
            # The server still works.
            url = server.exec_url(ExecRequest("c1", ("echo", "still", "here"), stdout=True))
            async with spdy_exec(url, stderr=False) as session:
                assert await session.read_all() == b"still here\n"

    run(main)
    assert "streaming runtime call failed" in caplog.text


def test_tty_exec_delivers_resize_events_in_order() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("tty",), tty=True, stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, tty=True) as session:
                assert set(session.streams) == {"error", "stdin", "stdout", "resize"}
                await session.resize(80, 24)
                assert await session.read_until(b"\n") == b"resize 80x24\n"
                await session.resize(132, 43)
                assert await session.read_until(b"\n") == b"resize 132x43\n"
                await session.write_stdin(b"ls\r")
                assert await session.read_until(b"ls\r") == b"ls\r"
                await session.close_stdin()
                await session.read_all()
            assert fake.resizes == [TerminalSize(80, 24), TerminalSize(132, 43)]
            assert fake.calls[0][3] is True  # tty
            assert session.exit_code == 0

    run(main)


def test_resize_json_split_across_frames_and_several_in_one() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("tty",), tty=True, stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, tty=True) as session:
                resize = session.streams["resize"]
                await resize.write(b'{"Width":10,')
                await asyncio.sleep(0.05)
                await resize.write(b'"Height":20}\n{"width":30,"height":40}')
                await session.read_until(b"resize 30x40\n")
                await session.close_stdin()
                await session.read_all()
            assert fake.resizes == [TerminalSize(10, 20), TerminalSize(30, 40)]

    run(main)


def test_attach_with_and_without_stdin() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.attach_url(AttachRequest("c1", stdin=True, stdout=True, stderr=True))
            async with spdy_attach(url, stdin=True) as session:
                await session.write_stdin(b"typed\n")
                await session.close_stdin()
                await session.read_all()
            assert session.stdout == b"typed\n"
            assert session.stderr == b"attached\n"
            assert session.status == {"metadata": {}, "status": "Success"}

            url = server.attach_url(AttachRequest("c1", stdout=True))
            async with spdy_attach(url, stderr=False) as session:
                assert await session.read_all() == b"main process output\n"
            assert fake.calls[-1] == ("attach", "c1", False, False, True, False)

            url = server.attach_url(AttachRequest("missing", stdout=True))
            async with spdy_attach(url, stderr=False) as session:
                status = await session.wait()
            assert status is not None and status["reason"] == "NotFound"

    run(main)


@pytest.mark.parametrize("protocol", [V3, V2])
def test_older_protocols_report_errors_as_text(protocol: str) -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("exit", "2"), stdout=True))
            async with spdy_exec(url, stderr=False, protocols=[protocol]) as session:
                await session.read_all()
                assert session.protocol == protocol
            assert session.error_text.startswith("command terminated with non-zero exit code")

            url = server.exec_url(ExecRequest("c1", ("echo", "ok"), stdout=True))
            async with spdy_exec(url, stderr=False, protocols=[protocol]) as session:
                assert await session.read_all() == b"ok\n"
            assert session.error_text == ""

    run(main)


def test_v2_tty_has_no_resize_stream() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("cat",), tty=True, stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, tty=True, protocols=[V2]) as session:
                assert "resize" not in session.streams
                await session.write_stdin(b"x")
                await session.close_stdin()
                assert await session.read_all() == b"x"

    run(main)


def test_protocol_negotiation_follows_the_client_and_refuses_unknown() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
            async with spdy_exec(url, stderr=False, protocols=["v9.channel.k8s.io", V3, V4]) as session:
                assert session.protocol == V3
                await session.read_all()

            url = server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
            with pytest.raises(UpgradeRefused) as refused:
                await http_upgrade(url, spdy_upgrade_headers(["v1.channel.k8s.io"]))
            assert refused.value.status == 403
            assert b"unable to negotiate protocol" in refused.value.body

            # Comma-separated in one header works as well as one header per protocol.
            url = server.exec_url(ExecRequest("c1", ("echo", "x"), stdout=True))
            upgraded = await http_upgrade(url, [("Connection", "Upgrade"), ("Upgrade", "SPDY/3.1"),
                                                ("X-Stream-Protocol-Version", f"v9.channel.k8s.io, {V4}")])
            assert upgraded.headers["x-stream-protocol-version"] == V4
            assert upgraded.headers["upgrade"] == "SPDY/3.1"
            upgraded.writer.close()

    run(main)


def test_query_parameters_are_accepted_but_the_registered_request_wins() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("echo", "registered"), stdout=True))
            query = {"command": ["rm", "-rf", "/"], "stdin": "1", "stdout": "1", "tty": "1", "container": "other"}
            async with spdy_exec(url, stderr=False, query=query) as session:
                assert await session.read_all() == b"registered\n"
            assert fake.calls == [("exec", "c1", ("echo", "registered"), False, False, True, False)]

    run(main)


@pytest.mark.parametrize("flow_control", [True, False])
def test_large_output_with_and_without_client_flow_control(flow_control: bool) -> None:
    # Without flow control the client behaves like Kubernetes' Go client:
    # it never sends WINDOW_UPDATE, and output must still flow past 64 KiB.
    size = 1024 * 1024 + 17

    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("big", str(size)), stdout=True))
            async with spdy_exec(url, stderr=False, flow_control=flow_control) as session:
                out = await session.read_all()
            assert len(out) == size
            assert out[:512] == bytes(range(256)) * 2
            assert session.exit_code == 0

    run(main)


@pytest.mark.parametrize("flow_control", [True, False])
def test_large_stdin_is_delivered_whole(flow_control: bool) -> None:
    payload = bytes(range(256)) * 4096  # 1 MiB

    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, stderr=False, flow_control=flow_control) as session:
                writer = asyncio.create_task(session.write_stdin(payload))
                await writer
                await session.close_stdin()
                out = await session.read_all()
            assert out == payload

    run(main)


def test_missing_streams_time_out_with_an_error_status() -> None:
    async def main() -> None:
        async with serving(stream_creation_timeout=0.3) as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True))
            # The client "forgets" the stdin stream.
            async with spdy_exec(url, stdin=False, stderr=False) as session:
                status = await session.wait()
            assert status is not None
            assert status["status"] == "Failure"
            assert "stdin" in status["message"]
            assert fake.calls == []

    run(main)


def test_unexpected_and_extra_streams_are_refused() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True))
            conn, _protocol = await connect_spdy(url, [V4])
            try:
                bogus = await conn.open_stream((("streamtype", "bogus"),))
                streams = {}
                for kind in ("error", "stdin", "stdout"):
                    stream = await conn.open_stream((("streamtype", kind),))
                    await asyncio.wait_for(stream.wait_reply(), 5)
                    streams[kind] = stream
                await eventually(lambda: bogus.is_reset)
                extra = await conn.open_stream((("streamtype", "stdout"),))
                await eventually(lambda: extra.is_reset)
                await streams["stdin"].write(b"still works")
                await streams["stdin"].close()
                assert await asyncio.wait_for(streams["stdout"].read_all(), 5) == b"still works"
                status = json.loads(await asyncio.wait_for(streams["error"].read_all(), 5))
                assert status["status"] == "Success"
            finally:
                await conn.aclose()

    run(main)


def test_client_dropping_mid_session_cancels_the_runtime_call() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("sleep",), stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, stderr=False) as session:
                await asyncio.wait_for(fake.started.wait(), 5)
                await session.write_stdin(b"partial input")
                # Vanish without FIN, GOAWAY or close handshake.
                session.conn._writer.transport.abort()
            await eventually(lambda: fake.cancelled == ["sleep"])
            await eventually(lambda: server.active_sessions == 0)

            # Dropping while the runtime reads stdin: it sees end-of-stream or is cancelled.
            url = server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, stderr=False) as session:
                await session.write_stdin(b"abc")
                await session.read_until(b"abc")
                session.conn._writer.transport.abort()
            await eventually(lambda: server.active_sessions == 0)
            assert "cat" in fake.cancelled + fake.finished

    run(main)


def test_ping_is_answered_and_goaway_from_client_is_tolerated() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, stderr=False) as session:
                await session.conn.ping(timeout=5)
                await session.conn.send_frame(Ping(1001))  # an odd id the server must echo
                await session.conn.send_frame(GoAway(0))
                await session.write_stdin(b"after goaway")
                await session.close_stdin()
                assert await session.read_all() == b"after goaway"

    run(main)


def test_malformed_frames_end_only_that_session() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            garbage = [
                b"\x80\x02\x00\x01\x00\x00\x00\x00",  # SPDY/2 control frame
                b"\x80\x03\x00\x06\x00\x00\x00\x05\x00\x00\x00\x01\x00",  # PING of 5 bytes
                b"\x80\x03\x00\x01\x00\x00\x00\x0e\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00garb",  # bad zlib
                b"\x80\x03\x00\x01\x00\xff\xff\xff",  # a 16 MiB control frame
            ]
            for raw in garbage:
                url = server.exec_url(ExecRequest("c1", ("sleep",), stdin=True, stdout=True))
                upgraded = await http_upgrade(url, spdy_upgrade_headers([V4]))
                upgraded.writer.write(raw)
                # The server answers with GOAWAY (PROTOCOL_ERROR) and hangs up.
                rest = await asyncio.wait_for(upgraded.reader.read(), 5)
                assert rest[:4] == b"\x80\x03\x00\x07", rest
                assert rest[-4:] == b"\x00\x00\x00\x01"
                upgraded.writer.close()
            await eventually(lambda: server.active_sessions == 0)
            assert fake.calls == []

            # A reset of stdout mid-session is not fatal: output is dropped, the status still arrives.
            url = server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, stderr=False) as session:
                await session.conn.send_frame(RstStream(session.streams["stdout"].stream_id, 5))
                await session.write_stdin(b"into the void")
                await session.close_stdin()
                status = await session.wait()
            assert status == {"metadata": {}, "status": "Success"}

            url = server.exec_url(ExecRequest("c1", ("echo", "alive"), stdout=True))
            async with spdy_exec(url, stderr=False) as session:
                assert await session.read_all() == b"alive\n"

    run(main)


def test_client_vanishing_behind_unread_stdin_is_noticed_at_the_next_write() -> None:
    # A Go-like client floods stdin that the process never reads: the server's
    # read loop stalls (bounded buffers), so only a failed write can reveal
    # that the client is gone.
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("ticker",), stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, stderr=False, flow_control=False) as session:
                await asyncio.wait_for(fake.started.wait(), 5)
                flood = asyncio.create_task(session.write_stdin(bytes(8 * 1024 * 1024)))
                await session.read_until(b"tick\n")
                await asyncio.sleep(0.2)
                assert not flood.done()  # backpressure reached the client
                session.conn._writer.transport.abort()
                flood.cancel()
                await asyncio.wait([flood])
            await eventually(lambda: fake.cancelled == ["ticker"])
            await eventually(lambda: server.active_sessions == 0)

    run(main)
