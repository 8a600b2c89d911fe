"""Digests: ``algorithm:hex``, validated at the edge (OCI image spec, descriptor.md)."""

from __future__ import annotations

import functools
import re

from hawser.errors import InvalidArgument, Unimplemented

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    import hashlib
    from typing import Any

_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_ENCODED = {"sha256": re.compile(r"^[a-f0-9]{64}$"), "sha512": re.compile(r"^[a-f0-9]{128}$")}


class Digest(str):
    """A validated digest string. Only sha256 and sha512 are accepted."""

    __slots__ = ()

    def __new__(cls, value: str) -> Digest:
        if isinstance(value, Digest):
            return value
        if not isinstance(value, str) or not _DIGEST.match(value):
            raise InvalidArgument(f"invalid digest {value!r}: expected algorithm:hex")
        algorithm, encoded = value.split(":", 1)
        pattern = _ENCODED.get(algorithm)
        if pattern is None:
            raise Unimplemented(
                f"unsupported digest algorithm {algorithm!r} in {value!r}",
                hint="hawser verifies sha256 and sha512 digests",
            )
        if not pattern.match(encoded):
            raise InvalidArgument(f"invalid {algorithm} digest {value!r}: wrong length or not lowercase hex")
        return super().__new__(cls, value)

    @property
    def algorithm(self) -> str:
        return self.split(":", 1)[0]

    @property
    def encoded(self) -> str:
        return self.split(":", 1)[1]

    def hasher(self) -> hashlib._Hash:
        """A fresh hash object of this digest's algorithm."""
        import hashlib  # OpenSSL loads in ~3 ms: only when something is hashed

        return hashlib.new(self.algorithm)

    @classmethod
    def of(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(f"{algorithm}:{_hash_bytes(algorithm, data)}")

    @classmethod
    def from_hasher(cls, hasher: hashlib._Hash) -> Digest:
        return cls(f"{hasher.name}:{hasher.hexdigest()}")


_SMALL = 1 << 20


def _hash_bytes(algorithm: str, data: bytes) -> str:
    """Hex digest of ``data``. The manifests and configs a container start reads
    (a few KB) are hashed by CPython's built-in sha256, which costs no import;
    hashlib loads OpenSSL (~3 ms), faster per byte, for anything bigger."""
    if algorithm == "sha256" and len(data) <= _SMALL:
        sha256 = _builtin_sha256()
        if sha256 is not None:
            return str(sha256(data).hexdigest())
    import hashlib

    return hashlib.new(algorithm, data).hexdigest()


@functools.cache
def _builtin_sha256() -> Any:
    """CPython's own sha256 constructor, or None; looked up once (a failed import
    is not cached by Python: it would search sys.path again on every call)."""
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # CPython >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found,no-redef]  # CPython 3.11
        except ImportError:
            return None
    return sha256
