"""Where a pull's blobs come from: a registry, or an OCI layout being imported."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from hawser.oci import Descriptor


class BlobSource(Protocol):
    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> AbstractContextManager[Iterable[bytes]]:
        """The blob's bytes from ``offset`` on, as chunks. The caller verifies
        the digest. Raises NotFound, Unavailable, DataLoss, DeadlineExceeded."""

    def describe(self) -> str:
        """Where the blobs come from, for error messages."""


class FileBlobSource:
    """Blobs read from files named by a callable (an OCI layout directory)."""

    CHUNK = 1 << 20

    def __init__(self, path_of: PathOf, what: str) -> None:
        self._path_of = path_of
        self._what = what

    def describe(self) -> str:
        return self._what

    @contextmanager
    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> Iterator[Iterable[bytes]]:
        with open(self._path_of(desc), "rb") as f:
            f.seek(offset)
            yield iter(lambda: f.read(self.CHUNK), b"")


class PathOf(Protocol):
    def __call__(self, desc: Descriptor) -> str: ...
