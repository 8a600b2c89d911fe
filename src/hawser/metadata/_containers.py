"""Container records: what a container was made from; its live state is runc's and conmon's."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from hawser.errors import AlreadyExists, InvalidArgument, NotFound
from hawser.metadata._database import Database, check_identifier, dump_labels, load_labels
from hawser.metadata._types import DEFAULT_NAMESPACE, Container, ContainerRecords

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

# docker's container names (runtime's create checks the same).
_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,511}$")


class _Config(Mapping[str, object]):
    """A record's config, decoded from its JSON text when first read.

    A listing then decodes only the configs its caller reads: containerd's
    Tasks.List reads ids and state, not the OCI spec a containerd container's
    config holds (~14 KB of small objects each), and holding all of them
    decoded at once grew the heap by 2 MB at ``ctr tasks ls`` of 100
    containers, memory hawserd kept after they were gone.  Decoding twice when
    two threads race is harmless: the text stays."""

    __slots__ = ("_data", "_text")

    def __init__(self, text: str) -> None:
        self._text = text
        self._data: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        data = self._data
        if data is None:
            data = self._data = json.loads(self._text)
        return data

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def get(self, key: str, default: Any = None) -> Any:
        # A key the text does not spell is not there: answered without decoding
        # (a runtime handler's name, which a containerd container's config lacks).
        if self._data is None and not self._spelled(key):
            return default
        return self._decoded().get(key, default)

    def __contains__(self, key: object) -> bool:
        if self._data is None and isinstance(key, str) and not self._spelled(key):
            return False
        return key in self._decoded()

    def _spelled(self, key: str) -> bool:
        """Whether the text may hold ``key``: False only for a key JSON writes
        as it is (printable ASCII, no quote or backslash) that is not in it."""
        if not key.isascii() or not key.isprintable() or '"' in key or "\\" in key:
            return True
        return f'"{key}"' in self._text

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())


class SQLContainers(ContainerRecords):
    def __init__(self, db: Database, namespace: str = DEFAULT_NAMESPACE) -> None:
        self._db = db
        self.namespace = namespace  # the one a call names none of

    _CONTAINER_COLUMNS = "namespace, id, name, image, image_id, snapshotter, snapshot_key, config, labels, created_at"

    @staticmethod
    def _container(row: Sequence[Any]) -> Container:
        return Container(namespace=row[0], id=row[1], name=row[2], image=row[3], image_id=row[4], snapshotter=row[5],
                         snapshot_key=row[6], config=_Config(row[7]), labels=load_labels(row[8]),
                         created_at=row[9])

    def create(self, container: Container) -> Container:
        """Record a new container. AlreadyExists if its id is taken in any
        namespace (a container's runtime state, its bundle, runc's state and
        exit file, is kept by id alone), or its name in its namespace. Not idempotent."""
        check_identifier(container.namespace, "namespace")
        text = dump_labels(container.labels)
        with self._db.transaction(write=True) as c:
            self._db.ensure_namespace(c, container.namespace)
            taken = c.execute("SELECT namespace, id FROM containers WHERE id = ? OR (namespace = ? AND name = ?)",
                              (container.id, container.namespace, container.name)).fetchone()
            if taken is not None:
                what = f"id {container.id}" if taken[1] == container.id else f"name {container.name!r}"
                where = "" if taken[0] == container.namespace else f" in namespace {taken[0]!r}"
                raise AlreadyExists(f"container {what} is already in use by container {taken[1][:12]}{where}",
                                    hint="remove that container or choose another id or name")
            c.execute(f"INSERT INTO containers ({self._CONTAINER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (container.namespace, container.id, container.name, container.image, container.image_id,
                       container.snapshotter, container.snapshot_key, json.dumps(dict(container.config)), text,
                       container.created_at))
        return container

    def get(self, id_: str, *, namespace: str | None = None) -> Container:
        """The container with this exact id. NotFound if absent."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=False) as c:
            row = c.execute(f"SELECT {self._CONTAINER_COLUMNS} FROM containers WHERE namespace = ? AND id = ?",
                            (namespace, id_)).fetchone()
        if row is None:
            raise NotFound(f"container {id_} not found")
        return self._container(row)

    def find(self, id_: str) -> Container | None:
        """The container with this id in whichever namespace has it (an id is
        one container's in every namespace: see ``create``); None if none has."""
        with self._db.transaction(write=False) as c:
            row = c.execute(f"SELECT {self._CONTAINER_COLUMNS} FROM containers WHERE id = ?", (id_,)).fetchone()
        return None if row is None else self._container(row)

    def list(self, *, namespace: str | None = None) -> list[Container]:
        """Every container of the namespace, oldest first."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=False) as c:
            rows = c.execute(f"SELECT {self._CONTAINER_COLUMNS} FROM containers WHERE namespace = ?"
                             " ORDER BY created_at, id", (namespace,)).fetchall()
        return [self._container(r) for r in rows]

    def update(self, id_: str, *, namespace: str | None = None, image: str | None = None,
               image_id: str | None = None, snapshot_key: str | None = None,
               labels: Mapping[str, str] | None = None, merge: bool = False,
               config: Mapping[str, Mapping[str, Any]] | None = None,
               drop: Mapping[str, Sequence[str]] | None = None) -> Container:
        """Change a container's record in one transaction; None keeps a field.
        ``labels`` replace the record's, or with ``merge`` set only the given
        keys (an empty value deleting its key). ``config`` maps top-level keys
        of the record's config to the entries to set in the mapping under
        that key (made, or replacing a value that is not a mapping), so that
        writers of different entries keep each other's; ``drop`` maps
        top-level keys to the entries to delete under them. NotFound if absent,
        InvalidArgument for a bad label. Idempotent."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=True) as c:
            row = c.execute(f"SELECT {self._CONTAINER_COLUMNS} FROM containers WHERE namespace = ? AND id = ?",
                            (namespace, id_)).fetchone()
            if row is None:
                raise NotFound(f"container {id_} not found in namespace {namespace}")
            current = self._container(row)
            new_labels = dict(current.labels)
            if labels is not None:
                if not merge:
                    new_labels = {}
                for key, value in labels.items():
                    if value:
                        new_labels[key] = value
                    else:
                        new_labels.pop(key, None)
            new_config = dict(current.config)
            for key, entries in (config or {}).items():
                under = new_config.get(key)
                new_config[key] = {**(under if isinstance(under, dict) else {}), **entries}
            for key, names in (drop or {}).items():
                under = new_config.get(key)
                if isinstance(under, dict):
                    new_config[key] = {k: v for k, v in under.items() if k not in names}
            c.execute("UPDATE containers SET image = ?, image_id = ?, snapshot_key = ?, labels = ?, config = ?"
                      " WHERE namespace = ? AND id = ?",
                      (current.image if image is None else image, current.image_id if image_id is None else image_id,
                       current.snapshot_key if snapshot_key is None else snapshot_key, dump_labels(new_labels),
                       json.dumps(new_config), namespace, id_))
            row = c.execute(f"SELECT {self._CONTAINER_COLUMNS} FROM containers WHERE namespace = ? AND id = ?",
                            (namespace, id_)).fetchone()
        return self._container(row)

    def rename(self, id_: str, name: str, *, namespace: str | None = None) -> Container:
        """Give a container another name. NotFound if absent, AlreadyExists if
        another container of its namespace has the name, InvalidArgument for a
        name docker would refuse. Idempotent."""
        if not _NAME_RE.match(name):
            raise InvalidArgument(f"invalid container name {name!r}: use letters, digits, '_', '.', '-' "
                                  "(a letter or digit first)")
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=True) as c:
            taken = c.execute("SELECT id FROM containers WHERE namespace = ? AND name = ? AND id != ?",
                              (namespace, name, id_)).fetchone()
            if taken is not None:
                raise AlreadyExists(f"container name {name!r} is already in use by container {taken[0][:12]}",
                                    hint="remove that container or choose another name")
            if c.execute("UPDATE containers SET name = ? WHERE namespace = ? AND id = ?",
                         (name, namespace, id_)).rowcount == 0:
                raise NotFound(f"container {id_} not found in namespace {namespace}")
            row = c.execute(f"SELECT {self._CONTAINER_COLUMNS} FROM containers WHERE namespace = ? AND id = ?",
                            (namespace, id_)).fetchone()
        return self._container(row)

    def delete(self, id_: str, *, namespace: str | None = None) -> None:
        """Forget a container (its snapshot goes at the next GC). Idempotent."""
        namespace = self.namespace if namespace is None else namespace
        with self._db.transaction(write=True) as c:
            c.execute("DELETE FROM containers WHERE namespace = ? AND id = ?", (namespace, id_))
