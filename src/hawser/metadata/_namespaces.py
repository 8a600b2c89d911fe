"""Namespaces: containerd's, holding every other kind of record."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping

from hawser.errors import AlreadyExists, FailedPrecondition, NotFound
from hawser.metadata._database import Database, check_identifier, dump_labels, load_labels
from hawser.metadata._types import Namespace, NamespaceStore


class SQLNamespaces(NamespaceStore):
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, name: str, *, labels: Mapping[str, str] | None = None) -> Namespace:
        """Create an empty namespace. AlreadyExists if it exists, InvalidArgument
        for a malformed name. Not idempotent."""
        check_identifier(name, "namespace")
        text, now = dump_labels(labels), self._db.clock()
        with self._db.transaction(write=True) as c:
            try:
                c.execute("INSERT INTO namespaces (name, labels, created_at) VALUES (?, ?, ?)", (name, text, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"namespace {name} already exists") from None
        return Namespace(name=name, labels=load_labels(text), created_at=now)

    def get(self, name: str) -> Namespace:
        """NotFound if absent."""
        with self._db.transaction(write=False) as c:
            row = c.execute("SELECT name, labels, created_at FROM namespaces WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"namespace {name} not found")
        return Namespace(name=row[0], labels=load_labels(row[1]), created_at=row[2])

    def list(self) -> list[Namespace]:
        """Every namespace, sorted by name."""
        with self._db.transaction(write=False) as c:
            rows = c.execute("SELECT name, labels, created_at FROM namespaces ORDER BY name").fetchall()
        return [Namespace(name=r[0], labels=load_labels(r[1]), created_at=r[2]) for r in rows]

    def update(self, name: str, *, labels: Mapping[str, str]) -> Namespace:
        """Replace a namespace's labels. NotFound if absent. Idempotent."""
        text = dump_labels(labels)
        with self._db.transaction(write=True) as c:
            if c.execute("UPDATE namespaces SET labels = ? WHERE name = ?", (text, name)).rowcount == 0:
                raise NotFound(f"namespace {name} not found")
            row = c.execute("SELECT name, labels, created_at FROM namespaces WHERE name = ?", (name,)).fetchone()
        return Namespace(name=row[0], labels=load_labels(row[1]), created_at=row[2])

    def delete(self, name: str) -> None:
        """Delete an empty namespace. NotFound if absent, FailedPrecondition if it
        still holds images, blobs or leases."""
        with self._db.transaction(write=True) as c:
            try:
                cursor = c.execute("DELETE FROM namespaces WHERE name = ?", (name,))
            except sqlite3.IntegrityError:
                held = [table for table in ("images", "blobs", "leases", "containers", "sandboxes")
                        if c.execute(f"SELECT 1 FROM {table} WHERE namespace = ? LIMIT 1", (name,)).fetchone()]
                # containerd's words, which its clients show as they are.
                raise FailedPrecondition(
                    f"namespace {name} must be empty, but it still has {', '.join(held) or 'records'}",
                    hint="remove them first") from None
            if cursor.rowcount == 0:
                raise NotFound(f"namespace {name} not found")
