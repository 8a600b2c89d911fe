"""hawserd's pull worker: one long-lived process that runs hawserd's pulls.

A pull in a fresh interpreter (``pull_in_child``) pays some 200 ms to start
Python and import the registry client and the layer pipeline: more than the
pull itself when the image is there already or small.  The worker
(``python -m hawser.images._pull_worker``) imports them once, then forks one
process per pull from that warm state (a fork costs a few milliseconds).
Each pull keeps what a process of its own gives it (see ``_pull_process``):
its memory goes back to the kernel when it ends, a codec that crashes takes
down that pull alone, and a cancelled pull is stopped as the child was:
SIGTERM (it unwinds: its lease, its temp files), ``TERM_GRACE``, SIGKILL.
The worker itself runs no pull and starts no thread, so forking it is safe.

Most of kubelet's pulls are of an image that is there already (a pod on a
node that ran its image before; imagePullPolicy Always).  Such a pull needs
no process of its own: the tag is resolved at the registry again (a moved
tag is a new image), and the store is found to hold that image whole
(``_pull.stored_whole``); nothing is decompressed, nothing written.  The
worker forks one more process for that, the checker, once: it keeps the
store and the registry clients open (connections, tokens while fresh) from
one pull to the next, and answers one pull at a time (``check_present``):
the pull's answer, or "pull it" and the worker forks the pull's process as
above.  A pull that comes while the checker is busy gets its process at
once (a slow registry holds up no other pull).  A cancelled pull in the
checker is stopped by SIGKILL (it holds no lease, no temp file); a checker
that dies otherwise hands its pull to a process of its own, and the next
pull forks another checker (after ``CHECKER_DEATHS`` deaths in a row, none).
It goes when the worker does (its stdin closes; PR_SET_PDEATHSIG, SIGKILL).

hawserd's side is ``PullWorker``: the first pull starts the worker, later
ones reuse it, several at once; after ``IDLE_TIMEOUT`` seconds with no pull
in flight hawserd closes the worker's stdin and the worker exits (hawserd
decides, so a pull never races the worker's exit), and its memory goes back
to the kernel.  ``close`` (hawserd's shutdown) does the same at once, then
SIGKILL after ``STOP_GRACE``; the worker is always reaped.  A worker that dies
(killed, crashed) fails the pulls in flight with an Unavailable and the next
pull starts a new one; what the pulls stored is kept (leases, resumable
ingests).  Nothing outlives hawserd: the worker exits when its stdin closes
and has PR_SET_PDEATHSIG (SIGTERM); a pull's process has PR_SET_PDEATHSIG
(SIGKILL), so it does not outlive the worker either.

The protocol, JSON lines on the worker's stdin and stdout:

    hawserd -> worker  {"op": "pull", "id": 7, "config": {...}, "reference": "...", "namespace": "...",
                        "credentials": {...}}      (credentials optional: see ``pull_request``)
                       {"op": "cancel", "id": 7}
    worker -> hawserd  {"id": 7, "stats": {...} | null}                  the pull is done
                       {"id": 7, "kind": "NotFound", "message": "...", "hint": "..." | null}
                       {"id": 7, "cancelled": true}                      stopped (cancelled, or the worker stopping)

Exactly one answer per pull, sent once its process (or, for a cancelled
pull in the checker, the checker) is reaped.  Between the worker and its
checker: the pull's request line, and ``{"id": 7, "answer": {...} | null}``
(null: fork the pull).  The worker's stderr (and the checker's) is hawserd's
to log: they write there only what is wrong.

``HAWSER_PULL_WORKER_IDLE`` (seconds), read when hawserd builds its
``PullWorker``, overrides ``IDLE_TIMEOUT``: tests use it, as they use
``HAWSER_FAILPOINTS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import math
import os
import selectors
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from hawser import errors
from hawser.images._pull_process import (
    TERM_GRACE,
    Answer,
    answer_of,
    check_present,
    outcome,
    pull_request,
    run_pull,
)

if TYPE_CHECKING:
    from hawser.config import Config
    from hawser.images._events import PullStats
    from hawser.registry import Credentials

log = logging.getLogger(__name__)

# With no pull in flight this long, hawserd stops the worker (its memory goes back to the kernel).
IDLE_TIMEOUT = 60.0
IDLE_ENV = "HAWSER_PULL_WORKER_IDLE"
# After its stdin closes, how long the worker gets to stop its pulls and exit before SIGKILL.
STOP_GRACE = TERM_GRACE + 2.0
# After the worker's exit, how long its pipes may take to deliver what it wrote.
EXIT_DRAIN = 1.0
# What the worker keeps of a pull process's output: the answer, and the end of its stderr.
MAX_OUTPUT = 1 << 20
STDERR_TAIL = 4096

# What a pull imports on first use (the registry client loads httpx and its parts only when it
# sends its first request): imported once by the worker, so that no pull pays for them.
_WARM_MODULES = ("hawser.config", "hawser.store", "hawser.images._service", "hawser.images._pull",
                 "hawser.images._unpack", "hawser.images._apply", "httpx", "httpcore", "h11", "certifi",
                 "encodings.idna", "encodings.ascii")
_WARM_NAMES = (("hawser.snapshots", "OverlaySnapshotter"), ("hawser.snapshots", "NativeSnapshotter"),
               ("hawser.registry", "RegistryClient"))

Pull = Callable[[Mapping[str, Any]], tuple[int, Answer]]
# The checker's question: the answer to a pull that needs no pull process, or None (fork one).
Check = Callable[[Mapping[str, Any]], Answer | None]
# The checker dying unexpectedly this many times in a row: the worker goes on without one.
CHECKER_DEATHS = 3
# The checker's name (/proc/PID/comm, what ps and top show): its command line is the worker's.
CHECKER_NAME = "pull-checker"


# --- hawserd's side --------------------------------------------------------------------


def idle_timeout_from_env() -> float:
    """``HAWSER_PULL_WORKER_IDLE`` if set, else IDLE_TIMEOUT.  InvalidArgument
    for a value that is not a number of seconds above 0."""
    text = os.environ.get(IDLE_ENV, "").strip()
    if not text:
        return IDLE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (value > 0 and math.isfinite(value)):
        raise errors.InvalidArgument(f"{IDLE_ENV}={text!r}: not a number of seconds above 0",
                                     hint=f"unset it for the default ({IDLE_TIMEOUT:g}s)")
    return value


class PullWorker:
    """hawserd's pull worker (see the module docstring): ``pull`` runs a pull
    in it, starting it if none is running; ``close`` stops it.  Constructing
    one starts nothing.  Use it from one event loop."""

    def __init__(self, *, idle_timeout: float | None = None, argv: Sequence[str] | None = None) -> None:
        self.idle_timeout = idle_timeout_from_env() if idle_timeout is None else idle_timeout
        # The worker's command; hawserd's pid is appended (the worker exits if that parent is gone).
        self._argv = tuple(argv) if argv else (sys.executable, "-m", "hawser.images._pull_worker")
        self._current: _Connection | None = None
        self._live: set[_Connection] = set()  # started and not yet reaped (an idle one may be exiting)
        self._lock = asyncio.Lock()
        self._running = 0  # pulls in flight
        self._idle: asyncio.TimerHandle | None = None
        self._closed = False
        self.started = 0  # workers started, ever

    @property
    def pid(self) -> int | None:
        """The pid of the worker that serves the next pull; None when there is none yet."""
        current = self._current
        return current.pid if current is not None and current.usable else None

    async def pull(self, config: Config, reference: str, *, namespace: str,
                   credentials: Credentials | None = None, registry: str = "") -> PullStats | None:
        """Pull ``reference`` into ``namespace`` of the store of ``config`` in
        the worker, as ``pull_in_child`` does in a child; returns what the pull
        measured (None if it did not say).  Raises the pull's error kind
        (NotFound, PermissionDenied, ...); Unavailable if the worker or the
        pull's process died, or if hawserd is shutting down.  Cancelled, it
        stops the pull in the worker and returns once its process is reaped."""
        if self._closed:
            raise errors.Unavailable(f"hawserd is shutting down: the pull of {reference} was not started")
        request = pull_request(config, reference, namespace=namespace, credentials=credentials, registry=registry)
        self._running += 1
        self._disarm()
        try:
            connection = await self._connection()
            answer = await connection.pull(request, reference)
        finally:
            self._running -= 1
            if not self._running:
                self._arm()
        if answer.get("cancelled"):
            why = "hawserd is shutting down" if self._closed else "the pull worker stopped"
            raise errors.Unavailable(f"the pull of {reference} was stopped: {why}", hint="pull again")
        return outcome(answer, reference)

    async def close(self) -> None:
        """Stop every worker (its pulls are stopped and fail Unavailable) and
        reap it: stdin closed, SIGKILL after STOP_GRACE.  Idempotent; a pull
        after it fails Unavailable."""
        from hawser.host import uncancellable

        self._closed = True
        self._disarm()
        self._current = None
        live = list(self._live)
        for connection in live:
            connection.finish_input()
        if live:
            await uncancellable(self._reap(live))

    async def _reap(self, live: list[_Connection]) -> None:
        _, late = await asyncio.wait([c.done for c in live], timeout=STOP_GRACE)
        for connection in live:
            if not connection.done.done():
                log.warning("pull worker did not stop: killing it",
                            extra={"pid": connection.pid, "grace": STOP_GRACE})
                connection.kill()
        if late:
            await asyncio.wait(late)

    async def _connection(self) -> _Connection:
        async with self._lock:
            current = self._current
            if current is None or not current.usable:
                current = self._current = await self._start()
            return current

    async def _start(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.subprocess_exec(
                lambda: _Connection(loop, self._gone), *self._argv, str(os.getpid()),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except OSError as exc:
            raise errors.Unavailable(f"cannot start the pull worker: {exc}",
                                     hint=f"check that {self._argv[0]} can run") from None
        self._live.add(connection)
        self.started += 1
        log.info("pull worker started", extra={"pid": connection.pid})
        if self._closed:  # close() came while it started: it stops with the others
            connection.finish_input()
            await self._reap([connection])
            raise errors.Unavailable("hawserd is shutting down: no pull starts now")
        return connection

    def _gone(self, connection: _Connection) -> None:
        self._live.discard(connection)
        if self._current is connection:
            self._current = None

    def _arm(self) -> None:
        if self._closed or self._current is None:
            return
        self._disarm()
        self._idle = asyncio.get_running_loop().call_later(self.idle_timeout, self._on_idle)

    def _disarm(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _on_idle(self) -> None:
        self._idle = None
        current = self._current
        if self._running or current is None:
            return
        log.info("pull worker idle: stopping it", extra={"pid": current.pid, "idle": self.idle_timeout})
        self._current = None
        current.finish_input()  # it exits; the loop's child watcher reaps it


class _Connection(asyncio.SubprocessProtocol):
    """One worker process: its pulls in flight by request id, its answers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gone: Callable[[_Connection], None]) -> None:
        self._loop = loop
        self._gone = gone
        self._transport: asyncio.SubprocessTransport | None = None
        self.pid = 0
        self._pending: dict[int, tuple[str, asyncio.Future[Answer]]] = {}
        self._next_id = 0
        self._out = bytearray()
        self._err = bytearray()
        self._said: deque[str] = deque(maxlen=3)  # the end of its stderr, for the line saying it died
        self._input_closed = False
        self._exited = False
        self.done: asyncio.Future[None] = loop.create_future()  # exited, pipes closed, pulls answered

    @property
    def usable(self) -> bool:
        return not (self._input_closed or self._exited or self.done.done())

    # -- asyncio's protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.SubprocessTransport)
        self._transport = transport
        self.pid = transport.get_pid()

    def pipe_data_received(self, fd: int, data: bytes | str) -> None:
        assert isinstance(data, bytes)
        if fd == 1:
            self._out += data
            for line in _lines(self._out):
                self._answer(line)
        else:
            self._err += data
            for line in _lines(self._err):
                text = line.decode(errors="replace").rstrip()
                self._said.append(text)
                log.warning("pull worker: %s", text, extra={"pid": self.pid})

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        pass

    def process_exited(self) -> None:
        self._exited = True  # the next pull starts another
        # Its pipes normally close at once (connection_lost); this bounds the wait if one does not.
        self._loop.call_later(EXIT_DRAIN, self._finish)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()

    # -- hawserd's calls

    async def pull(self, request: Mapping[str, Any], reference: str) -> Answer:
        from hawser.host import uncancellable

        self._next_id += 1
        request_id = self._next_id
        answer: asyncio.Future[Answer] = self._loop.create_future()
        self._pending[request_id] = (reference, answer)
        self._send({"op": "pull", "id": request_id, **request})
        try:
            await asyncio.wait((answer,))
        except asyncio.CancelledError:
            if not answer.done():
                log.info("pull cancelled: stopping it", extra={"image": reference, "pid": self.pid})
                started = time.monotonic()
                self._send({"op": "cancel", "id": request_id})
                # The worker answers once the pull's process is reaped (SIGTERM, TERM_GRACE, SIGKILL).
                await uncancellable(asyncio.wait((answer,)))
                log.info("pull cancelled: stopped", extra={"image": reference,
                                                           "waited": round(time.monotonic() - started, 3)})
            if not answer.cancelled():
                answer.exception()  # retrieved: the caller is cancelled anyway
            raise
        return answer.result()

    def finish_input(self) -> None:
        """Close the worker's stdin: it stops its pulls and exits."""
        self._input_closed = True
        if self._transport is not None:
            stdin = self._transport.get_pipe_transport(0)
            if stdin is not None:
                stdin.close()  # after what is buffered is written

    def kill(self) -> None:
        if self._transport is not None and self._transport.get_returncode() is None:
            with contextlib.suppress(ProcessLookupError):
                self._transport.kill()

    # -- inside

    def _send(self, message: Mapping[str, Any]) -> None:
        stdin = self._transport.get_pipe_transport(0) if self._transport is not None else None
        if stdin is None or stdin.is_closing():
            return  # it is going: _finish answers every pull in flight
        assert isinstance(stdin, asyncio.WriteTransport)
        stdin.write(json.dumps(message).encode() + b"\n")

    def _answer(self, line: bytes) -> None:
        try:
            answer = json.loads(line)
            request_id = answer.pop("id")
        except (ValueError, AttributeError, KeyError, TypeError):
            log.warning("pull worker: not an answer",
                        extra={"pid": self.pid, "line": line[:200].decode(errors="replace")})
            return
        entry = self._pending.pop(request_id, None)
        if entry is not None and not entry[1].done():
            entry[1].set_result(answer)

    def _finish(self) -> None:
        if self.done.done():
            return
        assert self._transport is not None
        status = _status(self._transport.get_returncode())
        pending, self._pending = self._pending, {}
        said = {"said": " | ".join(self._said)} if self._said else {}
        if pending:
            log.warning("pull worker died", extra={"pid": self.pid, "status": status, "pulls_failed": len(pending),
                                                   **said})
        elif not self._input_closed:
            log.warning("pull worker exited by itself", extra={"pid": self.pid, "status": status, **said})
        else:
            log.info("pull worker stopped", extra={"pid": self.pid, "status": status})
        for reference, answer in pending.values():
            if not answer.done():
                answer.set_exception(errors.Unavailable(
                    f"the pull worker (pid {self.pid}) died ({status}) while pulling {reference}",
                    hint="pull again: a new worker starts, and what this pull stored is kept"))
        self._transport.close()
        self.done.set_result(None)
        self._gone(self)


