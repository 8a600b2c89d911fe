"""Small file chores of a container's bundle and of the state dir: whole-file
writes (no fsync: the state dir is a tmpfs a reboot empties), tolerant reads
and removals, and the poll intervals of waits on those files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil

from hawser.host import atomic_write

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


def inode(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino


def remove_link_or_tree(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except (IsADirectoryError, PermissionError):  # a directory (unlink answers EISDIR, or EPERM on some filesystems)
        shutil.rmtree(path, ignore_errors=True)


def unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def write_json(path: str, data: Any) -> None:
    # No indent: json's C encoder only runs without one (an indented spec costs ~5 ms per start).
    write_text(path, json.dumps(data))


def write_text(path: str, text: str) -> None:
    # Never half a file; no fsync: the bundle lives in the state dir (tmpfs), which a reboot empties anyway.
    atomic_write(path, text, durable=False)


def backoff(first: float = 0.001, most: float = 0.05) -> Iterator[float]:
    """Poll intervals: quick at first (most containers of a `run --rm` live
    milliseconds), then no busier than every ``most`` seconds."""
    pause = first
    while True:
        yield pause
        pause = min(pause * 1.5, most)


def read_float(path: str) -> float | None:
    try:
        with open(path, encoding="ascii") as f:
            return float(f.read().strip())
    except (FileNotFoundError, ValueError):
        return None


def read_int(path: str) -> int:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (FileNotFoundError, ValueError):
        return 0
