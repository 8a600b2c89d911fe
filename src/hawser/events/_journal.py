"""The event journal: what hawser did, in order, for every front end.

One journal per store, under the state dir (``state/events/``), that the CLI
and hawserd both append to, so events from a CLI used while hawserd is down
are there when it starts.  Each event is one JSON line (a newline, then the
object) written with a single ``write`` on an ``O_APPEND`` descriptor:
concurrent writers never interleave within a line, and a crash leaves at most
one torn line, which readers skip.  Bounded: once the current file passes ``max_bytes`` it is rotated to
``journal.1`` (the previous one dropped) under a flock, so the journal never
holds more than about twice that.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hawser._dataclass import dataclass, field

MAX_BYTES = 4 << 20
CURRENT, PREVIOUS = "journal", "journal.1"
# How often a follower looks for new lines.
FOLLOW_INTERVAL = 0.1
# The most blob records and snapshots a GC run's event lists (each).
GC_LISTED = 100


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One thing that happened: ``type`` (container, image, pod, exec, gc),
    ``action`` (create, start, exit, remove, pull, ...), the object's id and
    name, its namespace, and attributes (an exit code and reason, an image)."""

    time: float
    type: str
    action: str
    id: str = ""
    name: str = ""
    namespace: str = ""
    attributes: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {"time": self.time, "type": self.type, "action": self.action, "id": self.id, "name": self.name,
                "namespace": self.namespace, "attributes": dict(self.attributes)}

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> Event:
        attributes = data.get("attributes")
        return cls(time=float(data["time"]), type=str(data["type"]), action=str(data["action"]),  # type: ignore[arg-type]
                   id=str(data.get("id", "")), name=str(data.get("name", "")),
                   namespace=str(data.get("namespace", "")),
                   attributes={str(k): str(v) for k, v in attributes.items()} if isinstance(attributes, dict) else {})


# A cursor file's fixed width (a float's repr is at most 24 characters).
_CURSOR_WIDTH = 32

