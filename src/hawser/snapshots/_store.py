"""Bookkeeping shared by the overlayfs and native snapshotters.

Layout of a snapshotter root (e.g. ``/var/lib/hawser/snapshots/overlayfs``)::

    metadata.db          SQLite (WAL): one row per snapshot
    lock                 flock: held while a change is recorded and renamed into place
    snapshots/<id>/fs    the snapshot's tree (overlay: its upper dir)
    snapshots/<id>/work  overlay's work dir
    snapshots/new-*      a snapshot being created (flocked by its creator)
    snapshots/rm-*       a removed snapshot being deleted

Crash safety, after containerd: a new snapshot is built under a temporary
name, then, holding the lock and inside one SQLite transaction, its row is
inserted and the directory renamed to its id before the transaction commits.
A crash leaves either a temporary dir or an id dir without a row; both are
what :meth:`SnapshotterBase.cleanup` removes.  Removal deletes the row (one
transaction), then renames the dir to ``rm-*`` and deletes the tree.

Several processes may share a root: SQLite serialises the rows, the lock
file serialises the renames and cleanup, and each temporary dir is flocked by
its creator so cleanup in another process leaves it alone.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence

from hawser._dataclass import dataclass
from hawser._failpoints import failpoint
from hawser._logging import get_logger
from hawser.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    HawserError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from hawser.host import FileLock, fsync_dir, lock_fd, try_lock_fd
from hawser.host import mount as host_mount
from hawser.host import unmount_all as host_unmount_all
from hawser.snapshots._types import ApplyTarget, Info, Kind, Mount, Usage

log = get_logger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    parent TEXT NOT NULL DEFAULT '',
    kind TEXT NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
"""


@dataclass(frozen=True, slots=True)
class Record:
    """One row: a snapshot with its numeric id (its directory name)."""

    id: int
    key: str
    parent: str
    kind: Kind
    labels: dict[str, str]
    created: float
    updated: float

    def info(self) -> Info:
        return Info(key=self.key, kind=self.kind, parent=self.parent, labels=dict(self.labels),
                    created=self.created, updated=self.updated)


def _record(row: tuple[int, str, str, str, str, float, float]) -> Record:
    return Record(id=row[0], key=row[1], parent=row[2], kind=Kind(row[3]), labels=json.loads(row[4]),
                  created=row[5], updated=row[6])


_COLUMNS = "id, key, parent, kind, labels, created, updated"


def _check_key(key: str, what: str = "snapshot key") -> None:
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"{what} must be a non-empty string, got {key!r}")
    if "\x00" in key:
        raise InvalidArgument(f"{what} {key!r} contains a NUL byte")


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    if labels is None:
        return {}
    out: dict[str, str] = {}
    for k, v in labels.items():
        if not isinstance(k, str) or not isinstance(v, str) or not k:
            raise InvalidArgument(f"snapshot label {k!r}={v!r}: keys and values must be strings, keys non-empty")
        out[k] = v
    return out


def _sqlite_error(path: str, exc: sqlite3.Error) -> HawserError:
    message = str(exc)
    lowered = message.lower()
    if "full" in lowered:
        return ResourceExhausted(f"no space left on device writing snapshot database {path}")
    if "locked" in lowered or "busy" in lowered:
        return Unavailable(f"snapshot database {path} is busy: {message}", hint="another hawser process holds it")
    if "malformed" in lowered or "not a database" in lowered:
        return DataLoss(f"snapshot database {path} is corrupt: {message}")
    return FailedPrecondition(f"snapshot database {path}: {message}")


