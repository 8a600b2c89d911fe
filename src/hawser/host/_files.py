"""Files replaced so a crash leaves the old content or the new, never half of either.

The bytes go to a temporary file beside the target (a dot name: directory
scanners such as the CNI config loader skip it), are fsynced, and the file is
renamed over the target; then the directory is fsynced, so the rename itself
survives a crash.  Blocking: call from a worker thread in async code.
"""

from __future__ import annotations

import contextlib
import os


def atomic_write(path: str, data: bytes | str, *, mode: int = 0o644, durable: bool = True,
                 replace: bool = True) -> bool:
    """Write ``data`` (a str as UTF-8) to ``path`` atomically; the file gets
    exactly ``mode``, whatever the umask.  ``durable=False`` skips both
    fsyncs: still never half a file, but a crash may bring the old one back
    (for state that is cheap to redo).  ``replace=False`` never overwrites:
    the file is linked into place, and False is returned (nothing written)
    if ``path`` exists.  True once written.  Raises OSError; on any error the
    temporary file is removed and the target is untouched."""
    directory, name = os.path.split(path)
    # Unique per writer (two may race for the same target); short enough for NAME_MAX.
    tmp = os.path.join(directory, f".{name[:200]}.{os.urandom(6).hex()}.tmp")
    payload = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    renamed = False
    try:
        try:
            os.fchmod(fd, mode)  # the umask is process-wide: another thread may have narrowed it
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        if replace:
            os.rename(tmp, path)
            renamed = True
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
    finally:
        if not renamed:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    if durable:
        fsync_dir(directory or ".")
    return True


def fsync_dir(path: str) -> None:
    """fsync the directory ``path``, so entries renamed into it, created or
    removed survive a crash.  Raises OSError."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
