"""Leases: what protects resources an operation is still making from GC."""

from __future__ import annotations

import builtins
import os
import sqlite3
from collections.abc import Mapping, Sequence

from hawser.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from hawser.metadata._database import Database, check_lease_id, check_resource, dump_labels, load_labels
from hawser.metadata._types import DEFAULT_NAMESPACE, Lease, LeaseManager, LeaseResource

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

class SQLLeases(LeaseManager):
    def __init__(self, db: Database, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._db = db
        self.namespace = namespace  # the one a call names none of

    @staticmethod
    def _lease(row: Sequence[Any]) -> Lease:
        return Lease(namespace=row[0], id=row[1], labels=load_labels(row[2]), created_at=row[3], expires_at=row[4])

    def _select_lease(self, c: sqlite3.Connection, namespace: str, lease_id: str) -> Lease | None:
        row = c.execute(
            "SELECT namespace, id, labels, created_at, expires_at FROM leases WHERE namespace = ? AND id = ?",
            (namespace, lease_id),
        ).fetchone()
        return None if row is None else self._lease(row)

    def create(
        self,
        ttl: float | None = None,
        *,
        id: str | None = None,
        labels: Mapping[str, str] | None = None,
        namespace: str | None = None,
        expires_at: float | None = None,
    ) -> str:
        """Create a lease that expires ``ttl`` seconds from now, or at the
        clock's time ``expires_at`` (never when both are None; one in the past
        makes a lease the next GC deletes), and return its id (a random one
        unless ``id`` is given; ``get_lease`` has the rest). AlreadyExists if
        ``id`` is taken, InvalidArgument for a bad id, a ttl that is not
        positive, or both ttl and expires_at. Not idempotent."""
        namespace = self.namespace if namespace is None else namespace
        if ttl is not None and not ttl > 0:
            raise InvalidArgument(f"lease ttl must be positive, not {ttl}")
        if ttl is not None and expires_at is not None:
            raise InvalidArgument("a lease takes a ttl or an expiry time, not both")
        now = self._db.clock()
        lease_id = id if id is not None else f"{int(now)}-{os.urandom(8).hex()}"
        check_lease_id(lease_id)
        text = dump_labels(labels)
        if ttl is not None:
            expires_at = now + ttl
        with self._db.transaction(write=True) as c:
            self._db.ensure_namespace(c, namespace)
            try:
                c.execute(
                    "INSERT INTO leases (namespace, id, labels, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                    (namespace, lease_id, text, now, expires_at),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"lease {lease_id} already exists in namespace {namespace}") from None
        return lease_id

    def get(self, lease_id: str, *, namespace: str | None = None) -> Lease:
        """NotFound if absent (an expired lease is still found until GC deletes it)."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=False) as c:
            lease = self._select_lease(c, namespace, lease_id)
        if lease is None:
            raise NotFound(f"lease {lease_id} not found in namespace {namespace}")
        return lease

    def list(self, *, namespace: str | None = None) -> list[Lease]:
        """The namespace's leases, expired ones included, sorted by id."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=False) as c:
            rows = c.execute(
                "SELECT namespace, id, labels, created_at, expires_at FROM leases WHERE namespace = ? ORDER BY id",
                (namespace,),
            ).fetchall()
        return [self._lease(r) for r in rows]

    def delete(self, lease_id: str, *, namespace: str | None = None) -> None:
        """Delete a lease and its resource list; what it protected becomes
        collectable unless something else references it. NotFound if absent."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=True) as c:
            cursor = c.execute("DELETE FROM leases WHERE namespace = ? AND id = ?", (namespace, lease_id))
            if cursor.rowcount == 0:
                raise NotFound(f"lease {lease_id} not found in namespace {namespace}")

    def add_resource(self, lease_id: str, kind: str, key: str, *, namespace: str | None = None) -> None:
        """Attach a resource to a lease; attach it *before* creating the resource
        (see ``hawser.metadata._gc``). Idempotent. NotFound if the lease is
        absent, FailedPrecondition if it has expired (it would protect nothing),
        InvalidArgument for an unknown kind or a malformed key."""
        namespace = self.namespace if namespace is None else namespace
        check_resource(kind, key)
        with self._db.transaction(write=True) as c:
            lease = self._select_lease(c, namespace, lease_id)
            if lease is None:
                raise NotFound(f"lease {lease_id} not found in namespace {namespace}")
            if lease.expired(self._db.clock()):
                raise FailedPrecondition(
                    f"lease {lease_id} in namespace {namespace} has expired", hint="create a new lease"
                )
            c.execute(
                "INSERT OR IGNORE INTO lease_resources (namespace, lease, kind, key) VALUES (?, ?, ?, ?)",
                (namespace, lease_id, kind, key),
            )

    def remove_resource(self, lease_id: str, kind: str, key: str, *, namespace: str | None = None) -> None:
        """Detach a resource from a lease. Idempotent for the resource; NotFound if
        the lease is absent."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=True) as c:
            if self._select_lease(c, namespace, lease_id) is None:
                raise NotFound(f"lease {lease_id} not found in namespace {namespace}")
            c.execute(
                "DELETE FROM lease_resources WHERE namespace = ? AND lease = ? AND kind = ? AND key = ?",
                (namespace, lease_id, kind, key),
            )

    def list_resources(self, lease_id: str, *, namespace: str | None = None
                       ) -> builtins.list[LeaseResource]:
        """The resources attached to a lease, sorted. NotFound if the lease is absent."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=False) as c:
            if self._select_lease(c, namespace, lease_id) is None:
                raise NotFound(f"lease {lease_id} not found in namespace {namespace}")
            rows = c.execute(
                "SELECT kind, key FROM lease_resources WHERE namespace = ? AND lease = ? ORDER BY kind, key",
                (namespace, lease_id),
            ).fetchall()
        return [LeaseResource(kind=r[0], key=r[1]) for r in rows]
