"""Raw syscalls through libc: mount(2), umount2(2), syncfs(2); the loader host._namespaces shares.

The stdlib has no wrappers for these.  libc is loaded on first use with
``use_errno`` so a failure raises an ``OSError`` carrying the real errno, just
like the ``os`` module's own functions.
"""

from __future__ import annotations

import ctypes
import os
import threading

_lock = threading.Lock()
_libc: ctypes.CDLL | None = None


def load_libc() -> ctypes.CDLL:
    global _libc
    with _lock:
        if _libc is None:
            # glibc's soname; ctypes.util.find_library would fork ldconfig (~10 ms a start).
            lib = ctypes.CDLL("libc.so.6", use_errno=True)
            lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
            lib.mount.restype = ctypes.c_int
            lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
            lib.umount2.restype = ctypes.c_int
            lib.syncfs.argtypes = [ctypes.c_int]
            lib.syncfs.restype = ctypes.c_int
            # Namespaces (host._namespaces): per-thread unshare/setns, the pod's hostname.
            lib.unshare.argtypes = [ctypes.c_int]
            lib.unshare.restype = ctypes.c_int
            lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
            lib.setns.restype = ctypes.c_int
            lib.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
            lib.sethostname.restype = ctypes.c_int
            _libc = lib
        return _libc


def _raise(what: str, path: str | None = None) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}", path)


def _b(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def sys_mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    """mount(2). Raises OSError with the kernel's errno."""
    if load_libc().mount(_b(source), _b(target), _b(fstype), flags, _b(data)) != 0:
        _raise(f"mount {fstype or ''} {source or ''} on {target}", target)


def sys_umount2(target: str, flags: int) -> None:
    """umount2(2). Raises OSError with the kernel's errno."""
    if load_libc().umount2(_b(target), flags) != 0:
        _raise(f"umount {target}", target)


def syncfs(fd: int) -> None:
    """syncfs(2): flush the whole filesystem holding ``fd`` to disk.

    One call at the end of a layer replaces thousands of per-file fsyncs.
    Raises OSError (EIO, ENOSPC... a writeback error since the fd was opened)."""
    if load_libc().syncfs(fd) != 0:
        _raise("syncfs")