class SnapshotterBase:
    """Records, directories, locking and cleanup; subclasses say how a snapshot
    is populated, mounted and unpacked into."""

    name = "base"
    supports_rebase = False

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._snapdir = os.path.join(self.root, "snapshots")
        os.makedirs(self._snapdir, mode=0o700, exist_ok=True)
        self._lock_path = os.path.join(self.root, "lock")
        self._mutex = threading.RLock()
        self._db_path = os.path.join(self.root, "metadata.db")
        with self._sql():
            self._db = sqlite3.connect(self._db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            with self._mutex, self._sql():
                self._db.execute("PRAGMA busy_timeout = 30000")
                # Only switch when needed: opening an existing store must not
                # write, so that it still opens (to list, to prune) on a full disk.
                if self._db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                    self._db.execute("PRAGMA journal_mode = WAL")
                # FULL: a committed row survives power loss, like the dirs it names.
                self._db.execute("PRAGMA synchronous = FULL")
                exists = self._db.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshots'").fetchone()
            if not exists:
                with self._tx():
                    for statement in _SCHEMA.split(";"):
                        if statement.strip():
                            self._db.execute(statement)
        except BaseException:
            self._db.close()
            raise

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    # --- hooks ---------------------------------------------------------------

    def _populate(self, tmp: str, kind: Kind, chain: Sequence[Record]) -> None:
        """Fill a new snapshot's temporary dir (``tmp/fs`` and more)."""
        raise NotImplementedError

    def _mounts(self, rec: Record, chain: Sequence[Record]) -> list[Mount]:
        raise NotImplementedError

    def _apply_target(self, rec: Record, chain: Sequence[Record]) -> ApplyTarget:
        raise NotImplementedError

    # --- paths ---------------------------------------------------------------

    def _dir(self, rec: Record) -> str:
        return os.path.join(self._snapdir, str(rec.id))

    def _fs(self, rec: Record) -> str:
        return os.path.join(self._snapdir, str(rec.id), "fs")

    def _work(self, rec: Record) -> str:
        return os.path.join(self._snapdir, str(rec.id), "work")

    # --- database ------------------------------------------------------------

    @contextlib.contextmanager
    def _sql(self) -> Iterator[None]:
        """SQLite's errors as hawser's: a full disk, a busy or corrupt database."""
        try:
            yield
        except sqlite3.Error as exc:
            raise _sqlite_error(self._db_path, exc) from exc

    @contextlib.contextmanager
    def _tx(self) -> Iterator[list[Callable[[], None]]]:
        """One write transaction (BEGIN IMMEDIATE: take the write lock now, so
        a read-then-write cannot be overtaken by another process).

        Yields a list of undo steps: filesystem changes made inside the
        transaction register how to revert them, and they are run (last
        first) if the body raises or the COMMIT fails."""
        with self._mutex:
            with self._sql():
                self._db.execute("BEGIN IMMEDIATE")
            undo: list[Callable[[], None]] = []
            try:
                yield undo
                self._db.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                for step in reversed(undo):
                    try:
                        step()
                    except OSError as e:
                        log.warning("%s snapshotter: undoing a failed change: %s", self.name, e)
                if isinstance(exc, sqlite3.Error):
                    raise _sqlite_error(self._db_path, exc) from exc
                raise

    def _get(self, key: str) -> Record | None:
        with self._mutex, self._sql():
            row = self._db.execute(f"SELECT {_COLUMNS} FROM snapshots WHERE key = ?", (key,)).fetchone()
        return _record(row) if row else None

    def _must_get(self, key: str) -> Record:
        _check_key(key)
        rec = self._get(key)
        if rec is None:
            raise NotFound(f"snapshot {key!r} ({self.name})")
        return rec

    def _chain(self, rec: Record) -> list[Record]:
        """The parents of ``rec``, nearest first."""
        chain: list[Record] = []
        key = rec.parent
        seen = {rec.key}
        while key:
            parent = self._get(key)
            if parent is None:
                raise FailedPrecondition(f"snapshot {rec.key!r}: ancestor {key!r} is missing from the records",
                                         hint="the snapshot metadata is inconsistent; remove the snapshot")
            if parent.key in seen:
                raise FailedPrecondition(f"snapshot {rec.key!r}: parent chain loops at {key!r}")
            seen.add(parent.key)
            chain.append(parent)
            key = parent.parent
        return chain

    def _committed_parent(self, parent: str, for_key: str) -> Record:
        _check_key(parent, "parent key")
        rec = self._get(parent)
        if rec is None:
            raise NotFound(f"parent snapshot {parent!r} of {for_key!r} ({self.name})")
        if rec.kind is not Kind.COMMITTED:
            raise FailedPrecondition(f"parent snapshot {parent!r} of {for_key!r} is {rec.kind.value}, not committed",
                                     hint="commit the parent first")
        return rec

    # --- the Snapshotter protocol ---------------------------------------------

    def stat(self, key: str) -> Info:
        """Info of a snapshot. NotFound if absent."""
        return self._must_get(key).info()

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Create an active snapshot on ``parent`` (a committed key or '').

        AlreadyExists if ``key`` exists, NotFound if the parent does not,
        FailedPrecondition if the parent is not committed, InvalidArgument
        for an empty key or bad labels.  Not idempotent (like containerd)."""
        rec = self._create(Kind.ACTIVE, key, parent, labels)
        return self._mounts(rec, self._chain(rec))

    def view(self, key: str, parent: str, labels: Mapping[str, str] | None = None) -> list[Mount]:
        """Like prepare, but the mounts are read-only and the snapshot cannot be committed."""
        rec = self._create(Kind.VIEW, key, parent, labels)
        return self._mounts(rec, self._chain(rec))

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active or view snapshot.

        NotFound if absent, FailedPrecondition for a committed snapshot (mount
        a view of it instead).  Idempotent, no side effects."""
        rec = self._must_get(key)
        if rec.kind is Kind.COMMITTED:
            raise FailedPrecondition(f"snapshot {key!r} is committed; only active and view snapshots have mounts",
                                     hint="create a view of it")
        return self._mounts(rec, self._chain(rec))

    def apply_target(self, key: str) -> ApplyTarget:
        """Where to unpack a layer into the active snapshot ``key``.

        NotFound if absent, FailedPrecondition unless it is active."""
        rec = self._must_get(key)
        if rec.kind is not Kind.ACTIVE:
            raise FailedPrecondition(f"snapshot {key!r} is {rec.kind.value}; layers unpack into active snapshots")
        return self._apply_target(rec, self._chain(rec))

    def lower_dirs(self, key: str) -> list[str]:
        """The directories of ``key`` and its parents, nearest first: the
        lowers a layer applied on top of ``key`` sees. NotFound if absent."""
        rec = self._must_get(key)
        return [self._fs(r) for r in (rec, *self._chain(rec))]

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None, *,
               parent: str | None = None) -> None:
        """Turn active ``key`` into committed ``name``; the key is gone afterwards.

        The directory stays where it is: only the row changes, in one
        transaction, so a crash leaves either the active or the committed
        snapshot.  ``labels`` None keeps the active snapshot's labels.
        ``parent`` (snapshotters with ``supports_rebase`` only) commits a
        snapshot prepared without a parent on top of ``parent``: its tree must
        hold only its own layer's changes, as an overlay upper dir does.

        NotFound if ``key`` (or ``parent``) is absent, AlreadyExists if
        ``name`` exists, FailedPrecondition if ``key`` is not active or
        ``parent`` is not committed, InvalidArgument for a rebase the
        snapshotter cannot do."""
        _check_key(name, "snapshot name")
        new_labels = None if labels is None else _check_labels(labels)
        with FileLock(self._lock_path), self._tx():
            rec = self._must_get(key)
            if rec.kind is not Kind.ACTIVE:
                raise FailedPrecondition(f"snapshot {key!r} is {rec.kind.value}, only active snapshots can be committed")
            if self._get(name) is not None:
                raise AlreadyExists(f"snapshot {name!r} ({self.name})")
            new_parent = rec.parent
            if parent is not None and parent != rec.parent:
                if not self.supports_rebase:
                    raise InvalidArgument(f"the {self.name} snapshotter cannot commit {key!r} onto another parent")
                if rec.parent:
                    raise InvalidArgument(f"snapshot {key!r} already has parent {rec.parent!r}; "
                                          f"only a parentless snapshot can be committed onto {parent!r}")
                if parent:
                    self._committed_parent(parent, name)
                new_parent = parent
            self._db.execute(
                "UPDATE snapshots SET key = ?, kind = ?, parent = ?, labels = ?, updated = ? WHERE id = ?",
                (name, Kind.COMMITTED.value, new_parent,
                 json.dumps(rec.labels if new_labels is None else new_labels, sort_keys=True), time.time(), rec.id))
            failpoint("snapshot.commit.in-tx")
        failpoint("snapshot.commit.after-tx")

    def remove(self, key: str) -> None:
        """Remove a snapshot and its directory.

        NotFound if absent; FailedPrecondition if it has children.  The row
        goes first, in a transaction of its own; the dir is renamed aside only
        once that is committed, so a crash never leaves a row without its
        tree (a killed transaction rolls back, a renamed dir would not); it
        may leave a tree without a row, which cleanup() removes."""
        with FileLock(self._lock_path):
            with self._tx():
                rec = self._must_get(key)
                (children,) = self._db.execute("SELECT COUNT(*) FROM snapshots WHERE parent = ?", (key,)).fetchone()
                if children:
                    raise FailedPrecondition(f"snapshot {key!r} has {children} child snapshot(s)",
                                             hint="remove the children first")
                self._db.execute("DELETE FROM snapshots WHERE id = ?", (rec.id,))
                failpoint("snapshot.remove.in-tx")
            failpoint("snapshot.remove.after-commit")
            path = self._dir(rec)
            trash = os.path.join(self._snapdir, f"rm-{rec.id}-{os.urandom(4).hex()}")
            try:
                os.rename(path, trash)
            except FileNotFoundError:
                log.warning("snapshot %r (%s): directory %s was already gone", key, self.name, path)
                trash = ""
        failpoint("snapshot.remove.before-rmtree")
        if trash:
            _rmtree(trash)

    def walk(self) -> Iterator[Info]:
        """Every snapshot, in no particular order (a snapshot of the rows taken at the call)."""
        with self._mutex, self._sql():
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM snapshots").fetchall()
        for row in rows:
            yield _record(row).info()

    def usage(self, key: str) -> Usage:
        """Disk usage of the snapshot's own directory (overlay: its layer;
        native: its full tree).  ``size`` counts allocated blocks
        (st_blocks * 512, like du), ``inodes`` every inode once, so hardlinks
        count once.  NotFound if absent."""
        rec = self._must_get(key)
        return disk_usage(self._fs(rec))

    def directory(self, key: str) -> str:
        """The directory of snapshot ``key`` (``snapshots/<id>``, holding its ``fs``),
        whether or not it is still on disk; for consistency checks. NotFound if absent."""
        return self._dir(self._must_get(key))

    def update_labels(self, key: str, labels: Mapping[str, str], *, merge: bool = False) -> Info:
        """Replace the labels of a snapshot; with ``merge``, set these keys on
        the ones it has instead (an empty value removes a key), in one
        transaction. NotFound if absent, InvalidArgument for bad labels."""
        new = _check_labels(labels)
        with self._tx():
            rec = self._must_get(key)
            if merge:
                new = {k: v for k, v in {**rec.labels, **new}.items() if v}
            now = time.time()
            self._db.execute("UPDATE snapshots SET labels = ?, updated = ? WHERE id = ?",
                             (json.dumps(new, sort_keys=True), now, rec.id))
        return Info(key=rec.key, kind=rec.kind, parent=rec.parent, labels=dict(new), created=rec.created, updated=now)

    def cleanup(self) -> list[str]:
        """Remove directories no record points at: ids without a row (a crash
        between rename and commit), ``new-*`` dirs whose creator is gone, and
        ``rm-*`` dirs a removal left behind.  Returns the paths removed.
        Safe while other processes use the root."""
        removed: list[str] = []
        with FileLock(self._lock_path):
            with self._mutex, self._sql():
                ids = {row[0] for row in self._db.execute("SELECT id FROM snapshots")}
            for path, _why in leftover_dirs(self._snapdir, {str(i) for i in ids}):
                _rmtree(path)
                removed.append(path)
        return removed

    # --- creation --------------------------------------------------------------

    def _create(self, kind: Kind, key: str, parent: str, labels: Mapping[str, str] | None) -> Record:
        _check_key(key)
        new_labels = _check_labels(labels)
        if self._get(key) is not None:
            raise AlreadyExists(f"snapshot {key!r} ({self.name})")
        chain: list[Record] = []
        if parent:
            top = self._committed_parent(parent, key)
            chain = [top, *self._chain(top)]
        # The temp dir is created and flocked under the root lock, so a cleanup()
        # holding that lock never sees it unlocked.
        with FileLock(self._lock_path):
            tmp = _new_dir(self._snapdir, "new-")
            tmp_fd = os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            lock_fd(tmp_fd)
        try:
            # Populating (a full copy for native) runs without the root lock.
            self._populate(tmp, kind, chain)
            with FileLock(self._lock_path), self._tx() as undo:
                if self._get(key) is not None:
                    raise AlreadyExists(f"snapshot {key!r} ({self.name})")
                if parent:
                    self._committed_parent(parent, key)  # it may have gone while we copied
                now = time.time()
                cur = self._db.execute(
                    "INSERT INTO snapshots (key, parent, kind, labels, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
                    (key, parent, kind.value, json.dumps(new_labels, sort_keys=True), now, now))
                assert cur.lastrowid is not None
                rec = Record(id=cur.lastrowid, key=key, parent=parent, kind=kind, labels=new_labels,
                             created=now, updated=now)
                final = self._dir(rec)
                if os.path.lexists(final):
                    # An id dir without a row: a crash after a rename whose
                    # transaction never committed, so SQLite hands the id out again.
                    _rmtree(final)
                os.rename(tmp, final)
                undo.append(lambda: os.rename(final, tmp))
                fsync_dir(self._snapdir)
                failpoint("snapshot.create.after-rename")
            return rec
        finally:
            os.close(tmp_fd)
            if os.path.lexists(tmp):
                _rmtree(tmp)


