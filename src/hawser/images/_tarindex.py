"""An image archive (a tar file on disk) indexed once: where each entry's bytes are.

``hawser load`` and ``hawser image import`` read the archives of docker,
podman, skopeo and hawser through this index.  Headers are parsed straight
from the file with ``pread`` (entry data is never read while indexing), and a
blob is later read from its offset, by several layer threads at once on one
descriptor.

Archives come from anywhere.  Indexing refuses, in one line, what no image
archive has reason to hold: an entry whose name is absolute or climbs out
with ``..``, two files of one name, an entry whose data runs past the end of
the file, more than ``MAX_ENTRIES`` entries, a PAX or GNU long-name record
over ``MAX_META`` bytes, a header with a bad checksum.  Nothing is ever
extracted, so a link is only noted as one, and :meth:`TarIndex.file` refuses
to read anything but a regular file where a blob or a JSON document should be.
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

from hawser._dataclass import dataclass
from hawser.errors import DataLoss, InvalidArgument, NotFound

BLOCK = 512
CHUNK = 1 << 20
MAX_ENTRIES = 1 << 16
MAX_META = 1 << 20
_ZERO = bytes(BLOCK)
_REGULAR = (b"0", b"\0", b"7")
_KINDS = {b"1": "a hardlink", b"2": "a symlink", b"3": "a character device", b"4": "a block device",
          b"5": "a directory", b"6": "a FIFO"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One entry: its cleaned name, tar type flag, where its data starts and how long it is."""

    name: str
    type: bytes
    offset: int
    size: int
    linkname: str = ""

    @property
    def is_file(self) -> bool:
        return self.type in _REGULAR

    def kind(self) -> str:
        return "a file" if self.is_file else _KINDS.get(self.type, f"an entry of type {self.type!r}")


