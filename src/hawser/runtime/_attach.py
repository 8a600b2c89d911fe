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
from typing import TYPE_CHECKING

from hawser.errors import FailedPrecondition

if TYPE_CHECKING:
    from hawser.runtime._containers import ContainerManager
    from hawser.runtime._types import ContainerInfo

STDOUT, STDERR = 2, 3
BUFSIZE = 32768


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


def attach(manager: ContainerManager, info: ContainerInfo, *, stdin: bool, tty: bool) -> int:
    """Start a just-created container with this process's stdio relayed to it
    until its output ends; then its exit code."""
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
            pump(sock, in_fd)
    finally:
        if previous is not None:
            signal.signal(signal.SIGWINCH, previous)
    status = manager.wait(record.id)
    return 125 if status.exit_code is None else status.exit_code


def _to_stdio(stream: int, data: bytes) -> None:
    out = sys.stderr.buffer if stream == STDERR else sys.stdout.buffer
    out.write(data)
    out.flush()


def pump(sock: socket.socket, in_fd: int, deliver: Callable[[int, bytes], None] = _to_stdio) -> None:
    """Copy until conmon closes the socket: each message it sends to
    ``deliver(stream, data)`` (STDOUT or STDERR), what ``in_fd`` gives to the
    container's stdin (-1: nothing); its end closes the container's input."""
    reading_stdin = in_fd >= 0
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
                return
            deliver(data[0], data[1:])
        if reading_stdin and in_fd in ready:
            chunk = os.read(in_fd, BUFSIZE)
            if chunk:
                with contextlib.suppress(OSError):
                    sock.sendall(chunk)
            else:
                reading_stdin = False
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)
