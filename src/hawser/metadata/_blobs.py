"""Blob records: which namespace uses which committed blob, with the labels that carry GC references."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from hawser.errors import InvalidArgument, NotFound
from hawser.metadata._database import Database, dump_labels, load_labels
from hawser.metadata._types import DEFAULT_NAMESPACE, Blob, BlobRecords
from hawser.oci import Digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

class SQLBlobs(BlobRecords):
    def __init__(self, db: Database, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._db = db
        self.namespace = namespace  # the one a call names none of

    _BLOB_COLUMNS = "namespace, digest, size, labels, created_at, updated_at"

    @staticmethod
    def _blob(row: Sequence[Any]) -> Blob:
        return Blob(
            namespace=row[0],
            digest=Digest(row[1]),
            size=row[2],
            labels=load_labels(row[3]),
            created_at=row[4],
            updated_at=row[5],
        )

    def _select_blob(self, c: sqlite3.Connection, namespace: str, digest: str) -> Blob | None:
        row = c.execute(
            f"SELECT {self._BLOB_COLUMNS} FROM blobs WHERE namespace = ? AND digest = ?", (namespace, str(digest))
        ).fetchone()
        return None if row is None else self._blob(row)

    def record(
        self,
        digest: str,
        size: int,
        labels: Mapping[str, str] | None = None,
        *,
        namespace: str | None = None,
    ) -> Blob:
        """Record that the namespace uses the committed blob ``digest``; call it only
        once the blob is in the content store. Idempotent: recording again
        replaces the labels when given and keeps created_at. InvalidArgument if
        the digest is recorded with another size."""
        namespace = self.namespace if namespace is None else namespace
        digest = Digest(digest)
        if size < 0:
            raise InvalidArgument(f"blob {digest}: negative size {size}")
        text, now = (None if labels is None else dump_labels(labels)), self._db.clock()
        with self._db.transaction(write=True) as c:
            self._db.ensure_namespace(c, namespace)
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

    def get(self, digest: str, *, namespace: str | None = None) -> Blob:
        """NotFound if the namespace has no record of ``digest``."""
        namespace = self.namespace if namespace is None else namespace
        digest = Digest(digest)
        with self._db.transaction(write=False) as c:
            blob = self._select_blob(c, namespace, digest)
        if blob is None:
            raise NotFound(f"content {digest} not found in namespace {namespace}")
        return blob

    def list(self, *, namespace: str | None = None) -> list[Blob]:
        """The namespace's blob records, sorted by digest."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=False) as c:
            rows = c.execute(
                f"SELECT {self._BLOB_COLUMNS} FROM blobs WHERE namespace = ? ORDER BY digest", (namespace,)
            ).fetchall()
        return [self._blob(r) for r in rows]

    def update_labels(
        self,
        digest: str,
        labels: Mapping[str, str],
        *,
        merge: bool = False,
        namespace: str | None = None,
    ) -> Blob:
        """Replace a blob record's labels; with ``merge`` add or overwrite only the
        given keys, an empty value deleting its key (done in one transaction, so
        two processes adding labels do not lose each other's). NotFound if
        absent. Idempotent."""
        namespace = self.namespace if namespace is None else namespace
        digest = Digest(digest)
        dump_labels(labels)
        with self._db.transaction(write=True) as c:
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
                text = dump_labels(combined)
            else:
                text = dump_labels(labels)
            c.execute(
                "UPDATE blobs SET labels = ?, updated_at = ? WHERE namespace = ? AND digest = ?",
                (text, self._db.clock(), namespace, str(digest)),
            )
            blob = self._select_blob(c, namespace, digest)
        assert blob is not None
        return blob

    def delete(self, digest: str, *, namespace: str | None = None) -> None:
        """Delete the record (not the file: GC removes files no record or lease
        needs). NotFound if absent."""
        namespace = self.namespace if namespace is None else namespace
        digest = Digest(digest)
        with self._db.transaction(write=True) as c:
            cursor = c.execute("DELETE FROM blobs WHERE namespace = ? AND digest = ?", (namespace, str(digest)))
            if cursor.rowcount == 0:
                raise NotFound(f"content {digest} not found in namespace {namespace}")