class TarIndex:
    """The entries of the uncompressed tar open on ``fd`` (not closed here).
    ``what`` names the archive in errors. InvalidArgument for a hostile or
    malformed archive (see the module docstring)."""

    def __init__(self, fd: int, what: str) -> None:
        self._fd = fd
        self.what = what
        self.size = os.fstat(fd).st_size
        self.entries: dict[str, Entry] = {}
        self._scan()

    # --- reading -----------------------------------------------------------------

    def get(self, name: str) -> Entry | None:
        return self.entries.get(name)

    def file(self, name: str) -> Entry:
        """The regular file ``name``: NotFound if the archive has no such entry,
        InvalidArgument if the entry is a link or anything else but a file."""
        entry = self.entries.get(name)
        if entry is None:
            raise NotFound(f"{self.what}: {name} is missing from the archive")
        if not entry.is_file:
            target = f" (to {entry.linkname!r})" if entry.linkname else ""
            raise InvalidArgument(f"{self.what}: {name} is {entry.kind()}{target}, not a file",
                                  hint="an image archive holds its blobs as regular files")
        return entry

    def read(self, name: str, limit: int) -> bytes:
        """The whole file ``name``; InvalidArgument when it is over ``limit`` bytes."""
        entry = self.file(name)
        if entry.size > limit:
            raise InvalidArgument(f"{self.what}: {name} is {entry.size} bytes, over the {limit} byte limit")
        return b"".join(self.chunks(entry))

    def head(self, entry: Entry, n: int) -> bytes:
        return os.pread(self._fd, min(n, entry.size), entry.offset)

    def chunks(self, entry: Entry, offset: int = 0) -> Iterator[bytes]:
        """The entry's bytes from ``offset`` on (positional reads: safe from several threads)."""
        pos, end = entry.offset + offset, entry.offset + entry.size
        while pos < end:
            data = os.pread(self._fd, min(CHUNK, end - pos), pos)
            if not data:
                raise DataLoss(f"{self.what}: {entry.name} is truncated")
            pos += len(data)
            yield data

    @contextmanager
    def open(self, name: str, offset: int = 0) -> Iterator[Iterator[bytes]]:
        yield self.chunks(self.file(name), offset)

    def size_of(self, name: str) -> int:
        return self.file(name).size

    def describe(self) -> str:
        return self.what

    # --- indexing ----------------------------------------------------------------

    def _scan(self) -> None:
        off = 0
        global_pax: dict[str, bytes] = {}
        local_pax: dict[str, bytes] = {}
        long_name: bytes | None = None
        long_link: bytes | None = None
        while True:
            header = os.pread(self._fd, BLOCK, off)
            if not header or header == _ZERO:
                break  # the end marker, or EOF without one (tolerated, as tar(1) does)
            if len(header) < BLOCK:
                raise InvalidArgument(f"{self.what} is truncated (a partial tar header at byte {off})")
            if not _checksum_ok(header):
                if off == 0:
                    raise InvalidArgument(f"{self.what} is not a tar archive",
                                          hint="an image archive is a tar (gzip, zstd, xz or bzip2 compressed, or not)")
                raise InvalidArgument(f"{self.what} has a corrupt tar header at byte {off} (bad checksum)")
            t = header[156:157]
            size = self._number(header[124:136], "size", off)
            if t in (b"x", b"g", b"L", b"K"):
                if size > MAX_META:
                    raise InvalidArgument(f"{self.what} has a {size}-byte tar metadata record at byte {off} "
                                          f"(limit {MAX_META})")
                data = os.pread(self._fd, size, off + BLOCK)
                if len(data) < size:
                    raise InvalidArgument(f"{self.what} is truncated (inside a tar metadata record at byte {off})")
                off += BLOCK + _padded(size)
                if t == b"x":
                    local_pax.update(self._pax(data))
                elif t == b"g":
                    global_pax.update(self._pax(data))
                elif t == b"L":
                    long_name = _cstr(data)
                else:
                    long_link = _cstr(data)
                continue
            raw = long_name if long_name is not None else _ustar_name(header)
            link = long_link if long_link is not None else _cstr(header[157:257])
            pax = {**global_pax, **local_pax}
            if pax.get("path"):
                raw = pax["path"]
            if pax.get("linkpath"):
                link = pax["linkpath"]
            if pax.get("size"):
                try:
                    size = int(pax["size"])
                except ValueError:
                    raise InvalidArgument(f"{self.what} has an invalid PAX size at byte {off}") from None
            if any(key.startswith("GNU.sparse.") for key in pax) or t == b"S":
                raise InvalidArgument(f"{self.what} has a sparse file, which image archives do not use")
            local_pax, long_name, long_link = {}, None, None
            data_off = off + BLOCK
            if size < 0 or data_off + size > self.size:
                raise InvalidArgument(f"{self.what}: entry {os.fsdecode(raw)!r} says it holds {size} bytes, "
                                      "past the end of the archive (truncated, or a false size)")
            off = data_off + _padded(size)
            name = self._clean(os.fsdecode(raw))
            if len(self.entries) >= MAX_ENTRIES:
                raise InvalidArgument(f"{self.what} has over {MAX_ENTRIES} entries; no image archive has that many")
            entry = Entry(name=name, type=t, offset=data_off, size=size, linkname=os.fsdecode(link))
            if t == b"5" or not name:
                continue  # directories are implied by the files below them
            if name in self.entries:
                raise InvalidArgument(f"{self.what} has two entries named {name!r}",
                                      hint="which one a tool reads depends on the tool: refused")
            self.entries[name] = entry

    def _clean(self, raw: str) -> str:
        if raw.startswith("/"):
            raise InvalidArgument(f"{self.what}: entry {raw!r} has an absolute path",
                                  hint="an image archive's entries are relative to the archive")
        parts = [p for p in raw.split("/") if p not in ("", ".")]
        if ".." in parts:
            raise InvalidArgument(f"{self.what}: entry {raw!r} climbs out of the archive (a '..' in its path)")
        if "\0" in raw:
            raise InvalidArgument(f"{self.what}: entry {raw!r} has a NUL byte in its name")
        return "/".join(parts)

    def _number(self, field: bytes, what: str, off: int) -> int:
        if field[:1] and field[0] & 0x80:
            # GNU base-256 (big numbers); a negative one is refused by the caller
            value = int.from_bytes(field, "big")
            if field[0] == 0xFF:
                return value - (1 << (8 * len(field)))
            return value & ~(0x80 << (8 * (len(field) - 1)))
        text = field.split(b"\0", 1)[0].strip()
        try:
            return int(text, 8) if text else 0
        except ValueError:
            raise InvalidArgument(f"{self.what} has a tar header with an invalid {what} at byte {off}") from None

    def _pax(self, data: bytes) -> dict[str, bytes]:
        records: dict[str, bytes] = {}
        pos, n = 0, len(data)
        while pos < n and data[pos] != 0:
            space = data.find(b" ", pos)
            try:
                length = int(data[pos:space]) if space > pos else 0
            except ValueError:
                length = 0
            end = pos + length
            if length <= 0 or end > n or data[end - 1] != 0x0A:
                raise InvalidArgument(f"{self.what} has a malformed PAX record")
            key, eq, value = data[space + 1:end - 1].partition(b"=")
            if not eq:
                raise InvalidArgument(f"{self.what} has a PAX record without '='")
            records[key.decode("utf-8", "surrogateescape")] = value
            pos = end
        return records


