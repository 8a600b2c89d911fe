"""The metadata database: SQLite in WAL mode, shared by every hawser process.

Concurrency.  Several processes open ``metadata.db`` at once (the CLI beside the
daemon).  WAL lets readers run beside the one writer; ``busy_timeout`` makes a
writer wait for another instead of failing at once.  Every write transaction
starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, so it waits
(with the busy timeout) rather than failing half-way when a read transaction
would have to upgrade to a write.

Threads.  One ``Database`` owns one connection, opened with
``check_same_thread=False`` and guarded by a re-entrant lock held for a whole
transaction: threads of one process take turns, which costs nothing that
matters next to SQLite's own single-writer rule, and one object is simpler to
pass around than a connection per thread.  One thread may have reads of its
own (``read_here``: hawserd's event loop, for lookups by key).  Do not use one
``Database`` across ``fork()``; open a new one in the child.

Every record is scoped to a namespace (keyword ``namespace``, default
``"default"``).  A namespace comes into existence with the first record written
in it, as in containerd; ``"default"`` exists from the start.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType, TracebackType
from typing import ParamSpec, TypeVar

from hawser.errors import (
    DataLoss,
    FailedPrecondition,
    HawserError,
    InvalidArgument,
    ResourceExhausted,
    Unavailable,
)
from hawser.metadata._labels import RESOURCE_CONTENT, RESOURCE_INGEST, RESOURCE_SNAPSHOT_PREFIX
from hawser.metadata._schema import MIGRATIONS, Migration
from hawser.metadata._types import DEFAULT_NAMESPACE
from hawser.oci import Descriptor, Digest

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT = 30.0
# How long a ``read_here`` reader (the event loop) waits for a busy database.
READER_BUSY_TIMEOUT = 0.5
READER_CACHE_KIB = 512

# containerd's identifier rule, for namespaces and lease ids.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
_MAX_IDENTIFIER = 76
# containerd caps a label (key + value) at 4 KiB; labels travel in gRPC messages.
_MAX_LABEL = 4096
_MAX_NAME = 4096


# --- validation, shared by the record stores -------------------------------------


def check_identifier(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_IDENTIFIER or not _IDENTIFIER.match(value):
        raise InvalidArgument(
            f"invalid {what} {value!r}",
            hint=f"use letters and digits, separated by single '.', '_' or '-', at most {_MAX_IDENTIFIER} characters",
        )
    return value


# Lease ids are the client's to choose: containerd takes any, and ctr's random
# ones (nanoseconds, a dash, URL-safe base64) may hold "--" or "-_".
_LEASE_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def check_lease_id(value: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_IDENTIFIER or not _LEASE_ID.match(value):
        raise InvalidArgument(f"invalid lease id {value!r}",
                              hint=f"use letters, digits, '.', '_' and '-', at most {_MAX_IDENTIFIER} characters")
    return value


def check_image_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME or any(c.isspace() for c in name):
        raise InvalidArgument(f"invalid image name {name!r}: must be a non-empty reference without spaces")
    return name


def check_target(target: Descriptor) -> Descriptor:
    if not isinstance(target, Descriptor):
        raise InvalidArgument(f"image target must be a Descriptor, not {type(target).__name__}")
    Digest(target.digest)
    if not target.media_type:
        raise InvalidArgument(f"image target {target.digest} has no media type")
    if target.size < 0:
        raise InvalidArgument(f"image target {target.digest} has a negative size")
    return target


def dump_labels(labels: Mapping[str, str] | None) -> str:
    labels = labels or {}
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise InvalidArgument(f"invalid label {key!r}={value!r}: keys and values are strings, keys non-empty")
        if len(key) + len(value) > _MAX_LABEL:
            raise InvalidArgument(f"label {key!r} is longer than {_MAX_LABEL} bytes")
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def load_labels(text: str) -> Mapping[str, str]:
    data = json.loads(text)
    return MappingProxyType({str(k): str(v) for k, v in data.items()})


def check_resource(kind: str, key: str) -> None:
    if kind == RESOURCE_CONTENT:
        Digest(key)
        return
    snapshot = kind.startswith(RESOURCE_SNAPSHOT_PREFIX) and len(kind) > len(RESOURCE_SNAPSHOT_PREFIX)
    if kind != RESOURCE_INGEST and not snapshot:
        raise InvalidArgument(
            f"invalid lease resource kind {kind!r}",
            hint="use 'content', 'ingest' or 'snapshot/<snapshotter>'",
        )
    if not isinstance(key, str) or not key:
        raise InvalidArgument(f"lease resource {kind} needs a non-empty key")


# --- the database --------------------------------------------------------------


def _out_of_space(directory: str) -> bool:
    """Whether the filesystem under ``directory`` has less room than SQLite's
    shared-memory file takes (32 KiB)."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < 64 * 1024


