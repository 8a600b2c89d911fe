"""Layer decompression: a reader of a layer's uncompressed bytes (gzip, zstd or none).

The codec modules are imported when a layer of their kind is opened, not at
startup: an unpack worker loads only the one it needs.  A corrupt stream
raises InvalidArgument, never the codec's own exception.
"""

from __future__ import annotations

import io
from typing import BinaryIO, Literal, cast

from hawser.errors import InvalidArgument

# Compressed bytes the zstd reader takes from its source at a time.
CHUNK = 1 << 20

Compression = Literal["none", "gzip", "zstd"]


class _Checked(io.RawIOBase):
    """Turns a decompressor's own exceptions into InvalidArgument."""

    def __init__(self, inner: BinaryIO, errors: tuple[type[BaseException], ...], what: str) -> None:
        super().__init__()
        self._inner = inner
        self._errors = errors
        self._what = what

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            return self._inner.readinto(buffer)  # type: ignore[attr-defined, no-any-return]
        except self._errors as e:
            raise InvalidArgument(f"corrupt {self._what} layer stream: {e}") from e

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size)
        except self._errors as e:
            raise InvalidArgument(f"corrupt {self._what} layer stream: {e}") from e


def open_decompressed(stream: BinaryIO, compression: Compression) -> BinaryIO:
    """A reader of the uncompressed bytes of ``stream``.

    gzip: ISA-L's multi-member reader (concatenated members are one stream, as
    in gzip(1)); zstd: all frames in sequence.  Reading raises InvalidArgument
    for a corrupt or truncated gzip stream or a corrupt zstd stream (a zstd
    stream cut at a frame boundary is caught by the tar parser or by the
    diff_id).  InvalidArgument at once for an unknown compression."""
    if compression == "none":
        return stream
    if compression == "gzip":
        from isal import igzip, isal_zlib

        gz = cast(BinaryIO, igzip.IGzipFile(fileobj=stream, mode="rb"))  # type: ignore[no-untyped-call]
        errors: tuple[type[BaseException], ...] = (EOFError, igzip.BadGzipFile,
                                                   cast("type[BaseException]", isal_zlib.error))
        return cast(BinaryIO, _Checked(gz, errors, "gzip"))
    if compression == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(stream, read_size=CHUNK, read_across_frames=True,
                                                             closefd=False)
        return cast(BinaryIO, _Checked(cast(BinaryIO, reader), (zstandard.ZstdError,), "zstd"))
    raise InvalidArgument(f"unknown layer compression {compression!r}", hint="expected none, gzip or zstd")


__all__ = ["Compression", "open_decompressed"]
