"""Port forwarding over SPDY (portforward.k8s.io) and over WebSocket channels, over real TCP."""

from __future__ import annotations

import asyncio

import pytest

from hawser.cri.streaming import PortForwardRequest
from tests.support.k8s_stream_client import (
    PORT_FORWARD,
    V4,
    V4_BASE64,
    UpgradeRefused,
    connect_spdy,
    spdy_port_forward,
    ws_port_forward,
    ws_tunnel_port_forward,
)
from tests.unit.streaming.fakes import eventually, run, serving


def test_spdy_round_trip_and_half_close() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.port_forward_url(PortForwardRequest("pod1"))
            async with spdy_port_forward(url) as forward:
                assert forward.conn is not None
                connection = await forward.open(8080)
                await connection.write(b"ping\n")
                assert await connection.read(5) == b"port "
                await connection.close_write()
                assert await connection.read_all() == b"8080\nping\n"
                assert await connection.error_message() == ""
            assert fake.calls == [("port_forward", "pod1", 8080)]
            assert fake.finished == ["port 8080"]

    run(main)


def test_spdy_many_connections_on_one_session() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.port_forward_url(PortForwardRequest("pod1", port=(80, 443)))
            async with spdy_port_forward(url, flow_control=False) as forward:
                connections = [await forward.open(port) for port in (80, 443, 80)]
                for index, connection in enumerate(connections):
                    await connection.write(f"request {index}".encode())
                    await connection.close_write()
                answers = await asyncio.gather(*(connection.read_all() for connection in connections))
                assert answers == [b"port 80\nrequest 0", b"port 443\nrequest 1", b"port 80\nrequest 2"]
                # A big payload through one connection while another stays open.
                big = bytes(range(256)) * 2048
                connection = await forward.open(80)
                idle = await forward.open(443)
                writer = asyncio.create_task(connection.write(big))
                received = await connection.read(len(b"port 80\n"))
                assert received == b"port 80\n"
                chunks = bytearray()
                while len(chunks) < len(big):
                    chunks += await connection.read()
                await writer
                assert bytes(chunks) == big
                await idle.close_write()
                assert await idle.read_all() == b"port 443\n"
            assert sorted(call[2] for call in fake.calls) == [80, 80, 80, 443, 443]

    run(main)


def test_spdy_errors_go_to_the_error_stream() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.port_forward_url(PortForwardRequest("pod1", port=(9, 80)))
            async with spdy_port_forward(url) as forward:
                refused = await forward.open(9)
                message = await refused.error_message()
                assert message == ("error forwarding port 9 to pod pod1: "
                                   "connection refused: nothing listens on port 9")
                assert await refused.read_all() == b""

                not_requested = await forward.open(22)
                message = await not_requested.error_message()
                assert "port 22 was not requested for sandbox pod1" in message

                # The session is still usable.
                ok = await forward.open(80)
                await ok.close_write()
                assert await ok.read_all() == b"port 80\n"

            url = server.port_forward_url(PortForwardRequest("missing"))
            async with spdy_port_forward(url) as forward:
                connection = await forward.open(80)
                assert "sandbox missing not found" in await connection.error_message()

    run(main)


