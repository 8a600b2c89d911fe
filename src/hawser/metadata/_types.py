"""The metadata contract: the records, and one small role per record kind.

Each role is a store over the same SQLite database (``Metadata`` opens it and
hands them out as ``metadata.images``, ``.containers`` and so on), as
containerd's metadata package gives its images store, containers store,
leases manager and sandbox store one bolt database.  Every record is scoped to
a namespace (keyword ``namespace``); a namespace comes into existence with the
first record written in it, and ``"default"`` exists from the start.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence

from hawser._dataclass import dataclass
from hawser.oci import Descriptor, Digest

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any, Protocol
else:
    Protocol = object  # the roles are for type checkers; at run time plain base classes

DEFAULT_NAMESPACE = "default"


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


# --- roles ---------------------------------------------------------------------


class NamespaceStore(Protocol):
    def create(self, name: str, *, labels: Mapping[str, str] | None = None) -> Namespace:
        """Create an empty namespace. AlreadyExists if it exists, InvalidArgument
        for a malformed name. Not idempotent."""
        ...

    def get(self, name: str) -> Namespace:
        """NotFound if absent."""
        ...

    def list(self) -> list[Namespace]:
        """Every namespace, sorted by name."""
        ...

    def update(self, name: str, *, labels: Mapping[str, str]) -> Namespace:
        """Replace a namespace's labels. NotFound if absent. Idempotent."""
        ...

    def delete(self, name: str) -> None:
        """Delete an empty namespace. NotFound if absent, FailedPrecondition if it
        still holds records."""
        ...


class ImageRecords(Protocol):
    namespace: str  # the one a call names none of

    def create(self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None, *,
               namespace: str | None = None) -> Image:
        """Record image ``name`` pointing at ``target``. AlreadyExists if the name
        is taken; InvalidArgument for a bad name, target or labels. Not
        idempotent: see ``put``."""
        ...

    def get(self, name: str, *, namespace: str | None = None) -> Image:
        """NotFound if there is no image ``name`` in the namespace."""
        ...

    def list(self, *, namespace: str | None = None, name: str | None = None,
             prefix: str | None = None) -> list[Image]:
        """Images of the namespace sorted by name; ``name`` keeps only that exact
        name, ``prefix`` only names starting with it. Never raises NotFound."""
        ...

    def update(self, name: str, *, target: Descriptor | None = None, labels: Mapping[str, str] | None = None,
               merge: bool = False, namespace: str | None = None) -> Image:
        """Change an image's target and/or replace its labels (None keeps them);
        with ``merge`` add or overwrite only the given keys, an empty value
        deleting its key. NotFound if absent. Idempotent."""
        ...

    def put(self, name: str, target: Descriptor, labels: Mapping[str, str] | None = None, *,
            namespace: str | None = None) -> Image:
        """Create image ``name`` or move it to ``target`` (a pull moving a tag).
        ``labels`` replace the old ones when given. Idempotent; keeps created_at."""
        ...

    def delete(self, name: str, *, namespace: str | None = None) -> None:
        """Forget image ``name`` (its blobs go at the next GC). NotFound if absent."""
        ...


class BlobRecords(Protocol):
    """The namespaces' records of committed blobs (the files are the content store's)."""

    namespace: str  # the one a call names none of

    def record(self, digest: str, size: int, labels: Mapping[str, str] | None = None, *,
               namespace: str | None = None) -> Blob:
        """Record that the namespace uses the committed blob ``digest``; call it
        only once the blob is in the content store. Idempotent: recording again
        replaces the labels when given and keeps created_at. InvalidArgument if
        the digest is recorded with another size."""
        ...

    def get(self, digest: str, *, namespace: str | None = None) -> Blob:
        """NotFound if the namespace has no record of ``digest``."""
        ...

    def list(self, *, namespace: str | None = None) -> list[Blob]:
        """The namespace's blob records, sorted by digest."""
        ...

    def update_labels(self, digest: str, labels: Mapping[str, str], *, merge: bool = False,
                      namespace: str | None = None) -> Blob:
        """Replace a record's labels; with ``merge`` add or overwrite only the
        given keys, an empty value deleting its key. NotFound if absent. Idempotent."""
        ...

    def delete(self, digest: str, *, namespace: str | None = None) -> None:
        """Delete the record (not the file: GC removes files no record or lease
        needs). NotFound if absent."""
        ...


