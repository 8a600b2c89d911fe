"""Exec, attach and port-forward through hawserd: the CRI call hands out a
URL on the daemon's streaming server, and the Kubernetes client side of the
protocols (SPDY as kubectl and the kubelet speak it, and WebSocket) drives a
session into a real container or pod."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import pytest
from cri_api.v1 import api_pb2

from tests.e2e.helpers import status_code
from tests.support.aio import eventually, processes_running, run
from tests.support.cri_pods import Pods
from tests.support.k8s_stream_client import (
    V4,
    V5,
    UpgradeRefused,
    spdy_attach,
    spdy_exec,
    spdy_port_forward,
    ws_attach,
    ws_exec,
)

T = TypeVar("T")
Pod = tuple[str, api_pb2.PodSandboxConfig]

SLEEPER = ("sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
HTTPD = ("sh", "-c", "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 8080 -h /www")


def exec_url(pods: Pods, container_id: str, *cmd: str, **streams: bool) -> str:
    request = api_pb2.ExecRequest(container_id=container_id, cmd=list(cmd), **streams)
    return str(pods.rt.Exec(request).url)


def attach_url(pods: Pods, container_id: str, **streams: bool) -> str:
    return str(pods.rt.Attach(api_pb2.AttachRequest(container_id=container_id, **streams)).url)


def exited(pods: Pods, container_id: str, timeout: float = 20) -> api_pb2.ContainerStatus:
    """The status once the container exited and its exit code is known.

    ContainerStatus may report an exited container with reason Unknown for a
    moment: runc already says "stopped" but conmon has not written the exit
    file yet."""
    deadline = time.monotonic() + timeout
    while True:
        status = pods.wait_exit(container_id, timeout)
        if status.reason != "Unknown" or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def running(pods: Pods, pod: Pod, name: str, *cmd: str, **fields: Any) -> str:
    return pods.run(pod, pods.config(name, *cmd, **fields))


# --- exec -----------------------------------------------------------------------------------


def test_exec_without_tty(pods: Pods) -> None:
    pod = pods.pod()
    ctr = running(pods, pod, "sleeper", *SLEEPER)
    script = ("sh", "-c", "echo out; echo err >&2; exit 3")

    async def body() -> None:
        url = exec_url(pods, ctr, "cat", stdin=True, stdout=True, stderr=True)
        assert url.startswith("http://127.0.0.1:")
        async with spdy_exec(url, stdin=True) as session:
            await session.write_stdin(b"through ")
            assert await session.read_until(b"through ") == b"through "
            await session.write_stdin(b"hawserd\n")
            await session.close_stdin()
            assert await session.read_all() == b"through hawserd\n"
        assert session.exit_code == 0
        # Each URL serves one session.
        with pytest.raises(UpgradeRefused) as refused:
            async with spdy_exec(url, stdin=True):
                pass
        assert refused.value.status == 404

        async with spdy_exec(exec_url(pods, ctr, *script, stdout=True, stderr=True)) as session:
            await session.read_all()
        assert (session.stdout, session.stderr, session.exit_code) == (b"out\n", b"err\n", 3)

        async with ws_exec(exec_url(pods, ctr, "cat", stdin=True, stdout=True), protocols=(V5,)) as ws:
            await ws.write_stdin(b"over websocket\n")
            await ws.close_stdin()
            assert await ws.read_all() == b"over websocket\n"
        assert ws.exit_code == 0
        async with ws_exec(exec_url(pods, ctr, *script, stdout=True, stderr=True), protocols=(V4,)) as ws:
            await ws.read_all()
        assert (ws.stdout, ws.stderr, ws.exit_code) == (b"out\n", b"err\n", 3)

    run(body)


def test_exec_with_tty(pods: Pods) -> None:
    pod = pods.pod()
    ctr = running(pods, pod, "sleeper", *SLEEPER)
    script = ("sh", "-c", "read a; stty size; read b; stty size; exit 5")

    async def body() -> None:
        url = exec_url(pods, ctr, *script, tty=True, stdin=True, stdout=True)
        async with spdy_exec(url, stdin=True, tty=True, stderr=False) as session:
            # A resize and later input travel apart: give the resize its moment.
            await session.resize(100, 30)
            await asyncio.sleep(0.2)
            await session.write_stdin(b"go\n")
            assert (await session.read_until(b"30 100\r\n")).endswith(b"go\r\n30 100\r\n")
            await session.resize(132, 43)
            await asyncio.sleep(0.2)
            await session.write_stdin(b"go\n")
            await session.read_until(b"43 132\r\n")
            await session.read_all()
        assert session.exit_code == 5

        url = exec_url(pods, ctr, *script, tty=True, stdin=True, stdout=True)
        async with ws_exec(url) as ws:
            await ws.resize(81, 25)
            await asyncio.sleep(0.2)
            await ws.write_stdin(b"go\n")
            await ws.read_until(b"25 81\r\n")
            await ws.write_stdin(b"go\n")
            await ws.read_all()
        assert ws.exit_code == 5

    run(body)


def test_exec_ends_with_the_client_and_with_hawserd(pods: Pods) -> None:
    pod = pods.pod()
    ctr = running(pods, pod, "sleeper", *SLEEPER)
    command = ("sh", "-c", "echo started; exec sleep 4242")

    async def body() -> None:
        for tty in (False, True):
            url = exec_url(pods, ctr, *command, tty=tty, stdin=True, stdout=True, stderr=not tty)
            async with spdy_exec(url, stdin=True, tty=tty, stderr=not tty) as session:
                await session.read_until(b"started")
                await eventually(lambda: bool(processes_running("4242")))
            await eventually(lambda: not processes_running("4242"))

        async with spdy_exec(exec_url(pods, ctr, *command, stdout=True, stderr=True)) as session:
            await session.read_until(b"started")
            await eventually(lambda: bool(processes_running("4242")))
            # SIGTERM: hawserd ends its sessions (the exec'd process too); containers run on.
            assert await asyncio.to_thread(pods.hawserd.stop) == 0
            assert not processes_running("4242")

    run(body)
    pods.hawserd.start()
    assert pods.status(ctr).status.state == api_pb2.CONTAINER_RUNNING
    assert "Traceback" not in pods.hawserd.log()


def test_exec_round_trip_latency(pods: Pods) -> None:
    pod = pods.pod()
    ctr = running(pods, pod, "sleeper", *SLEEPER)

    async def body() -> list[float]:
        times = []
        for _ in range(10):
            start = time.perf_counter()
            url = await asyncio.to_thread(exec_url, pods, ctr, "true", stdout=True, stderr=True)
            async with spdy_exec(url) as session:
                await session.read_all()
            assert session.exit_code == 0
            times.append(time.perf_counter() - start)
        return sorted(times)

    times = run(body)
    exec_sync = []
    for _ in range(10):
        start = time.perf_counter()
        assert pods.exec(ctr, "true").exit_code == 0
        exec_sync.append(time.perf_counter() - start)
    exec_sync.sort()
    print(f"\nExec (RPC + SPDY session, `true`): median {times[5] * 1000:.1f} ms, min {times[0] * 1000:.1f} ms; "
          f"ExecSync: median {exec_sync[5] * 1000:.1f} ms")
    assert times[5] < 1.0


# --- attach ---------------------------------------------------------------------------------


def test_attach_with_tty_detach_and_reattach(pods: Pods) -> None:
    pod = pods.pod()
    shell = running(pods, pod, "shell", "sh", stdin=True, tty=True)

    async def body() -> None:
        url = attach_url(pods, shell, tty=True, stdin=True, stdout=True)
        async with spdy_attach(url, stdin=True, tty=True, stderr=False) as session:
            await session.resize(101, 31)
            await asyncio.sleep(0.2)
            await session.write_stdin(b"stty size\n")
            await session.read_until(b"31 101\r\n")
        # Detached without a word: the shell runs on, and takes input from the next attach.
        await asyncio.sleep(0.2)
        assert pods.status(shell).status.state == api_pb2.CONTAINER_RUNNING
        async with ws_attach(attach_url(pods, shell, tty=True, stdin=True, stdout=True)) as ws:
            await ws.write_stdin(b"echo again-$((40+2))\n")
            await ws.read_until(b"again-42")
            await ws.write_stdin(b"exit 4\n")
            # The attach ends with the container's output.
            await ws.read_all()
        assert ws.exit_code == 0

    run(body)
    done = exited(pods, shell)
    assert (done.state, done.exit_code) == (api_pb2.CONTAINER_EXITED, 4)


def test_reattach_with_stdin_kept_open(pods: Pods) -> None:
    pod = pods.pod()
    reader = running(pods, pod, "reader", "sh", "-c", "while read line; do echo got $line; done",
                     stdin=True, stdin_once=False)

    async def body() -> None:
        for word in (b"one", b"two"):
            url = attach_url(pods, reader, stdin=True, stdout=True)
            async with ws_attach(url) as ws:
                await ws.write_stdin(word + b"\n")
                await ws.read_until(b"got " + word)

    run(body)
    assert pods.status(reader).status.state == api_pb2.CONTAINER_RUNNING


def test_attach_plain_container(pods: Pods) -> None:
    pod = pods.pod()
    ctr = running(pods, pod, "ticker", "sh", "-c", "while :; do echo tick; echo tock >&2; sleep 0.1; done")
    reader = running(pods, pod, "reader", "sh", "-c", "while read line; do echo got $line; done; exit 7",
                     stdin=True, stdin_once=True)

    async def body() -> None:
        async with spdy_attach(attach_url(pods, ctr, stdout=True, stderr=True)) as session:
            await session.read_until(b"tick\n")
            await session.read_until(b"tock\n", stream="stderr")
        async with ws_attach(attach_url(pods, ctr, stdout=True)) as ws:
            await ws.read_until(b"tick\n")

        # stdin without a terminal; its end is the container's (stdin_once).
        url = attach_url(pods, reader, stdin=True, stdout=True, stderr=True)
        async with spdy_attach(url, stdin=True) as session:
            await session.write_stdin(b"one\n")
            await session.read_until(b"got one\n")
            await session.close_stdin()
            await session.read_all()
        assert session.exit_code == 0

    run(body)
    assert pods.status(ctr).status.state == api_pb2.CONTAINER_RUNNING
    done = exited(pods, reader)
    assert (done.state, done.exit_code) == (api_pb2.CONTAINER_EXITED, 7), (done.reason, done.message)


# --- port forward ---------------------------------------------------------------------------


def test_port_forward_to_a_server_in_the_pod(pods: Pods) -> None:
    pod = pods.pod("web")
    server = running(pods, pod, "httpd", *HTTPD)
    for _ in range(100):
        if pods.exec(server, "wget", "-q", "-O", "-", "http://127.0.0.1:8080/").exit_code == 0:
            break
        time.sleep(0.1)

    async def body() -> None:
        url = pods.rt.PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=pod[0])).url
        async with spdy_port_forward(url) as forward:
            for _ in range(3):  # several connections over one session
                conn = await forward.open(8080)
                await conn.write(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
                answer = await conn.read_all()
                assert answer.startswith(b"HTTP/1.") and answer.endswith(b"hello-from-httpd\n"), answer
                assert await conn.error_message() == ""
            refused = await forward.open(8081)
            assert "connection refused" in await refused.error_message()

        # A request naming ports allows only those.
        url = pods.rt.PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=pod[0], port=[8080])).url
        async with spdy_port_forward(url) as forward:
            other = await forward.open(9090)
            assert "not requested" in await other.error_message()

    run(body)


# --- errors ---------------------------------------------------------------------------------


def test_streaming_requests_refused(pods: Pods) -> None:
    pod = pods.pod()
    ctr = running(pods, pod, "sleeper", *SLEEPER)
    done = running(pods, pod, "done", "true")
    pods.wait_exit(done)
    rt = pods.rt
    cases: list[tuple[Callable[..., Any], Any, grpc.StatusCode]] = [
        (rt.Exec, api_pb2.ExecRequest(container_id=done, cmd=["true"], stdout=True), grpc.StatusCode.FAILED_PRECONDITION),
        (rt.Exec, api_pb2.ExecRequest(container_id="0" * 64, cmd=["true"], stdout=True), grpc.StatusCode.NOT_FOUND),
        (rt.Exec, api_pb2.ExecRequest(container_id=ctr, cmd=[], stdout=True), grpc.StatusCode.INVALID_ARGUMENT),
        (rt.Exec, api_pb2.ExecRequest(container_id=ctr, cmd=["true"]), grpc.StatusCode.INVALID_ARGUMENT),
        (rt.Exec, api_pb2.ExecRequest(container_id=ctr, cmd=["sh"], tty=True, stdout=True, stderr=True),
         grpc.StatusCode.INVALID_ARGUMENT),
        (rt.Exec, api_pb2.ExecRequest(cmd=["true"], stdout=True), grpc.StatusCode.INVALID_ARGUMENT),
        (rt.Attach, api_pb2.AttachRequest(container_id=done, stdout=True), grpc.StatusCode.FAILED_PRECONDITION),
        (rt.Attach, api_pb2.AttachRequest(container_id="0" * 64, stdout=True), grpc.StatusCode.NOT_FOUND),
        (rt.Attach, api_pb2.AttachRequest(container_id=ctr), grpc.StatusCode.INVALID_ARGUMENT),
        (rt.PortForward, api_pb2.PortForwardRequest(pod_sandbox_id="0" * 64), grpc.StatusCode.NOT_FOUND),
        (rt.PortForward, api_pb2.PortForwardRequest(pod_sandbox_id=pod[0], port=[70000]),
         grpc.StatusCode.INVALID_ARGUMENT),
        (rt.PortForward, api_pb2.PortForwardRequest(), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for call, request, expected in cases:
        code, message = status_code(call, request)
        assert code == expected, (request, code, message)

    # A command that cannot start is the session's error, not a crash.
    async def body() -> None:
        async with spdy_exec(exec_url(pods, ctr, "no-such-command", stdout=True, stderr=True)) as session:
            await session.read_all()
        assert session.status is not None and "executable file not found" in session.status["message"]

    run(body)
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod[0]))
    code, _ = status_code(rt.PortForward, api_pb2.PortForwardRequest(pod_sandbox_id=pod[0]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION

