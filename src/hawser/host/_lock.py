"""flock(2) locks between processes (and between threads: each FileLock opens
its own file description, and flock locks belong to the description)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from types import TracebackType


class FileLock:
    """An advisory lock on ``path`` (created if missing).

    ``shared=True`` takes a read lock.  Not re-entrant: one FileLock object
    is one holder.  Usable as a context manager (blocking acquire).  A holder
    may delete the lock file with ``release(remove=True)`` (when what it
    guards is gone): one who was waiting on the deleted file sees that the
    path no longer names what it locked, and locks the path afresh.
    """

    def __init__(self, path: str, *, shared: bool = False) -> None:
        self.path = path
        self._shared = shared
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        return self._fd is not None

    def acquire(self, blocking: bool = True) -> bool:
        """Take the lock; with ``blocking=False`` return False instead of waiting.

        Raises OSError if the lock file cannot be opened, RuntimeError if this
        object already holds the lock."""
        if self._fd is not None:
            raise RuntimeError(f"lock {self.path} is already held by this FileLock")
        op = fcntl.LOCK_SH if self._shared else fcntl.LOCK_EX
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, op if blocking else op | fcntl.LOCK_NB)
                if _same_file(fd, self.path):
                    self._fd = fd
                    return True
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)  # we locked a file its last holder deleted: lock the path's new one

    def release(self, *, remove: bool = False) -> None:
        """Drop the lock; with ``remove``, delete the lock file first (only the
        holder may). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            if remove:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            os.close(fd)  # closing the last fd of the description drops the flock

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __del__(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass


def _same_file(fd: int, path: str) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)


def try_lock_fd(fd: int, *, shared: bool = False) -> bool:
    """flock an already open fd (a file or a directory) without waiting."""
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_fd(fd: int, *, shared: bool = False) -> None:
    """flock an already open fd (a file or a directory), waiting for it."""
    fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)


def lock_held(path: str) -> bool:
    """Whether some process holds the flock of the file ``path`` (False when it
    is missing or unreadable).  Takes and drops the lock when nobody does."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        return not try_lock_fd(fd)
    finally:
        os.close(fd)
