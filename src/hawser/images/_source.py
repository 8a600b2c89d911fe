"""Where a pull's blobs come from: a registry, or an OCI layout being imported."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import Protocol

from hawser.oci import Descriptor


class BlobSource(Protocol):
    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> AbstractContextManager[Iterable[bytes]]:
        """The blob's bytes from ``offset`` on, as chunks. The caller verifies
        the digest. Raises NotFound, Unavailable, DataLoss, DeadlineExceeded."""

    def describe(self) -> str:
        """Where the blobs come from, for error messages."""