def _lines(buffer: bytearray) -> list[bytes]:
    """Take the whole lines out of ``buffer``."""
    end = buffer.rfind(b"\n")
    if end < 0:
        return []
    lines = bytes(buffer[:end]).split(b"\n")
    del buffer[:end + 1]
    return [line for line in lines if line.strip()]


def _status(returncode: int | None) -> str:
    if returncode is None:
        return "still running"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


# --- the worker process ---------------------------------------------------------------


class _Running:
    """A pull's process, as the worker keeps track of it."""

    __slots__ = ("cancelled", "err", "kill_at", "out", "pid", "pidfd", "request_id", "stderr", "stdout")

    def __init__(self, request_id: int, pid: int, pidfd: int, out: int, err: int) -> None:
        self.request_id = request_id
        self.pid = pid
        self.pidfd = pidfd
        self.out = out  # read ends of its stdout (the answer) and stderr; -1 once closed
        self.err = err
        self.stdout = bytearray()
        self.stderr = bytearray()
        self.cancelled = False
        self.kill_at: float | None = None  # SIGKILL then, after a cancellation's SIGTERM


class _Checker:
    """The worker's checker process, as the worker keeps track of it: one pull
    at a time (``pending``) is asked of it."""

    __slots__ = ("answers", "buffer", "cancelled", "kill_at", "pending", "pid", "pidfd", "requests")

    def __init__(self, pid: int, pidfd: int, requests: int, answers: int) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.requests = requests  # write end of its stdin; -1 once closed (it exits then)
        self.answers = answers  # read end of its answers; -1 once closed
        self.buffer = bytearray()
        self.pending: tuple[int, dict[str, Any]] | None = None  # (id, request) of the pull it checks
        self.cancelled = False  # the pending pull was cancelled: the checker is being killed
        self.kill_at: float | None = None  # SIGKILL then, if it has not exited since its stdin closed

    @property
    def idle(self) -> bool:
        return self.pending is None and self.requests >= 0


