"""Exec and attach for a streaming client: the async counterparts of
``ContainerManager.exec_attached`` and the CLI's ``attach``.

Each has a blocking half, run off the event loop, that checks the container
and prepares what the session needs (``plan_exec``, ``open_attach``), and an
async half that relays the client's streams (``run_exec``, ``run_attach``).
The runtime knows nothing of the streaming protocols: a client stream is
anything with ``read``, or with ``write`` and ``close``.

Exec runs ``runc exec`` (not detached) as a child of the calling process, so
runc reaps the command and exits with its status.  Without a terminal the
command's stdio are pipes.  With one, runc gets a pseudo-terminal of ours as
its stdio (raw mode) and relays it to the terminal it makes for the command:
a detached ``runc exec --console-socket`` would hand over the command's own
terminal, but then the command is nobody's child and its exit status is lost.
A resize is set on our terminal and announced to runc with SIGWINCH, which
runc applies to the command's terminal.

Attach talks to conmon's attach socket (see ``_attach``): the container's
output until it ends, the client's input, resizes through the ``ctl`` fifo.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import json
import os
import pty
import shutil
import signal
import socket
import struct
import termios
import time
import tty as tty_mod
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Protocol

from hawser._dataclass import dataclass
from hawser._logging import get_logger
from hawser.errors import NotFound
from hawser.runtime._attach import BUFSIZE, STDERR, _connect
from hawser.runtime._conmon import runtime_error

if TYPE_CHECKING:
    from hawser.metadata import Container
    from hawser.runtime._containers import ContainerManager

log = get_logger(__name__)

CHUNK = 32768
# After runc exited, how long output may stay silent before the relay stops.
# runc relays the command's stdio itself and exits only once the command's
# output ended (a background process that keeps it open holds the session, as
# with docker and containerd), so our ends normally reach EOF with runc; the
# grace only guards against anything else that kept a copy of them.
OUTPUT_GRACE = 1.0
# On cancel: how long to wait for runc to name the command's pid before
# killing runc alone.
PID_FILE_WAIT = 2.0
# runc's status when it failed itself (fatalWithCode(..., 255) in runc exec).
RUNC_FAILED = 255


class ByteSource(Protocol):
    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes, waiting for some; b"" at end-of-stream."""
        ...


class ByteSink(Protocol):
    async def write(self, data: bytes) -> None: ...

    async def close(self) -> None: ...


class WindowSize(Protocol):
    @property
    def width(self) -> int: ...

    @property
    def height(self) -> int: ...


# --- non-blocking file descriptors on the event loop ---------------------------------


class _AsyncFd:
    """A pipe end or a terminal master driven by the running loop.  Owns the fd."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self.fd = fd

    async def _ready(self, writing: bool) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        (loop.add_writer if writing else loop.add_reader)(self.fd, wake)
        try:
            await waiter
        finally:
            (loop.remove_writer if writing else loop.remove_reader)(self.fd)

    async def read(self, n: int = CHUNK) -> bytes:
        """Some bytes; b"" at end of file (EIO: a terminal whose other side is all closed)."""
        while True:
            try:
                return os.read(self.fd, n)
            except BlockingIOError:
                await self._ready(writing=False)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    return b""
                raise

    async def write_all(self, data: bytes) -> None:
        """BrokenPipeError once the reader is gone."""
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except BlockingIOError:
                await self._ready(writing=True)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _Progress:
    """When output last moved, so that a relay stalled on a silent pipe can be told from a busy one."""

    def __init__(self) -> None:
        self.at = time.monotonic()

    def touch(self) -> None:
        self.at = time.monotonic()


async def _pump_out(source: _AsyncFd, sink: ByteSink | None, progress: _Progress) -> None:
    while chunk := await source.read(CHUNK):
        progress.touch()
        if sink is not None:
            await sink.write(chunk)
        progress.touch()


async def _pump_in(source: ByteSource, target: _AsyncFd, *, close_at_eof: bool) -> None:
    try:
        while chunk := await source.read(CHUNK):
            await target.write_all(chunk)
    except (BrokenPipeError, ConnectionResetError):
        return  # the command closed its input or exited
    if close_at_eof:
        target.close()


async def _drain(tasks: Sequence[asyncio.Task[None]], progress: _Progress) -> None:
    """Let output relays finish; stop those that stay silent for OUTPUT_GRACE."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        _, pending = await asyncio.wait(pending, timeout=OUTPUT_GRACE)
        if pending and time.monotonic() - progress.at >= OUTPUT_GRACE:
            break
    await _cancel(*pending)


