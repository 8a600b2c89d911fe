"""The server's HTTP edge: routing, tokens (single use, expiry), refusals, timeouts, stop."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from hawser.cri.streaming import AttachRequest, ExecRequest, PortForwardRequest, StreamingServer
from hawser.errors import FailedPrecondition, InvalidArgument, ResourceExhausted
from tests.support.k8s_stream_client import (
    V4,
    UpgradeRefused,
    http_upgrade,
    spdy_exec,
    spdy_upgrade_headers,
    ws_exec,
)
from tests.unit.streaming.fakes import FakeRuntime, eventually, run, serving


async def raw_exchange(server: StreamingServer, request: bytes, timeout: float = 5) -> bytes:
    host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(request)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()


def test_urls_are_single_use() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("echo", "once"), stdout=True))
            assert url.startswith(server.base_url + "/exec/")
            async with spdy_exec(url, stderr=False) as session:
                assert await session.read_all() == b"once\n"
            with pytest.raises(UpgradeRefused) as refused:
                async with spdy_exec(url, stderr=False):
                    pass
            assert refused.value.status == 404
            assert len(fake.calls) == 1

            # A refused upgrade uses the token up too, as does any request on it.
            url = server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
            with pytest.raises(UpgradeRefused):
                await http_upgrade(url, spdy_upgrade_headers(["v1.channel.k8s.io"]))
            with pytest.raises(UpgradeRefused) as refused:
                await http_upgrade(url, spdy_upgrade_headers([V4]))
            assert refused.value.status == 404

    run(main)


def test_tokens_expire() -> None:
    now = [1000.0]

    async def main() -> None:
        async with serving(token_ttl=timedelta(seconds=60), clock=lambda: now[0]) as (server, fake):
            stale = server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
            fresh = server.exec_url(ExecRequest("c1", ("echo", "fresh"), stdout=True))
            now[0] += 59.9
            async with spdy_exec(fresh, stderr=False) as session:
                assert await session.read_all() == b"fresh\n"
            now[0] += 0.1
            with pytest.raises(UpgradeRefused) as refused:
                async with ws_exec(stale):
                    pass
            assert refused.value.status == 404
            assert b"unknown, used or expired" in refused.value.body
            assert len(fake.calls) == 1

    run(main)


def test_a_token_only_works_on_its_own_route() -> None:
    async def main() -> None:
        async with serving() as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
            with pytest.raises(UpgradeRefused) as refused:
                await http_upgrade(url.replace("/exec/", "/attach/"), spdy_upgrade_headers([V4]))
            assert refused.value.status == 404
            url = server.attach_url(AttachRequest("c1", stdout=True))
            assert "/attach/" in url
            url = server.port_forward_url(PortForwardRequest("pod1"))
            assert "/portforward/" in url
            for path in ("/", "/exec", "/exec/", "/exec/a/b", "/shell/abc", "/exec/nosuchtoken"):
                with pytest.raises(UpgradeRefused) as refused:
                    await http_upgrade(server.base_url + path, spdy_upgrade_headers([V4]))
                assert refused.value.status == 404, path
            assert fake.calls == []

    run(main)


def test_invalid_requests_are_refused_before_a_url_exists() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            bad = [
                ExecRequest("c1", ("sh",), tty=True, stdout=True, stderr=True),
                ExecRequest("c1", ("sh",)),
                ExecRequest("c1", (), stdout=True),
                ExecRequest("", ("sh",), stdout=True),
            ]
            for request in bad:
                with pytest.raises(InvalidArgument):
                    server.exec_url(request)
            with pytest.raises(InvalidArgument, match="tty and stderr"):
                server.attach_url(AttachRequest("c1", tty=True, stdout=True, stderr=True))
            with pytest.raises(InvalidArgument):
                server.attach_url(AttachRequest("c1"))
            with pytest.raises(InvalidArgument):
                server.port_forward_url(PortForwardRequest(""))
            with pytest.raises(InvalidArgument, match="invalid port 0"):
                server.port_forward_url(PortForwardRequest("pod1", port=(80, 0)))
            with pytest.raises(InvalidArgument):
                server.port_forward_url(PortForwardRequest("pod1", port=(65536,)))
            # Lists are accepted where CRI has repeated fields.
            assert ExecRequest("c1", ["sh", "-c", "true"], stdout=True).cmd == ("sh", "-c", "true")  # type: ignore[arg-type]

    run(main)


def test_too_many_pending_urls() -> None:
    async def main() -> None:
        async with serving(max_pending_tokens=2) as (server, _fake):
            server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
            url = server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
            with pytest.raises(ResourceExhausted):
                server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
            async with spdy_exec(url, stderr=False) as session:
                await session.read_all()
            server.exec_url(ExecRequest("c1", ("echo",), stdout=True))

    run(main)


def test_not_started_server_has_no_urls() -> None:
    server = StreamingServer(FakeRuntime())
    with pytest.raises(FailedPrecondition):
        server.exec_url(ExecRequest("c1", ("echo",), stdout=True))


def test_http_refusals() -> None:
    async def main() -> None:
        async with serving() as (server, _fake):
            def path() -> str:
                return server.exec_url(ExecRequest("c1", ("echo",), stdout=True)).removeprefix(server.base_url)

            answer = await raw_exchange(server, f"GET {path()} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert b"missing upgrade headers" in answer

            answer = await raw_exchange(server, f"DELETE {path()} HTTP/1.1\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 405 ")

            answer = await raw_exchange(server, f"GET {path()} HTTP/1.0\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 505 ")

            answer = await raw_exchange(server, b"garbage\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 400 ")

            answer = await raw_exchange(server, f"GET {path()} HTTP/1.1\r\n bad fold\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 400 ")

            answer = await raw_exchange(
                server, f"POST {path()} HTTP/1.1\r\nContent-Length: 5\r\nConnection: Upgrade\r\n"
                        f"Upgrade: SPDY/3.1\r\n\r\nhello".encode())
            assert answer.startswith(b"HTTP/1.1 400 ")

            answer = await raw_exchange(
                server, f"GET {path()} HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 400 ")

            huge = b"X-Filler: " + b"a" * 70_000 + b"\r\n"
            answer = await raw_exchange(server, f"GET {path()} HTTP/1.1\r\n".encode() + huge + b"\r\n")
            assert answer.startswith(b"HTTP/1.1 431 ")

            # After all that, the server still serves.
            url = server.exec_url(ExecRequest("c1", ("echo", "fine"), stdout=True))
            async with spdy_exec(url, stderr=False) as session:
                assert await session.read_all() == b"fine\n"

    run(main)


def test_silent_clients_are_dropped_after_the_handshake_timeout() -> None:
    async def main() -> None:
        async with serving(handshake_timeout=0.2) as (server, _fake):
            host, port = server.base_url.removeprefix("http://").rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            writer.write(b"GET /exec/x HTTP/1.1\r\n")  # and never the rest
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
            await eventually(lambda: server.active_sessions == 0)

    run(main)


def test_connection_limit() -> None:
    async def main() -> None:
        async with serving(max_connections=1) as (server, fake):
            url = server.exec_url(ExecRequest("c1", ("sleep",), stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, stderr=False):
                await asyncio.wait_for(fake.started.wait(), 5)
                other = server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
                with pytest.raises(UpgradeRefused) as refused:
                    await http_upgrade(other, spdy_upgrade_headers([V4]))
                assert refused.value.status == 503

    run(main)


def test_stop_ends_every_session_and_cancels_the_runtime() -> None:
    async def main() -> None:
        fake = FakeRuntime()
        server = StreamingServer(fake, port=0)
        await server.start()
        url = server.exec_url(ExecRequest("c1", ("sleep",), stdin=True, stdout=True))
        pending = server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
        async with spdy_exec(url, stdin=True, stderr=False) as session:
            await asyncio.wait_for(fake.started.wait(), 5)
            await asyncio.wait_for(server.stop(), 5)
            assert fake.cancelled == ["sleep"]
            await asyncio.wait_for(session.conn.wait_closed(), 5)
        assert server.active_sessions == 0
        # Stopped: no new connections, no URLs.
        with pytest.raises(OSError):
            await http_upgrade(pending, spdy_upgrade_headers([V4]))
        with pytest.raises(FailedPrecondition):
            server.exec_url(ExecRequest("c1", ("echo",), stdout=True))
        await server.stop()  # idempotent

    run(main)


def test_advertised_address_and_context_manager() -> None:
    async def main() -> None:
        async with StreamingServer(FakeRuntime(), address="127.0.0.1", advertise_address="localhost") as server:
            assert server.base_url.startswith("http://localhost:")
            url = server.exec_url(ExecRequest("c1", ("echo", "via localhost"), stdout=True))
            async with spdy_exec(url, stderr=False) as session:
                assert await session.read_all() == b"via localhost\n"

    run(main)