class _Worker:
    """The worker's loop: one thread, a selector over its stdin, each pull's
    pipes and pidfd, the checker's, and a self-pipe for SIGTERM."""

    def __init__(self, *, requests: int, answers: int, pull: Pull, check: Check | None = None) -> None:
        self._requests = requests
        self._answers = answers
        self._pull = pull
        self._check = check
        self._checker: _Checker | None = None
        self._checker_deaths = 0  # unexpected deaths in a row
        self._selector = selectors.DefaultSelector()
        self._running: dict[int, _Running] = {}
        self._input = bytearray()
        self._stopping = False
        self._terminated = False
        self._pid = os.getpid()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def run(self) -> int:
        signal.set_wakeup_fd(self._wake_w)
        signal.signal(signal.SIGTERM, self._on_sigterm)
        self._selector.register(self._requests, selectors.EVENT_READ, self._read_requests)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._read_wakeup)
        while not (self._stopping and not self._running and self._checker is None):
            for key, _ in self._selector.select(self._timeout()):
                key.data(key.fd)
            if self._terminated and not self._stopping:
                self._stop()
            self._kill_overdue()
        return 0

    # -- requests

    def _read_requests(self, fd: int) -> None:
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if not data:  # hawserd closed the pipe (idle, shutting down) or is gone
            self._stop()
            return
        self._input += data
        for line in _lines(self._input):
            try:
                request = json.loads(line)
                op, request_id = request["op"], request["id"]
            except (ValueError, KeyError, TypeError):
                # Not the line itself: a request may carry credentials.
                print(f"pull worker: not a request ({len(line)} bytes)", file=sys.stderr, flush=True)
                continue
            if op == "pull":
                self._start(request_id, request)
            elif op == "cancel":
                self._cancel(request_id)
            else:
                print(f"pull worker: unknown op {op!r}", file=sys.stderr, flush=True)

    def _start(self, request_id: int, request: dict[str, Any]) -> None:
        if self._stopping:
            self._send(request_id, {"cancelled": True})
            return
        checking = self._checker.pending if self._checker is not None else None
        if request_id in self._running or (checking is not None and checking[0] == request_id):
            self._send(request_id, {"kind": "Internal", "message": f"pull request id {request_id} is in use"})
            return
        if not self._ask_checker(request_id, request):
            self._fork(request_id, request)

    def _fork(self, request_id: int, request: dict[str, Any]) -> None:
        """Run the pull in a process of its own."""
        try:
            pid, pidfd, (out_r, err_r) = _fork_piped(
                lambda out_w, err_w: _pull_child(self._pull, request, out=out_w, err=err_w, worker=self._pid),
                child_ends=(1, 3))
        except _ForkFailed as failed:
            exc = failed.error
            exhausted = failed.stage == "watch" or exc.errno in (errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE)
            self._send(request_id, {"kind": "ResourceExhausted" if exhausted else "Unavailable",
                                    "message": f"cannot {failed.stage} the pull's process: {exc}", "hint": None})
            return
        running = _Running(request_id, pid, pidfd, out_r, err_r)
        self._running[request_id] = running
        for fd in (out_r, err_r):
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ, lambda fd, r=running: self._read_output(r, fd))
        self._selector.register(pidfd, selectors.EVENT_READ, lambda _, r=running: self._exited(r))

    def _cancel(self, request_id: int) -> None:
        checker = self._checker
        if checker is not None and checker.pending is not None and checker.pending[0] == request_id:
            if not checker.cancelled:
                # Its pull has no lease nor temp file to unwind: SIGKILL, answered once it is reaped.
                checker.cancelled = True
                self._kill_checker(checker)
            return
        running = self._running.get(request_id)
        if running is None or running.cancelled:
            return  # answered already
        running.cancelled = True
        self._signal(running, signal.SIGTERM)
        running.kill_at = time.monotonic() + TERM_GRACE

    def _stop(self) -> None:
        """hawserd is done with the worker: stop the pulls, and exit once they are reaped."""
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(self._requests)
        for request_id in list(self._running):
            self._cancel(request_id)
        checker = self._checker
        if checker is not None:
            if checker.pending is not None:
                self._cancel(checker.pending[0])
            else:
                self._close_checker_input(checker)

    # -- the pulls' processes

    def _read_output(self, running: _Running, fd: int) -> None:
        if fd not in (running.out, running.err):
            return  # closed by _exited earlier in the same round of events
        try:
            data = os.read(fd, 1 << 16)
        except BlockingIOError:
            return
        if data:
            _keep(running, fd, data)
        else:
            self._close_pipe(running, fd)

    def _exited(self, running: _Running) -> None:
        _, status = os.waitpid(running.pid, 0)  # its pidfd is readable: it exited, this does not block
        returncode = os.waitstatus_to_exitcode(status)
        for fd in (running.out, running.err):
            if fd >= 0:
                # All it wrote is in the pipe; a grandchild holding a copy must not hold us.
                with contextlib.suppress(BlockingIOError):
                    while data := os.read(fd, 1 << 16):
                        _keep(running, fd, data)
                self._close_pipe(running, fd)
        self._selector.unregister(running.pidfd)
        os.close(running.pidfd)
        del self._running[running.request_id]
        if running.cancelled and returncode != 0:
            answer: Answer = {"cancelled": True}
        else:
            answer = answer_of(returncode, bytes(running.stdout), bytes(running.stderr))
        self._send(running.request_id, answer)

    def _close_pipe(self, running: _Running, fd: int) -> None:
        self._selector.unregister(fd)
        os.close(fd)
        if fd == running.out:
            running.out = -1
        else:
            running.err = -1

    def _kill_overdue(self) -> None:
        now = time.monotonic()
        for running in self._running.values():
            if running.kill_at is not None and running.kill_at <= now:
                self._signal(running, signal.SIGKILL)
                running.kill_at = None
        checker = self._checker
        if checker is not None and checker.kill_at is not None and checker.kill_at <= now:
            self._kill_checker(checker)

    def _timeout(self) -> float | None:
        deadlines = [r.kill_at for r in self._running.values() if r.kill_at is not None]
        if self._checker is not None and self._checker.kill_at is not None:
            deadlines.append(self._checker.kill_at)
        return max(0.0, min(deadlines) - time.monotonic()) if deadlines else None

    @staticmethod
    def _signal(running: _Running, sig: int) -> None:
        # Through its pidfd: until it is reaped (by this loop only) it is the pull's process.
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(running.pidfd, sig)

    # -- the checker: pulls of an image that is there already, without a process each

    def _ask_checker(self, request_id: int, request: dict[str, Any]) -> bool:
        """Hand the pull to the checker if there is one and it is idle (else
        the pull gets a process of its own: a slow registry's resolve never
        holds up another pull).  False if it was not handed over."""
        if self._check is None or self._stopping:
            return False
        checker = self._checker
        if checker is None:
            checker = self._checker = self._fork_checker(self._check)
        if checker is None or not checker.idle:
            return False
        data = json.dumps(request).encode() + b"\n"
        try:
            while data:  # its stdin is blocking: it reads a whole line whenever it is idle, as it is now
                data = data[os.write(checker.requests, data):]
        except OSError:  # it is gone: reaped through its pidfd
            self._close_checker_input(checker)
            return False
        checker.pending = (request_id, request)
        return True

    def _fork_checker(self, check: Check) -> _Checker | None:
        try:
            pid, pidfd, (req_w, ans_r) = _fork_piped(
                lambda req_r, ans_w: _checker_child(check, requests=req_r, answers=ans_w, worker=self._pid),
                child_ends=(0, 3))
        except _ForkFailed as failed:
            print(f"pull worker: cannot {failed.stage} the checker: {failed.error}", file=sys.stderr, flush=True)
            return None
        os.set_blocking(ans_r, False)
        checker = _Checker(pid, pidfd, req_w, ans_r)
        self._selector.register(ans_r, selectors.EVENT_READ, lambda _, c=checker: self._read_checker(c))
        self._selector.register(pidfd, selectors.EVENT_READ, lambda _, c=checker: self._checker_exited(c))
        return checker

    def _read_checker(self, checker: _Checker) -> None:
        if checker.answers < 0:
            return  # closed by _checker_exited earlier in the same round of events
        try:
            data = os.read(checker.answers, 1 << 16)
        except BlockingIOError:
            return
        if not data:
            self._close_checker_answers(checker)
            return
        checker.buffer += data
        del checker.buffer[:-MAX_OUTPUT]
        for line in _lines(checker.buffer):
            self._checked(checker, line)

    def _checked(self, checker: _Checker, line: bytes) -> None:
        try:
            reply = json.loads(line)
            request_id, answer = reply["id"], reply["answer"]
        except (ValueError, KeyError, TypeError):
            print(f"pull worker: the checker said something else than an answer ({len(line)} bytes)",
                  file=sys.stderr, flush=True)
            return
        pending = checker.pending
        if pending is None or pending[0] != request_id or checker.cancelled:
            return  # a cancelled pull is answered once the checker is reaped
        checker.pending = None
        self._checker_deaths = 0
        if isinstance(answer, dict):
            self._send(request_id, answer)
        else:  # not there (or not whole): the pull runs
            self._fork(request_id, pending[1])

    def _checker_exited(self, checker: _Checker) -> None:
        _, status = os.waitpid(checker.pid, 0)  # its pidfd is readable: this does not block
        if checker.answers >= 0:
            # An answer it wrote before it went counts.
            with contextlib.suppress(BlockingIOError):
                while data := os.read(checker.answers, 1 << 16):
                    checker.buffer += data
            for line in _lines(checker.buffer):
                self._checked(checker, line)
            self._close_checker_answers(checker)
        self._close_checker_input(checker)
        self._selector.unregister(checker.pidfd)
        os.close(checker.pidfd)
        self._checker = None
        pending = checker.pending
        if pending is None and self._stopping:
            return
        if pending is not None and (checker.cancelled or self._stopping):
            self._send(pending[0], {"cancelled": True})
            return
        self._checker_deaths += 1
        print(f"pull worker: the checker (pid {checker.pid}) died ({_status(os.waitstatus_to_exitcode(status))})",
              file=sys.stderr, flush=True)
        if self._checker_deaths >= CHECKER_DEATHS:
            print("pull worker: every pull gets a process of its own from now on", file=sys.stderr, flush=True)
            self._check = None
        if pending is not None:
            self._fork(*pending)  # the pull itself finds out what the check could not

    def _kill_checker(self, checker: _Checker) -> None:
        checker.kill_at = None
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(checker.pidfd, signal.SIGKILL)

    def _close_checker_input(self, checker: _Checker) -> None:
        """No more requests: it exits (SIGKILL after TERM_GRACE if it does not)."""
        if checker.requests >= 0:
            os.close(checker.requests)
            checker.requests = -1
            if checker.kill_at is None and not checker.cancelled:
                checker.kill_at = time.monotonic() + TERM_GRACE

    def _close_checker_answers(self, checker: _Checker) -> None:
        if checker.answers >= 0:
            self._selector.unregister(checker.answers)
            os.close(checker.answers)
            checker.answers = -1

    # -- answers and signals

    def _send(self, request_id: int, answer: Answer) -> None:
        data = json.dumps({"id": request_id, **answer}).encode() + b"\n"
        try:
            while data:
                data = data[os.write(self._answers, data):]
        except OSError:  # hawserd is gone: nobody to answer; stop
            self._stop()

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self._terminated = True  # acted on by the loop, woken by the wakeup fd

    def _read_wakeup(self, fd: int) -> None:
        with contextlib.suppress(BlockingIOError):
            os.read(fd, 512)


