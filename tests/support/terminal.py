"""Reading what a process writes to a pseudo-terminal, for tests that give a
CLI a real terminal."""

from __future__ import annotations

import os
import select
import subprocess
import time


def read_terminal(master: int, proc: subprocess.Popen[bytes], timeout: float = 60) -> bytes:
    """All ``proc`` writes to the terminal whose master side is ``master``,
    until the slave side closes (EIO), ``proc`` exits with nothing left to
    read, or ``timeout`` seconds pass."""
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the last holder of the slave side is gone
            break
        if not chunk:
            break
        output += chunk
    return output


def run_on_pty(argv: list[str], *, typed: bytes = b"", timeout: float = 30) -> tuple[int, str]:
    """Run ``argv`` with a new terminal for its stdin, stdout and stderr, ``typed``
    waiting in its input: its exit status and what the terminal shows."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True, close_fds=True)
    os.close(slave)
    output = b""
    try:
        if typed:
            os.write(master, typed)
        output = read_terminal(master, proc)
        code = proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    return code, output.decode(errors="replace")