async def _cancel(*tasks: asyncio.Task[None] | None) -> None:
    live = [task for task in tasks if task is not None]
    for task in live:
        task.cancel()
    if live:
        await asyncio.wait(live)
    for task in live:
        exc = None if task.cancelled() else task.exception()
        if isinstance(exc, OSError):
            log.debug("stream relay ended: %s", exc)
        elif exc is not None:
            log.error("stream relay failed", exc_info=exc)


# --- exec ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExecPlan:
    """An exec ready to run: its process spec written, its runc command line built."""

    container_id: str
    argv: tuple[str, ...]
    tty: bool
    record: Container  # the container's, for its observers
    command: tuple[str, ...]  # what runs in the container
    directory: str  # the session's files (process.json, pid, runc's log); removed by run_exec
    pid_file: str
    log_file: str

    def discard(self) -> None:
        """Remove the session's files (an exec that will not run). Idempotent."""
        shutil.rmtree(self.directory, ignore_errors=True)


def running_container(manager: ContainerManager, text: str) -> Container:
    """The record of a running container.  Blocking.  NotFound for an unknown
    container, FailedPrecondition when it is not running."""
    return manager._running(text)


def plan_exec(manager: ContainerManager, text: str, cmd: Sequence[str], *, tty: bool) -> ExecPlan:
    """Prepare ``cmd`` to run in a running container.  Blocking.

    NotFound for an unknown container, FailedPrecondition when it is not
    running, InvalidArgument for an empty command."""
    from hawser.runtime._files import write_json

    record = manager._running(text)
    process = manager._exec_process(record, cmd, tty=tty)
    directory = os.path.join(manager.bundle(record.id), "exec", os.urandom(8).hex())
    os.makedirs(directory, mode=0o700)
    try:
        spec_file = os.path.join(directory, "process.json")
        write_json(spec_file, process)
        pid_file = os.path.join(directory, "pid")
        log_file = os.path.join(directory, "runc.log")
        argv = manager.runc_for(record).exec_argv(record.id, spec_file, tty=tty, pid_file=pid_file)
        # runc's own errors (a missing executable...) as JSON lines, apart from the command's output.
        argv[1:1] = ["--log", log_file, "--log-format", "json"]
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return ExecPlan(container_id=record.id, argv=tuple(argv), tty=tty, record=record, command=tuple(cmd),
                    directory=directory, pid_file=pid_file, log_file=log_file)


async def run_exec(plan: ExecPlan, *, stdin: ByteSource | None, stdout: ByteSink | None,
                   stderr: ByteSink | None, resize: AsyncIterator[WindowSize]) -> int:
    """Run a planned exec wired to the client's streams; its exit status.

    ``stdin``'s end closes the command's input (without a terminal).  With a
    terminal everything goes to ``stdout`` and ``resize`` sets its size.
    Cancelled, it kills the command and runc and reaps runc.  The error
    kinds of ``runtime_error`` when runc cannot start the command.  Always
    removes the plan's files."""
    try:
        if plan.tty:
            return await _exec_terminal(plan, stdin, stdout, resize)
        return await _exec_pipes(plan, stdin, stdout, stderr)
    finally:
        plan.discard()


async def _spawn(plan: ExecPlan, stdin: int, stdout: int, stderr: int) -> asyncio.subprocess.Process:
    # A session of its own: runc, and a command without a terminal, can be killed as one group.
    try:
        return await asyncio.create_subprocess_exec(*plan.argv, stdin=stdin, stdout=stdout, stderr=stderr,
                                                    start_new_session=True)
    except FileNotFoundError:
        raise NotFound(f"{plan.argv[0]} is not installed", hint="run scripts/setup.sh") from None