def _keep(running: _Running, fd: int, data: bytes) -> None:
    if fd == running.out:
        running.stdout += data
        del running.stdout[:-MAX_OUTPUT]
    else:
        running.stderr += data
        del running.stderr[:-STDERR_TAIL]


class _ForkFailed(Exception):
    """A child could not be started (``stage`` "start") or watched ("watch")."""

    def __init__(self, stage: str, error: OSError) -> None:
        super().__init__(f"cannot {stage}: {error}")
        self.stage, self.error = stage, error


def _fork_piped(child: Callable[[int, int], NoReturn], *, child_ends: tuple[int, int]
                ) -> tuple[int, int, tuple[int, int]]:
    """Fork a child over two new pipes ``[r0, w0, r1, w1]``: it runs
    ``child(*child_ends' fds)``; the parent gets ``(pid, pidfd, its two ends
    in order)``.  SIGTERM stays blocked across the fork, so a cancellation
    right after it waits until the child has its own handler.  _ForkFailed
    with nothing left open (a child that cannot be watched is killed and
    reaped)."""
    fds: list[int] = []
    try:
        for _ in range(2):
            fds += os.pipe()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            pid = os.fork()
            if pid == 0:
                child(*(fds[i] for i in child_ends))
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    except OSError as exc:
        for fd in fds:
            os.close(fd)
        raise _ForkFailed("start", exc) from None
    mine = tuple(fd for i, fd in enumerate(fds) if i not in child_ends)
    for i in child_ends:
        os.close(fds[i])
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:  # out of fds: no way to watch it
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        for fd in mine:
            os.close(fd)
        raise _ForkFailed("watch", exc) from None
    return pid, pidfd, (mine[0], mine[1])


