"""``hawser_store_content_bytes`` and ``hawser_store_snapshots_bytes``: the
store's size, cheap enough for every scrape.

- content: the sum of the sizes the metadata records for the distinct blobs
  of every namespace (one SQLite read; a blob is recorded only once it is
  verified and on disk, with its exact size).  Ingests in progress, and a
  blob whose last record GC has just removed, are not counted: this is what
  the images hold, not a walk of the directory.
- snapshots: the snapshotter's ``usage`` (allocated blocks, as du counts)
  summed over its snapshots.  A committed snapshot never changes, so each is
  measured once and kept (by key and creation time); active ones (containers'
  writable layers, layers being unpacked) are measured again at a refresh.

Both are refreshed at most every ``interval`` seconds, in the scrape that
finds them older; other scrapes answer from the cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hawser.errors import NotFound

if TYPE_CHECKING:
    from hawser.metadata import Metadata

REFRESH_INTERVAL = 30.0
# snapshots.Kind.COMMITTED's value: the metrics part does not import snapshots.
COMMITTED = "committed"


class _KindLike(Protocol):
    @property
    def value(self) -> str: ...


class _InfoLike(Protocol):
    @property
    def key(self) -> str: ...
    @property
    def kind(self) -> _KindLike: ...
    @property
    def created(self) -> float: ...


class _UsageLike(Protocol):
    @property
    def size(self) -> int: ...


class SnapshotterLike(Protocol):
    """What is read of a ``snapshots.Snapshotter``."""

    def walk(self) -> Iterable[_InfoLike]: ...
    def usage(self, key: str) -> _UsageLike: ...


def content_bytes(metadata: Metadata) -> int:
    """The recorded size of every distinct blob, across namespaces."""
    sizes: dict[str, int] = {}
    for namespace in metadata.namespaces.list():
        for blob in metadata.blobs.list(namespace=namespace.name):
            sizes[str(blob.digest)] = blob.size
    return sum(sizes.values())


class SnapshotUsage:
    """The snapshotter's disk usage, each committed snapshot measured once."""

    def __init__(self, snapshotter: SnapshotterLike) -> None:
        self.snapshotter = snapshotter
        self._committed: dict[tuple[str, float], int] = {}

    def __call__(self) -> int:
        total = 0
        seen = set()
        for info in self.snapshotter.walk():
            committed = info.kind.value == COMMITTED
            key = (info.key, info.created)
            size = self._committed.get(key) if committed else None
            if size is None:
                try:
                    size = self.snapshotter.usage(info.key).size
                except NotFound:  # removed since the walk
                    continue
                if committed:
                    self._committed[key] = size
            if committed:
                seen.add(key)
            total += size
        for gone in set(self._committed) - seen:
            del self._committed[gone]
        return total


class StoreSizeCollector(Collector):
    """The store's content and snapshots sizes, cached for ``interval`` seconds."""

    def __init__(self, *, content: Callable[[], int], snapshots: Callable[[], int],
                 interval: float = REFRESH_INTERVAL, clock: Callable[[], float] = time.monotonic) -> None:
        self.content = content
        self.snapshots = snapshots
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()  # two scrapes at once measure once
        self._sizes: tuple[int, int] | None = None
        self._when = 0.0

    def sizes(self) -> tuple[int, int]:
        with self._lock:
            now = self._clock()
            if self._sizes is None or now - self._when >= self.interval:
                self._sizes = (self.content(), self.snapshots())
                self._when = now
            return self._sizes

    def collect(self) -> Iterator[GaugeMetricFamily]:
        content, snapshots = self.sizes()
        yield from _families(content, snapshots)

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Registering must not measure the store.
        yield from _families(0, 0)


def _families(content: int, snapshots: int) -> Iterator[GaugeMetricFamily]:
    yield GaugeMetricFamily("hawser_store_content_bytes", "Bytes of the blobs the store's metadata records "
                            "(every namespace; ingests in progress not counted).", value=content)
    yield GaugeMetricFamily("hawser_store_snapshots_bytes", "Disk used by the snapshotter's snapshots "
                            "(image layers and writable layers).", value=snapshots)


def store_sizes(metadata: Metadata, snapshotter: SnapshotterLike,
                interval: float = REFRESH_INTERVAL) -> StoreSizeCollector:
    """The sizes of a store: its metadata's blobs and its snapshotter's snapshots."""
    return StoreSizeCollector(content=lambda: content_bytes(metadata), snapshots=SnapshotUsage(snapshotter),
                              interval=interval)
