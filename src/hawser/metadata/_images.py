"""Image records: a name in a namespace pointing at a manifest or index."""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from hawser.errors import AlreadyExists, NotFound
from hawser.metadata._database import Database, check_image_name, check_target, dump_labels, load_labels
from hawser.metadata._types import DEFAULT_NAMESPACE, Image, ImageRecords
from hawser.oci import Descriptor, Digest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

class SQLImages(ImageRecords):
    def __init__(self, db: Database, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._db = db
        self.namespace = namespace  # the one a call names none of

    _IMAGE_COLUMNS = "namespace, name, media_type, digest, size, labels, created_at, updated_at, annotations"

    @staticmethod
    def _image(row: Sequence[Any]) -> Image:
        return Image(
            namespace=row[0],
            name=row[1],
            target=Descriptor(media_type=row[2], digest=Digest(row[3]), size=row[4],
                              annotations=load_labels(row[8])),
            labels=load_labels(row[5]),
            created_at=row[6],
            updated_at=row[7],
        )

    def _select_image(self, c: sqlite3.Connection, namespace: str, name: str) -> Image | None:
        row = c.execute(
            f"SELECT {self._IMAGE_COLUMNS} FROM images WHERE namespace = ? AND name = ?", (namespace, name)
        ).fetchone()
        return None if row is None else self._image(row)

    def create(
        self,
        name: str,
        target: Descriptor,
        labels: Mapping[str, str] | None = None,
        *,
        namespace: str | None = None,
    ) -> Image:
        """Record image ``name`` pointing at ``target`` (its media type, digest and
        size are kept). AlreadyExists if the name is taken; InvalidArgument for a
        bad name, target or labels. Not idempotent: see ``put_image``."""
        namespace = self.namespace if namespace is None else namespace
        check_image_name(name)
        check_target(target)
        text, now = dump_labels(labels), self._db.clock()
        with self._db.transaction(write=True) as c:
            self._db.ensure_namespace(c, namespace)
            try:
                c.execute(
                    f"INSERT INTO images ({self._IMAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (namespace, name, target.media_type, str(target.digest), target.size, text, now, now,
                     dump_labels(target.annotations)),
                )
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"image {name} already exists in namespace {namespace}") from None
            image = self._select_image(c, namespace, name)
        assert image is not None
        return image

    def get(self, name: str, *, namespace: str | None = None) -> Image:
        """NotFound if there is no image ``name`` in the namespace."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=False) as c:
            image = self._select_image(c, namespace, name)
        if image is None:
            raise NotFound(f"image {name} not found in namespace {namespace}")
        return image

    def list(
        self, *, namespace: str | None = None, name: str | None = None, prefix: str | None = None
    ) -> list[Image]:
        """Images of the namespace sorted by name; ``name`` keeps only that exact
        name, ``prefix`` only names starting with it. Never raises NotFound."""
        namespace = self.namespace if namespace is None else namespace
        query = f"SELECT {self._IMAGE_COLUMNS} FROM images WHERE namespace = ?"
        args: list[Any] = [namespace]
        if name is not None:
            query += " AND name = ?"
            args.append(name)
        if prefix:
            # substr, not LIKE: '_' is common in names and a LIKE wildcard.
            query += " AND substr(name, 1, ?) = ?"
            args += [len(prefix), prefix]
        with self._db.transaction(write=False) as c:
            rows = c.execute(query + " ORDER BY name", args).fetchall()
        return [self._image(r) for r in rows]

    def update(
        self,
        name: str,
        *,
        target: Descriptor | None = None,
        labels: Mapping[str, str] | None = None,
        merge: bool = False,
        namespace: str | None = None,
    ) -> Image:
        """Change an image's target and/or replace its labels (None keeps them);
        with ``merge`` add or overwrite only the given keys, an empty value
        deleting its key (in one transaction, so two clients setting different
        keys keep each other's). NotFound if absent. Idempotent."""
        namespace = self.namespace if namespace is None else namespace
        if target is not None:
            check_target(target)
        text = None if labels is None else dump_labels(labels)
        now = self._db.clock()
        with self._db.transaction(write=True) as c:
            current = self._select_image(c, namespace, name)
            if current is None:
                raise NotFound(f"image {name} not found in namespace {namespace}")
            if merge and labels is not None:
                combined = dict(current.labels)
                for key, value in labels.items():
                    if value:
                        combined[key] = value
                    else:
                        combined.pop(key, None)
                text = dump_labels(combined)
            new = target or current.target
            c.execute(
                "UPDATE images SET media_type = ?, digest = ?, size = ?, labels = COALESCE(?, labels), updated_at = ?,"
                " annotations = ? WHERE namespace = ? AND name = ?",
                (new.media_type, str(new.digest), new.size, text, now, dump_labels(new.annotations), namespace, name),
            )
            image = self._select_image(c, namespace, name)
        assert image is not None
        return image

    def put(
        self,
        name: str,
        target: Descriptor,
        labels: Mapping[str, str] | None = None,
        *,
        namespace: str | None = None,
    ) -> Image:
        """Create image ``name`` or move it to ``target`` (a pull moving a tag).
        ``labels`` replace the old ones when given. Idempotent; keeps created_at."""
        namespace = self.namespace if namespace is None else namespace
        check_image_name(name)
        check_target(target)
        text, now = (None if labels is None else dump_labels(labels)), self._db.clock()
        with self._db.transaction(write=True) as c:
            self._db.ensure_namespace(c, namespace)
            c.execute(
                f"INSERT INTO images ({self._IMAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (namespace, name) DO UPDATE SET media_type = excluded.media_type,"
                " digest = excluded.digest, size = excluded.size, updated_at = excluded.updated_at,"
                " annotations = excluded.annotations,"
                " labels = CASE WHEN ? IS NULL THEN labels ELSE excluded.labels END",
                (namespace, name, target.media_type, str(target.digest), target.size, text or "{}", now, now,
                 dump_labels(target.annotations), text),
            )
            image = self._select_image(c, namespace, name)
        assert image is not None
        return image

    def delete(self, name: str, *, namespace: str | None = None) -> None:
        """Forget image ``name`` (its blobs go at the next GC). NotFound if absent."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=True) as c:
            cursor = c.execute("DELETE FROM images WHERE namespace = ? AND name = ?", (namespace, name))
            if cursor.rowcount == 0:
                raise NotFound(f"image {name} not found in namespace {namespace}")
