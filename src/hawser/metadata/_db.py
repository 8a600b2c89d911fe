"""The metadata database: SQLite in WAL mode, shared by every hawser process.

Concurrency.  Several processes open ``metadata.db`` at once (the CLI beside the
daemon).  WAL lets readers run beside the one writer; ``busy_timeout`` makes a
writer wait for another instead of failing at once.  Every write transaction
starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, so it waits
(with the busy timeout) rather than failing half-way when a read transaction
would have to upgrade to a write.

Threads.  One ``Metadata`` owns one connection, opened with
``check_same_thread=False`` and guarded by a re-entrant lock held for a whole
transaction: threads of one process take turns, which costs nothing that
matters next to SQLite's own single-writer rule, and one object is simpler to
pass around than a connection per thread.  Do not use one ``Metadata`` across
``fork()``; open a new one in the child.

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
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from types import MappingProxyType, TracebackType

from hawser._dataclass import dataclass
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
from hawser.metadata._labels import RESOURCE_CONTENT, RESOURCE_INGEST, RESOURCE_SNAPSHOT_PREFIX
from hawser.metadata._schema import MIGRATIONS, Migration
from hawser.oci import Descriptor, Digest

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_NAMESPACE = "default"
DEFAULT_BUSY_TIMEOUT = 30.0

# containerd's identifier rule, for namespaces and lease ids.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
_MAX_IDENTIFIER = 76
# containerd caps a label (key + value) at 4 KiB; labels travel in gRPC messages.
_MAX_LABEL = 4096
_MAX_NAME = 4096


# --- records -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Mapping[str, str]
    created_at: float


@dataclass(frozen=True, slots=True)
class Image:
    """A name pointing at a manifest or index (``target``)."""

    namespace: str
    name: str
    target: Descriptor
    labels: Mapping[str, str]
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Blob:
    """A namespace's record of a committed blob; its labels carry GC references."""

    namespace: str
    digest: Digest
    size: int
    labels: Mapping[str, str]
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Lease:
    """Protects the resources attached to it from GC until deleted or expired."""

    namespace: str
    id: str
    labels: Mapping[str, str]
    created_at: float
    expires_at: float | None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(frozen=True, slots=True)
class Container:
    """A container's lasting record; its live state comes from runc and conmon."""

    namespace: str
    id: str
    name: str
    image: str
    image_id: str
    snapshotter: str
    snapshot_key: str
    config: Mapping[str, Any]
    labels: Mapping[str, str]
    created_at: float


@dataclass(frozen=True, slots=True)
class SandboxRecord:
    """A pod sandbox's lasting record (CRI). ``state``: "ready" or "notready"."""

    namespace: str
    id: str
    name: str
    config: Mapping[str, Any]
    labels: Mapping[str, str]
    state: str
    status: Mapping[str, Any]
    created_at: float


@dataclass(frozen=True, slots=True)
class LeaseResource:
    """``kind`` is "content" (key: a digest), "ingest" (key: an ingest ref) or
    "snapshot/<snapshotter>" (key: a snapshot key)."""

    kind: str
    key: str


# --- validation --------------------------------------------------------------