async def _exec_pipes(plan: ExecPlan, stdin: ByteSource | None, stdout: ByteSink | None,
                      stderr: ByteSink | None) -> int:
    ours: list[_AsyncFd] = []
    theirs: list[int] = []

    def pipe(for_input: bool) -> tuple[int, _AsyncFd]:
        read_end, write_end = os.pipe2(os.O_CLOEXEC)
        child, parent = (read_end, write_end) if for_input else (write_end, read_end)
        theirs.append(child)
        fd = _AsyncFd(parent)
        ours.append(fd)
        return child, fd

    proc = None
    tasks: list[asyncio.Task[None]] = []
    try:
        in_child, in_fd = pipe(True) if stdin is not None else (asyncio.subprocess.DEVNULL, None)
        out_child, out_fd = pipe(False) if stdout is not None else (asyncio.subprocess.DEVNULL, None)
        err_child, err_fd = pipe(False) if stderr is not None else (asyncio.subprocess.DEVNULL, None)
        proc = await _spawn(plan, in_child, out_child, err_child)
        for fd in theirs:
            os.close(fd)
        theirs.clear()
        progress = _Progress()
        outputs = [asyncio.create_task(_pump_out(fd, sink, progress))
                   for fd, sink in ((out_fd, stdout), (err_fd, stderr)) if fd is not None]
        tasks += outputs
        feeder = None
        if stdin is not None and in_fd is not None:
            feeder = asyncio.create_task(_pump_in(stdin, in_fd, close_at_eof=True))
            tasks.append(feeder)
        code = await proc.wait()
        await _cancel(feeder)
        await _drain(outputs, progress)
        return _exit_status(plan, code)
    finally:
        await _cancel(*tasks)
        for child in theirs:
            os.close(child)
        for end in ours:
            end.close()
        if proc is not None and proc.returncode is None:
            await _kill(plan, proc)


async def _exec_terminal(plan: ExecPlan, stdin: ByteSource | None, stdout: ByteSink | None,
                         resize: AsyncIterator[WindowSize]) -> int:
    master, slave = pty.openpty()
    terminal = _AsyncFd(master)
    proc = None
    tasks: list[asyncio.Task[None]] = []
    try:
        # Raw before runc starts: input written early must reach the command unechoed, unchanged.
        tty_mod.setraw(slave, termios.TCSANOW)
        proc = await _spawn(plan, slave, slave, slave)
        os.close(slave)
        slave = -1
        progress = _Progress()
        output = asyncio.create_task(_pump_out(terminal, stdout, progress))
        tasks.append(output)
        if stdin is not None:
            tasks.append(asyncio.create_task(_pump_in(stdin, terminal, close_at_eof=False)))
        tasks.append(asyncio.create_task(_resize_terminal(terminal, proc, resize)))
        code = await proc.wait()
        await _cancel(*tasks[1:])
        await _drain([output], progress)
        return _exit_status(plan, code)
    finally:
        await _cancel(*tasks)
        if slave >= 0:
            os.close(slave)
        terminal.close()
        if proc is not None and proc.returncode is None:
            await _kill(plan, proc)


async def _resize_terminal(terminal: _AsyncFd, proc: asyncio.subprocess.Process,
                           sizes: AsyncIterator[WindowSize]) -> None:
    async for size in sizes:
        if terminal.fd < 0 or proc.returncode is not None:
            return
        fcntl.ioctl(terminal.fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.height, size.width, 0, 0))
        # Our terminal is not runc's controlling one: tell runc itself (it copies the size over).
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGWINCH)


def _exit_status(plan: ExecPlan, code: int) -> int:
    """The command's status; runc's own failure (no pid: the command never ran) as an error kind."""
    if code == RUNC_FAILED and not os.path.exists(plan.pid_file):
        raise runtime_error(_runc_message(plan.log_file) or f"runc exec failed (exit status {code})")
    # A signal that killed runc itself (not the command: runc reports that as 128+n).
    return code if code >= 0 else 128 - code


