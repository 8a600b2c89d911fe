"""What one hawserd owns for its life: its root, its state dir and its CRI socket.

The CRI socket's life: claim the path, bind it private, open it to root's
group, remove it.  One hawserd per socket: a lock file beside it
(``<address>.lock``) is held while the daemon lives, so a second daemon
refuses to start instead of stealing the socket.  A socket file left by a
daemon that died (kill -9, a crash) is stale: nobody holds the lock and
nothing answers on it, so it is removed.

One hawserd per root (``<root>/daemon.lock``) and per state dir
(``<state>/hawserd.lock``), each lock holding its daemon's pid: a second
daemon on either would recover and drive the first one's containers.  The
``hawser`` CLI takes neither lock; it works beside the daemon as ever.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator

from hawser.errors import FailedPrecondition
from hawser.host import FileLock

SOCKET_MODE = 0o660


def claim(address: str) -> FileLock:
    """Lock ``address`` for this process and remove a stale socket there.

    FailedPrecondition if another hawserd holds it, if something else answers
    on it, or if the path is not a socket."""
    os.makedirs(os.path.dirname(address), mode=0o711, exist_ok=True)
    lock = FileLock(f"{address}.lock")
    if not lock.acquire(blocking=False):
        raise FailedPrecondition(f"another hawserd is serving {address}",
                                 hint="stop it first, or give this one another --address")
    try:
        try:
            st = os.lstat(address)
        except FileNotFoundError:
            return lock
        if not stat.S_ISSOCK(st.st_mode):
            raise FailedPrecondition(f"{address} exists and is not a socket",
                                     hint="remove it, or give hawserd another --address")
        if answers(address):
            raise FailedPrecondition(f"another process is listening on {address}",
                                     hint="stop it, or give hawserd another --address")
        os.unlink(address)  # stale: its daemon died without removing it
    except BaseException:
        lock.release()
        raise
    return lock


def lock_root(root: str) -> FileLock:
    """One hawserd per root: FailedPrecondition, naming the holder's pid, if
    another holds ``<root>/daemon.lock``.  Its records and images would be
    this daemon's to recover, and its containers to remove from under the
    first (the CLI, which takes no such lock, stays welcome)."""
    os.makedirs(root, mode=0o711, exist_ok=True)
    lock_or_holder = _lock_for_life(os.path.join(root, "daemon.lock"))
    if isinstance(lock_or_holder, FileLock):
        return lock_or_holder
    raise FailedPrecondition(f"another hawserd owns the root {root}{_pid_text(lock_or_holder)}",
                             hint="stop it first, or give this one another --root and --state "
                                  "(the hawser CLI may use this root beside it)")


def lock_state(state: str) -> FileLock:
    """One hawserd per state dir (two would both recover and drive the same
    containers): FailedPrecondition if another holds ``<state>/hawserd.lock``."""
    os.makedirs(state, mode=0o711, exist_ok=True)
    lock_or_holder = _lock_for_life(os.path.join(state, "hawserd.lock"))
    if isinstance(lock_or_holder, FileLock):
        return lock_or_holder
    raise FailedPrecondition(f"another hawserd uses the state dir {state}{_pid_text(lock_or_holder)}",
                             hint="stop it first, or give this one another --root and --state")


def _lock_for_life(path: str) -> FileLock | int | None:
    """Take the lock ``path`` without waiting and write this process's pid in it.
    If another process holds it: that one's pid, as it wrote it (None if unknown)."""
    lock = FileLock(path)
    if not lock.acquire(blocking=False):
        return _holder(path)
    try:
        # A second descriptor: writing and closing it leaves the flock (on the first) alone.
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        finally:
            os.close(fd)
    except BaseException:
        lock.release()
        raise
    return lock


def _holder(path: str) -> int | None:
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            text = f.read(32).strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # empty: the holder has not written it yet


def _pid_text(pid: int | None) -> str:
    return f" (pid {pid})" if pid is not None else ""


def answers(address: str) -> bool:
    """Whether a process accepts connections on the unix socket ``address``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        try:
            s.connect(address)
        except OSError:
            return False
    return True


@contextlib.contextmanager
def private_umask() -> Iterator[None]:
    """Files created meanwhile (the socket grpc binds) are for root only,
    until ``open_to_group`` widens the mode: no window where others can connect."""
    old = os.umask(0o177)
    try:
        yield
    finally:
        os.umask(old)


def open_to_group(address: str) -> None:
    """Mode 0660, owner root:root: root and root's group may talk to the runtime."""
    os.chmod(address, SOCKET_MODE)
    if os.geteuid() == 0:
        os.chown(address, 0, 0)


def release(address: str, lock: FileLock) -> None:
    """Remove the socket (if it is still ours to remove) and drop the lock."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(address).st_mode):
            os.unlink(address)
    lock.release()


def sd_notify(state: str) -> bool:
    """Tell systemd (Type=notify) about ``state`` ("READY=1", "STOPPING=1").

    A no-op outside systemd; returns whether a message was sent."""
    target = os.environ.get("NOTIFY_SOCKET")
    if not target:
        return False
    if target.startswith("@"):
        target = "\0" + target[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        s.connect(target)
        s.sendall(state.encode())
    return True
