"""Garbage collection: mark from the roots, sweep everything else.

Roots: every image's target (all namespaces), every resource of a live lease,
every blob record or snapshot labelled ``hawser.io/gc.root``, and anything
created within the grace period.  Marking follows ``hawser.io/gc.ref.content.*``
labels of blob records (index -> manifests -> config and layers) and
``hawser.io/gc.ref.snapshot.<snapshotter>`` labels (config -> top layer
snapshot); a marked snapshot marks its parent chain.  Sweeping deletes expired
leases, unmarked blob records, then blob files nothing needs (including files
no record ever named: a crash between commit and record leaves those), stale
ingests, unmarked snapshots (children first), and finally lets each
snapshotter and the content store clean up directories a crash left.

Racing a pull.  GC runs while other processes pull, so the order matters:

1. GC lists what is on disk *before* it reads the records.  Whatever is on disk
   at that moment was written by someone holding a lease on it already (the
   pull protocol below), so the records read afterwards protect it: by the
   lease, or, once the pull is done, by the image record that the pull
   commits before deleting its lease.  Anything written after the listing is
   not looked at.
2. Marking and deleting records (expired leases, unmarked blob records) happen
   in one write transaction: nothing can attach a lease or record a blob
   between the mark and the deletion.  Records go before their files, so a
   crash in between leaves an orphan file (the next GC removes it), never a
   record of a missing file.
3. Each file, ingest or snapshot is removed inside its own short write
   transaction that first re-checks, against the current records, that no
   live lease (or record, or image) has claimed it since the mark.  Holding
   SQLite's write lock while removing means a pull that attaches a lease
   either did so before the re-check (and the item is kept) or does so after
   the removal (and then sees the item gone, and fetches or builds it anew).

The pull protocol that makes this hold: create the lease first; attach each
resource (``add_resource``: the ingest ref, the blob digest, the snapshot key)
*before* writing or reusing it; record blobs after they are committed; put the
image; only then delete the lease.  The window "blob recorded, lease not yet
attached" never exists because the lease comes first.  The grace period is a
second line for writers that skip leases (nothing is removed that was created
in the last ``grace_period`` seconds); it costs only that fresh garbage waits
for the next run.  Snapshotters must not write to ``metadata.db`` inside
``remove`` (GC holds its write lock there), and pulls should attach a lease
before taking a snapshotter's own lock.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from hawser._dataclass import dataclass, field
from hawser._failpoints import failpoint
from hawser.content import Cleaner
from hawser.content import Info as BlobInfo
from hawser.content import Status as IngestStatus
from hawser.content import Store as ContentStore
from hawser.errors import HawserError, NotFound, Unavailable
from hawser.host import FileLock
from hawser.metadata._database import load_labels
from hawser.metadata._labels import (
    LABEL_GC_REF_SNAPSHOT,
    LABEL_GC_ROOT,
    RESOURCE_CONTENT,
    RESOURCE_INGEST,
    RESOURCE_SNAPSHOT_PREFIX,
    content_refs,
    snapshot_refs,
    snapshot_resource,
)
from hawser.metadata._metadata import Metadata
from hawser.oci import Digest
from hawser.snapshots import Info as SnapshotInfo
from hawser.snapshots import Snapshotter

# Seconds during which a new blob record, blob file, ingest or snapshot is never
# collected (see the module docstring). Tests pass 0.
DEFAULT_GRACE_PERIOD = 10.0

REASON_EXPIRED_LEASE = "expired lease"
REASON_ABANDONED_LEASE = "abandoned lease"
REASON_UNREFERENCED_BLOB = "unreferenced blob"
REASON_ORPHAN_FILE = "orphan file"
REASON_STALE_INGEST = "stale ingest"
REASON_UNREFERENCED_SNAPSHOT = "unreferenced snapshot"
REASON_LEFTOVER = "crash leftover"


@dataclass(frozen=True, slots=True)
class Removal:
    """One thing GC removed (or, in a dry run, would remove).

    ``kind``: "lease", "record" (a namespace's blob record), "blob" (the file),
    "ingest", "snapshot" or "leftover" (a path a cleanup() removed). ``key``: the
    lease id, digest, ingest ref, snapshot key or path. ``size``: bytes freed.
    """

    kind: str
    key: str
    reason: str
    namespace: str = ""
    snapshotter: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True)
class GCError:
    """A removal (or a listing) that failed; the rest of the run went on."""

    kind: str
    key: str
    message: str
    snapshotter: str = ""

    def __str__(self) -> str:
        where = f"{self.snapshotter}/{self.key}" if self.snapshotter else self.key
        return f"{self.kind} {where}: {self.message}"


@dataclass(frozen=True, slots=True)
class GCReport:
    dry_run: bool
    leases: tuple[Removal, ...] = ()
    records: tuple[Removal, ...] = ()
    blobs: tuple[Removal, ...] = ()
    ingests: tuple[Removal, ...] = ()
    snapshots: tuple[Removal, ...] = ()
    leftovers: tuple[Removal, ...] = ()
    errors: tuple[GCError, ...] = ()
    bytes_reclaimed: int = 0
    duration: float = 0.0

    @property
    def removed(self) -> tuple[Removal, ...]:
        """Everything removed, in the order GC went."""
        return self.leases + self.records + self.blobs + self.ingests + self.snapshots + self.leftovers


@dataclass
class _Builder:
    dry_run: bool
    leases: list[Removal] = field(default_factory=list)
    records: list[Removal] = field(default_factory=list)
    blobs: list[Removal] = field(default_factory=list)
    ingests: list[Removal] = field(default_factory=list)
    snapshots: list[Removal] = field(default_factory=list)
    leftovers: list[Removal] = field(default_factory=list)
    errors: list[GCError] = field(default_factory=list)
    bytes_reclaimed: int = 0

    def error(self, kind: str, key: str, exc: BaseException, snapshotter: str = "") -> None:
        self.errors.append(GCError(kind=kind, key=key, message=str(exc) or type(exc).__name__, snapshotter=snapshotter))

    def build(self, duration: float) -> GCReport:
        return GCReport(
            dry_run=self.dry_run,
            leases=tuple(self.leases),
            records=tuple(self.records),
            blobs=tuple(self.blobs),
            ingests=tuple(self.ingests),
            snapshots=tuple(self.snapshots),
            leftovers=tuple(self.leftovers),
            errors=tuple(self.errors),
            bytes_reclaimed=self.bytes_reclaimed,
            duration=duration,
        )


# --- reading the records -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Record:
    labels: Mapping[str, str]
    created_at: float


@dataclass
class _State:
    image_targets: list[tuple[str, Digest]] = field(default_factory=list)
    records: dict[tuple[str, Digest], _Record] = field(default_factory=dict)
    # (namespace, kind, key) of every resource of a live lease.
    leased: list[tuple[str, str, str]] = field(default_factory=list)
    # (namespace, lease id, reason) of leases to delete.
    expired: list[tuple[str, str, str]] = field(default_factory=list)
    # (snapshotter, key) of every container's snapshot: roots while the container exists.
    container_snapshots: list[tuple[str, str]] = field(default_factory=list)


LeaseAlive = Callable[[dict[str, str]], bool]


def _load(c: sqlite3.Connection, now: float, lease_alive: LeaseAlive | None) -> _State:
    state = _State()
    for namespace, digest in c.execute("SELECT namespace, digest FROM images"):
        state.image_targets.append((namespace, Digest(digest)))
    for namespace, digest, labels, created_at in c.execute("SELECT namespace, digest, labels, created_at FROM blobs"):
        state.records[(namespace, Digest(digest))] = _Record(labels=load_labels(labels), created_at=created_at)
    live: set[tuple[str, str]] = set()
    for namespace, lease_id, labels, expires_at in c.execute("SELECT namespace, id, labels, expires_at FROM leases"):
        if expires_at is not None and expires_at <= now:
            state.expired.append((namespace, lease_id, REASON_EXPIRED_LEASE))
        elif lease_alive is not None and not lease_alive(dict(load_labels(labels))):
            state.expired.append((namespace, lease_id, REASON_ABANDONED_LEASE))
        else:
            live.add((namespace, lease_id))
    for namespace, lease_id, kind, key in c.execute("SELECT namespace, lease, kind, key FROM lease_resources"):
        if (namespace, lease_id) in live:
            state.leased.append((namespace, kind, key))
    state.container_snapshots.extend(c.execute("SELECT snapshotter, snapshot_key FROM containers"))
    return state


# --- mark ----------------------------------------------------------------------


@dataclass
class _Marks:
    content: set[tuple[str, Digest]] = field(default_factory=set)
    snapshots: dict[str, set[str]] = field(default_factory=dict)
    leased_content: set[Digest] = field(default_factory=set)
    leased_ingests: set[str] = field(default_factory=set)

    @property
    def digests(self) -> set[Digest]:
        return {digest for _, digest in self.content} | self.leased_content


def _mark(
    state: _State, snapshots: Mapping[str, Mapping[str, SnapshotInfo]], *, now: float, grace_period: float
) -> _Marks:
    marks = _Marks(snapshots={name: set() for name in snapshots})
    fresh_after = now - grace_period
    content_todo: list[tuple[str, Digest]] = list(state.image_targets)
    snapshot_todo: list[tuple[str, str]] = list(state.container_snapshots)

    for namespace, kind, key in state.leased:
        if kind == RESOURCE_CONTENT:
            try:
                digest = Digest(key)
            except HawserError:
                continue
            marks.leased_content.add(digest)
            content_todo.append((namespace, digest))
        elif kind == RESOURCE_INGEST:
            marks.leased_ingests.add(key)
        elif kind.startswith(RESOURCE_SNAPSHOT_PREFIX):
            snapshot_todo.append((kind[len(RESOURCE_SNAPSHOT_PREFIX):], key))
    for where, record in state.records.items():
        if LABEL_GC_ROOT in record.labels or record.created_at > fresh_after:
            content_todo.append(where)
    for name, infos in snapshots.items():
        for key, info in infos.items():
            if LABEL_GC_ROOT in info.labels or info.created > fresh_after:
                snapshot_todo.append((name, key))

    while content_todo or snapshot_todo:
        while content_todo:
            where = content_todo.pop()
            if where in marks.content:
                continue
            marks.content.add(where)
            found = state.records.get(where)
            if found is None:
                continue  # an image target or leased digest not recorded (yet)
            namespace = where[0]
            content_todo.extend((namespace, child) for child in content_refs(found.labels))
            snapshot_todo.extend(snapshot_refs(found.labels))
        while snapshot_todo:
            name, key = snapshot_todo.pop()
            marked = marks.snapshots.get(name)
            snapshot = snapshots.get(name, {}).get(key)
            if marked is None or snapshot is None or key in marked:
                continue  # a snapshotter not in use here, or a key it does not have
            marked.add(key)
            if snapshot.parent:
                snapshot_todo.append((name, snapshot.parent))
            snapshot_todo.extend(snapshot_refs(snapshot.labels))
    return marks


# --- re-checks under the write lock (see the module docstring, point 3) ------------------

_LIVE_LEASE_HOLDS = (
    "SELECT 1 FROM lease_resources r JOIN leases l ON l.namespace = r.namespace AND l.id = r.lease"
    " WHERE r.kind = ? AND r.key = ? AND (l.expires_at IS NULL OR l.expires_at > ?) LIMIT 1"
)


def _blob_claimed(c: sqlite3.Connection, digest: Digest, now: float) -> bool:
    return bool(
        c.execute("SELECT 1 FROM blobs WHERE digest = ? LIMIT 1", (str(digest),)).fetchone()
        or c.execute("SELECT 1 FROM images WHERE digest = ? LIMIT 1", (str(digest),)).fetchone()
        or c.execute(_LIVE_LEASE_HOLDS, (RESOURCE_CONTENT, str(digest), now)).fetchone()
    )


def _ingest_claimed(c: sqlite3.Connection, ref: str, now: float) -> bool:
    return bool(c.execute(_LIVE_LEASE_HOLDS, (RESOURCE_INGEST, ref, now)).fetchone())


def _snapshot_claimed(c: sqlite3.Connection, snapshotter: str, key: str, now: float) -> bool:
    if c.execute(_LIVE_LEASE_HOLDS, (snapshot_resource(snapshotter), key, now)).fetchone():
        return True
    if c.execute("SELECT 1 FROM containers WHERE snapshotter = ? AND snapshot_key = ?", (snapshotter, key)).fetchone():
        return True
    label = f"{LABEL_GC_REF_SNAPSHOT}.{snapshotter}"
    return bool(
        c.execute(
            "SELECT 1 FROM blobs, json_each(blobs.labels) AS j"
            " WHERE j.value = ? AND (j.key = ? OR substr(j.key, 1, ?) = ?) LIMIT 1",
            (key, label, len(label) + 1, label + "/"),
        ).fetchone()
    )


# --- collect ----------------------------------------------------------------------


@contextmanager
def _gc_lock(root: str, *, wait: bool) -> Iterator[None]:
    # Never deleted, so unlike ingest locks there is no stale-inode dance.
    lock = FileLock(os.path.join(root, "gc.lock"))
    if not lock.acquire(blocking=wait):
        raise Unavailable(f"garbage collection is already running on {root}")
    try:
        yield
    finally:
        lock.release()


def _ancestors(infos: Mapping[str, SnapshotInfo], key: str) -> Iterator[str]:
    seen = {key}
    parent = infos[key].parent if key in infos else ""
    while parent and parent not in seen:
        seen.add(parent)
        yield parent
        parent = infos[parent].parent if parent in infos else ""


def _depth(infos: Mapping[str, SnapshotInfo], key: str) -> int:
    return sum(1 for _ in _ancestors(infos, key))


def collect(
    metadata: Metadata,
    content_store: ContentStore,
    snapshotters: Mapping[str, Snapshotter],
    *,
    dry_run: bool = False,
    now: float | None = None,
    grace_period: float = DEFAULT_GRACE_PERIOD,
    wait: bool = True,
    lease_alive: LeaseAlive | None = None,
) -> GCReport:
    """Remove everything no root reaches; return what went (or would go).

    ``snapshotters`` maps each snapshotter's name (as used in labels and lease
    kinds) to it. ``now`` decides which leases have expired (default: the
    metadata clock). ``lease_alive``, given a lease's labels, says whether its
    owner still lives: a lease it says False for is deleted before its expiry
    (an interrupted pull's). One GC runs at a time per metadata root (``gc.lock``):
    a second one waits, or raises Unavailable with ``wait=False``. A failed
    removal is reported in ``errors`` and the run goes on; only failing to
    read the records (Unavailable when the database stays busy) aborts it.
    Idempotent: a second run finds nothing more to do.
    """
    started = time.monotonic()
    if now is None:
        now = metadata.clock()
    report = _Builder(dry_run=dry_run)
    with _gc_lock(metadata.root, wait=wait):
        # 1. What is on disk, listed before the records are read.
        blobs: list[BlobInfo] | None
        ingests: list[IngestStatus] | None
        try:
            blobs = list(content_store.walk())
        except Exception as exc:
            report.error("blob", "*", exc)
            blobs = None
        try:
            ingests = content_store.list_statuses()
        except Exception as exc:
            report.error("ingest", "*", exc)
            ingests = None
        snapshots: dict[str, dict[str, SnapshotInfo]] = {}
        for name, snapshotter in snapshotters.items():
            try:
                snapshots[name] = {info.key: info for info in snapshotter.walk()}
            except Exception as exc:
                # Without its listing we know neither its chains nor its roots: leave it alone.
                report.error("snapshot", "*", exc, snapshotter=name)

        # 2. Mark, and delete the records that lost, in one transaction.
        with metadata.db.transaction(write=not dry_run) as c:
            state = _load(c, now, lease_alive)
            marks = _mark(state, snapshots, now=now, grace_period=grace_period)
            for namespace, lease_id, reason in state.expired:
                if not dry_run:
                    c.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (namespace, lease_id))
                report.leases.append(Removal("lease", lease_id, reason, namespace=namespace))
            for namespace, digest in sorted(state.records.keys() - marks.content):
                if not dry_run:
                    c.execute("DELETE FROM blobs WHERE namespace = ? AND digest = ?", (namespace, str(digest)))
                report.records.append(Removal("record", digest, REASON_UNREFERENCED_BLOB, namespace=namespace))
        failpoint("gc.after-records")

        # 3. Files, ingests and snapshots, each re-checked under the write lock.
        fresh_after = now - grace_period
        if blobs is not None:
            _sweep_blobs(metadata, content_store, blobs, state, marks, report, now=now, fresh_after=fresh_after)
        if ingests is not None:
            _sweep_ingests(metadata, content_store, ingests, marks, report, now=now, fresh_after=fresh_after)
        failpoint("gc.after-files")
        for name, infos in snapshots.items():
            _sweep_snapshots(metadata, name, snapshotters[name], infos, marks.snapshots[name], report, now=now)
        failpoint("gc.after-snapshots")

        # 4. Directories a crash left that no record names.
        if not dry_run:
            for name, snapshotter in snapshotters.items():
                if name not in snapshots:
                    continue  # its listing failed: it may be broken, leave it be
                try:
                    for path in snapshotter.cleanup():
                        report.leftovers.append(Removal("leftover", path, REASON_LEFTOVER, snapshotter=name))
                except Exception as exc:
                    report.error("leftover", "*", exc, snapshotter=name)
            if isinstance(content_store, Cleaner):
                try:
                    for path in content_store.cleanup():
                        report.leftovers.append(Removal("leftover", path, REASON_LEFTOVER))
                except Exception as exc:
                    report.error("leftover", "*", exc)
    return report.build(time.monotonic() - started)


def _sweep_blobs(
    metadata: Metadata,
    store: ContentStore,
    blobs: list[BlobInfo],
    state: _State,
    marks: _Marks,
    report: _Builder,
    *,
    now: float,
    fresh_after: float,
) -> None:
    keep = marks.digests
    recorded = {digest for _, digest in state.records}
    for info in blobs:
        if info.digest in keep or info.created > fresh_after:
            continue
        reason = REASON_UNREFERENCED_BLOB if info.digest in recorded else REASON_ORPHAN_FILE
        if not report.dry_run:
            try:
                with metadata.db.transaction(write=True) as c:
                    if _blob_claimed(c, info.digest, now):
                        continue
                    store.delete(info.digest)
            except NotFound:
                continue  # someone else removed it
            except Exception as exc:
                report.error("blob", info.digest, exc)
                continue
        report.blobs.append(Removal("blob", info.digest, reason, size=info.size))
        report.bytes_reclaimed += info.size


def _sweep_ingests(
    metadata: Metadata,
    store: ContentStore,
    ingests: list[IngestStatus],
    marks: _Marks,
    report: _Builder,
    *,
    now: float,
    fresh_after: float,
) -> None:
    for status in ingests:
        if status.ref in marks.leased_ingests or max(status.started_at, status.updated_at) > fresh_after:
            continue
        if report.dry_run:
            if store.in_use(status.ref):
                continue
        else:
            try:
                with metadata.db.transaction(write=True) as c:
                    if _ingest_claimed(c, status.ref, now):
                        continue
                    try:
                        store.abort(status.ref, wait=False)
                    except Unavailable:
                        continue  # a live writer holds its lock: in use, not stale
            except NotFound:
                continue  # committed or aborted meanwhile
            except Exception as exc:
                report.error("ingest", status.ref, exc)
                continue
        report.ingests.append(Removal("ingest", status.ref, REASON_STALE_INGEST, size=status.offset))
        report.bytes_reclaimed += status.offset


def _sweep_snapshots(
    metadata: Metadata,
    name: str,
    snapshotter: Snapshotter,
    infos: Mapping[str, SnapshotInfo],
    marked: set[str],
    report: _Builder,
    *,
    now: float,
) -> None:
    # Children before parents: deepest first. A snapshot that stays (claimed
    # since the mark, or failing to go) keeps its ancestors, which would only
    # fail with "has children".
    doomed = sorted(infos.keys() - marked, key=lambda k: (-_depth(infos, k), k))
    kept: set[str] = set()
    for key in doomed:
        if key in kept:
            kept.update(_ancestors(infos, key))
            continue
        try:
            size = snapshotter.usage(key).size
        except Exception:
            size = 0  # only for the report
        if not report.dry_run:
            try:
                with metadata.db.transaction(write=True) as c:
                    if _snapshot_claimed(c, name, key, now):
                        kept.update(_ancestors(infos, key))
                        continue
                    snapshotter.remove(key)
            except NotFound:
                continue
            except Exception as exc:
                report.error("snapshot", key, exc, snapshotter=name)
                kept.update(_ancestors(infos, key))
                continue
        report.snapshots.append(Removal("snapshot", key, REASON_UNREFERENCED_SNAPSHOT, snapshotter=name, size=size))
        report.bytes_reclaimed += size
