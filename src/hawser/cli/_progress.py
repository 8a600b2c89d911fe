"""Pull progress for people: rich bars on a terminal, one line per event otherwise."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from hawser.cli._context import echo

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from typing import Any

    from hawser.images import ProgressEvent, ProgressSink


FINAL = frozenset({"done", "exists", "failed", "mounted"})
"""The stages that end a layer's part of a pull (or of a push)."""


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class LineProgress:
    """A line per stage change of a layer (logs and CI read these), and one final line per layer.

    A layer can end twice: fetched ("done"), then found unpacked already
    ("exists"), or fetched, then unpacked ("done" again). So a final stage is
    held back until the layer goes on (it was not final: dropped), another
    final stage comes (ignored: the first one says what happened to the
    layer), a pull message comes, or the pull ends (``flush``).
    """

    def __init__(self) -> None:
        self._stage: dict[str, str] = {}
        self._lock = threading.Lock()
        self._start: dict[str, float] = {}
        self._held: dict[str, str] = {}
        self._ended: set[str] = set()

    def __call__(self, event: ProgressEvent) -> None:
        from hawser.images import LayerProgress

        with self._lock:
            if not isinstance(event, LayerProgress):
                self._flush()
                echo(event.text)
                return
            digest, stage = event.digest, event.stage
            if digest in self._ended or self._stage.get(digest) == stage:
                return
            now = time.monotonic()
            start = self._start.setdefault(digest, now)
            if stage in FINAL:
                if digest not in self._held:
                    extra = f" {event.total} bytes" if stage in ("done", "exists") else ""
                    if stage == "done":
                        extra += f" in {now - start:.2f}s"
                    self._held[digest] = f"{_short(digest)}: {stage}{extra}"
                return
            self._held.pop(digest, None)
            self._stage[digest] = stage
            echo(f"{_short(digest)}: {stage}")

    def flush(self) -> None:
        """Print the final line of every layer that has one held back."""
        with self._lock:
            self._flush()

    def _flush(self) -> None:
        for digest, line in self._held.items():
            echo(line)
            self._ended.add(digest)
        self._held.clear()


class RichProgress:
    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        from hawser.images import LayerProgress

        if not isinstance(event, LayerProgress):
            # As it is: rich's highlighter would colour a digest's hex as an IPv6 address.
            self._progress.console.print(event.text, markup=False, highlight=False)
            return
        with self._lock:
            task = self._tasks.get(event.digest)
            if task is None:
                task = self._progress.add_task(_short(event.digest), total=event.total or None, stage=event.stage)
                self._tasks[event.digest] = task
        self._progress.update(task, completed=event.current, total=event.total or None, stage=event.stage)


def _quiet(event: ProgressEvent) -> None:
    del event


@contextmanager
def progress_display(quiet: bool) -> Iterator[ProgressSink]:
    if quiet:
        yield _quiet
        return
    if not sys.stdout.isatty():
        lines = LineProgress()
        try:
            yield lines
        finally:
            lines.flush()
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    columns = (TextColumn("{task.description}"), TextColumn("{task.fields[stage]:>9}"), BarColumn(),
               DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=False) as progress:
        yield RichProgress(progress)
