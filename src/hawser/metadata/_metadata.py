"""``Metadata``: the metadata database opened once, with a store per record kind."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from hawser.metadata._blobs import SQLBlobs
from hawser.metadata._containers import SQLContainers
from hawser.metadata._database import DEFAULT_BUSY_TIMEOUT, Database, check_identifier
from hawser.metadata._images import SQLImages
from hawser.metadata._leases import SQLLeases
from hawser.metadata._namespaces import SQLNamespaces
from hawser.metadata._sandboxes import SQLSandboxes
from hawser.metadata._schema import MIGRATIONS, Migration
from hawser.metadata._types import DEFAULT_NAMESPACE


class Metadata:
    """The records under ``path`` (an SQLite file): ``namespaces``, ``images``,
    ``blobs``, ``containers``, ``sandboxes`` and ``leases``, each a small store
    over one connection (``db``), which GC walks as a whole.  The record stores
    use ``namespace`` where a call names none (``in_namespace`` for another)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self._bind(Database(path, clock=clock, busy_timeout=busy_timeout, migrations=migrations), DEFAULT_NAMESPACE)

    def _bind(self, db: Database, namespace: str) -> None:
        self.db = db
        self.namespace = namespace
        self.namespaces = SQLNamespaces(db)
        self.images = SQLImages(db, namespace)
        self.blobs = SQLBlobs(db, namespace)
        self.containers = SQLContainers(db, namespace)
        self.sandboxes = SQLSandboxes(db, namespace)
        self.leases = SQLLeases(db, namespace)

    def in_namespace(self, namespace: str) -> Metadata:
        """The same database, its record stores scoped to ``namespace`` for calls
        that name none (sharing the connection: close one, close all)."""
        check_identifier(namespace, "namespace")
        view = Metadata.__new__(Metadata)
        view._bind(self.db, namespace)
        return view

    @property
    def path(self) -> str:
        return self.db.path

    @property
    def root(self) -> str:
        """The directory holding the database (GC's lock lives there)."""
        return self.db.root

    @property
    def clock(self) -> Callable[[], float]:
        return self.db.clock

    @property
    def schema_version(self) -> int:
        return self.db.schema_version

    def __repr__(self) -> str:
        return f"Metadata({self.path!r})"

    def close(self) -> None:
        """Close the connection. Idempotent."""
        self.db.close()

    def __enter__(self) -> Metadata:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
