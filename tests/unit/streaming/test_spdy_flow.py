"""SPDY connection behaviour between two SpdyConnections over loopback TCP: flow control, resets, ids."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hawser.cri.streaming._spdy import DataFrame, Setting, SettingId, Settings, SynStream
from hawser.cri.streaming._spdy_conn import SpdyConnection
from tests.unit.streaming.fakes import eventually, run


@asynccontextmanager
async def pair(*, client_buffer: int = 1 << 20, client_flow: bool | None = None
               ) -> AsyncIterator[tuple[SpdyConnection, SpdyConnection]]:
    accepted: asyncio.Queue[SpdyConnection] = asyncio.Queue()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = SpdyConnection(reader, writer, server=True)
        conn.start()
        await accepted.put(conn)
        await conn.wait_closed()

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    client = SpdyConnection(reader, writer, server=False, stream_buffer=client_buffer, flow_control=client_flow)
    client.start()
    server = await asyncio.wait_for(accepted.get(), 5)
    try:
        yield server, client
    finally:
        await client.aclose()
        await server.aclose()
        listener.close()
        await listener.wait_closed()


def test_send_window_is_enforced_once_the_peer_does_flow_control() -> None:
    payload = bytes(200 * 1024)

    async def main() -> None:
        async with pair() as (server, client):
            await client.send_frame(Settings((Setting(SettingId.INITIAL_WINDOW_SIZE, 65536),)))
            stream = await client.open_stream((("streamtype", "stdout"),))
            accepted = await asyncio.wait_for(server.accept(), 5)
            assert accepted is not None
            await server.reply(accepted)
            await asyncio.wait_for(stream.wait_reply(), 5)
            writer = asyncio.create_task(accepted.write(payload))
            await eventually(lambda: len(stream._inbound) == 65536)
            await asyncio.sleep(0.05)
            assert not writer.done()
            assert len(stream._inbound) == 65536  # not a byte past the window
            received = bytearray()
            while len(received) < len(payload):
                received += await stream.read()
            await asyncio.wait_for(writer, 5)
            assert bytes(received) == payload

    run(main)


def test_peers_without_flow_control_are_not_held_to_the_window() -> None:
    # Kubernetes' spdystream never sends WINDOW_UPDATE: 64 KiB must not be a wall.
    payload = bytes(300 * 1024)

    async def main() -> None:
        async with pair(client_flow=False) as (server, client):
            stream = await client.open_stream((("streamtype", "stdout"),))
            accepted = await asyncio.wait_for(server.accept(), 5)
            assert accepted is not None
            await server.reply(accepted)
            await asyncio.wait_for(accepted.write(payload), 5)  # all buffered by the client, none read
            await accepted.close()
            assert await asyncio.wait_for(stream.read_all(), 5) == payload

    run(main)


def test_window_updates_follow_consumption() -> None:
    async def main() -> None:
        async with pair() as (server, client):
            stream = await client.open_stream((("streamtype", "stdin"),))
            accepted = await asyncio.wait_for(server.accept(), 5)
            assert accepted is not None
            await server.reply(accepted)
            await stream.write(bytes(40 * 1024))
            await eventually(lambda: len(accepted._inbound) == 40 * 1024)
            assert stream._send_window == 65536 - 40 * 1024
            assert await accepted.read() == bytes(40 * 1024)
            # Half a window consumed: the reader credits it back.
            await eventually(lambda: stream._send_window == 65536)
            assert client._flow_enforced

    run(main)


def test_half_close_reset_and_unknown_streams() -> None:
    async def main() -> None:
        async with pair() as (server, client):
            stream = await client.open_stream((("streamtype", "data"),))
            accepted = await asyncio.wait_for(server.accept(), 5)
            assert accepted is not None and accepted.header("StreamType") == "data"
            await server.reply(accepted)
            await stream.write(b"request")
            await stream.close()
            assert await accepted.read_all() == b"request"
            assert accepted.remote_closed and not accepted.local_closed
            await accepted.write(b"response")
            await accepted.close()
            assert await stream.read_all() == b"response"
            assert 1 not in server._streams  # both sides closed: forgotten

            # Data for a stream that does not exist is answered with RST_STREAM, not a dead session.
            await client.send_frame(DataFrame(99, b"stray"))
            other = await client.open_stream((("streamtype", "data"),))
            accepted = await asyncio.wait_for(server.accept(), 5)
            assert accepted is not None
            await accepted.reset()
            await eventually(lambda: other.is_reset)
            await other.write(b"dropped silently")
            assert await other.read() == b""
            assert not server.closed and not client.closed

    run(main)


def test_stream_ids_must_increase() -> None:
    async def main() -> None:
        async with pair() as (server, client):
            await client.open_stream((("streamtype", "a"),))
            await client.send_frame(SynStream(1, (("streamtype", "again"),)))
            await asyncio.wait_for(server.wait_closed(), 5)
            assert server.protocol_error is not None and "not a new peer stream id" in server.protocol_error
            await asyncio.wait_for(client.wait_closed(), 5)
            assert client.goaway_received

    run(main)


def test_a_flow_controlled_peer_overrunning_our_window_gets_its_stream_reset() -> None:
    async def main() -> None:
        async with pair(client_flow=None) as (server, client):
            # The client announces flow control, then ignores the server's window.
            await client.send_frame(Settings((Setting(SettingId.INITIAL_WINDOW_SIZE, 65536),)))
            stream = await client.open_stream((("streamtype", "stdin"),))
            accepted = await asyncio.wait_for(server.accept(), 5)
            assert accepted is not None
            await server.reply(accepted)
            await stream.write(bytes(100 * 1024))
            await eventually(lambda: stream.is_reset and accepted.is_reset)
            # What fit in the window was delivered; the session itself lives on.
            assert len(await accepted.read_all()) == 65536
            other = await client.open_stream((("streamtype", "stdin"),))
            assert await asyncio.wait_for(server.accept(), 5) is not None
            assert not other.is_reset and not server.closed

    run(main)