@contextmanager
def open_archive(path: str, *, spool_dir: str) -> Iterator[TarIndex]:
    """The tar at ``path`` ("-": standard input), indexed.

    An uncompressed regular file is indexed in place.  A compressed one
    (gzip, zstd, xz, bzip2: what ``docker save | gzip`` makes), or a pipe, is
    first copied (decompressed) into an unnamed file in ``spool_dir``, which
    disappears with it, whatever happens (O_TMPFILE).  NotFound for a missing
    file, InvalidArgument for a terminal on standard input or a corrupt stream."""
    if path == "-":
        if os.isatty(0):
            raise InvalidArgument("no archive on standard input: it is a terminal",
                                  hint="give one with -i FILE, or pipe one in")
        fd, what = os.dup(0), "the archive on standard input"
    else:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file or directory") from None
        what = path
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
        if regular and _compression(os.pread(fd, 6, 0)) is None:
            yield TarIndex(fd, what)
            return
        import tempfile

        with open(fd, "rb", buffering=CHUNK, closefd=False) as src, \
                tempfile.TemporaryFile(dir=spool_dir) as spool:  # unnamed: gone with its descriptor
            _spool(src, spool, what)
            yield TarIndex(spool.fileno(), what)
    finally:
        os.close(fd)


def _compression(magic: bytes) -> str | None:
    if magic.startswith(b"\x1f\x8b"):
        return "gzip"
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if magic.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if magic.startswith(b"BZh"):
        return "bzip2"
    return None


def _spool(src: BinaryIO, spool: BinaryIO, what: str) -> None:
    """Copy ``src`` into ``spool``, decompressed if it is compressed."""
    first = src.read(CHUNK)
    compression = _compression(first)
    stream: Any = _Prefixed(first, src)
    errors: tuple[Any, ...] = (EOFError,)
    if compression == "gzip":
        from isal import igzip, isal_zlib

        stream = igzip.IGzipFile(fileobj=stream, mode="rb")  # type: ignore[no-untyped-call]
        errors += (igzip.BadGzipFile, isal_zlib.error)
    elif compression == "zstd":
        import zstandard

        stream = zstandard.ZstdDecompressor().stream_reader(stream, read_size=CHUNK, read_across_frames=True)
        errors += (zstandard.ZstdError,)
    elif compression == "xz":
        import lzma

        stream = lzma.LZMAFile(stream)  # noqa: SIM115 - read to its end below
        errors += (lzma.LZMAError,)
    elif compression == "bzip2":
        import bz2

        stream = bz2.BZ2File(stream)
        errors += (OSError, ValueError)
    try:
        while chunk := stream.read(CHUNK):
            spool.write(chunk)
    except errors as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise  # a real I/O error (a full disk), not a corrupt stream
        raise InvalidArgument(f"{what}: corrupt {compression} stream: {exc}") from None
    spool.flush()


class _Prefixed(io.RawIOBase):
    """``first``, then the rest of ``rest``: a stream whose first chunk was read to sniff it."""

    def __init__(self, first: bytes, rest: BinaryIO) -> None:
        super().__init__()
        self._first = memoryview(first)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._first:
            n = min(len(buffer), len(self._first))
            buffer[:n] = self._first[:n]
            self._first = self._first[n:]
            return n
        return self._rest.readinto(buffer)  # type: ignore[attr-defined, no-any-return]


def _padded(size: int) -> int:
    return (size + BLOCK - 1) & ~(BLOCK - 1)


def _cstr(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _ustar_name(header: bytes) -> bytes:
    name = _cstr(header[0:100])
    if header[257:263] == b"ustar\0":
        prefix = _cstr(header[345:500])
        if prefix:
            return prefix + b"/" + name
    return name


def _checksum_ok(header: bytes) -> bool:
    text = header[148:156].split(b"\0", 1)[0].strip()
    try:
        stored = int(text, 8)
    except ValueError:
        return False
    unsigned = sum(header) - sum(header[148:156]) + 256
    if stored == unsigned:
        return True
    signed = sum(b - 256 if b > 127 else b for b in header) - sum(
        b - 256 if b > 127 else b for b in header[148:156]) + 256
    return stored == signed


__all__ = ["BLOCK", "Entry", "TarIndex", "open_archive"]
