"""Attach to a container through conmon's attach socket.

conmon listens on ``<bundle>/attach`` (SOCK_SEQPACKET).  What the client
writes goes to the container's stdin; each message conmon sends starts with
one byte naming the stream (2 stdout, 3 stderr) followed by the data.  It
closes the socket when the container's output ends.  Terminal size goes to
the ``ctl`` fifo as ``1 <rows> <cols>``.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import sys
import termios
import tty as tty_mod
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from hawser.errors import FailedPrecondition, InvalidArgument

if TYPE_CHECKING:
    from hawser.metadata import Container
    from hawser.runtime._containers import ContainerManager
    from hawser.runtime._types import ContainerInfo

STDOUT, STDERR = 2, 3
BUFSIZE = 32768
DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q: docker's default


def _connect(bundle: str) -> socket.socket:
    # Through /proc/self/fd: a bundle path can be longer than sun_path's 108 bytes.
    dir_fd = os.open(bundle, os.O_PATH | os.O_DIRECTORY)
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        try:
            sock.connect(f"/proc/self/fd/{dir_fd}/attach")
        except OSError as exc:
            sock.close()
            raise FailedPrecondition(f"cannot attach to the container: {exc.strerror}") from None
        return sock
    finally:
        os.close(dir_fd)


def _resize(bundle: str, fd: int) -> None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return
    with contextlib.suppress(OSError):
        ctl = os.open(os.path.join(bundle, "ctl"), os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(ctl, f"1 {size.lines} {size.columns}\n".encode())
        finally:
            os.close(ctl)


@contextlib.contextmanager
def _raw(fd: int, enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    saved = termios.tcgetattr(fd)
    # TCSANOW, not setraw's default TCSAFLUSH: what the user typed ahead goes to the container.
    tty_mod.setraw(fd, termios.TCSANOW)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def attach(manager: ContainerManager, info: ContainerInfo, *, stdin: bool, tty: bool,
           detach_keys: bytes = DETACH_KEYS) -> int | None:
    """Start a just-created container with this process's stdio relayed to it
    until its output ends; then its exit code.  None when the user typed
    ``detach_keys`` (the container runs on)."""
    record = info.record
    bundle = manager.bundle(record.id)
    sock = _connect(bundle)
    in_fd = sys.stdin.fileno() if stdin else -1
    terminal = tty and in_fd >= 0 and os.isatty(in_fd)
    previous = None
    if terminal:
        previous = signal.signal(signal.SIGWINCH, lambda *_: _resize(bundle, in_fd))
        _resize(bundle, in_fd)
    try:
        with sock, _raw(in_fd, terminal):
            manager.start_created(info)
            detached = pump(sock, in_fd, detach_keys=detach_keys)
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
    if detached:
        return None
    status = manager.wait(record.id)
    return 125 if status.exit_code is None else status.exit_code


def start_attached(manager: ContainerManager, record: Container, *, stdin: bool,
                   detach_keys: bytes = DETACH_KEYS) -> int | None:
    """``start -a[i]``: start a created (or exited) container with this
    process's stdio relayed to it, as ``attach`` does; None when detached."""
    from hawser.runtime._types import CREATED

    bundle = manager.bundle(record.id)
    # A created container's conmon is there: attached before the start, nothing is missed.
    # An exited one gets a new conmon at the start, whose socket comes with it.
    sock = _connect(bundle) if manager.status(record).state == CREATED else None
    in_fd = sys.stdin.fileno() if stdin and record.config.get("stdin") else -1
    terminal = bool(record.config.get("tty")) and in_fd >= 0 and os.isatty(in_fd)
    previous = None
    try:
        manager.start(record.id)
        if sock is None:
            sock = _connect(bundle)
        if terminal:
            previous = signal.signal(signal.SIGWINCH, lambda *_: _resize(bundle, in_fd))
            _resize(bundle, in_fd)
        with sock, _raw(in_fd, terminal):
            detached = pump(sock, in_fd, detach_keys=detach_keys)
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
        if sock is not None:
            sock.close()
    if detached:
        return None
    status = manager.wait(record.id)
    return 125 if status.exit_code is None else status.exit_code


