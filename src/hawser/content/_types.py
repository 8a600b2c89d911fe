"""The content store contract: roles as Protocols, and the Info and Status records."""

from __future__ import annotations

from collections.abc import Iterator
from types import TracebackType

from hawser._dataclass import dataclass
from hawser.oci import Digest

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import BinaryIO, Protocol, runtime_checkable
else:
    # The role Protocols below are for type checkers; at run time they are plain
    # base classes, and implementations name the roles they fill.
    Protocol = object

    def runtime_checkable(cls):
        return cls


@dataclass(frozen=True, slots=True)
class Info:
    """A committed blob. ``created`` is when it was committed (seconds since the epoch)."""

    digest: Digest
    size: int
    created: float


@dataclass(frozen=True, slots=True)
class Status:
    """An ingest in progress (or interrupted, waiting to be resumed).

    ``offset`` is how many bytes are on disk, ``total`` the announced size (None
    when the source did not say), ``updated_at`` the time of the last write.
    """

    ref: str
    offset: int
    total: int | None
    expected: Digest
    started_at: float
    updated_at: float


class Writer(Protocol):
    """One open ingest, holding its lock until ``commit`` or ``close``."""

    @property
    def ref(self) -> str:
        """The ingest's ref, as given to ``Ingester.writer``."""
        ...

    @property
    def expected(self) -> Digest:
        """The digest the bytes must hash to."""
        ...

    @property
    def offset(self) -> int:
        """Bytes written so far, counting those kept from an interrupted attempt:
        a resumed download continues from here (an HTTP Range request)."""
        ...

    @property
    def data_path(self) -> str:
        """The file holding the bytes written so far: read it (never write it) to
        replay them, e.g. into a decompressor when a download resumes."""
        ...

    def truncate(self, size: int = 0) -> None:
        """Drop every byte after ``size`` and carry on writing from there (the hash
        is rebuilt from the bytes kept). InvalidArgument unless
        ``0 <= size <= offset``; FailedPrecondition after commit or close.
        Idempotent."""
        ...

    def write(self, data: bytes) -> int:
        """Append all of ``data`` and hash it; returns ``len(data)``.

        Raises DataLoss when this would go past the announced total (the ingest
        is removed), ResourceExhausted on ENOSPC (the partial data is removed),
        FailedPrecondition after commit or close. Not idempotent: bytes append.
        """
        ...

    def commit(self, size: int | None = None, expected: Digest | None = None) -> Info:
        """Make the bytes a blob: fsync, verify size and digest, rename into place.

        ``size`` defaults to the announced total (unchecked when neither is
        known); ``expected`` must equal the writer's own when given
        (InvalidArgument otherwise). A size or digest mismatch raises DataLoss
        naming the ref, the expected and the actual value, and removes the
        ingest so a retry fetches again. ENOSPC raises ResourceExhausted. When
        another process committed the same blob meanwhile, the ingest is
        discarded and that blob's Info returned. Afterwards the writer is
        closed, unless the error was InvalidArgument; committing twice raises
        FailedPrecondition (not idempotent).
        """
        ...

    def close(self) -> None:
        """Release the lock and keep the partial data for a later resume.
        Idempotent; does not commit."""
        ...

    def __enter__(self) -> Writer:
        """The writer itself."""
        ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """``close()``: keeps the partial data, never commits."""
        ...


class Provider(Protocol):
    def info(self, digest: Digest) -> Info:
        """Size and commit time of a blob. NotFound if it is not committed.
        Unimplemented for a digest algorithm hawser does not store. Read-only, so idempotent."""
        ...

    def open(self, digest: Digest) -> BinaryIO:
        """Open a committed blob for reading (the caller closes it). NotFound if
        absent. The bytes are not re-verified: hash them as they stream if the
        reader cares (a layer unpack does). Read-only, so idempotent."""
        ...

    def read_all(self, digest: Digest, limit: int | None = None) -> bytes:
        """The whole blob, verified against its digest: for manifests, indexes
        and configs. NotFound if absent, ResourceExhausted when it is larger
        than ``limit``, DataLoss if the bytes on disk no longer match. Read-only, so idempotent."""
        ...


class Ingester(Protocol):
    def writer(self, ref: str, *, expected: Digest, total: int | None, wait: bool = True) -> Writer:
        """Open the ingest ``ref`` for writing ``expected`` (``total`` bytes if known).

        Takes the ingest's lock: with ``wait`` it blocks until another writer of
        the same ref (in any process) is done, otherwise it raises Unavailable.
        Raises AlreadyExists when ``expected`` is already committed (callers
        treat that as done). Resumes an interrupted ingest of the same digest
        from its offset; restarts from zero when the earlier attempt was for a
        different digest or holds more bytes than ``total``. InvalidArgument for
        an empty ref or a negative total, Unimplemented for a digest algorithm
        hawser does not store, ResourceExhausted on ENOSPC. Not idempotent: a
        second call for the same ref (even from this process) waits for, or is
        refused by, the first writer until it is closed.
        """
        ...


class IngestManager(Protocol):
    def status(self, ref: str) -> Status:
        """Progress of the ingest ``ref``. NotFound if there is none. Read-only, so idempotent."""
        ...

    def list_statuses(self) -> list[Status]:
        """Every ingest on disk, in use or interrupted, sorted by ref. Read-only, so idempotent."""
        ...

    def abort(self, ref: str, *, wait: bool = True) -> None:
        """Remove the ingest ``ref`` and its partial data.

        Waits for the ingest's lock (a live writer finishes first); with
        ``wait=False`` raises Unavailable instead of waiting. NotFound if there
        is no such ingest, so not idempotent. A process that holds an open
        Writer on ``ref`` must close it first, or waiting deadlocks.
        """
        ...

    def in_use(self, ref: str) -> bool:
        """True while a live writer (in any process) holds the ingest's lock.
        False for an absent ingest. Never blocks."""
        ...


class Manager(Protocol):
    def info(self, digest: Digest) -> Info:
        """As Provider.info."""
        ...

    def walk(self) -> Iterator[Info]:
        """Every committed blob, sorted by digest. Read-only, so idempotent."""
        ...

    def delete(self, digest: Digest) -> None:
        """Remove a committed blob. NotFound if absent (not idempotent). Readers
        that opened it already keep reading; the caller removes the metadata
        record first (GC does)."""
        ...

    def usage(self) -> int:
        """Bytes on disk: every committed blob plus every ingest's files. Read-only, so idempotent."""
        ...


@runtime_checkable
class Verifier(Protocol):
    def verify(self, digest: Digest) -> bool:
        """Re-hash a committed blob: True when the bytes still match the digest.
        NotFound if absent. Read-only, so idempotent."""
        ...


@runtime_checkable
class PathProvider(Protocol):
    def path(self, digest: Digest) -> str:
        """Filesystem path of a committed blob, for tools that want a file name.
        NotFound if absent. Never write to it (it is mode 0444)."""
        ...


@runtime_checkable
class Cleaner(Protocol):
    def cleanup(self) -> list[str]:
        """Remove leftovers no ref can name (an ingest directory a crash left
        before its ``ref`` file was written). Skips anything locked. Returns the
        paths removed. Idempotent."""
        ...


class Store(Provider, Ingester, IngestManager, Manager, Protocol):
    """A whole content store: every role above."""