class Journal:
    """The journal in ``directory``; cheap to make, safe to share between threads and processes."""

    def __init__(self, directory: str, *, max_bytes: int = MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        # Called after each append through this object: a reader in the same
        # process (hawserd's event streams) looks at once instead of at its next poll.
        self.listeners: list[Callable[[], None]] = []

    @classmethod
    def of_state(cls, state_dir: str) -> Journal:
        return cls(os.path.join(state_dir, "events"))

    def _path(self, name: str) -> str:
        return os.path.join(self.directory, name)

    # --- writing ---------------------------------------------------------------

    def append(self, event: Event) -> None:
        """Add ``event``. Never raises for a journal that cannot be written (a
        full disk must not fail the operation the event is about): it is lost."""
        # Each record starts a line of its own: one torn by a crash is ended by the next, not merged into it.
        line = ("\n" + json.dumps(event.to_json(), separators=(",", ":"))).encode()
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(self._path(CURRENT), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, line)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
            if size > self.max_bytes:
                self._rotate()
        except OSError:
            return
        for listener in list(self.listeners):
            with contextlib.suppress(Exception):
                listener()

    def record(self, type_: str, action: str, *, id_: str = "", name: str = "", namespace: str = "",
               **attributes: str) -> None:
        """Append an event that happens now."""
        self.append(Event(time=time.time(), type=type_, action=action, id=id_, name=name, namespace=namespace,
                          attributes={k: v for k, v in attributes.items() if v != ""}))

    def _rotate(self) -> None:
        from hawser.host import FileLock

        lock = FileLock(self._path("lock"))
        if not lock.acquire(blocking=True):
            return
        try:
            # Another writer may have rotated meanwhile: only a file still too big goes.
            if os.stat(self._path(CURRENT)).st_size > self.max_bytes:
                os.replace(self._path(CURRENT), self._path(PREVIOUS))
        except FileNotFoundError:
            pass
        finally:
            lock.release()

    # --- a reader's place -------------------------------------------------------

    def load_cursor(self, reader: str) -> float | None:
        """Where ``reader`` (a name) got to: the time after the last event it handled; None if nowhere."""
        try:
            with open(self._path(f"{reader}.cursor")) as f:
                return float(f.read().strip())
        except (OSError, ValueError):
            return None

    def save_cursor(self, reader: str, event: Event) -> None:
        """``reader`` handled ``event`` and all before it (kept in the state dir: lost, like the journal, at a reboot)."""
        self._write_cursor(reader, event.time + 1e-6)

    def start_cursor(self, reader: str, when: float) -> None:
        """Place ``reader`` at ``when`` (a reader's first start: from then on
        nothing is missed, even before it handles its first event)."""
        with contextlib.suppress(OSError):
            os.makedirs(self.directory, mode=0o700, exist_ok=True)  # nothing journaled yet
        self._write_cursor(reader, when)

    def _write_cursor(self, reader: str, when: float) -> None:
        """One write of a fixed width in place, not a rename: a process killed
        cannot tear a write, and the file does not outlive a reboot; a rename
        over the old file makes ext4 flush the new one first (auto_da_alloc),
        milliseconds on every read of a busy journal where /run is not tmpfs."""
        with contextlib.suppress(OSError):
            fd = os.open(self._path(f"{reader}.cursor"), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.pwrite(fd, repr(when).ljust(_CURSOR_WIDTH - 1).encode() + b"\n", 0)
            finally:
                os.close(fd)

    # --- reading ---------------------------------------------------------------

    def read(self, *, since: float | None = None, until: float | None = None) -> Iterator[Event]:
        """The events kept, oldest first, from ``since`` up to ``until`` (seconds since the epoch)."""
        for name in (PREVIOUS, CURRENT):
            try:
                with open(self._path(name), "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            for event in _parse(data):
                if (since is None or event.time >= since) and (until is None or event.time <= until):
                    yield event

    def follow(self, *, since: float | None = None, stop: float | None = None) -> Iterator[Event]:
        """The events kept from ``since`` on, then new ones as they are written,
        until the clock passes ``stop`` (never without). Follows rotation."""
        tail = self.tail(since=since)
        while stop is None or time.time() < stop:
            events = tail.poll()
            if events:
                yield from events
            else:
                time.sleep(FOLLOW_INTERVAL)

    def tail(self, *, since: float | None = None) -> Tail:
        """A reader of what is appended from now on; with ``since``, its first
        poll also gives what was kept from then."""
        return Tail(self, since=since)

    def _start(self) -> tuple[int, int]:
        """Where following begins: the current file's inode and end."""
        try:
            st = os.stat(self._path(CURRENT))
        except FileNotFoundError:
            return 0, 0
        return st.st_ino, st.st_size

    def _kept(self, since: float, offset: int) -> Iterator[Event]:
        """What was kept from ``since`` on: the previous file, and the current one up to ``offset``."""
        for name, limit in ((PREVIOUS, -1), (CURRENT, offset)):
            try:
                with open(self._path(name), "rb") as f:
                    data = f.read(limit)
            except FileNotFoundError:
                continue
            yield from (e for e in _parse(data) if e.time >= since)


class Tail:
    """Reads a journal's new events as they are appended, by any process:
    each ``poll`` returns those written since the last, oldest first, and
    never blocks.  Follows rotation: what was appended to a file after the
    last poll and before it was rotated is read from ``journal.1``."""

    def __init__(self, journal: Journal, *, since: float | None = None) -> None:
        self.journal = journal
        self._inode, self._offset = journal._start()
        self._since = since
        self._pending = b""

    def poll(self) -> list[Event]:
        journal = self.journal
        events: list[Event] = []
        if self._since is not None:
            events.extend(journal._kept(self._since, self._offset))
            self._since = None
        try:
            f = open(journal._path(CURRENT), "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return events
        with f:
            inode = os.fstat(f.fileno()).st_ino
            if inode != self._inode:
                # Rotated (or first made): the rest of the file we were reading, then the new one from its start.
                events.extend(self._rest_of_previous())
                self._inode, self._offset, self._pending = inode, 0, b""
            f.seek(self._offset)
            chunk = f.read()
        if chunk:
            self._offset += len(chunk)
            events.extend(self._complete(chunk))
        return events

    def _complete(self, chunk: bytes) -> list[Event]:
        *complete, pending = (self._pending + chunk).split(b"\n")
        events = list(_parse(b"\n".join(complete)))
        # The last record has no newline after it: deliver it once it parses whole.
        last = list(_parse(pending))
        if last:
            pending = b""
            events.extend(last)
        self._pending = pending
        return events

    def _rest_of_previous(self) -> list[Event]:
        try:
            with open(self.journal._path(PREVIOUS), "rb") as f:
                if self._inode == 0 or os.fstat(f.fileno()).st_ino != self._inode:
                    return []  # not the file we were reading: that one is gone whole
                f.seek(self._offset)
                return self._complete(f.read())
        except FileNotFoundError:
            return []


def _parse(data: bytes) -> Iterator[Event]:
    for raw in data.splitlines():
        if not raw.strip():
            continue
        with contextlib.suppress(ValueError, KeyError, TypeError):
            yield Event.from_json(json.loads(raw))  # a torn line (a crash mid-write) is skipped


# ContainerManager's observer kinds (hawser.runtime EVENT_*), as the journal's actions.
CONTAINER_ACTIONS = {"created": "create", "started": "start", "stopped": "exit", "deleted": "remove",
                     "exec-started": "exec-start", "exec-exited": "exec-exit"}


def container_observer(journal: Journal) -> Callable[[str, Any, Mapping[str, str]], None]:
    """An observer for ``ContainerManager.observers`` that journals each change
    with the container's labels and the change's details: an exit's code and
    reason, an exec's id, command and code."""

    def observe(kind: str, record: Any, details: Mapping[str, str]) -> None:
        action = CONTAINER_ACTIONS.get(kind)
        if action is None:
            return
        # With the container's labels, as docker's events: readers (the CRI's
        # event stream) know its pod after it is gone.
        journal.record("container", action, id_=record.id, name=record.name, namespace=record.namespace,
                       **{**record.labels, "image": str(record.image), **details})

    return observe


def image_observer(journal: Journal) -> Callable[[Any], None]:
    """An observer for ``ImageService.observers``: images pulled, imported and
    removed, and each collection with what it removed.  Failed pulls are the
    metrics' to count, not events."""

    def observe(event: Any) -> None:
        if event.error:
            return
        if event.action == "gc":
            report = event.report
            journal.record("gc", "run", namespace=event.namespace,
                           blobs=str(len(report.blobs)), snapshots=str(len(report.snapshots)),
                           bytesFreed=str(report.bytes_reclaimed), errors=str(len(report.errors)),
                           **gc_removed(report))
            return
        journal.record("image", event.action, id_=event.digest, name=event.name, namespace=event.namespace)

    return observe


def gc_removed(report: Any) -> dict[str, str]:
    """What a GC run removed, for its journal event (containerd's API turns
    them into /content/delete and /snapshot/remove): the blob records, as
    JSON ``[[namespace, digest], ...]``, and the snapshots, as JSON
    ``[[snapshotter, key], ...]``, each at most GC_LISTED (the counts say
    whether some were left off).  Nothing for a dry run."""
    if report.dry_run:
        return {}
    records = [[r.namespace, str(r.key)] for r in report.records[:GC_LISTED]]
    snapshots = [[r.snapshotter, str(r.key)] for r in report.snapshots[:GC_LISTED]]
    return {"records": str(len(report.records)),
            "removedContent": json.dumps(records, separators=(",", ":")) if records else "",
            "removedSnapshots": json.dumps(snapshots, separators=(",", ":")) if snapshots else ""}


def gc_removals(event: Event) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The blob records ((namespace, digest)) and snapshots ((snapshotter,
    key)) a ``gc run`` event lists; none for a malformed one."""
    def pairs(name: str) -> list[tuple[str, str]]:
        try:
            value = json.loads(event.attributes.get(name, "") or "[]")
        except ValueError:
            return []
        if not isinstance(value, list):
            return []
        return [(str(p[0]), str(p[1])) for p in value if isinstance(p, list) and len(p) == 2]

    return pairs("removedContent"), pairs("removedSnapshots")


def pod_observer(journal: Journal) -> Callable[[str, Any], None]:
    """An observer for ``PodService.observers``: a pod ready, not ready (with
    why, when the host took it), removed."""

    def observe(action: str, record: Any) -> None:
        meta = (record.config or {}).get("metadata", {})
        journal.record("pod", action, id_=record.id, name=str(meta.get("name", "")), namespace=record.namespace,
                       podNamespace=str(meta.get("namespace", "")),
                       reason=str((record.status or {}).get("not_ready_reason", "")) if action == "notready" else "")

    return observe
