"""Pod sandbox records."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from hawser.errors import AlreadyExists, NotFound
from hawser.metadata._database import Database, check_identifier, dump_labels, load_labels
from hawser.metadata._types import DEFAULT_NAMESPACE, SandboxRecord, SandboxRecords

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

class SQLSandboxes(SandboxRecords):
    def __init__(self, db: Database, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._db = db
        self.namespace = namespace  # the one a call names none of

    _SANDBOX_COLUMNS = "namespace, id, name, config, labels, state, status, created_at"

    @staticmethod
    def _sandbox(row: Sequence[Any]) -> SandboxRecord:
        return SandboxRecord(namespace=row[0], id=row[1], name=row[2], config=json.loads(row[3]),
                             labels=load_labels(row[4]), state=row[5], status=json.loads(row[6]),
                             created_at=row[7])

    def create(self, sandbox: SandboxRecord) -> SandboxRecord:
        """Record a new pod sandbox. AlreadyExists (naming the holder) if its id or name is taken."""
        check_identifier(sandbox.namespace, "namespace")
        with self._db.transaction(write=True) as c:
            self._db.ensure_namespace(c, sandbox.namespace)
            taken = c.execute("SELECT id FROM sandboxes WHERE namespace = ? AND (id = ? OR name = ?)",
                              (sandbox.namespace, sandbox.id, sandbox.name)).fetchone()
            if taken is not None:
                raise AlreadyExists(f"pod sandbox name {sandbox.name!r} is already in use by {taken[0]}")
            c.execute(f"INSERT INTO sandboxes ({self._SANDBOX_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                      (sandbox.namespace, sandbox.id, sandbox.name, json.dumps(dict(sandbox.config)),
                       dump_labels(sandbox.labels), sandbox.state, json.dumps(dict(sandbox.status)),
                       sandbox.created_at))
        return sandbox

    def get(self, id_: str, *, namespace: str | None = None) -> SandboxRecord:
        """The sandbox with this exact id. NotFound if absent."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=False) as c:
            row = c.execute(f"SELECT {self._SANDBOX_COLUMNS} FROM sandboxes WHERE namespace = ? AND id = ?",
                            (namespace, id_)).fetchone()
        if row is None:
            raise NotFound(f"pod sandbox {id_} not found")
        return self._sandbox(row)

    def find(self, name: str, *, namespace: str | None = None) -> SandboxRecord | None:
        """The sandbox of this unique name, if any."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=False) as c:
            row = c.execute(f"SELECT {self._SANDBOX_COLUMNS} FROM sandboxes WHERE namespace = ? AND name = ?",
                            (namespace, name)).fetchone()
        return None if row is None else self._sandbox(row)

    def list(self, *, namespace: str | None = None) -> list[SandboxRecord]:
        """Every sandbox of the namespace, oldest first."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=False) as c:
            rows = c.execute(f"SELECT {self._SANDBOX_COLUMNS} FROM sandboxes WHERE namespace = ?"
                             " ORDER BY created_at, id", (namespace,)).fetchall()
        return [self._sandbox(r) for r in rows]

    def update(self, id_: str, *, namespace: str | None = None, state: str | None = None,
               status: Mapping[str, Any] | None = None,
               status_entries: Mapping[str, Any] | None = None) -> SandboxRecord:
        """Set a sandbox's state and/or status. ``status`` replaces the whole
        status; ``status_entries`` sets only the keys it names in it (after
        ``status``), in the same transaction, so that a writer of one entry
        keeps the others'. NotFound if absent."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=True) as c:
            if state is not None:
                c.execute("UPDATE sandboxes SET state = ? WHERE namespace = ? AND id = ?", (state, namespace, id_))
            if status is not None:
                c.execute("UPDATE sandboxes SET status = ? WHERE namespace = ? AND id = ?",
                          (json.dumps(dict(status)), namespace, id_))
            if status_entries:
                row = c.execute("SELECT status FROM sandboxes WHERE namespace = ? AND id = ?",
                                (namespace, id_)).fetchone()
                if row is not None:
                    c.execute("UPDATE sandboxes SET status = ? WHERE namespace = ? AND id = ?",
                              (json.dumps({**json.loads(row[0]), **status_entries}), namespace, id_))
            row = c.execute(f"SELECT {self._SANDBOX_COLUMNS} FROM sandboxes WHERE namespace = ? AND id = ?",
                            (namespace, id_)).fetchone()
        if row is None:
            raise NotFound(f"pod sandbox {id_} not found")
        return self._sandbox(row)

    def delete(self, id_: str, *, namespace: str | None = None) -> None:
        """Forget a sandbox. Idempotent."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=True) as c:
            c.execute("DELETE FROM sandboxes WHERE namespace = ? AND id = ?", (namespace, id_))