def _check_identifier(value: str, what: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_IDENTIFIER or not _IDENTIFIER.match(value):
        raise InvalidArgument(
            f"invalid {what} {value!r}",
            hint=f"use letters and digits, separated by single '.', '_' or '-', at most {_MAX_IDENTIFIER} characters",
        )
    return value


def _check_image_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME or any(c.isspace() for c in name):
        raise InvalidArgument(f"invalid image name {name!r}: must be a non-empty reference without spaces")
    return name


def _check_target(target: Descriptor) -> Descriptor:
    if not isinstance(target, Descriptor):
        raise InvalidArgument(f"image target must be a Descriptor, not {type(target).__name__}")
    Digest(target.digest)
    if not target.media_type:
        raise InvalidArgument(f"image target {target.digest} has no media type")
    if target.size < 0:
        raise InvalidArgument(f"image target {target.digest} has a negative size")
    return target


def _dump_labels(labels: Mapping[str, str] | None) -> str:
    labels = labels or {}
    for key, value in labels.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise InvalidArgument(f"invalid label {key!r}={value!r}: keys and values are strings, keys non-empty")
        if len(key) + len(value) > _MAX_LABEL:
            raise InvalidArgument(f"label {key!r} is longer than {_MAX_LABEL} bytes")
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def _load_labels(text: str) -> Mapping[str, str]:
    data = json.loads(text)
    return MappingProxyType({str(k): str(v) for k, v in data.items()})


def _check_resource(kind: str, key: str) -> None:
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


class Metadata:
    """Records of namespaces, images, blobs and leases in ``path`` (an SQLite file).

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
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if str(mode).lower() != "wal":
                mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise FailedPrecondition(f"metadata database {self.path}: cannot switch to WAL mode (got {mode})")
            # Per connection, and only outside a transaction: set here, once.
            conn.execute("PRAGMA foreign_keys = ON")
            # FULL: a committed record survives power loss (records are written
            # only after the data they describe is on disk; keep it that way).
            conn.execute("PRAGMA synchronous = FULL")
            if not self._up_to_date(len(migrations)):
                self._migrate(migrations)
                with self._transaction(write=True) as c:
                    self._ensure_namespace(c, DEFAULT_NAMESPACE)
        except sqlite3.Error as exc:
            conn.close()
            self._conn = None
            raise self._translate(exc) from exc
        except BaseException:
            conn.close()
            self._conn = None
            raise

    def __repr__(self) -> str:
        return f"Metadata({self.path!r})"

    def close(self) -> None:
        """Close the connection. Idempotent."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Metadata:
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
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        """One transaction, holding this object's lock throughout.

        ``write`` takes SQLite's write lock at BEGIN (see the module docstring).
        A read transaction sees one consistent snapshot of the database.
        """
        with self._lock:
            conn = self._conn
            if conn is None:
                raise FailedPrecondition(f"metadata database {self.path} is closed")
            try:
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
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
        with self._transaction(write=False) as c:
            if c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'").fetchone() is None:
                return False
            row = c.execute("SELECT version FROM schema_version").fetchone()
            if row is None or int(row[0]) != latest:
                return False
            return c.execute("SELECT 1 FROM namespaces WHERE name = ?", (DEFAULT_NAMESPACE,)).fetchone() is not None

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        latest = len(migrations)
        with self._transaction(write=True) as c:
            c.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            if c.execute("SELECT version FROM schema_version").fetchone() is None:
                c.execute("INSERT INTO schema_version (version) VALUES (0)")
        while True:
            # One transaction per step, re-reading the version each time: another
            # process opening the same database may be migrating it too.
            with self._transaction(write=True) as c:
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
        with self._transaction(write=False) as c:
            return int(c.execute("SELECT version FROM schema_version").fetchone()[0])

    def _ensure_namespace(self, c: sqlite3.Connection, namespace: str) -> None:
        _check_identifier(namespace, "namespace")
        c.execute(
            "INSERT OR IGNORE INTO namespaces (name, labels, created_at) VALUES (?, '{}', ?)",
            (namespace, self.clock()),
        )

    # --- namespaces ------------------------------------------------------------

    def create_namespace(self, name: str, *, labels: Mapping[str, str] | None = None) -> Namespace:
        """Create an empty namespace. AlreadyExists if it exists, InvalidArgument
        for a malformed name. Not idempotent."""
        _check_identifier(name, "namespace")
        text, now = _dump_labels(labels), self.clock()
        with self._transaction(write=True) as c:
            try:
                c.execute("INSERT INTO namespaces (name, labels, created_at) VALUES (?, ?, ?)", (name, text, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"namespace {name} already exists") from None
        return Namespace(name=name, labels=_load_labels(text), created_at=now)

    def get_namespace(self, name: str) -> Namespace:
        """NotFound if absent."""
        with self._transaction(write=False) as c:
            row = c.execute("SELECT name, labels, created_at FROM namespaces WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"namespace {name} not found")
        return Namespace(name=row[0], labels=_load_labels(row[1]), created_at=row[2])

    def list_namespaces(self) -> list[Namespace]:
        """Every namespace, sorted by name."""
        with self._transaction(write=False) as c:
            rows = c.execute("SELECT name, labels, created_at FROM namespaces ORDER BY name").fetchall()
        return [Namespace(name=r[0], labels=_load_labels(r[1]), created_at=r[2]) for r in rows]

    def delete_namespace(self, name: str) -> None:
        """Delete an empty namespace. NotFound if absent, FailedPrecondition if it
        still holds images, blobs or leases."""
        with self._transaction(write=True) as c:
            try:
                cursor = c.execute("DELETE FROM namespaces WHERE name = ?", (name,))
            except sqlite3.IntegrityError:
                raise FailedPrecondition(
                    f"namespace {name} is not empty", hint="remove its images, content and leases first"
                ) from None
            if cursor.rowcount == 0:
                raise NotFound(f"namespace {name} not found")

    # --- images ----------------------------------------------------------------

    _IMAGE_COLUMNS = "namespace, name, media_type, digest, size, labels, created_at, updated_at"

    @staticmethod
    def _image(row: Sequence[Any]) -> Image:
        return Image(
            namespace=row[0],
            name=row[1],
            target=Descriptor(media_type=row[2], digest=Digest(row[3]), size=row[4]),
            labels=_load_labels(row[5]),
            created_at=row[6],
            updated_at=row[7],
        )

    def _select_image(self, c: sqlite3.Connection, namespace: str, name: str) -> Image | None:
        row = c.execute(
            f"SELECT {self._IMAGE_COLUMNS} FROM images WHERE namespace = ? AND name = ?", (namespace, name)
        ).fetchone()
        return None if row is None else self._image(row)

    def create_image(
        self,
        name: str,
        target: Descriptor,
        labels: Mapping[str, str] | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> Image:
        """Record image ``name`` pointing at ``target`` (its media type, digest and
        size are kept). AlreadyExists if the name is taken; InvalidArgument for a
        bad name, target or labels. Not idempotent: see ``put_image``."""
        _check_image_name(name)
        _check_target(target)
        text, now = _dump_labels(labels), self.clock()
        with self._transaction(write=True) as c:
            self._ensure_namespace(c, namespace)
            try:
                c.execute(
                    f"INSERT INTO images ({self._IMAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (namespace, name, target.media_type, str(target.digest), target.size, text, now, now),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"image {name} already exists in namespace {namespace}") from None
            image = self._select_image(c, namespace, name)
        assert image is not None
        return image

    def get_image(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> Image:
        """NotFound if there is no image ``name`` in the namespace."""
        with self._transaction(write=False) as c:
            image = self._select_image(c, namespace, name)
        if image is None:
            raise NotFound(f"image {name} not found in namespace {namespace}")
        return image

    def list_images(
        self, *, namespace: str = DEFAULT_NAMESPACE, name: str | None = None, prefix: str | None = None
    ) -> list[Image]:
        """Images of the namespace sorted by name; ``name`` keeps only that exact
        name, ``prefix`` only names starting with it. Never raises NotFound."""
        query = f"SELECT {self._IMAGE_COLUMNS} FROM images WHERE namespace = ?"
        args: list[Any] = [namespace]
        if name is not None:
            query += " AND name = ?"
            args.append(name)
        if prefix:
            # substr, not LIKE: '_' is common in names and a LIKE wildcard.
            query += " AND substr(name, 1, ?) = ?"
            args += [len(prefix), prefix]
        with self._transaction(write=False) as c:
            rows = c.execute(query + " ORDER BY name", args).fetchall()
        return [self._image(r) for r in rows]

    def update_image(
        self,
        name: str,
        *,
        target: Descriptor | None = None,
        labels: Mapping[str, str] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> Image:
        """Change an image's target and/or replace its labels (None keeps them).
        NotFound if absent. Idempotent."""
        if target is not None:
            _check_target(target)
        text = None if labels is None else _dump_labels(labels)
        now = self.clock()
        with self._transaction(write=True) as c:
            current = self._select_image(c, namespace, name)
            if current is None:
                raise NotFound(f"image {name} not found in namespace {namespace}")
            new = target or current.target
            c.execute(
                "UPDATE images SET media_type = ?, digest = ?, size = ?, labels = COALESCE(?, labels), updated_at = ?"
                " WHERE namespace = ? AND name = ?",
                (new.media_type, str(new.digest), new.size, text, now, namespace, name),
            )
            image = self._select_image(c, namespace, name)
        assert image is not None
        return image

    def put_image(
        self,
        name: str,
        target: Descriptor,
        labels: Mapping[str, str] | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> Image:
        """Create image ``name`` or move it to ``target`` (a pull moving a tag).
        ``labels`` replace the old ones when given. Idempotent; keeps created_at."""
        _check_image_name(name)
        _check_target(target)
        text, now = (None if labels is None else _dump_labels(labels)), self.clock()
        with self._transaction(write=True) as c:
            self._ensure_namespace(c, namespace)
            c.execute(
                f"INSERT INTO images ({self._IMAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (namespace, name) DO UPDATE SET media_type = excluded.media_type,"
                " digest = excluded.digest, size = excluded.size, updated_at = excluded.updated_at,"
                " labels = CASE WHEN ? IS NULL THEN labels ELSE excluded.labels END",
                (namespace, name, target.media_type, str(target.digest), target.size, text or "{}", now, now, text),
            )
            image = self._select_image(c, namespace, name)
        assert image is not None
        return image

    def delete_image(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Forget image ``name`` (its blobs go at the next GC). NotFound if absent."""
        with self._transaction(write=True) as c:
            cursor = c.execute("DELETE FROM images WHERE namespace = ? AND name = ?", (namespace, name))
            if cursor.rowcount == 0:
                raise NotFound(f"image {name} not found in namespace {namespace}")

    # --- containers --------------------------------------------------------------

    _CONTAINER_COLUMNS = "namespace, id, name, image, image_id, snapshotter, snapshot_key, config, labels, created_at"

    @staticmethod
    def _container(row: Sequence[Any]) -> Container:
        return Container(namespace=row[0], id=row[1], name=row[2], image=row[3], image_id=row[4], snapshotter=row[5],
                         snapshot_key=row[6], config=json.loads(row[7]), labels=_load_labels(row[8]),
                         created_at=row[9])

    def create_container(self, container: Container) -> Container:
        """Record a new container. AlreadyExists if its id or name is taken. Not idempotent."""
        _check_identifier(container.namespace, "namespace")
        text = _dump_labels(container.labels)
        with self._transaction(write=True) as c:
            self._ensure_namespace(c, container.namespace)
            taken = c.execute("SELECT id FROM containers WHERE namespace = ? AND (id = ? OR name = ?)",
                              (container.namespace, container.id, container.name)).fetchone()
            if taken is not None:
                what = f"id {container.id}" if taken[0] == container.id else f"name {container.name!r}"
                raise AlreadyExists(f"container {what} is already in use by container {taken[0][:12]}",
                                    hint="remove that container or choose another name")
            c.execute(f"INSERT INTO containers ({self._CONTAINER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (container.namespace, container.id, container.name, container.image, container.image_id,
                       container.snapshotter, container.snapshot_key, json.dumps(dict(container.config)), text,
                       container.created_at))
        return container

    def get_container(self, id_: str, *, namespace: str = DEFAULT_NAMESPACE) -> Container:
        """The container with this exact id. NotFound if absent."""
        with self._transaction(write=False) as c:
            row = c.execute(f"SELECT {self._CONTAINER_COLUMNS} FROM containers WHERE namespace = ? AND id = ?",
                            (namespace, id_)).fetchone()
        if row is None:
            raise NotFound(f"container {id_} not found")
        return self._container(row)

    def list_containers(self, *, namespace: str = DEFAULT_NAMESPACE) -> list[Container]:
        """Every container of the namespace, oldest first."""
        with self._transaction(write=False) as c:
            rows = c.execute(f"SELECT {self._CONTAINER_COLUMNS} FROM containers WHERE namespace = ?"
                             " ORDER BY created_at, id", (namespace,)).fetchall()
        return [self._container(r) for r in rows]

    def delete_container(self, id_: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Forget a container (its snapshot goes at the next GC). Idempotent."""
        with self._transaction(write=True) as c:
            c.execute("DELETE FROM containers WHERE namespace = ? AND id = ?", (namespace, id_))

    # --- sandboxes -----------------------------------------------------------------

    _SANDBOX_COLUMNS = "namespace, id, name, config, labels, state, status, created_at"

    @staticmethod
    def _sandbox(row: Sequence[Any]) -> SandboxRecord:
        return SandboxRecord(namespace=row[0], id=row[1], name=row[2], config=json.loads(row[3]),
                             labels=_load_labels(row[4]), state=row[5], status=json.loads(row[6]),
                             created_at=row[7])

    def create_sandbox(self, sandbox: SandboxRecord) -> SandboxRecord:
        """Record a new pod sandbox. AlreadyExists (naming the holder) if its id or name is taken."""
        _check_identifier(sandbox.namespace, "namespace")
        with self._transaction(write=True) as c:
            self._ensure_namespace(c, sandbox.namespace)
            taken = c.execute("SELECT id FROM sandboxes WHERE namespace = ? AND (id = ? OR name = ?)",
                              (sandbox.namespace, sandbox.id, sandbox.name)).fetchone()
            if taken is not None:
                raise AlreadyExists(f"pod sandbox name {sandbox.name!r} is already in use by {taken[0]}")
            c.execute(f"INSERT INTO sandboxes ({self._SANDBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (sandbox.namespace, sandbox.id, sandbox.name, json.dumps(dict(sandbox.config)),
                       _dump_labels(sandbox.labels), sandbox.state, json.dumps(dict(sandbox.status)),
                       sandbox.created_at))
        return sandbox

    def get_sandbox(self, id_: str, *, namespace: str = DEFAULT_NAMESPACE) -> SandboxRecord:
        """The sandbox with this exact id. NotFound if absent."""
        with self._transaction(write=False) as c:
            row = c.execute(f"SELECT {self._SANDBOX_COLUMNS} FROM sandboxes WHERE namespace = ? AND id = ?",
                            (namespace, id_)).fetchone()
        if row is None:
            raise NotFound(f"pod sandbox {id_} not found")
        return self._sandbox(row)

    def find_sandbox(self, name: str, *, namespace: str = DEFAULT_NAMESPACE) -> SandboxRecord | None:
        """The sandbox of this unique name, if any."""
        with self._transaction(write=False) as c:
            row = c.execute(f"SELECT {self._SANDBOX_COLUMNS} FROM sandboxes WHERE namespace = ? AND name = ?",
                            (namespace, name)).fetchone()
        return None if row is None else self._sandbox(row)

    def list_sandboxes(self, *, namespace: str = DEFAULT_NAMESPACE) -> list[SandboxRecord]:
        """Every sandbox of the namespace, oldest first."""
        with self._transaction(write=False) as c:
            rows = c.execute(f"SELECT {self._SANDBOX_COLUMNS} FROM sandboxes WHERE namespace = ?"
                             " ORDER BY created_at, id", (namespace,)).fetchall()
        return [self._sandbox(r) for r in rows]

    def update_sandbox(self, id_: str, *, namespace: str = DEFAULT_NAMESPACE, state: str | None = None,
                       status: Mapping[str, Any] | None = None) -> SandboxRecord:
        """Set a sandbox's state and/or status. NotFound if absent."""
        with self._transaction(write=True) as c:
            if state is not None:
                c.execute("UPDATE sandboxes SET state = ? WHERE namespace = ? AND id = ?", (state, namespace, id_))
            if status is not None:
                c.execute("UPDATE sandboxes SET status = ? WHERE namespace = ? AND id = ?",
                          (json.dumps(dict(status)), namespace, id_))
            row = c.execute(f"SELECT {self._SANDBOX_COLUMNS} FROM sandboxes WHERE namespace = ? AND id = ?",
                            (namespace, id_)).fetchone()
        if row is None:
            raise NotFound(f"pod sandbox {id_} not found")
        return self._sandbox(row)

    def delete_sandbox(self, id_: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Forget a sandbox. Idempotent."""
        with self._transaction(write=True) as c:
            c.execute("DELETE FROM sandboxes WHERE namespace = ? AND id = ?", (namespace, id_))

    # --- blob records ------------------------------------------------------------

    _BLOB_COLUMNS = "namespace, digest, size, labels, created_at, updated_at"

    @staticmethod
    def _blob(row: Sequence[Any]) -> Blob:
        return Blob(
            namespace=row[0],
            digest=Digest(row[1]),
            size=row[2],
            labels=_load_labels(row[3]),
            created_at=row[4],
            updated_at=row[5],
        )

    def _select_blob(self, c: sqlite3.Connection, namespace: str, digest: str) -> Blob | None:
        row = c.execute(
            f"SELECT {self._BLOB_COLUMNS} FROM blobs WHERE namespace = ? AND digest = ?", (namespace, str(digest))
        ).fetchone()
        return None if row is None else self._blob(row)

    def record_blob(
        self,
        digest: str,
        size: int,
        labels: Mapping[str, str] | None = None,
        *,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> Blob:
        """Record that the namespace uses the committed blob ``digest``; call it only
        once the blob is in the content store. Idempotent: recording again
        replaces the labels when given and keeps created_at. InvalidArgument if
        the digest is recorded with another size."""
        digest = Digest(digest)
        if size < 0:
            raise InvalidArgument(f"blob {digest}: negative size {size}")
        text, now = (None if labels is None else _dump_labels(labels)), self.clock()
        with self._transaction(write=True) as c:
            self._ensure_namespace(c, namespace)
            current = self._select_blob(c, namespace, digest)
            if current is None:
                c.execute(
                    f"INSERT INTO blobs ({self._BLOB_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                    (namespace, str(digest), size, text or "{}", now, now),
                )
            elif current.size != size:
                raise InvalidArgument(f"blob {digest} is recorded with size {current.size}, not {size}")
            elif text is not None:
                c.execute(
                    "UPDATE blobs SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
                    (text, now, namespace, str(digest)),
                )
            blob = self._select_blob(c, namespace, digest)
        assert blob is not None
        return blob

    def get_blob(self, digest: str, *, namespace: str = DEFAULT_NAMESPACE) -> Blob:
        """NotFound if the namespace has no record of ``digest``."""
        digest = Digest(digest)
        with self._transaction(write=False) as c:
            blob = self._select_blob(c, namespace, digest)
        if blob is None:
            raise NotFound(f"content {digest} not found in namespace {namespace}")
        return blob

    def list_blobs(self, *, namespace: str = DEFAULT_NAMESPACE) -> list[Blob]:
        """The namespace's blob records, sorted by digest."""
        with self._transaction(write=False) as c:
            rows = c.execute(
                f"SELECT {self._BLOB_COLUMNS} FROM blobs WHERE namespace = ? ORDER BY digest", (namespace,)
            ).fetchall()
        return [self._blob(r) for r in rows]

    def update_blob_labels(
        self,
        digest: str,
        labels: Mapping[str, str],
        *,
        merge: bool = False,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> Blob:
        """Replace a blob record's labels; with ``merge`` add or overwrite only the
        given keys, an empty value deleting its key (done in one transaction, so
        two processes adding labels do not lose each other's). NotFound if
        absent. Idempotent."""
        digest = Digest(digest)
        _dump_labels(labels)
        with self._transaction(write=True) as c:
            current = self._select_blob(c, namespace, digest)
            if current is None:
                raise NotFound(f"content {digest} not found in namespace {namespace}")
            if merge:
                combined = dict(current.labels)
                for key, value in labels.items():
                    if value:
                        combined[key] = value
                    else:
                        combined.pop(key, None)
                text = _dump_labels(combined)
            else:
                text = _dump_labels(labels)
            c.execute(
                "UPDATE blobs SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
                (text, self.clock(), namespace, str(digest)),
            )
            blob = self._select_blob(c, namespace, digest)
        assert blob is not None
        return blob

    def delete_blob(self, digest: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Delete the record (not the file: GC removes files no record or lease
        needs). NotFound if absent."""
        digest = Digest(digest)
        with self._transaction(write=True) as c:
            cursor = c.execute("DELETE FROM blobs WHERE namespace = ? AND digest = ?", (namespace, str(digest)))
            if cursor.rowcount == 0:
                raise NotFound(f"content {digest} not found in namespace {namespace}")

    # --- leases ------------------------------------------------------------------

    @staticmethod
    def _lease(row: Sequence[Any]) -> Lease:
        return Lease(namespace=row[0], id=row[1], labels=_load_labels(row[2]), created_at=row[3], expires_at=row[4])

    def _select_lease(self, c: sqlite3.Connection, namespace: str, lease_id: str) -> Lease | None:
        row = c.execute(
            "SELECT namespace, id, labels, created_at, expires_at FROM leases WHERE namespace = ? AND id = ?",
            (namespace, lease_id),
        ).fetchone()
        return None if row is None else self._lease(row)

    def create_lease(
        self,
        ttl: float | None = None,
        *,
        id: str | None = None,
        labels: Mapping[str, str] | None = None,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> str:
        """Create a lease that expires ``ttl`` seconds from now (never when None)
        and return its id (a random one unless ``id`` is given; ``get_lease``
        has the rest). AlreadyExists if ``id`` is taken, InvalidArgument for a
        bad id or a ttl that is not positive. Not idempotent."""
        if ttl is not None and not ttl > 0:
            raise InvalidArgument(f"lease ttl must be positive, not {ttl}")
        now = self.clock()
        lease_id = id if id is not None else f"{int(now)}-{os.urandom(8).hex()}"
        _check_identifier(lease_id, "lease id")
        text = _dump_labels(labels)
        expires_at = None if ttl is None else now + ttl
        with self._transaction(write=True) as c:
            self._ensure_namespace(c, namespace)
            try:
                c.execute(
                    "INSERT INTO leases (namespace, id, labels, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                    (namespace, lease_id, text, now, expires_at),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"lease {lease_id} already exists in namespace {namespace}") from None
        return lease_id

    def get_lease(self, lease_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> Lease:
        """NotFound if absent (an expired lease is still found until GC deletes it)."""
        with self._transaction(write=False) as c:
            lease = self._select_lease(c, namespace, lease_id)
        if lease is None:
            raise NotFound(f"lease {lease_id} not found in namespace {namespace}")
        return lease

    def list_leases(self, *, namespace: str = DEFAULT_NAMESPACE) -> list[Lease]:
        """The namespace's leases, expired ones included, sorted by id."""
        with self._transaction(write=False) as c:
            rows = c.execute(
                "SELECT namespace, id, labels, created_at, expires_at FROM leases WHERE namespace = ? ORDER BY id",
                (namespace,),
            ).fetchall()
        return [self._lease(r) for r in rows]

    def delete_lease(self, lease_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Delete a lease and its resource list; what it protected becomes
        collectable unless something else references it. NotFound if absent."""
        with self._transaction(write=True) as c:
            cursor = c.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (namespace, lease_id))
            if cursor.rowcount == 0:
                raise NotFound(f"lease {lease_id} not found in namespace {namespace}")

    def add_resource(self, lease_id: str, kind: str, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Attach a resource to a lease; attach it *before* creating the resource
        (see ``hawser.metadata._gc``). Idempotent. NotFound if the lease is
        absent, FailedPrecondition if it has expired (it would protect nothing),
        InvalidArgument for an unknown kind or a malformed key."""
        _check_resource(kind, key)
        with self._transaction(write=True) as c:
            lease = self._select_lease(c, namespace, lease_id)
            if lease is None:
                raise NotFound(f"lease {lease_id} not found in namespace {namespace}")
            if lease.expired(self.clock()):
                raise FailedPrecondition(
                    f"lease {lease_id} in namespace {namespace} has expired", hint="create a new lease"
                )
            c.execute(
                "INSERT OR IGNORE INTO lease_resources (namespace, lease, kind, key) VALUES (?, ?, ?, ?)",
                (namespace, lease_id, kind, key),
            )

    # The name hawser.images uses.
    add_lease_resource = add_resource

    def remove_resource(self, lease_id: str, kind: str, key: str, *, namespace: str = DEFAULT_NAMESPACE) -> None:
        """Detach a resource from a lease. Idempotent for the resource; NotFound if
        the lease is absent."""
        with self._transaction(write=True) as c:
            if self._select_lease(c, namespace, lease_id) is None:
                raise NotFound(f"lease {lease_id} not found in namespace {namespace}")
            c.execute(
                "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND kind = ? AND key = ?",
                (namespace, lease_id, kind, key),
            )

    def list_resources(self, lease_id: str, *, namespace: str = DEFAULT_NAMESPACE) -> list[LeaseResource]:
        """The resources attached to a lease, sorted. NotFound if the lease is absent."""
        with self._transaction(write=False) as c:
            if self._select_lease(c, namespace, lease_id) is None:
                raise NotFound(f"lease {lease_id} not found in namespace {namespace}")
            rows = c.execute(
                "SELECT kind, key FROM lease_resources WHERE namespace = ? AND lease = ? ORDER BY kind, key",
                (namespace, lease_id),
            ).fetchall()
        return [LeaseResource(kind=r[0], key=r[1]) for r in rows]
