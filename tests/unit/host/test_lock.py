"""FileLock: exclusive between holders, and a lock file its holder deletes is never
shared by two later holders."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from hawser.host import FileLock


def test_exclusive_and_shared(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    first = FileLock(path)
    assert first.acquire()
    assert not FileLock(path).acquire(blocking=False)
    assert not FileLock(path, shared=True).acquire(blocking=False)
    first.release()
    readers = [FileLock(path, shared=True), FileLock(path, shared=True)]
    assert all(r.acquire(blocking=False) for r in readers)
    assert not FileLock(path).acquire(blocking=False)
    for r in readers:
        r.release()


def test_a_waiter_on_a_removed_lock_file_locks_the_new_one(tmp_path: Path) -> None:
    path = str(tmp_path / "lock")
    holder = FileLock(path)
    holder.acquire()
    waiter = FileLock(path)
    got = threading.Event()

    def wait_for_it() -> None:
        waiter.acquire()  # opens the file the holder is about to delete, then blocks
        got.set()

    thread = threading.Thread(target=wait_for_it)
    thread.start()
    time.sleep(0.05)
    holder.release(remove=True)
    assert got.wait(5)
    thread.join()
    # The waiter holds the file now at the path, not the deleted one: a third
    # process locking the path must wait for it.
    assert os.path.exists(path)
    assert not FileLock(path).acquire(blocking=False)
    waiter.release(remove=True)
    assert not os.path.exists(path)
    third = FileLock(path)
    assert third.acquire(blocking=False)
    third.release()


def test_release_is_idempotent(tmp_path: Path) -> None:
    lock = FileLock(str(tmp_path / "lock"))
    lock.acquire()
    lock.release(remove=True)
    lock.release(remove=True)
    lock.release()
