"""openat2(2) with RESOLVE_IN_ROOT: a path opened as if ``root_fd`` were ``/``.

Every component, symlinks included (absolute ones, ``..`` chains), is
resolved by the kernel inside the directory ``root_fd`` names: nothing
outside it can be reached, even with a link swapped in while the path is
walked.  Magic links (``/proc/<pid>/fd/*``, ``/proc/self/root``) are refused
too.  The stdlib has no wrapper; the syscall goes through libc's
``syscall``.
"""

from __future__ import annotations

import ctypes
import errno
import os

from hawser.host._libc import load_libc

_SYS_OPENAT2 = 437  # the same number on every architecture (the syscall is younger than the table split)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_IN_ROOT = 0x10
# The kernel asks for a retry when a rename elsewhere raced the walk.
_RETRIES = 16


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


def open_in_root(root_fd: int, path: str, flags: int, mode: int = 0, *, follow: bool = True) -> int:
    """A new fd for ``path`` resolved inside ``root_fd`` (an absolute ``path``
    starts there too).  ``follow=False``: the last component is not followed
    when it is a symlink (add ``O_PATH`` to get the link itself).  OSError
    with the kernel's errno; ENOSYS where the kernel has no openat2 (before 5.6)."""
    if not follow:
        flags |= os.O_NOFOLLOW
    how = _OpenHow(flags=flags | os.O_CLOEXEC, mode=mode, resolve=_RESOLVE_IN_ROOT | _RESOLVE_NO_MAGICLINKS)
    libc = load_libc()
    libc.syscall.restype = ctypes.c_long
    encoded = os.fsencode(path.lstrip("/") or ".")
    for _ in range(_RETRIES):
        result = int(libc.syscall(_SYS_OPENAT2, root_fd, encoded, ctypes.byref(how), ctypes.sizeof(how)))
        if result >= 0:
            return result
        err = ctypes.get_errno()
        if err not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(err, os.strerror(err), path)


_CLONE_NEWNS = 0x00020000


def private_mount_namespace() -> None:
    """Move this process into a mount namespace of its own, every mount in
    it private: what it mounts from then on is seen by no other process and
    goes when the process does (a crash leaves no mount behind).  OSError
    with the kernel's errno (EINVAL once the process has threads)."""
    from hawser.host._libc import sys_mount
    from hawser.host._mount import MS_PRIVATE, MS_REC

    if load_libc().unshare(_CLONE_NEWNS) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    sys_mount(None, "/", None, MS_REC | MS_PRIVATE, None)