def _pull_child(pull: Pull, request: Mapping[str, Any], *, out: int, err: int, worker: int) -> NoReturn:
    """The forked pull's process: never returns into the worker's loop.  It
    starts with SIGTERM blocked (the worker blocks it around the fork)."""
    code = 1
    stopped: Answer = {"kind": "Unavailable", "message": f"the pull of {request.get('reference')} was stopped "
                       "(SIGTERM)", "hint": "pull again"}
    try:
        from hawser.host import die_with_parent

        signal.set_wakeup_fd(-1)
        # As the one-shot child: SIGTERM (a cancellation) unwinds the pull (leases, temp files).
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        die_with_parent(signal.SIGKILL)  # the worker killed: no pull goes on without it
        if os.getppid() != worker:
            os._exit(code)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the worker's pipes, other pulls' pipes and pidfds
        try:
            # A cancellation that came since the fork is delivered here.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
            code, answer = pull(request)
        except KeyboardInterrupt:
            code, answer = 1, stopped
        sys.stdout.write(json.dumps(answer) + "\n")
    except KeyboardInterrupt:  # SIGTERM once more, or after the pull: stopped all the same
        code = 1
    except BaseException:
        import traceback

        traceback.print_exc()  # the worker quotes the end of it in an Internal error
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _checker_child(check: Check, *, requests: int, answers: int, worker: int) -> NoReturn:
    """The checker's process: answers the worker's questions (one request, a
    JSON line, at a time) until its stdin closes; never returns into the
    worker's loop.  It starts with SIGTERM blocked (the worker blocks it
    around the fork)."""
    code = 0
    try:
        from hawser.host import die_with_parent

        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # it holds nothing to unwind: a read-only look
        die_with_parent(signal.SIGKILL)
        if os.getppid() != worker:
            os._exit(1)
        with contextlib.suppress(OSError), open("/proc/self/comm", "w") as comm:
            comm.write(CHECKER_NAME)
        os.dup2(requests, 0)
        # Answers on fd 3; fd 1 stays the worker's stderr, as for the worker, so a stray print is no answer.
        os.dup2(answers, 3)
        os.closerange(4, os.sysconf("SC_OPEN_MAX"))  # the worker's pipes, its pulls' pipes and pidfds
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        with open(0, "rb", buffering=1 << 16, closefd=False) as stdin:
            for line in stdin:
                request = json.loads(line)
                try:
                    answer = check(request)
                except Exception:
                    import traceback

                    traceback.print_exc()  # hawserd logs it; the pull's own process goes on with the pull
                    answer = None
                data = json.dumps({"id": request["id"], "answer": answer}).encode() + b"\n"
                while data:
                    data = data[os.write(3, data):]
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def serve(parent: int, *, pull: Pull = run_pull, check: Check | None = None) -> int:
    """The worker's main: serve hawserd (``parent``) on stdin and stdout until
    stdin closes.  With ``check``, pulls go to the checker first (see the
    module docstring)."""
    from hawser.host import die_with_parent

    os.umask(0o022)
    die_with_parent(signal.SIGTERM)  # and stdin closes: either way it stops its pulls and exits
    if os.getppid() != parent:
        return 0
    answers = os.dup(1)  # the protocol's; a stray print goes to stderr, hawserd's log
    os.dup2(2, 1)
    _warm_up()
    import gc

    # What the pulls' processes share with the worker stays shared: the collector does not touch it.
    gc.collect()
    gc.freeze()
    return _Worker(requests=0, answers=answers, pull=pull, check=check).run()


def _warm_up() -> None:
    import importlib

    for name in _WARM_MODULES:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    for module, attr in _WARM_NAMES:
        with contextlib.suppress(ImportError, AttributeError):
            getattr(importlib.import_module(module), attr)
    from hawser.registry import default_ssl_context

    default_ssl_context()  # the CA bundle, loaded once for every pull


if __name__ == "__main__":
    sys.exit(serve(int(sys.argv[1]), check=check_present))