def _journal_mode_wal(conn: sqlite3.Connection, busy_timeout: float) -> str:
    """The database's journal mode, switched to WAL if it is not yet.  The
    switch takes an exclusive lock and SQLite does not wait for it (no busy
    handler): two processes opening a new store at once (two pulls) failed
    one with "database is locked".  Retried until ``busy_timeout``."""
    deadline = time.monotonic() + busy_timeout
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
            if mode.lower() != "wal":
                mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            return mode
        except sqlite3.OperationalError as exc:
            busy = "locked" in str(exc).lower() or "busy" in str(exc).lower()
            if not busy or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


class Database:
    """One connection to ``path`` (an SQLite file), shared by the record stores.

    Opening creates the file and applies pending migrations; a database written
    by a newer hawser (a higher schema version) is refused with
    FailedPrecondition. ``clock`` gives timestamps (injected by tests);
    ``migrations`` is only for tests of future schema steps.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = os.fspath(path)
        self.root = os.path.dirname(os.path.abspath(self.path))
        self.clock = clock
        self._lock = threading.RLock()
        # A thread whose reads have a connection of their own (``read_here``): its id and the connection.
        self._reader: tuple[int, sqlite3.Connection] | None = None
        os.makedirs(self.root, mode=0o711, exist_ok=True)
        try:
            conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise FailedPrecondition(f"cannot open metadata database {self.path}: {exc}") from None
        self._conn: sqlite3.Connection | None = conn
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            # Only switch when needed, and (below) only migrate when behind:
            # opening an up-to-date store must not write, so that it still
            # opens (to list, to prune) on a full disk.
            mode = _journal_mode_wal(conn, busy_timeout)
            if str(mode).lower() != "wal":
                raise FailedPrecondition(f"metadata database {self.path}: cannot switch to WAL mode (got {mode})")
            # Per connection, and only outside a transaction: set here, once.
            conn.execute("PRAGMA foreign_keys = ON")
            # FULL: a committed record survives power loss (records are written
            # only after the data they describe is on disk; keep it that way).
            conn.execute("PRAGMA synchronous = FULL")
            if not self._up_to_date(len(migrations)):
                self._migrate(migrations)
                with self.transaction(write=True) as c:
                    self.ensure_namespace(c, DEFAULT_NAMESPACE)
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise self._translate(exc) from exc
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def __repr__(self) -> str:
        return f"Database({self.path!r})"

    def close(self) -> None:
        """Close the connection (and the reader's). Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            reader, self._reader = self._reader, None
            if reader is not None:
                reader[1].close()

    def read_here(self, *, busy_timeout: float = READER_BUSY_TIMEOUT) -> None:
        """Serve the calling thread's read transactions from a read-only
        connection of its own, without the lock the other threads share.

        For hawserd's event loop: a point lookup (a blob, an image, a container
        record) costs tens of microseconds, less than the trip to a worker
        thread it would otherwise take.  A WAL reader does not wait for the
        writer or for another thread's transaction; it may wait for SQLite's
        recovery of a writer that crashed, at most ``busy_timeout``, and then
        fails Unavailable, to be retried.  Keep such reads to lookups by key:
        the thread waits for whatever it reads."""
        conn = sqlite3.connect(self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            conn.execute("PRAGMA query_only = ON")
            # Lookups by key touch a few pages: a small cache (SQLite's default allows 2 MB).
            conn.execute(f"PRAGMA cache_size = -{READER_CACHE_KIB}")
        except sqlite3.Error as exc:
            conn.close()
            raise self._translate(exc) from exc
        with self._lock:
            previous, self._reader = self._reader, (threading.get_ident(), conn)
        if previous is not None:
            previous[1].close()

    def __enter__(self) -> Database:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # --- plumbing ------------------------------------------------------------

    def _translate(self, exc: sqlite3.Error) -> HawserError:
        message = str(exc)
        lowered = message.lower()
        if "locked" in lowered or "busy" in lowered:
            return Unavailable(
                f"metadata database {self.path} is busy: {message}",
                hint="another hawser process is writing it; retry",
            )
        # SQLite reports a write to its -shm or -wal file that failed for lack of
        # room (opening the store creates them) as an I/O error, not as a full disk.
        if "disk is full" in lowered or ("disk i/o error" in lowered and _out_of_space(self.root)):
            return ResourceExhausted(f"no space left on device writing metadata database {self.path}",
                                     hint="free disk space (hawser rmi unused images, then hawser system prune) "
                                          "and retry")
        if "malformed" in lowered or "not a database" in lowered:
            return DataLoss(f"metadata database {self.path} is corrupt: {message}")
        return FailedPrecondition(f"metadata database {self.path}: {message}")

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction, holding this object's lock throughout.

        ``write`` takes SQLite's write lock at BEGIN (see the module docstring).
        A read transaction sees one consistent snapshot of the database.  On
        the thread ``read_here`` names, a read uses that thread's connection.
        """
        reader = self._reader
        if not write and reader is not None and reader[0] == threading.get_ident():
            yield from self._on(reader[1], "BEGIN")
            return
        with self._lock:
            conn = self._conn
            if conn is None:
                raise FailedPrecondition(f"metadata database {self.path} is closed")
            yield from self._on(conn, "BEGIN IMMEDIATE" if write else "BEGIN")

    def reads_here(self) -> bool:
        """Whether the calling thread's reads have their own connection (``read_here``)."""
        reader = self._reader
        return reader is not None and reader[0] == threading.get_ident()

    async def lookup(self, blocking: Callable[..., Awaitable[T]], fn: Callable[P, T], /,
                     *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn`` (a lookup by key, a small read): here, on the event loop, when
        this thread's reads have their own connection (``read_here``:
        hawserd's), else through ``blocking`` (in a worker thread)."""
        if self.reads_here():
            return fn(*args, **kwargs)
        return await blocking(fn, *args, **kwargs)

    def _on(self, conn: sqlite3.Connection, begin: str) -> Iterator[sqlite3.Connection]:
        """One transaction on ``conn``: committed, or rolled back on any error."""
        try:
            conn.execute(begin)
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._translate(exc) from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise self._translate(exc) from exc

    def _up_to_date(self, latest: int) -> bool:
        with self.transaction(write=False) as c:
            if c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone() is None:
                return False
            row = c.execute("SELECT version FROM schema_version").fetchone()
            if row is None or int(row[0]) != latest:
                return False
            return c.execute("SELECT 1 FROM namespaces WHERE name = ?", (DEFAULT_NAMESPACE,)).fetchone() is not None

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        latest = len(migrations)
        with self.transaction(write=True) as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            if c.execute("SELECT version FROM schema_version").fetchone() is None:
                c.execute("INSERT INTO schema_version (version) VALUES (0)")
        while True:
            # One transaction per step, re-reading the version each time: another
            # process opening the same database may be migrating it too.
            with self.transaction(write=True) as c:
                version = int(c.execute("SELECT version FROM schema_version").fetchone()[0])
                if version > latest:
                    raise FailedPrecondition(
                        f"metadata database {self.path} has schema version {version}, "
                        f"newer than this hawser understands ({latest})",
                        hint="run the hawser version that wrote it, or a newer one",
                    )
                if version == latest:
                    return
                try:
                    for statement in migrations[version]:
                        c.execute(statement)
                    c.execute("UPDATE schema_version SET version = ?", (version + 1,))
                except sqlite3.Error as exc:
                    raise FailedPrecondition(
                        f"metadata database {self.path}: migration to schema version {version + 1} failed: {exc}",
                        hint="the database is unchanged at its previous version",
                    ) from exc

    @property
    def schema_version(self) -> int:
        """The database's schema version (equal to the code's after opening)."""
        with self.transaction(write=False) as c:
            return int(c.execute("SELECT version FROM schema_version").fetchone()[0])

    def ensure_namespace(self, c: sqlite3.Connection, namespace: str) -> None:
        check_identifier(namespace, "namespace")
        c.execute(
            "INSERT OR IGNORE INTO namespaces (name, labels, created_at) VALUES (?, '{}', ?)",
            (namespace, self.clock()),
        )