class ContainerRecords(Protocol):
    namespace: str  # the one a call names none of

    def create(self, container: Container) -> Container:
        """Record a new container. AlreadyExists if its id or name is taken. Not idempotent."""
        ...

    def get(self, id_: str, *, namespace: str | None = None) -> Container:
        """The container with this exact id. NotFound if absent."""
        ...

    def find(self, id_: str) -> Container | None:
        """The container with this id in whichever namespace has it; None if none has."""
        ...

    def list(self, *, namespace: str | None = None) -> list[Container]:
        """Every container of the namespace, oldest first."""
        ...

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
        ...

    def rename(self, id_: str, name: str, *, namespace: str | None = None) -> Container:
        """Give a container another name. NotFound if absent, AlreadyExists if
        another container of its namespace has the name, InvalidArgument for an
        invalid name. Idempotent."""
        ...

    def delete(self, id_: str, *, namespace: str | None = None) -> None:
        """Forget a container (its snapshot goes at the next GC). Idempotent."""
        ...


class SandboxRecords(Protocol):
    namespace: str  # the one a call names none of

    def create(self, sandbox: SandboxRecord) -> SandboxRecord:
        """Record a new pod sandbox. AlreadyExists (naming the holder) if its id or name is taken."""
        ...

    def get(self, id_: str, *, namespace: str | None = None) -> SandboxRecord:
        """The sandbox with this exact id. NotFound if absent."""
        ...

    def find(self, name: str, *, namespace: str | None = None) -> SandboxRecord | None:
        """The sandbox of this unique name, if any."""
        ...

    def list(self, *, namespace: str | None = None) -> list[SandboxRecord]:
        """Every sandbox of the namespace, oldest first."""
        ...

    def update(self, id_: str, *, namespace: str | None = None, state: str | None = None,
               status: Mapping[str, Any] | None = None,
               status_entries: Mapping[str, Any] | None = None) -> SandboxRecord:
        """Set a sandbox's state and/or status. ``status`` replaces the whole
        status; ``status_entries`` sets only the keys it names in it (after
        ``status``), in the same transaction, so that a writer of one entry
        keeps the others'. NotFound if absent."""
        ...

    def delete(self, id_: str, *, namespace: str | None = None) -> None:
        """Forget a sandbox. Idempotent."""
        ...


class LeaseManager(Protocol):
    namespace: str  # the one a call names none of

    def create(self, ttl: float | None = None, *, id: str | None = None, labels: Mapping[str, str] | None = None,
               namespace: str | None = None, expires_at: float | None = None) -> str:
        """Create a lease that expires ``ttl`` seconds from now, or at the
        clock's time ``expires_at`` (never when both are None; one in the past
        makes a lease the next GC deletes), and return its id. AlreadyExists
        if ``id`` is taken, InvalidArgument for a bad id, a ttl that is not
        positive, or both ttl and expires_at. Not idempotent."""
        ...

    def get(self, lease_id: str, *, namespace: str | None = None) -> Lease:
        """NotFound if absent (an expired lease is still found until GC deletes it)."""
        ...

    def list(self, *, namespace: str | None = None) -> list[Lease]:
        """The namespace's leases, expired ones included, sorted by id."""
        ...

    def delete(self, lease_id: str, *, namespace: str | None = None) -> None:
        """Delete a lease and its resource list. NotFound if absent."""
        ...

    def add_resource(self, lease_id: str, kind: str, key: str, *, namespace: str | None = None) -> None:
        """Attach a resource to a lease *before* creating the resource. Idempotent.
        NotFound if the lease is absent, FailedPrecondition if it has expired,
        InvalidArgument for an unknown kind or a malformed key."""
        ...

    def remove_resource(self, lease_id: str, kind: str, key: str, *, namespace: str | None = None) -> None:
        """Detach a resource from a lease. Idempotent for the resource; NotFound
        if the lease is absent."""
        ...

    def list_resources(self, lease_id: str, *, namespace: str | None = None
                       ) -> builtins.list[LeaseResource]:
        """The resources attached to a lease, sorted. NotFound if the lease is absent."""
        ...
