"""Exec, attach and port-forward sessions through the streaming server into
real containers (runc, conmon) and a real network namespace, driven by the
Kubernetes client side of the protocols (SPDY and WebSocket).

The containers are made with the CLI; the server runs in the test process
over ``ContainerStreams``, as hawserd runs it.  Every test checks that no
exec'd process, child of ours, file descriptor or exec directory is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from tests.integration.conftest import Env
from tests.support.aio import eventually, processes_running, run
from tests.support.k8s_stream_client import V4, V5, spdy_attach, spdy_exec, spdy_port_forward, ws_attach, ws_exec

from hawser.cri._stream_runtime import ContainerStreams, Streaming, new_streaming
from hawser.cri.streaming import AttachRequest, ExecRequest, PortForwardRequest
from hawser.errors import NotFound
from hawser.host import pin_namespaces, remove_pin_dir, run_in_netns
from hawser.images import ImageService
from hawser.pods import SANDBOX_NOTREADY, SANDBOX_READY, Sandbox
from hawser.runtime import ContainerManager

pytestmark = pytest.mark.integration

T = TypeVar("T")
Ctr = tuple[Env, str]


async def to_thread(fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


class FakeSandboxes:
    def __init__(self) -> None:
        self.pods: dict[str, Sandbox] = {}

    def get(self, sandbox_id: str) -> Sandbox:
        try:
            return self.pods[sandbox_id]
        except KeyError:
            raise NotFound(f"pod sandbox {sandbox_id} not found") from None


@dataclass
class Node:
    env: Env
    ref: str
    manager: ContainerManager
    sandboxes: FakeSandboxes

    def run(self, *args: str) -> str:
        return self.env.cli("run", "-d", *args).stdout.strip()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Streaming]:
        streaming = new_streaming(containers=self.manager, sandboxes=self.sandboxes, blocking=to_thread,
                                  address="127.0.0.1", port=0)
        async with streaming.server:
            yield streaming


def _children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                    stat = f.read()
            except OSError:
                continue
            if stat[stat.rfind(")") + 2:].split()[1] == me:
                found.append(int(entry))
    return found


@pytest.fixture
def node(ctr: Ctr) -> Iterator[Node]:
    env, ref = ctr
    store = env.store()
    fds = set(os.listdir("/proc/self/fd"))
    children = set(_children())  # the registry's server
    try:
        yield Node(env, ref, ContainerManager.of(store, ImageService(store)), FakeSandboxes())
    finally:
        store.close()
    exec_dirs = [str(p) for p in Path(env.state, "containers").glob("*/exec/*")]
    assert exec_dirs == [], "an exec left its directory"
    assert set(_children()) <= children, "a child process of the test was left"
    leaked = set(os.listdir("/proc/self/fd")) - fds
    assert not leaked, {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}


SLEEPER = ("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")


# --- exec ---------------------------------------------------------------------------------


def test_exec_without_tty_over_spdy_and_websocket(node: Node) -> None:
    id_ = node.run(node.ref, *SLEEPER)

    async def body() -> None:
        async with node.serving() as streaming:
            server = streaming.server
            # stdin to cat, its end closing cat's input; stdout back.
            url = server.exec_url(ExecRequest(id_, ("cat",), stdin=True, stdout=True, stderr=True))
            async with spdy_exec(url, stdin=True) as session:
                await session.write_stdin(b"hello ")
                assert await session.read_until(b"hello ") == b"hello "
                await session.write_stdin(b"world\n")
                await session.close_stdin()
                assert await session.read_all() == b"hello world\n"
            assert session.exit_code == 0 and session.stderr == b""

            command = ("sh", "-c", "echo out; echo err >&2; exit 3")
            url = server.exec_url(ExecRequest(id_, command, stdout=True, stderr=True))
            async with spdy_exec(url) as session:
                await session.read_all()
            assert (session.stdout, session.stderr, session.exit_code) == (b"out\n", b"err\n", 3)
            assert "exited with 3" in session.status["message"]  # type: ignore[index]

            # The same over WebSocket (v5: stdin can be half-closed).
            url = server.exec_url(ExecRequest(id_, ("cat",), stdin=True, stdout=True, stderr=True))
            async with ws_exec(url, protocols=(V5,)) as ws:
                await ws.write_stdin(b"over websocket\n")
                assert await ws.read_until(b"\n") == b"over websocket\n"
                await ws.close_stdin()
                await ws.read_all()
            assert ws.exit_code == 0
            url = server.exec_url(ExecRequest(id_, command, stdout=True, stderr=True))
            async with ws_exec(url, protocols=(V4,)) as ws:
                await ws.read_all()
            assert (ws.stdout, ws.stderr, ws.exit_code) == (b"out\n", b"err\n", 3)

            # Only stdout requested: stderr is dropped, the code still comes back.
            url = server.exec_url(ExecRequest(id_, command, stdout=True))
            async with spdy_exec(url, stderr=False) as session:
                await session.read_all()
            assert (session.stdout, session.exit_code) == (b"out\n", 3)

    run(body)


def test_exec_with_tty_resize_and_exit_code(node: Node) -> None:
    id_ = node.run(node.ref, *SLEEPER)
    script = "read a; stty size; read b; stty size; exit 5"

    async def body() -> None:
        async with node.serving() as streaming:
            server = streaming.server
            url = server.exec_url(ExecRequest(id_, ("sh", "-c", script), tty=True, stdin=True, stdout=True))
            async with spdy_exec(url, stdin=True, tty=True, stderr=False) as session:
                # A resize and the input after it travel apart (as with any CRI
                # runtime): the command may read before the resize reached its terminal.
                await session.resize(100, 30)
                await asyncio.sleep(0.2)
                await session.write_stdin(b"go\n")
                # The terminal echoes the input and turns \n into \r\n.
                assert (await session.read_until(b"30 100\r\n")).endswith(b"go\r\n30 100\r\n")
                await session.resize(120, 40)
                await asyncio.sleep(0.2)
                await session.write_stdin(b"again\n")
                assert (await session.read_until(b"40 120\r\n")).endswith(b"again\r\n40 120\r\n")
                await session.read_all()
            assert session.exit_code == 5

            url = server.exec_url(ExecRequest(id_, ("sh", "-c", script), tty=True, stdin=True, stdout=True))
            async with ws_exec(url) as ws:
                await ws.resize(81, 25)
                await asyncio.sleep(0.2)
                await ws.write_stdin(b"go\n")
                await ws.read_until(b"25 81\r\n")
                await ws.resize(90, 26)
                await asyncio.sleep(0.2)
                await ws.write_stdin(b"go\n")
                await ws.read_until(b"26 90\r\n")
                await ws.read_all()
            assert ws.exit_code == 5

            # A quick command's output is not lost when the terminal closes.
            url = server.exec_url(ExecRequest(id_, ("echo", "quick"), tty=True, stdout=True))
            async with spdy_exec(url, tty=True, stderr=False) as session:
                assert await session.read_all() == b"quick\r\n"
            assert session.exit_code == 0

    run(body)


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
def test_exec_and_background_processes(node: Node, tty: bool) -> None:
    id_ = node.run(node.ref, *SLEEPER)

    async def body() -> None:
        async with node.serving() as streaming:
            # Without a terminal, a background process that keeps the output holds
            # the session until it closes it (runc relays until then; docker and
            # containerd behave alike).  With one, the end of the command hangs the
            # terminal up, and SIGHUP ends the background job.
            command = ("sh", "-c", "(sleep 1; echo late) & echo early; exit 2")
            url = streaming.server.exec_url(ExecRequest(id_, command, tty=tty, stdout=True, stderr=not tty))
            async with spdy_exec(url, tty=tty, stderr=not tty) as session:
                output = await session.read_all()
            assert output.split() == ([b"early"] if tty else [b"early", b"late"]) and session.exit_code == 2

            # One whose output goes elsewhere does not hold it.
            command = ("sh", "-c", "sleep 2345 </dev/null >/dev/null 2>&1 & echo early; exit 3")
            url = streaming.server.exec_url(ExecRequest(id_, command, tty=tty, stdout=True, stderr=not tty))
            start = time.monotonic()
            async with spdy_exec(url, tty=tty, stderr=not tty) as session:
                assert (await session.read_all()).strip() == b"early"
            assert session.exit_code == 3 and time.monotonic() - start < 3
            if not tty:
                assert processes_running("2345"), "the background process goes on in the container"

    run(body)


def test_exec_errors(node: Node) -> None:
    running = node.run(node.ref, *SLEEPER)
    stopped = node.run(node.ref, "true")
    node.env.cli("wait", stopped)

    async def body() -> None:
        async with node.serving() as streaming:
            server = streaming.server
            cases = [(running, ("nosuch-command",), "BadRequest", "executable file not found"),
                     (stopped, ("true",), "Conflict", "is not running"),
                     ("0" * 64, ("true",), "NotFound", "no such container")]
            for container, command, reason, message in cases:
                url = server.exec_url(ExecRequest(container, command, stdout=True, stderr=True))
                async with spdy_exec(url) as session:
                    await session.read_all()
                assert session.status is not None, container
                assert session.status["reason"] == reason, session.status
                assert message in session.status["message"], session.status

    run(body)


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "tty"])
def test_exec_killed_when_the_client_leaves(node: Node, tty: bool) -> None:
    id_ = node.run(node.ref, *SLEEPER)
    marker = "1234" if tty else "4321"

    async def body() -> None:
        async with node.serving() as streaming:
            command = ("sh", "-c", f"echo started; exec sleep {marker}")
            url = streaming.server.exec_url(ExecRequest(id_, command, tty=tty, stdin=True, stdout=True,
                                                        stderr=not tty))
            async with spdy_exec(url, stdin=True, tty=tty, stderr=not tty) as session:
                await session.read_until(b"started")
                await eventually(lambda: bool(processes_running(marker)))
            # The client went away without a word: the session is cancelled.
            await eventually(lambda: not processes_running(marker) and not streaming.server.active_sessions)

            # And when the server stops under a session.
            url = streaming.server.exec_url(ExecRequest(id_, command, tty=tty, stdout=True, stderr=not tty))
            async with spdy_exec(url, tty=tty, stderr=not tty) as session:
                await session.read_until(b"started")
                await eventually(lambda: bool(processes_running(marker)))
                await streaming.server.stop()
            await eventually(lambda: not processes_running(marker), timeout=1)

    run(body)


def test_exec_round_trip_latency(node: Node) -> None:
    id_ = node.run(node.ref, *SLEEPER)

    async def body() -> list[float]:
        async with node.serving() as streaming:
            times = []
            for _ in range(10):
                start = time.perf_counter()
                url = streaming.server.exec_url(ExecRequest(id_, ("true",), stdout=True, stderr=True))
                async with spdy_exec(url) as session:
                    await session.read_all()
                assert session.exit_code == 0
                times.append(time.perf_counter() - start)
            return times

    times = sorted(run(body))
    print(f"exec round trip (SPDY, `true`): median {times[len(times) // 2] * 1000:.1f} ms, "
          f"min {times[0] * 1000:.1f} ms")
    assert times[len(times) // 2] < 1.0


# --- attach -------------------------------------------------------------------------------


def test_attach_plain_output_and_detach(node: Node) -> None:
    id_ = node.run(node.ref, "sh", "-c", "i=0; while :; do i=$((i+1)); echo tick $i; echo tock $i >&2; "
                                         "sleep 0.1; done")

    async def body() -> None:
        async with node.serving() as streaming:
            url = streaming.server.attach_url(AttachRequest(id_, stdout=True, stderr=True))
            async with spdy_attach(url) as session:
                await session.read_until(b"tick")
                await session.read_until(b"tock", stream="stderr")
            # Detached: the container runs on, and a second attach sees new output.
            url = streaming.server.attach_url(AttachRequest(id_, stdout=True))
            async with ws_attach(url) as ws:
                await ws.read_until(b"tick")
        assert node.manager.status(node.manager.lookup(id_)).state == "running"

    run(body)


def test_attach_with_stdin_until_the_container_exits(node: Node) -> None:
    id_ = node.run("-i", node.ref, "sh", "-c", "while read line; do echo got $line; done; echo bye; exit 6")

    async def body() -> None:
        async with node.serving() as streaming:
            url = streaming.server.attach_url(AttachRequest(id_, stdin=True, stdout=True, stderr=True))
            async with spdy_attach(url, stdin=True) as session:
                await session.write_stdin(b"one\n")
                assert await session.read_until(b"got one\n") == b"got one\n"
                # The client's end of input is the container's (conmon closes its stdin).
                await session.close_stdin()
                assert (await session.read_all()).endswith(b"bye\n")
            assert session.exit_code == 0
        assert node.manager.wait(id_, timeout=10).exit_code == 6

    run(body)


def test_attach_with_tty_and_resize(node: Node) -> None:
    id_ = node.run("-i", "-t", node.ref, "sh")

    async def body() -> None:
        async with node.serving() as streaming:
            url = streaming.server.attach_url(AttachRequest(id_, tty=True, stdin=True, stdout=True))
            async with spdy_attach(url, stdin=True, tty=True, stderr=False) as session:
                await session.resize(101, 31)
                await asyncio.sleep(0.2)
                await session.write_stdin(b"stty size\n")
                await session.read_until(b"31 101\r\n")
                await session.write_stdin(b"exit 4\n")
                await session.read_all()
            assert session.exit_code == 0
        assert node.manager.wait(id_, timeout=10).exit_code == 4

    run(body)


def test_attach_errors(node: Node) -> None:
    stopped = node.run(node.ref, "true")
    node.env.cli("wait", stopped)

    async def body() -> None:
        async with node.serving() as streaming:
            for container, reason in ((stopped, "Conflict"), ("f" * 64, "NotFound")):
                url = streaming.server.attach_url(AttachRequest(container, stdout=True))
                async with spdy_attach(url, stderr=False) as session:
                    await session.read_all()
                assert session.status is not None and session.status["reason"] == reason, session.status

    run(body)


# --- port forward -------------------------------------------------------------------------


class EchoServer:
    """Upper-cases what it reads until the peer half-closes, then answers "bye" and closes."""

    def __init__(self, netns: str) -> None:
        self.sock = run_in_netns(netns, lambda: socket.create_server(("127.0.0.1", 0)))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(conn,), daemon=True).start()

    @staticmethod
    def _echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())
            conn.sendall(b"bye")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def pod(node: Node, tmp_path: Path) -> Iterator[Sandbox]:
    pins = pin_namespaces(str(tmp_path / "pod-ns"), ("net",))
    sandbox = Sandbox(id="p" * 64, name="pod", namespace="default", uid="u", attempt=0, state=SANDBOX_READY,
                      created_at=time.time(), netns=pins["net"])
    node.sandboxes.pods[sandbox.id] = sandbox
    try:
        yield sandbox
    finally:
        remove_pin_dir(str(tmp_path / "pod-ns"))


def test_port_forward_into_the_pod_network_namespace(node: Node, pod: Sandbox) -> None:
    server = EchoServer(pod.netns or "")
    # The server listens in the pod's netns only: the test's own would refuse (or be another server).

    async def body() -> None:
        async with node.serving() as streaming:
            url = streaming.server.port_forward_url(PortForwardRequest(pod.id))
            async with spdy_port_forward(url) as forward:
                first = await forward.open(server.port)
                second = await forward.open(server.port)
                await first.write(b"hello")
                await second.write(b"world")
                assert await first.read(5) == b"HELLO"
                assert await second.read(5) == b"WORLD"
                big = os.urandom(1 << 20).hex().encode()  # 2 MiB each way
                await first.write(big)
                await first.close_write()
                assert await first.read_all() == big.upper() + b"bye"
                assert await first.error_message() == ""
                await second.close_write()
                assert await second.read_all() == b"bye"

                refused = await forward.open(server.port - 1)
                assert await refused.read_all() == b""
                message = await refused.error_message()
                assert "connection refused" in message, message

            # A stopped pod and an unknown one are refused.
            node.sandboxes.pods[pod.id] = Sandbox(**{**_fields(pod), "state": SANDBOX_NOTREADY})
            url = streaming.server.port_forward_url(PortForwardRequest(pod.id))
            async with spdy_port_forward(url) as forward:
                conn = await forward.open(server.port)
                assert "not ready" in await conn.error_message()
            url = streaming.server.port_forward_url(PortForwardRequest("q" * 64))
            async with spdy_port_forward(url) as forward:
                conn = await forward.open(server.port)
                assert "not found" in await conn.error_message()

    try:
        run(body)
    finally:
        server.close()


def _fields(sandbox: Sandbox) -> dict[str, Any]:
    return {name: getattr(sandbox, name) for name in Sandbox.__slots__}  # type: ignore[attr-defined]


def test_runtime_checks(node: Node) -> None:
    running = node.run(node.ref, *SLEEPER)
    runtime = ContainerStreams(containers=node.manager, sandboxes=None, blocking=to_thread)
    assert runtime.running_container_id(running[:12]) == running