def test_spdy_incomplete_pair_and_bad_headers() -> None:
    async def main() -> None:
        async with serving(stream_creation_timeout=0.2) as (server, fake):
            url = server.port_forward_url(PortForwardRequest("pod1"))
            conn, protocol = await connect_spdy(url, [PORT_FORWARD])
            assert protocol == PORT_FORWARD
            try:
                error = await conn.open_stream((("streamtype", "error"), ("port", "80"), ("requestid", "7")))
                await asyncio.wait_for(error.wait_reply(), 5)
                # No data stream follows: the pair expires with a message.
                message = await asyncio.wait_for(error.read_all(), 5)
                assert b"timed out waiting for the data stream of port 80" in message
                await eventually(lambda: error.is_reset)

                for headers in ([("streamtype", "data"), ("port", "http"), ("requestid", "8")],
                                [("streamtype", "data"), ("port", "70000"), ("requestid", "8")],
                                [("streamtype", "video"), ("port", "80"), ("requestid", "8")],
                                [("streamtype", "data"), ("requestid", "8")]):
                    bad = await conn.open_stream(tuple(headers))
                    await eventually(lambda bad=bad: bad.is_reset)  # type: ignore[misc]

                # Without requestID headers, the pair is found by stream ids (error first).
                error = await conn.open_stream((("streamtype", "error"), ("port", "80")))
                data = await conn.open_stream((("streamtype", "data"), ("port", "80")))
                await data.close()
                assert await asyncio.wait_for(data.read_all(), 5) == b"port 80\n"
            finally:
                await conn.aclose()
            assert fake.calls == [("port_forward", "pod1", 80)]

    run(main)


def test_spdy_client_drop_cancels_forwarding() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.port_forward_url(PortForwardRequest("pod1"))
            async with spdy_port_forward(url) as forward:
                connection = await forward.open(80)
                assert await connection.read(8) == b"port 80\n"
                forward.conn._writer.transport.abort()
            # The forward sees end-of-stream first, and is cancelled if it does not stop by itself.
            await eventually(lambda: "port 80" in fake.cancelled + fake.finished)
            await eventually(lambda: server.active_sessions == 0)

    run(main)


@pytest.mark.parametrize("protocol", [V4, V4_BASE64])
def test_websocket_round_trip(protocol: str) -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.port_forward_url(PortForwardRequest("pod1"))
            async with ws_port_forward(url, [8080, 9], protocols=[protocol]) as forward:
                await forward.write(0, b"hello")
                assert await forward.read_until(0, b"hello") == b"port 8080\nhello"
                assert forward.announced_port(0) == 8080
                assert forward.announced_port(1) == 8080
                assert forward.announced_port(2) == 9
                assert forward.announced_port(3) == 9
                assert "connection refused" in await _error_soon(forward, 1)
            await eventually(lambda: "port 8080" in fake.cancelled + fake.finished)
            await eventually(lambda: server.active_sessions == 0)

    run(main)


async def _error_soon(forward: object, index: int) -> str:
    # The error channel stays open until the session ends; poll what arrived.
    collector = forward._errors[index]  # type: ignore[attr-defined]
    await eventually(lambda: bool(collector.data))
    return bytes(collector.data).decode()


def test_websocket_registered_ports_win_and_session_ends_with_the_forward() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            url = server.port_forward_url(PortForwardRequest("pod1", port=(9,)))
            async with ws_port_forward(url, [9]) as forward:
                assert "connection refused" in await forward.error_message(0)
                assert forward.announced_port(0) == forward.announced_port(1) == 9
            # All forwards done: the server closed the WebSocket properly.
            assert forward.ws.close_code == 1000

            url = server.port_forward_url(PortForwardRequest("pod1"))
            with pytest.raises(UpgradeRefused) as refused:
                async with ws_port_forward(url, []):
                    pass
            assert refused.value.status == 400

    run(main)


def test_spdy_tunnelled_through_websocket() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.port_forward_url(PortForwardRequest("pod1", port=(80, 9)))
            async with ws_tunnel_port_forward(url) as forward:
                assert forward.conn is not None
                first, second = await forward.open(80), await forward.open(80)
                await first.write(b"one")
                await second.write(b"two")
                await first.close_write()
                await second.close_write()
                assert await first.read_all() == b"port 80\none"
                assert await second.read_all() == b"port 80\ntwo"
                refused = await forward.open(9)
                assert "connection refused" in await refused.error_message()
                await forward.conn.ping(timeout=5)
            assert fake.finished == ["port 80", "port 80"]
            await eventually(lambda: server.active_sessions == 0)

    run(main)
