"""The content store against real processes and a real full disk.

A writer killed with SIGKILL mid-write leaves its ingest for the next writer to
resume; a lock held by a live process keeps another one out; ENOSPC on a tiny
tmpfs gives ResourceExhausted and leaves no partial data behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.content import LocalStore
from hawser.errors import ResourceExhausted, Unavailable
from hawser.oci import Digest

pytestmark = pytest.mark.integration

DATA = os.urandom(3 << 20)
DIGEST = Digest.of(DATA)

# Writes the first ``part`` bytes of the blob, says so, then hangs until killed.
WRITER = textwrap.dedent(
    """
    import sys, time
    from hawser.content import LocalStore
    from hawser.oci import Digest

    root, ref, digest, total, part = sys.argv[1:]
    data = sys.stdin.buffer.read()
    w = LocalStore(root).writer(ref, expected=Digest(digest), total=int(total))
    for i in range(0, int(part), 65536):
        w.write(data[i:min(i + 65536, int(part))])
    print(w.offset, flush=True)
    time.sleep(600)
    """
)


def start_writer(root: Path, part: int) -> tuple[subprocess.Popen[bytes], int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), "crash-ref", DIGEST, str(len(DATA)), str(part)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(DATA)
    proc.stdin.close()
    line = proc.stdout.readline()
    assert line, "the writer process died before writing"
    return proc, int(line)


def kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    if proc.stdout is not None:
        proc.stdout.close()


def test_resume_after_the_writer_was_killed(tmp_path: Path) -> None:
    part = (1 << 20) + 12345
    proc, offset = start_writer(tmp_path, part)
    try:
        assert offset == part
    finally:
        kill(proc)
    assert proc.returncode == -signal.SIGKILL

    store = LocalStore(tmp_path)
    status = store.status("crash-ref")
    assert (status.offset, status.total, status.expected) == (part, len(DATA), DIGEST)
    # The kernel dropped the dead process's flock: no waiting needed.
    with store.writer("crash-ref", expected=DIGEST, total=len(DATA), wait=False) as w:
        assert w.offset == part
        w.write(DATA[part:])
        info = w.commit()
    assert (info.digest, info.size) == (DIGEST, len(DATA))
    assert store.verify(DIGEST)
    assert store.list_statuses() == []


def test_a_live_writer_in_another_process_keeps_the_lock(tmp_path: Path) -> None:
    proc, _ = start_writer(tmp_path, 1000)
    try:
        store = LocalStore(tmp_path)
        with pytest.raises(Unavailable, match="in use by another process"):
            store.writer("crash-ref", expected=DIGEST, total=len(DATA), wait=False)
        assert store.in_use("crash-ref")
        with pytest.raises(Unavailable):
            store.abort("crash-ref", wait=False)
    finally:
        kill(proc)
    assert not LocalStore(tmp_path).in_use("crash-ref")


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_no_space_left_is_resource_exhausted_and_leaves_nothing(tiny_tmpfs: Path) -> None:
    store = LocalStore(tiny_tmpfs)
    data = DATA[: 2 << 20]
    digest = Digest.of(data)
    w = store.writer("big", expected=digest, total=len(data))
    with pytest.raises(ResourceExhausted, match="no space left on device writing big"):
        for i in range(0, len(data), 65536):
            w.write(data[i : i + 65536])
    assert os.listdir(tiny_tmpfs / "ingest") == []
    assert store.list_statuses() == []
    assert store.usage() == 0
    # The space is back: a small blob fits.
    small = b"fits" * 1000
    with store.writer("small", expected=Digest.of(small), total=len(small)) as w2:
        w2.write(small)
        w2.commit()
    assert store.read_all(Digest.of(small)) == small
