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


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


class LineProgress:
    """A line per stage change of a layer (logs and CI read these)."""

    def __init__(self) -> None:
        self._stage: dict[str, str] = {}
        self._lock = threading.Lock()
        self._start: dict[str, float] = {}

    def __call__(self, event: ProgressEvent) -> None:
        from hawser.images import LayerProgress

        with self._lock:
            if not isinstance(event, LayerProgress):
                echo(event.text)
                return
            if self._stage.get(event.digest) == event.stage:
                return
            self._stage[event.digest] = event.stage
            now = time.monotonic()
            start = self._start.setdefault(event.digest, now)
            extra = f" {event.total} bytes" if event.stage in ("done", "exists") else ""
            if event.stage == "done":
                extra += f" in {now - start:.2f}s"
            echo(f"{_short(event.digest)}: {event.stage}{extra}")


class RichProgress:
    def __init__(self, progress: Any) -> None:
        self._progress = progress
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, event: ProgressEvent) -> None:
        from hawser.images import LayerProgress

        if not isinstance(event, LayerProgress):
            self._progress.console.print(event.text)
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
        yield LineProgress()
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
