"""The runtime behind hawserd's streaming server: exec and attach in hawser's
containers (``runtime._streams``), port forwarding into a pod's network namespace.

The Exec/Attach/PortForward handlers check the container or pod and register
the request with the server (:class:`Streaming`); when the client connects,
the server calls :class:`ContainerStreams`, which checks again (the container
may have stopped in between) and relays until the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from hawser._dataclass import dataclass
from hawser._logging import get_logger
from hawser.cri.streaming import AsyncReader, AsyncWriter, DuplexStream, StreamingServer, TerminalSize
from hawser.errors import FailedPrecondition
from hawser.pods import connect_in_pod
from hawser.runtime import (
    open_attach,
    plan_exec,
    run_attach,
    run_exec,
    running_container,
)

if TYPE_CHECKING:
    from hawser.pods import RunBlocking, Sandbox, SandboxLookup
    from hawser.runtime import ContainerManager

log = get_logger("hawser.cri.streaming")

T = TypeVar("T")

CHUNK = 32768


@dataclass(frozen=True, slots=True)
class Streaming:
    """What the Exec/Attach/PortForward handlers use: the server that hands out
    URLs and the runtime it calls (which also answers the handlers' checks)."""

    server: StreamingServer
    runtime: ContainerStreams


def new_streaming(*, containers: ContainerManager, sandboxes: SandboxLookup | None, blocking: RunBlocking,
                  address: str, port: int) -> Streaming:
    """The streaming server over these parts; nothing is started (``server.start()`` binds)."""
    runtime = ContainerStreams(containers=containers, sandboxes=sandboxes, blocking=blocking)
    return Streaming(server=StreamingServer(runtime, address=address, port=port), runtime=runtime)


class ContainerStreams:
    """``StreamingRuntime`` over a ContainerManager and the pod sandboxes."""

    def __init__(self, *, containers: ContainerManager, sandboxes: SandboxLookup | None,
                 blocking: RunBlocking) -> None:
        self._containers = containers
        self._sandboxes = sandboxes
        self._blocking = blocking

    @property
    def containers(self) -> ContainerManager:
        return self._containers

    # --- the handlers' checks (blocking) ----------------------------------------------

    def running_container_id(self, container_id: str) -> str:
        """The full id of a running container.  Blocking.  NotFound for an unknown
        container, FailedPrecondition when it is not running."""
        return running_container(self._containers, container_id).id

    def ready_sandbox(self, sandbox_id: str) -> Sandbox:
        """A ready pod sandbox.  Blocking.  NotFound for an unknown one,
        FailedPrecondition when it is stopped, Unimplemented without sandboxes."""
        if self._sandboxes is None:
            from hawser.errors import Unimplemented

            raise Unimplemented("this hawserd serves no pod sandboxes")
        sandbox = self._sandboxes.get(sandbox_id)
        if not sandbox.ready:
            raise FailedPrecondition(f"pod sandbox {sandbox.id[:12]} is not ready: nothing to forward to")
        return sandbox

    # --- StreamingRuntime ---------------------------------------------------------------

    async def exec(self, container_id: str, cmd: Sequence[str], *, tty: bool, stdin: AsyncReader | None,
                   stdout: AsyncWriter | None, stderr: AsyncWriter | None,
                   resize: AsyncIterator[TerminalSize]) -> int:
        plan = await self._owned(lambda: plan_exec(self._containers, container_id, cmd, tty=tty),
                                 lambda made: made.discard())
        exec_id = os.path.basename(plan.directory)
        await self._blocking(self._containers.exec_started, plan.record, exec_id, plan.command)
        code: int | None = None
        try:
            code = await run_exec(plan, stdin=stdin, stdout=stdout, stderr=None if tty else stderr, resize=resize)
            return code
        finally:
            # Also when the client went away and the command was killed: an exec ends with its stream.
            await asyncio.shield(self._blocking(self._containers.exec_exited, plan.record, exec_id, code))

    async def attach(self, container_id: str, *, tty: bool, stdin: AsyncReader | None,
                     stdout: AsyncWriter | None, stderr: AsyncWriter | None,
                     resize: AsyncIterator[TerminalSize]) -> None:
        plan = await self._owned(lambda: open_attach(self._containers, container_id), lambda made: made.discard())
        await run_attach(plan, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, resize=resize)

    async def port_forward(self, pod_sandbox_id: str, port: int, stream: DuplexStream) -> None:
        sandbox = await self._blocking(self.ready_sandbox, pod_sandbox_id)
        sock = await self._owned(lambda: connect_in_pod(sandbox, port), lambda made: made.close())
        try:
            reader, writer = await asyncio.open_connection(sock=sock, limit=CHUNK)
        except BaseException:
            sock.close()
            raise
        await _relay(stream, reader, writer)

    async def _owned(self, make: Callable[[], T], release: Callable[[T], object]) -> T:
        """``make()`` off the event loop; if the caller is cancelled meanwhile,
        what the thread still makes (a socket, an exec's files) is released."""
        made: asyncio.Future[T] = asyncio.ensure_future(self._blocking(make))
        try:
            return await asyncio.shield(made)
        except asyncio.CancelledError:
            made.add_done_callback(
                lambda done: None if done.cancelled() or done.exception() is not None else release(done.result()))
            raise


async def _relay(stream: DuplexStream, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy both ways until the pod's side ends.  The client's end of input is
    passed on as a half-close, and the pod's answer still flows back; the pod
    closing its side (or resetting) ends the forwarded connection."""

    async def upstream() -> None:
        while chunk := await stream.read(CHUNK):
            writer.write(chunk)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()

    async def downstream() -> None:
        while chunk := await reader.read(CHUNK):
            await stream.write(chunk)

    up = asyncio.create_task(upstream())
    try:
        with contextlib.suppress(ConnectionError):
            await downstream()
    finally:
        up.cancel()
        await asyncio.wait([up])
        if not up.cancelled() and up.exception() is not None:
            log.debug("port forward: upstream ended: %s", up.exception())
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await _quietly(writer.wait_closed())


async def _quietly(closing: Awaitable[None]) -> None:
    # A forwarded connection is closed, not drained: the pod may not read what is left.
    async with asyncio.timeout(1.0):
        await closing