def _runc_message(log_file: str) -> str:
    try:
        with open(log_file, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return ""
    for line in reversed(lines):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("level") in ("error", "fatal"):
            return str(entry.get("msg", ""))
    return ""


def _read_pid(path: str) -> int:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


async def _kill(plan: ExecPlan, proc: asyncio.subprocess.Process) -> None:
    """Kill the exec'd command (by runc's pid file) and runc's process group; reap runc.

    While runc lives it has not reaped the command, so its pid is still the command's."""
    pid = _read_pid(plan.pid_file)
    try:
        deadline = time.monotonic() + PID_FILE_WAIT
        while not pid and proc.returncode is None and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # runc is still starting the command
            pid = _read_pid(plan.pid_file)
    finally:
        if pid and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
    log.debug("exec in container %s killed", plan.container_id[:12])


# --- attach -------------------------------------------------------------------------------


@dataclass(slots=True)
class AttachPlan:
    """A connection to conmon's attach socket of a running container.  Owns the socket."""

    container_id: str
    sock: socket.socket
    ctl: str

    def discard(self) -> None:
        self.sock.close()


def open_attach(manager: ContainerManager, text: str) -> AttachPlan:
    """Connect to a running container's attach socket.  Blocking.

    NotFound for an unknown container, FailedPrecondition when it is not
    running (or conmon does not listen)."""
    record = manager._running(text)
    bundle = manager.bundle(record.id)
    sock = _connect(bundle)
    return AttachPlan(container_id=record.id, sock=sock, ctl=os.path.join(bundle, "ctl"))


async def run_attach(plan: AttachPlan, *, tty: bool, stdin: ByteSource | None, stdout: ByteSink | None,
                     stderr: ByteSink | None, resize: AsyncIterator[WindowSize]) -> None:
    """Relay until the container's output ends (it exited) or the caller is
    cancelled (the client left: the container runs on).  Closes the socket."""
    sock = plan.sock
    sock.setblocking(False)
    tasks: list[asyncio.Task[None]] = []
    try:
        if stdin is not None:
            tasks.append(asyncio.create_task(_attach_input(sock, stdin)))
        if tty:
            tasks.append(asyncio.create_task(_attach_resize(plan.ctl, resize)))
        await _attach_output(sock, stdout, stdout if tty else stderr)
    finally:
        await _cancel(*tasks)
        sock.close()


async def _attach_output(sock: socket.socket, stdout: ByteSink | None, stderr: ByteSink | None) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            message = await loop.sock_recv(sock, BUFSIZE + 1)
        except (ConnectionResetError, BrokenPipeError):
            return
        if not message:
            return
        sink = stderr if message[0] == STDERR else stdout
        if sink is not None and len(message) > 1:
            await sink.write(message[1:])


async def _attach_input(sock: socket.socket, stdin: ByteSource) -> None:
    loop = asyncio.get_running_loop()
    try:
        # conmon reads at most BUFSIZE bytes per message: larger ones would be cut.
        while chunk := await stdin.read(BUFSIZE):
            await loop.sock_sendall(sock, chunk)
        # End of the client's input: conmon closes the container's stdin
        # (unless the container keeps it open for the next attach).
        sock.shutdown(socket.SHUT_WR)
    except (BrokenPipeError, ConnectionResetError):
        return


async def _attach_resize(ctl: str, sizes: AsyncIterator[WindowSize]) -> None:
    async for size in sizes:
        try:
            # Non-blocking: a fifo without its reader (conmon gone) fails with ENXIO instead of hanging.
            fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            log.debug("cannot resize the terminal of a container: %s", exc)
            return
        try:
            os.write(fd, f"1 {size.height} {size.width}\n".encode())
        except BlockingIOError:
            pass  # conmon is behind on resizes: a newer one follows
        finally:
            os.close(fd)
