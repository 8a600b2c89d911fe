"""What a pull measures of itself (``PullMeter``), for its ``PullStats``.

Cheap by design: a monotonic clock read when a stage starts and ends (per
layer, never per chunk) and a few integer counters under one lock.

A stage's seconds are wall time during which at least one piece of work of
that stage ran, so concurrent layers are not counted twice and the four
stages need not add up to the pull's duration:

``resolve``
    From the reference to the chosen manifest and its config: the registry
    round trips before any layer (resolve, the index, the platform's
    manifest, the config blob).
``fetch``
    Wall time with a layer download in progress (from opening the ingest to
    committing the verified blob).  A layer streamed into its unpack worker
    is fetched only as fast as the worker reads it, so ``fetch`` includes
    that back-pressure.  A layer whose blob is stored already costs none.
``unpack``
    Wall time with an unpack worker running (decompress and apply, from the
    worker's start to its answer).  It overlaps ``fetch`` when layers are
    streamed (overlayfs); on a snapshotter that cannot rebase (native) the
    layers are applied one after the other, after their fetch.
``commit``
    The layers' snapshot commits, in order, on the main thread; then storing
    config, manifest and index with their GC labels, the image record and the
    lease's release (the stage stays open until ``stats()`` is called).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from hawser.images._events import PullStats

RESOLVE, FETCH, UNPACK, COMMIT = "resolve", "fetch", "unpack", "commit"
STAGES = (RESOLVE, FETCH, UNPACK, COMMIT)


class PullMeter:
    """Counts a pull's bytes and layers and times its stages; thread-safe
    (the layer pipeline's threads report to one meter)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._bytes = 0
        self._fetched = 0
        self._present = 0
        self._seconds = dict.fromkeys(STAGES, 0.0)
        self._running: dict[str, int] = {}
        self._since: dict[str, float] = {}

    def fetched(self, nbytes: int) -> None:
        """A layer was downloaded: ``nbytes`` came from the registry (the rest
        of a resumed ingest only)."""
        with self._lock:
            self._fetched += 1
            self._bytes += nbytes

    def present(self) -> None:
        """A layer's blob was stored already: nothing was downloaded."""
        with self._lock:
            self._present += 1

    def add_bytes(self, nbytes: int) -> None:
        """Bytes fetched outside the layers (config, manifest, index)."""
        with self._lock:
            self._bytes += nbytes

    def begin(self, stage: str) -> None:
        """One more piece of ``stage`` is running (``end`` says it stopped)."""
        now = self._clock()
        with self._lock:
            running = self._running.get(stage, 0)
            if not running:
                self._since[stage] = now
            self._running[stage] = running + 1

    def end(self, stage: str) -> None:
        now = self._clock()
        with self._lock:
            running = self._running.get(stage, 0) - 1
            if running < 0:
                return
            self._running[stage] = running
            if not running:
                self._seconds[stage] = self._seconds.get(stage, 0.0) + now - self._since.pop(stage)

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        self.begin(stage)
        try:
            yield
        finally:
            self.end(stage)

    def stats(self) -> PullStats:
        """What was measured until now; a stage still running counts up to now."""
        now = self._clock()
        with self._lock:
            seconds = {stage: spent + (now - self._since[stage] if self._running.get(stage) else 0.0)
                       for stage, spent in self._seconds.items()}
            return PullStats(bytes_fetched=self._bytes, layers_fetched=self._fetched,
                             layers_present=self._present, seconds=seconds)