def attach_running(manager: ContainerManager, record: Container, *, stdin: bool = True,
                   detach_keys: bytes = DETACH_KEYS, sig_proxy: bool = True) -> int | None:
    """``hawser attach``: this process's stdio relayed to a running container
    (its input only if it was made with ``-i`` and ``stdin``) until its output
    ends; then its exit code.  None when the user typed ``detach_keys``.
    Without a terminal, SIGINT and SIGTERM go to the container (``sig_proxy``).
    FailedPrecondition when it is not running."""
    from hawser.runtime._types import PAUSED, RUNNING

    state = manager.status(record).state
    if state not in (RUNNING, PAUSED):
        raise FailedPrecondition(f"you cannot attach to a stopped container, start it first ({record.name} is "
                                 f"{state})", hint=f"hawser start -ai {record.name}")
    bundle = manager.bundle(record.id)
    sock = _connect(bundle)
    in_fd = sys.stdin.fileno() if stdin and record.config.get("stdin") else -1
    terminal = bool(record.config.get("tty")) and in_fd >= 0 and os.isatty(in_fd)
    previous: dict[int, Any] = {}
    if terminal:
        previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda *_: _resize(bundle, in_fd))
        _resize(bundle, in_fd)
    elif sig_proxy and not record.config.get("tty"):
        def forward(signum: int, _frame: object) -> None:
            with contextlib.suppress(Exception):
                manager.runc_for(record).kill(record.id, signum)

        for proxied in (signal.SIGINT, signal.SIGTERM):
            previous[proxied] = signal.signal(proxied, forward)
    try:
        with sock, _raw(in_fd, terminal):
            detached = pump(sock, in_fd, detach_keys=detach_keys)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    if detached:
        return None
    status = manager.wait(record.id)
    return 125 if status.exit_code is None else status.exit_code


def parse_detach_keys(text: str) -> bytes:
    """docker's ``--detach-keys``: comma-separated keys, each one letter or
    ``ctrl-X`` (X a letter or one of ``@[\\]^_``).  "" turns detaching off.
    InvalidArgument otherwise."""
    keys = bytearray()
    for key in text.split(",") if text else ():
        lower = key.lower()
        if len(key) == 1:
            keys.append(ord(key))
        elif lower.startswith("ctrl-") and len(key) == 6 and (key[5].isalpha() or key[5] in "@[\\]^_"):
            keys.append(ord(key[5].upper()) & 0x1F)
        else:
            raise InvalidArgument(f"invalid detach keys {text!r}: unknown character {key!r}",
                                  hint="keys as docker's: ctrl-<value> or a letter, comma-separated "
                                       "(ctrl-p,ctrl-q)")
    return bytes(keys)


def _to_stdio(stream: int, data: bytes) -> None:
    out = sys.stderr.buffer if stream == STDERR else sys.stdout.buffer
    out.write(data)
    out.flush()


def pump(sock: socket.socket, in_fd: int, deliver: Callable[[int, bytes], None] = _to_stdio, *,
         detach_keys: bytes = b"") -> bool:
    """Copy until conmon closes the socket: each message it sends to
    ``deliver(stream, data)`` (STDOUT or STDERR), what ``in_fd`` gives to the
    container's stdin (-1: nothing); its end closes the container's input.
    True when ``detach_keys`` came on ``in_fd`` (not passed on: the caller
    leaves, the container's input stays open), False when the output ended."""
    reading_stdin = in_fd >= 0
    matcher = _DetachKeys(detach_keys)
    while True:
        watched = [sock.fileno()] + ([in_fd] if reading_stdin else [])
        try:
            ready, _, _ = select.select(watched, [], [])
        except InterruptedError:
            continue
        if sock.fileno() in ready:
            try:
                data = sock.recv(BUFSIZE + 1)
            except ConnectionResetError:
                data = b""
            if not data:
                return False
            deliver(data[0], data[1:])
        if reading_stdin and in_fd in ready:
            chunk = os.read(in_fd, BUFSIZE)
            if chunk:
                chunk, detached = matcher.feed(chunk)
                if chunk:
                    with contextlib.suppress(OSError):
                        sock.sendall(chunk)
                if detached:
                    return True
            else:
                reading_stdin = False
                with contextlib.suppress(OSError):
                    sock.sendall(matcher.pending)
                    sock.shutdown(socket.SHUT_WR)


class _DetachKeys:
    """Finds the detach sequence in the input as docker's escape proxy does:
    the keys of a started sequence are held back, and passed on with the
    next key when it does not continue it."""

    def __init__(self, keys: bytes) -> None:
        self.keys = keys
        self.pending = b""

    def feed(self, chunk: bytes) -> tuple[bytes, bool]:
        """(what to pass on, whether the sequence is complete)."""
        if not self.keys:
            return chunk, False
        out = bytearray()
        for byte in chunk:
            if byte == self.keys[len(self.pending)]:
                self.pending += bytes((byte,))
                if self.pending == self.keys:
                    return bytes(out), True
                continue
            out += self.pending
            self.pending = b""
            if byte == self.keys[0]:
                self.pending = bytes((byte,))
                if self.pending == self.keys:
                    return bytes(out), True
            else:
                out.append(byte)
        return bytes(out), False
