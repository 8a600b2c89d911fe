"""``Metadata``: the metadata database opened once, with a store per record kind."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from types import TracebackType

from hawser.metadata._blobs import SQLBlobs
from hawser.metadata._containers import SQLContainers
from hawser.metadata._database import DEFAULT_BUSY_TIMEOUT, Database
from hawser.metadata._images import SQLImages
from hawser.metadata._leases import SQLLeases
from hawser.metadata._namespaces import SQLNamespaces
from hawser.metadata._sandboxes import SQLSandboxes
from hawser.metadata._schema import MIGRATIONS, Migration


class Metadata:
    """The records under ``path`` (an SQLite file): ``namespaces``, ``images``,
    ``blobs``, ``containers``, ``sandboxes`` and ``leases``, each a small store
    over one connection (``db``), which GC walks as a whole."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.db = Database(path, clock=clock, busy_timeout=busy_timeout, migrations=migrations)
        self.namespaces = SQLNamespaces(self.db)
        self.images = SQLImages(self.db)
        self.blobs = SQLBlobs(self.db)
        self.containers = SQLContainers(self.db)
        self.sandboxes = SQLSandboxes(self.db)
        self.leases = SQLLeases(self.db)

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
