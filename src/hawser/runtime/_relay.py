"""The relay of a task with a terminal: copies between conmon's attach
socket and the client's FIFOs, in a process of its own.

conmon holds a terminal's master side and speaks only through its attach
socket, so something must copy between that socket and the FIFOs containerd's
clients read and write.  That is this process, started by ``tasks.create_task``
(``python -m hawser.runtime._relay BUNDLE STDIN STDOUT``): it forks away at
once (its parent, hawserd's thread, reaps the first fork, so the relay is
never hawserd's child and lives through a kill of hawserd), connects to the
socket, says so on its stdout (one byte: created_task waits for it, so no
output is lost), and copies until conmon closes the socket (the process's
output has ended).  Both FIFOs are opened read-write: neither end waits for
the client, and a client that goes away and comes back (``ctr task attach``)
finds them as they were.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys

from hawser.runtime._attach import _connect, pump


def relay(sock: socket.socket, in_fd: int, out_fd: int) -> None:
    """Copy until the socket closes (with a terminal all output is stdout)."""

    def deliver(stream: int, data: bytes) -> None:
        if out_fd >= 0:
            with contextlib.suppress(OSError):  # a client that went away loses output, not the relay
                _write_all(out_fd, data)

    pump(sock, in_fd, deliver)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def main(argv: list[str]) -> int:
    bundle, stdin, stdout = argv
    if os.fork():
        return 0  # the first fork: reaped by whoever started us
    os.setsid()
    # Read-write: a terminal's input ends with the ^D it carries, not with the FIFO's last writer.
    in_fd = os.open(stdin, os.O_RDWR) if stdin else -1
    out_fd = os.open(stdout, os.O_RDWR) if stdout else -1
    try:
        sock = _connect(bundle)
    except Exception as exc:  # said on the pipe the creator reads
        os.write(1, f"!{exc}".encode())
        return 1
    os.write(1, b"+")
    # Nothing more to say to the creator; its pipe and our stderr are not kept open.
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        if fd not in (in_fd, out_fd):
            os.dup2(devnull, fd)
    with sock:
        relay(sock, in_fd, out_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
