"""Container logs in the CRI format that conmon writes (and the kubelet reads):

    2016-10-06T00:17:09.669794202Z stdout F the line
    2016-10-06T00:17:09.669794202Z stdout P a partial line, continued by the next entry

Reading them back: whole lines (partials joined), ``--since``, ``--tail``,
following a growing file until the container exits.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterator

from hawser._dataclass import dataclass
from hawser.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class LogEntry:
    time: str       # RFC 3339 with nanoseconds, as written
    stream: str     # "stdout" | "stderr"
    data: bytes     # the line, with its newline when it had one


def parse_line(line: bytes) -> tuple[str, str, bool, bytes] | None:
    """(time, stream, partial, content) of one log line; None if malformed."""
    parts = line.rstrip(b"\n").split(b" ", 3)
    if len(parts) < 3 or parts[1] not in (b"stdout", b"stderr"):
        return None
    tag = parts[2].split(b":")[0]
    content = parts[3] if len(parts) == 4 else b""
    return parts[0].decode(errors="replace"), parts[1].decode(), tag == b"P", content


def timestamp(text: str) -> float:
    """Seconds since the epoch of an RFC 3339 time (nanoseconds kept to microseconds)."""
    main, _, frac = text.rstrip("Z").partition(".")
    frac_digits = "".join(ch for ch in frac if ch.isdigit())[:6].ljust(6, "0")
    from datetime import UTC, datetime  # only reading logs back needs it

    try:
        dt = datetime.strptime(main, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    except ValueError:
        return 0.0
    return dt.timestamp() + int(frac_digits) / 1e6


def parse_since(text: str, now: float | None = None) -> float:
    """docker's --since: a duration ("10m", "1h30m", "45s") before now, an RFC 3339
    time, or a Unix timestamp. InvalidArgument otherwise."""
    now = time.time() if now is None else now
    units = {"s": 1, "m": 60, "h": 3600}
    total, number = 0.0, ""
    if text and text[-1] in units:
        for ch in text:
            if ch.isdigit() or ch == ".":
                number += ch
            elif ch in units and number:
                total += float(number) * units[ch]
                number = ""
            else:
                break
        else:
            if not number:
                return now - total
    try:
        return float(text)
    except ValueError:
        pass
    stamp = timestamp(text)
    if stamp:
        return stamp
    raise InvalidArgument(f"invalid --since {text!r}: use a duration (10m, 1h), an RFC 3339 time or a Unix timestamp")


def _entries(chunks: Iterator[bytes]) -> Iterator[LogEntry]:
    """The log's entries: partial (``P``) records joined up to their full
    (``F``) one, which ends with a newline.  What the output ended with
    without a newline (``printf hello``: partial records and no full one
    after them) comes last, as it was, without one."""
    pending: dict[str, list[bytes]] = {}
    last: dict[str, str] = {}
    buffer = b""
    for chunk in chunks:
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            parsed = parse_line(line)
            if parsed is None:
                continue
            when, stream, partial, content = parsed
            pending.setdefault(stream, []).append(content)
            last[stream] = when
            if not partial:
                yield LogEntry(when, stream, b"".join(pending.pop(stream)) + b"\n")
    for stream, parts in pending.items():
        yield LogEntry(last[stream], stream, b"".join(parts))


def read_log(path: str, *, since: float | None = None, tail: int | None = None) -> list[LogEntry]:
    """The whole lines of a log file, filtered. A missing file is an empty log."""
    try:
        with open(path, "rb") as f:
            entries: Iterator[LogEntry] = _entries(iter(lambda: f.read(1 << 16), b""))
            selected = (e for e in entries if since is None or timestamp(e.time) >= since)
            if tail is not None:
                return list(deque(selected, maxlen=tail)) if tail > 0 else []
            return list(selected)
    except FileNotFoundError:
        return []


def follow_log(path: str, *, start: int, done: Callable[[], bool], poll: float = 0.05,
               idle: Callable[[float], object] = time.sleep) -> Iterator[LogEntry]:
    """Entries appended after byte offset ``start``, until ``done()`` is true
    and the file holds nothing more (so the last lines are never lost).
    ``idle(seconds)`` waits between reads; one that returns early when the
    writer is done (a conmon pidfd) ends the follow without a poll's delay."""

    def chunks() -> Iterator[bytes]:
        offset = start
        wait = 0.001
        while True:
            finished = done()  # read before the file: whatever was written before exit is read below
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            if data:
                offset += len(data)
                yield data
                continue
            if finished:
                return
            # Quick at first (a short-lived container's output is read at once), then every ``poll``.
            idle(wait)
            wait = min(wait * 1.5, poll)

    yield from _entries(chunks())


def log_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
