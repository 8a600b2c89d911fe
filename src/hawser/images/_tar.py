"""The tar reader: a streaming parser of a layer's uncompressed tar.

:class:`_Stream` reads the layer in 1 MiB chunks and hashes and counts each
chunk as it arrives (the diff_id is updated per chunk, not per entry);
:func:`_entries`, a small header parser, takes 512-byte headers and entry data
out of that buffer and yields one :class:`_Entry` per real entry, with PAX
(``x``, ``g``) records and GNU long names (``L``, ``K``) resolved.  An entry's
data is not copied into it: the caller writes it from the buffer straight to
a file (:meth:`_Stream.copy_to`) or skips it before asking for the next entry.

A malformed tar raises InvalidArgument.  What the entries mean (paths,
whiteouts, links) is the applier's business (:mod:`hawser.images._apply`).
"""

from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, BinaryIO

from hawser.errors import InvalidArgument

BLOCK = 512
CHUNK = 1 << 20
# PAX and GNU long-name records are read into memory: bound them.
MAX_META = 16 << 20


class _Entry:
    """One entry as :func:`_entries` yields it (times in ns; ``pax``: its PAX records, global ones included)."""

    __slots__ = ("atime", "devmajor", "devminor", "gid", "linkname", "mode", "mtime", "name", "pax", "size",
                 "type", "uid")

    def __init__(self) -> None:
        self.name = ""
        self.linkname = ""
        self.type = b"0"
        self.mode = 0
        self.uid = 0
        self.gid = 0
        self.size = 0
        self.mtime = 0
        self.atime = 0
        self.devmajor = 0
        self.devminor = 0
        self.pax: dict[str, bytes] = {}


class _Stream:
    """The uncompressed layer, read in large chunks, hashed and counted as it
    arrives; the parser takes headers and data out of the buffer."""

    __slots__ = ("_buf", "_eof", "_pos", "_src", "hasher", "total")

    def __init__(self, src: BinaryIO) -> None:
        self._src = src
        self._buf = b""
        self._pos = 0
        self._eof = False
        self.hasher = hashlib.sha256()
        self.total = 0

    def _more(self) -> bool:
        """Append one chunk to the buffer; False at EOF."""
        if self._eof:
            return False
        chunk = self._src.read(CHUNK)
        if not chunk:
            self._eof = True
            return False
        self.hasher.update(chunk)
        self.total += len(chunk)
        if self._pos < len(self._buf):
            self._buf = self._buf[self._pos :] + chunk
        else:
            self._buf = chunk
        self._pos = 0
        return True

    def block(self) -> bytes | None:
        """The next 512-byte block, or None at a clean EOF."""
        pos = self._pos
        end = pos + BLOCK
        if end <= len(self._buf):
            self._pos = end
            return self._buf[pos:end]
        while len(self._buf) - self._pos < BLOCK:
            if not self._more():
                if self._pos == len(self._buf):
                    return None
                raise InvalidArgument("layer tar is truncated (a partial header block at the end)")
        return self.block()

    def read(self, size: int, what: str) -> bytes:
        """Exactly ``size`` bytes plus the padding to the next block."""
        padded = (size + BLOCK - 1) & ~(BLOCK - 1)
        while len(self._buf) - self._pos < padded:
            if not self._more():
                raise InvalidArgument(f"layer tar is truncated inside {what!r}")
        data = self._buf[self._pos : self._pos + size]
        self._pos += padded
        return data

    def copy_to(self, fd: int, size: int, what: str) -> None:
        """Write the next ``size`` bytes to ``fd`` and skip the padding."""
        padding = -size & (BLOCK - 1)
        while size:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._more():
                    raise InvalidArgument(f"layer tar is truncated inside {what!r}")
                continue
            take = avail if avail < size else size
            view = memoryview(self._buf)[self._pos : self._pos + take]
            while view:
                written = os.write(fd, view)
                view = view[written:]
            self._pos += take
            size -= take
        if padding:
            self._advance(padding, what)

    def skip(self, size: int, what: str) -> None:
        """Skip an entry's ``size`` bytes of data and their padding."""
        self._advance((size + BLOCK - 1) & ~(BLOCK - 1), what)

    def _advance(self, size: int, what: str) -> None:
        while size:
            avail = len(self._buf) - self._pos
            if not avail:
                if not self._more():
                    raise InvalidArgument(f"layer tar is truncated inside {what!r}")
                continue
            take = avail if avail < size else size
            self._pos += take
            size -= take

    def drain(self) -> None:
        """Read (and hash) whatever follows the end-of-archive marker."""
        self._pos = len(self._buf)
        while self._more():
            self._pos = len(self._buf)


def _octal(field: bytes, what: str) -> int:
    if field[-1:] in (b"\0", b" "):
        try:
            # The common case: octal digits and one NUL or space terminator.
            return int(field[:-1], 8)
        except ValueError:
            pass
    if field and field[0] & 0x80:
        # GNU base-256: big-endian two's complement with the top bit as the marker
        value = int.from_bytes(field, "big")
        if field[0] == 0xFF:
            return value - (1 << (8 * len(field)))
        return value & ~(0x80 << (8 * (len(field) - 1)))
    text = field.split(b"\0", 1)[0].strip()
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidArgument(f"layer tar header has an invalid {what} field {text!r}") from None


def _cstr(field: bytes) -> bytes:
    end = field.find(b"\0")
    return field if end < 0 else field[:end]