def leftover_dirs(snapdir: str, recorded: Collection[str]) -> list[tuple[str, str]]:
    """What ``cleanup`` removes under ``snapdir``, each with why: numbered dirs
    whose id is not in ``recorded`` (the ids with rows), the ``rm-*`` trees of
    removals, ``new-*`` dirs whose creator is gone. Anything else is not ours.
    Call with the snapshotter's lock held."""
    found: list[tuple[str, str]] = []
    try:
        names = sorted(os.listdir(snapdir))
    except FileNotFoundError:
        return found
    for name in names:
        path = os.path.join(snapdir, name)
        if name.isdigit():
            if name not in recorded:
                found.append((path, "a snapshot directory no record owns (a crash between its rename and its record)"))
        elif name.startswith("rm-"):
            found.append((path, "the tree of a removed snapshot, not yet deleted"))
        elif name.startswith("new-") and _abandoned(path):
            found.append((path, "a snapshot whose creation was abandoned"))
    return found


def _abandoned(path: str) -> bool:
    """A ``new-*`` dir whose creator no longer holds its flock."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    except OSError:
        return True
    try:
        return try_lock_fd(fd)
    finally:
        os.close(fd)


def _rmtree(path: str) -> None:
    """Remove a tree, tolerating parts that are already gone (another process
    may be cleaning up the same leftovers)."""

    def onerror(func: object, p: str, exc: tuple[type[BaseException], BaseException, object]) -> None:
        err = exc[1]
        if isinstance(err, FileNotFoundError):
            return
        log.warning("removing %s: %s", p, err)

    if os.path.isdir(path) and not os.path.islink(path):
        # An overlay work dir holds a mode-000 "work" subdir; root can still remove it.
        shutil.rmtree(path, onerror=onerror)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def disk_usage(path: str) -> Usage:
    """Blocks (st_blocks * 512) and inodes under ``path``, each inode once."""
    size = 0
    inodes = 0
    seen: set[tuple[int, int]] = set()
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return Usage(size=0, inodes=0)
    size += st.st_blocks * 512
    inodes += 1
    stack = [path]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError as e:
            if e.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            raise
        for entry in entries:
            try:
                est = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if est.st_nlink > 1 and not stat.S_ISDIR(est.st_mode):
                ident = (est.st_dev, est.st_ino)
                if ident in seen:
                    continue
                seen.add(ident)
            size += est.st_blocks * 512
            inodes += 1
            if stat.S_ISDIR(est.st_mode):
                stack.append(entry.path)
    return Usage(size=size, inodes=inodes)


def mount_all(mounts: Sequence[Mount], target: str) -> None:
    """Mount each of ``mounts`` on ``target`` in order (later ones stack on top).

    On failure, what was mounted is unmounted again and the OSError raised."""
    done = 0
    try:
        for m in mounts:
            host_mount(m.type, m.source, target, m.options)
            done += 1
    except BaseException:
        for _ in range(done):
            with contextlib.suppress(OSError):
                host_unmount_all(target, detach=True)
        raise


def unmount_all(target: str, *, detach: bool = False) -> None:
    """Unmount everything stacked on ``target``. Raises OSError (e.g. EBUSY)."""
    host_unmount_all(target, detach=detach)


def _new_dir(parent: str, prefix: str) -> str:
    """A fresh private directory (tempfile.mkdtemp without its ~1 ms import)."""
    while True:
        path = os.path.join(parent, prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return path
