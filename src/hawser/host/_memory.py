"""glibc heap tuning for the long-running daemon.

A Python server with worker threads grows one malloc arena per thread that
allocates (up to eight per core), and glibc keeps freed pages in each: after
a burst of requests hawserd's RSS stays up though nothing is in use.  Capping
the arenas (before any thread starts) and trimming the heap when the daemon
falls idle give that memory back, as ``MALLOC_ARENA_MAX`` and a periodic
``malloc_trim`` do for other Python services.
"""

from __future__ import annotations

import ctypes

from hawser.host._libc import load_libc

_M_ARENA_MAX = -8  # mallopt parameter, <malloc.h>


def limit_malloc_arenas(count: int) -> bool:
    """mallopt(M_ARENA_MAX, count): call before threads start. False if refused."""
    libc = load_libc()
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return bool(libc.mallopt(_M_ARENA_MAX, count))


def trim_heap() -> bool:
    """malloc_trim(0): return the free pages at the top of every arena. True if any went back."""
    libc = load_libc()
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    libc.malloc_trim.restype = ctypes.c_int
    return bool(libc.malloc_trim(0))