def _pax_records(data: bytes) -> dict[str, bytes]:
    records: dict[str, bytes] = {}
    pos = 0
    n = len(data)
    while pos < n:
        if data[pos] == 0:
            break  # NUL padding some writers leave after the last record
        space = data.find(b" ", pos)
        if space < 0:
            raise InvalidArgument("layer tar has a malformed PAX record (no length)")
        try:
            length = int(data[pos:space])
        except ValueError:
            raise InvalidArgument("layer tar has a malformed PAX record length") from None
        end = pos + length
        if length <= 0 or end > n or data[end - 1] != 0x0A:
            raise InvalidArgument("layer tar has a malformed PAX record")
        key, eq, value = data[space + 1 : end - 1].partition(b"=")
        if not eq:
            raise InvalidArgument("layer tar has a PAX record without '='")
        records[key.decode("utf-8", "surrogateescape")] = value
        pos = end
    return records


def _pax_time(value: bytes) -> int:
    """A PAX timestamp ("1700000000.123456789", maybe negative) in ns."""
    text = value.decode("ascii", "replace").strip()
    negative = text.startswith("-")
    if negative:
        text = text[1:]
    whole, _, frac = text.partition(".")
    try:
        ns = int(whole or "0") * 1_000_000_000 + int((frac[:9] or "0").ljust(9, "0"))
    except ValueError:
        raise InvalidArgument(f"layer tar has an invalid PAX time {value!r}") from None
    return -ns if negative else ns


def _pax_int(value: bytes, key: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"layer tar has an invalid PAX {key} {value!r}") from None


def _entries(stream: _Stream) -> _Iter:
    """Parse the tar: yield each real entry (PAX, GNU long names resolved).
    The caller must consume the entry's data before asking for the next."""
    global_pax: dict[str, bytes] = {}
    local_pax: dict[str, bytes] = {}
    long_name: bytes | None = None
    long_link: bytes | None = None
    while True:
        header = stream.block()
        if header is None:
            return  # EOF without the end marker: tolerated, as tarfile does
        if header == _ZERO_BLOCK:
            return  # end of archive; the caller drains the rest
        chksum = _octal(header[148:156], "checksum")
        computed = sum(header) - sum(header[148:156]) + 256
        if chksum != computed:
            # Some old writers summed signed chars.
            signed = sum(b - 256 if b > 127 else b for b in header) - sum(
                b - 256 if b > 127 else b for b in header[148:156]) + 256
            if chksum != signed:
                raise InvalidArgument("layer tar has a header with a bad checksum (not a tar, or corrupt)")
        t = header[156:157]
        size = _octal(header[124:136], "size")
        if size < 0:
            raise InvalidArgument("layer tar has an entry with a negative size")
        if t in (b"x", b"g", b"L", b"K"):
            if size > MAX_META:
                raise InvalidArgument(f"layer tar has a {size}-byte metadata record (limit {MAX_META})")
            data = stream.read(size, "tar metadata")
            if t == b"x":
                local_pax.update(_pax_records(data))
            elif t == b"g":
                global_pax.update(_pax_records(data))
            elif t == b"L":
                long_name = _cstr(data)
            else:
                long_link = _cstr(data)
            continue
        if t == b"S" or t == b"V" or t == b"M" or t == b"N":
            raise InvalidArgument(f"layer tar has a GNU {t.decode()!r} entry (sparse, volume or multi-volume), "
                                  "which OCI layers do not use")
        e = _Entry()
        pax = {**global_pax, **local_pax} if global_pax else local_pax
        if long_name is not None:
            raw_name = long_name
        else:
            raw_name = _cstr(header[0:100])
            if header[257:263] == b"ustar\0":
                prefix = _cstr(header[345:500])
                if prefix:
                    raw_name = prefix + b"/" + raw_name
        raw_link = long_link if long_link is not None else _cstr(header[157:257])
        e.type = t
        e.mode = _octal(header[100:108], "mode") & 0o7777
        e.uid = _octal(header[108:116], "uid")
        e.gid = _octal(header[116:124], "gid")
        e.size = size
        mtime = _octal(header[136:148], "mtime") * 1_000_000_000
        if t == b"3" or t == b"4":
            e.devmajor = _octal(header[329:337], "devmajor")
            e.devminor = _octal(header[337:345], "devminor")
        if pax:
            for key, value in pax.items():
                if not value:
                    continue  # an empty value cancels the record
                if key == "path":
                    raw_name = value
                elif key == "linkpath":
                    raw_link = value
                elif key == "size":
                    e.size = _pax_int(value, key)
                elif key == "uid":
                    e.uid = _pax_int(value, key)
                elif key == "gid":
                    e.gid = _pax_int(value, key)
                elif key == "mtime":
                    mtime = _pax_time(value)
                elif key == "atime":
                    e.atime = _pax_time(value)
                elif key.startswith("GNU.sparse."):
                    raise InvalidArgument("layer tar has a sparse file, which OCI layers do not use")
            e.pax = pax
        e.mtime = mtime
        if not e.atime:
            e.atime = mtime
        if e.uid < 0 or e.gid < 0 or e.uid > 0xFFFFFFFE or e.gid > 0xFFFFFFFE:
            raise InvalidArgument(f"layer entry {os.fsdecode(raw_name)!r} has an invalid owner {e.uid}:{e.gid}")
        e.name = os.fsdecode(raw_name)
        e.linkname = os.fsdecode(raw_link)
        local_pax = {}
        long_name = long_link = None
        yield e


_ZERO_BLOCK = bytes(BLOCK)

if TYPE_CHECKING:
    from collections.abc import Iterator

    _Iter = Iterator[_Entry]
