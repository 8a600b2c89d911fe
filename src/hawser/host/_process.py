"""The one way hawser runs a helper program: runc, CNI plugins, the pull child.

Every run has a timeout (``None`` only where the caller says so: a pull ends
when it is cancelled), captures stdout and stderr, and ends with the child
reaped and its pipes closed, whatever happens: on a timeout, an error or a
cancellation the child gets SIGTERM, ``grace`` seconds, then SIGKILL.  No
zombie, no leaked fd.

Each child leads a new session, so a terminal's Ctrl-C reaches hawser, which
stops the child on its own terms.  With ``kill_group`` the signals go to the
child's whole process group, and SIGKILL always follows: a CNI plugin may have
delegated to an IPAM plugin that outlives it.

The sync half is ``subprocess.Popen``.  The async half rides the event loop's
own subprocess transport (the same spawn and child watcher as
``asyncio.create_subprocess_exec``) with a protocol that only collects the
bytes: no stream readers, no tasks per run.  asyncio is imported only by the
async half, so ``hawser run`` does not pay for it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

from hawser._dataclass import dataclass
from hawser.errors import DeadlineExceeded

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    import asyncio
    from asyncio import SubprocessProtocol as _Protocol
    from collections.abc import Awaitable, Mapping, Sequence
    from typing import TypeVar

    T = TypeVar("T")
else:
    _Protocol = object  # the transport calls the protocol's methods; no base class needed

# After SIGTERM, how long a child gets to exit before SIGKILL.
TERM_GRACE = 2.0


@dataclass(frozen=True, slots=True)
class ProcessResult:
    returncode: int  # negative: killed by that signal
    stdout: bytes
    stderr: bytes


class ProcessTimedOut(DeadlineExceeded):
    """The program did not finish within its timeout; it was stopped and reaped."""

    def __init__(self, argv: Sequence[str], timeout: float, returncode: int) -> None:
        self.argv = tuple(argv)
        self.timeout = timeout
        self.returncode = returncode  # after the stop: the signal that ended it, negated
        super().__init__(f"{' '.join(self.argv[:2])} did not finish within {timeout:g}s")


def _signal(pid: int, sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)  # the child leads its session: its pid is its group's id
        else:
            os.kill(pid, sig)


# -- sync ----------------------------------------------------------------------


def kill_process(pid: int, sig: int) -> bool:
    """Send ``sig`` to ``pid`` through a pidfd (so a pid freed between the
    open and the send is never another process's); False when there is no
    such process (or ``pid`` is not above 0)."""
    if pid <= 0:
        return False
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    try:
        signal.pidfd_send_signal(fd, sig)
    except ProcessLookupError:
        return False
    finally:
        os.close(fd)
    return True


_PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>


def die_with_parent(sig: int) -> bool:
    """prctl(PR_SET_PDEATHSIG, sig): the kernel sends ``sig`` to this process
    when the thread that forked it ends (for hawserd's children, the event
    loop's: the process).  Call it first thing in the child, then compare
    ``os.getppid()`` with the parent's pid: a parent that died before the call
    sends nothing.  False if refused."""
    import ctypes

    from hawser.host._libc import load_libc

    libc = load_libc()
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    libc.prctl.restype = ctypes.c_int
    return bool(libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0)


def spawn_process(argv: Sequence[str], *, stdin: bool = False, env: Mapping[str, str] | None = None,
                  cwd: str | None = None, pass_fds: Sequence[int] = (), kill_group: bool = False,
                  grace: float = TERM_GRACE) -> Process:
    """Start ``argv`` and return at once, so the caller can work while it
    runs; ``communicate()`` or ``terminate()`` must follow (they reap).
    stdin is a pipe with ``stdin``, else /dev/null; stdout and stderr are
    captured.  OSError if it cannot be started (FileNotFoundError: no such
    program or ``cwd``; PermissionError: not executable)."""
    popen = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd,
                             pass_fds=tuple(pass_fds), start_new_session=True)
    return Process(argv, popen, kill_group=kill_group, grace=grace)


def run_process(argv: Sequence[str], *, timeout: float | None, input: bytes | None = None,
                env: Mapping[str, str] | None = None, cwd: str | None = None, pass_fds: Sequence[int] = (),
                kill_group: bool = False, grace: float = TERM_GRACE) -> ProcessResult:
    """Run ``argv`` to its end, feeding it ``input`` (stdin is /dev/null
    without).  A non-zero exit is returned, not raised.  ProcessTimedOut (a
    DeadlineExceeded) after ``timeout`` seconds; OSError if it cannot be
    started.  On a timeout or an interruption the child is stopped and reaped
    before the error propagates."""
    process = spawn_process(argv, stdin=input is not None, env=env, cwd=cwd, pass_fds=pass_fds,
                            kill_group=kill_group, grace=grace)
    return process.communicate(input, timeout=timeout)


class Process:
    """A program started by spawn_process."""

    __slots__ = ("_grace", "_group", "_popen", "argv")

    def __init__(self, argv: Sequence[str], popen: subprocess.Popen[bytes], *, kill_group: bool,
                 grace: float) -> None:
        self.argv = tuple(argv)
        self._popen = popen
        self._group = kill_group
        self._grace = grace

    @property
    def pid(self) -> int:
        return self._popen.pid

    def communicate(self, input: bytes | None = None, *, timeout: float | None) -> ProcessResult:
        """Feed ``input``, wait for the exit and return what the program wrote.
        ProcessTimedOut after ``timeout`` seconds.  On that or any other
        interruption (KeyboardInterrupt, SIGTERM turned into one) the program
        is stopped and reaped before the error propagates."""
        popen = self._popen
        try:
            out, err = popen.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.terminate()
            assert timeout is not None
            raise ProcessTimedOut(self.argv, timeout, _status(popen.returncode)) from None
        except BaseException:
            self.terminate()
            raise
        return ProcessResult(popen.returncode, out, err)

    def terminate(self) -> None:
        """Stop the program (SIGTERM, the grace period, SIGKILL), reap it and
        close its pipes, unread output and all.  Idempotent."""
        popen = self._popen
        try:
            if popen.poll() is None:
                _signal(popen.pid, signal.SIGTERM, self._group)
                try:
                    popen.wait(self._grace)
                except subprocess.TimeoutExpired:
                    if not self._group:
                        popen.kill()
            if self._group:
                _signal(popen.pid, signal.SIGKILL, True)  # the group may outlive its leader
            popen.wait()
        except BaseException:
            # Interrupted during the grace period: no more grace.
            if self._group:
                _signal(popen.pid, signal.SIGKILL, True)
            else:
                popen.kill()  # a no-op once reaped
            popen.wait()
            raise
        finally:
            # Not drained: a grandchild holding a copy of a pipe must not hold us too.
            for pipe in (popen.stdin, popen.stdout, popen.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()


def _status(returncode: int | None) -> int:
    return -1 if returncode is None else returncode


# -- async ---------------------------------------------------------------------


async def run_process_async(argv: Sequence[str], *, timeout: float | None, input: bytes | None = None,
                            env: Mapping[str, str] | None = None, cwd: str | None = None,
                            pass_fds: Sequence[int] = (), kill_group: bool = False,
                            grace: float = TERM_GRACE) -> ProcessResult:
    """Run ``argv`` to its end on the running loop, feeding it ``input``
    (stdin is /dev/null without).  A non-zero exit is returned, not raised.
    ProcessTimedOut (a DeadlineExceeded) after ``timeout`` seconds; OSError
    if it cannot be started.  On a timeout, an error or a cancellation the
    child is stopped and reaped, even if the caller is cancelled again
    meanwhile, and only then does the error propagate."""
    import asyncio

    loop = asyncio.get_running_loop()
    transport, collector = await loop.subprocess_exec(
        lambda: _Collector(loop), *argv, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, pass_fds=tuple(pass_fds),
        start_new_session=True)
    try:
        if input is not None:
            pipe = transport.get_pipe_transport(0)
            assert isinstance(pipe, asyncio.WriteTransport)
            pipe.write(input)
            pipe.close()  # after the buffer is flushed: EOF for the child
        # asyncio.wait leaves the future alone on a timeout or a cancellation.
        finished, _ = await asyncio.wait((collector.closed,), timeout=timeout)
    except BaseException:
        await uncancellable(_stop(transport, collector, kill_group, grace))
        raise
    if not finished:
        await uncancellable(_stop(transport, collector, kill_group, grace))
        assert timeout is not None
        raise ProcessTimedOut(argv, timeout, _status(transport.get_returncode()))
    transport.close()
    return ProcessResult(_status(transport.get_returncode()), b"".join(collector.stdout),
                         b"".join(collector.stderr))


class _Collector(_Protocol):
    """The child's output, and futures for its exit and for the end of it all
    (exit and every pipe closed)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.stdout: list[bytes] = []
        self.stderr: list[bytes] = []
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        (self.stdout if fd == 1 else self.stderr).append(data)

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        pass

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def pause_writing(self) -> None:  # stdin's buffer is bounded by the input anyway
        pass

    def resume_writing(self) -> None:
        pass


async def _stop(transport: asyncio.SubprocessTransport, collector: _Collector, group: bool, grace: float) -> None:
    import asyncio

    pid = transport.get_pid()
    # get_returncode() is set as soon as the child watcher reports the exit:
    # after it, the pid may name another process.
    if transport.get_returncode() is None:
        _signal(pid, signal.SIGTERM, group)
        await asyncio.wait((collector.exited,), timeout=grace)
    if group:
        _signal(pid, signal.SIGKILL, True)  # the group may outlive its leader
    elif transport.get_returncode() is None:
        _signal(pid, signal.SIGKILL, False)
    await asyncio.wait((collector.exited,))
    # Closing the pipes ends the transport even if a grandchild holds a copy of one.
    transport.close()
    await asyncio.wait((collector.closed,))


async def uncancellable(aw: Awaitable[T]) -> T:
    """Await ``aw`` to its end even if the caller is cancelled meanwhile (for
    cleanup that must not be cut short); a cancellation that arrived is
    re-raised afterwards."""
    import asyncio

    task = asyncio.ensure_future(aw)
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
        except asyncio.CancelledError:
            if task.done():
                raise  # the awaitable itself was cancelled
            cancelled = True
            continue
        break
    if cancelled:
        raise asyncio.CancelledError
    return result
