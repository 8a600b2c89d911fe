"""The CRI log format conmon writes: parsing, partial lines, since/tail, follow."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from hawser.errors import InvalidArgument
from hawser.runtime._logs import follow_log, parse_line, parse_since, read_log, timestamp

LOG = (b"2026-11-30T10:00:00.000000001Z stdout F one\n"
       b"2026-11-30T10:00:01.5Z stderr P par\n"
       b"2026-11-30T10:00:01.6Z stdout F two\n"
       b"2026-11-30T10:00:02Z stderr F tial\n"
       b"garbage line\n"
       b"2026-11-30T10:00:03Z stdout F \n")


def test_parse_line() -> None:
    assert parse_line(b"2026-11-30T10:00:00Z stdout F hello world\n") == (
        "2026-11-30T10:00:00Z", "stdout", False, b"hello world")
    assert parse_line(b"2026-11-30T10:00:00Z stderr P x") == ("2026-11-30T10:00:00Z", "stderr", True, b"x")
    assert parse_line(b"nonsense") is None
    assert parse_line(b"t other F x") is None


def test_read_joins_partials_per_stream_and_filters(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(LOG)
    entries = read_log(str(path))
    assert [(e.stream, e.data) for e in entries] == [
        ("stdout", b"one\n"), ("stdout", b"two\n"), ("stderr", b"partial\n"), ("stdout", b"\n")]
    assert [e.data for e in read_log(str(path), tail=2)] == [b"partial\n", b"\n"]
    assert read_log(str(path), tail=0) == []
    since = timestamp("2026-11-30T10:00:01.55Z")
    assert [e.data for e in read_log(str(path), since=since)] == [b"two\n", b"partial\n", b"\n"]
    assert read_log(str(tmp_path / "missing.log")) == []


def test_timestamps_and_since() -> None:
    assert timestamp("1970-01-01T00:00:01.500000000Z") == 1.5
    assert parse_since("10m", now=1000.0) == 400.0
    assert parse_since("1h30m", now=10000.0) == 10000.0 - 5400
    assert parse_since("1700000000") == 1700000000.0
    assert parse_since("1970-01-01T00:01:00Z") == 60.0
    with pytest.raises(InvalidArgument, match="--since"):
        parse_since("yesterday")


def test_follow_reads_until_done_without_losing_the_tail(tmp_path: Path) -> None:
    path = tmp_path / "c.log"
    path.write_bytes(b"")
    finished = threading.Event()

    def writer() -> None:
        with open(path, "ab") as f:
            for i in range(5):
                f.write(f"2026-11-30T10:00:0{i}Z stdout F line{i}\n".encode())
                f.flush()
                time.sleep(0.02)
        finished.set()

    t = threading.Thread(target=writer)
    t.start()
    got = [e.data for e in follow_log(str(path), start=0, done=finished.is_set, poll=0.01)]
    t.join()
    assert got == [f"line{i}\n".encode() for i in range(5)]
