"""Build layer tars in memory for tests: a small builder with full control over
every header (hostile names included), compressors, and ``busybox_layers()``,
the three-layer rootfs the standard test image is made of.

The tar writer is written out here rather than using :mod:`tarfile` so a
test can produce what tarfile refuses or normalises: ``..`` in names, NUL
bytes in PAX paths, absolute hardlink targets, arbitrary type flags.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

BLOCK = 512
MTIME = 1_700_000_000  # a fixed time: layers are reproducible byte for byte

REGTYPE = b"0"
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"


def _b(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else os.fsencode(text)


def _num(value: int, width: int) -> bytes:
    """An octal field (NUL-terminated), or GNU base-256 when it does not fit."""
    if 0 <= value < 8 ** (width - 1):
        return f"{value:0{width - 1}o}".encode() + b"\0"
    if value < 0:
        value += 1 << (8 * width)
        return value.to_bytes(width, "big")
    return (value | (0x80 << (8 * (width - 1)))).to_bytes(width, "big")


def _field(data: bytes, width: int) -> bytes:
    return data[:width].ljust(width, b"\0")


def _pax_data(records: Mapping[str, bytes]) -> bytes:
    out = bytearray()
    for key, value in records.items():
        body = _b(key) + b"=" + value + b"\n"
        length = len(body) + 2
        while len(str(length)) + 1 + len(body) != length:
            length = len(str(length)) + 1 + len(body)
        out += str(length).encode() + b" " + body
    return bytes(out)


def header(name: bytes, *, type: bytes = REGTYPE, size: int = 0, mode: int = 0o644, uid: int = 0, gid: int = 0,
           mtime: int = MTIME, linkname: bytes = b"", devmajor: int = 0, devminor: int = 0,
           uname: bytes = b"", gname: bytes = b"", checksum_delta: int = 0) -> bytes:
    """One raw ustar header block (name and linkname truncated to 100 bytes)."""
    block = bytearray(BLOCK)
    block[0:100] = _field(name, 100)
    block[100:108] = _num(mode, 8)
    block[108:116] = _num(uid, 8)
    block[116:124] = _num(gid, 8)
    block[124:136] = _num(size, 12)
    block[136:148] = _num(mtime, 12)
    block[148:156] = b" " * 8
    block[156:157] = type
    block[157:257] = _field(linkname, 100)
    block[257:263] = b"ustar\0"
    block[263:265] = b"00"
    block[265:297] = _field(uname, 32)
    block[297:329] = _field(gname, 32)
    block[329:337] = _num(devmajor, 8)
    block[337:345] = _num(devminor, 8)
    checksum = sum(block) + checksum_delta
    block[148:156] = f"{checksum:06o}".encode() + b"\0 "
    return bytes(block)


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


@dataclass
class LayerBuilder:
    """Collects entries; :meth:`build` returns the tar bytes.  Every ``add_*``
    returns the builder, so calls chain."""

    _chunks: list[bytes] = field(default_factory=list)

    # --- raw ---

    def add_raw(self, name: str | bytes, *, type: bytes = REGTYPE, data: bytes = b"", linkname: str | bytes = b"",
                mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: int = MTIME, devmajor: int = 0,
                devminor: int = 0, pax: Mapping[str, bytes] | None = None, xattrs: Mapping[str, bytes] | None = None,
                size: int | None = None, force_pax: bool = False) -> LayerBuilder:
        """Any entry, verbatim.  Names and link names that do not fit (or
        contain NUL or non-ASCII bytes) go into a PAX header, as do
        ``xattrs`` and extra ``pax`` records."""
        bname, blink = _b(name), _b(linkname)
        records: dict[str, bytes] = dict(pax or {})
        if force_pax or len(bname) > 100 or b"\0" in bname or not bname.isascii():
            records.setdefault("path", bname)
        if len(blink) > 100 or b"\0" in blink or not blink.isascii():
            records.setdefault("linkpath", blink)
        for key, value in (xattrs or {}).items():
            records[f"SCHILY.xattr.{key}"] = value
        if records:
            body = _pax_data(records)
            self._chunks.append(header(b"PaxHeaders/" + os.path.basename(bname.rstrip(b"/"))[:80].replace(b"\0", b"_"),
                                       type=b"x", size=len(body)))
            self._chunks.append(_pad(body))
        self._chunks.append(header(bname.replace(b"\0", b"_"), type=type, size=len(data) if size is None else size,
                                   mode=mode, uid=uid, gid=gid, mtime=mtime, linkname=blink.replace(b"\0", b"_"),
                                   devmajor=devmajor, devminor=devminor))
        if data:
            self._chunks.append(_pad(data))
        return self

    def add_bytes(self, raw: bytes) -> LayerBuilder:
        """Append raw bytes (a hand-made header, garbage)."""
        self._chunks.append(raw)
        return self

    # --- entries ---

    def add_file(self, path: str, data: bytes = b"", *, mode: int = 0o644, uid: int = 0, gid: int = 0,
                 mtime: int = MTIME, xattrs: Mapping[str, bytes] | None = None) -> LayerBuilder:
        return self.add_raw(path, data=data, mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=xattrs)

    def add_dir(self, path: str, *, mode: int = 0o755, uid: int = 0, gid: int = 0, mtime: int = MTIME,
                xattrs: Mapping[str, bytes] | None = None) -> LayerBuilder:
        name = path if path.endswith("/") else path + "/"
        return self.add_raw(name, type=DIRTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime, xattrs=xattrs)

    def add_symlink(self, path: str, target: str, *, uid: int = 0, gid: int = 0, mtime: int = MTIME) -> LayerBuilder:
        return self.add_raw(path, type=SYMTYPE, linkname=target, mode=0o777, uid=uid, gid=gid, mtime=mtime)

    def add_hardlink(self, path: str, target: str, *, mode: int = 0o644, uid: int = 0, gid: int = 0,
                     mtime: int = MTIME) -> LayerBuilder:
        return self.add_raw(path, type=LNKTYPE, linkname=target, mode=mode, uid=uid, gid=gid, mtime=mtime)

    def add_whiteout(self, path: str) -> LayerBuilder:
        """Delete ``path`` (of a lower layer): an empty ``.wh.<name>`` beside it."""
        parent, _, name = path.rstrip("/").rpartition("/")
        return self.add_raw(f"{parent}/.wh.{name}" if parent else f".wh.{name}")

    def add_opaque(self, directory: str) -> LayerBuilder:
        """Hide what lower layers have in ``directory``: ``<dir>/.wh..wh..opq``."""
        directory = directory.strip("/")
        return self.add_raw(f"{directory}/.wh..wh..opq" if directory else ".wh..wh..opq")

    def add_char(self, path: str, major: int, minor: int, *, mode: int = 0o666, uid: int = 0, gid: int = 0,
                 mtime: int = MTIME) -> LayerBuilder:
        return self.add_raw(path, type=CHRTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime, devmajor=major,
                            devminor=minor)

    def add_block(self, path: str, major: int, minor: int, *, mode: int = 0o660, uid: int = 0, gid: int = 0,
                  mtime: int = MTIME) -> LayerBuilder:
        return self.add_raw(path, type=BLKTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime, devmajor=major,
                            devminor=minor)

    def add_fifo(self, path: str, *, mode: int = 0o644, uid: int = 0, gid: int = 0, mtime: int = MTIME) -> LayerBuilder:
        return self.add_raw(path, type=FIFOTYPE, mode=mode, uid=uid, gid=gid, mtime=mtime)

    def build(self, *, end: bool = True, trailing: bytes = b"") -> bytes:
        """The tar: entries, the end-of-archive marker (two zero blocks, unless
        ``end`` is False), then ``trailing`` (e.g. the zero padding GNU tar adds)."""
        return b"".join(self._chunks) + (b"\0" * (2 * BLOCK) if end else b"") + trailing


def gzip_compress(data: bytes, *, members: int = 1) -> bytes:
    """gzip, split into ``members`` concatenated gzip members (as pigz or a
    resumed upload can produce)."""
    if members <= 1:
        return gzip.compress(data, compresslevel=1, mtime=0)
    step = max(1, -(-len(data) // members))
    return b"".join(gzip.compress(data[i : i + step], compresslevel=1, mtime=0) for i in range(0, len(data), step))


def zstd_compress(data: bytes, *, frames: int = 1) -> bytes:
    """zstd, split into ``frames`` concatenated frames."""
    import zstandard

    cctx = zstandard.ZstdCompressor(level=3)
    if frames <= 1:
        return cctx.compress(data)
    step = max(1, -(-len(data) // frames))
    return b"".join(cctx.compress(data[i : i + step]) for i in range(0, len(data), step))


# --- the standard test rootfs ------------------------------------------------------

BUSYBOX = "/usr/bin/busybox"
APPLETS = ("sh", "ash", "ls", "cat", "echo", "true", "false", "sleep", "id", "wget", "env", "ps", "mkdir", "rm",
           "touch", "grep", "sed", "head", "tail", "hostname", "pwd", "stat", "ln", "chmod", "chown", "cp", "mv",
           "test", "[", "printf", "whoami", "uname", "nc", "mount", "readlink", "wc", "sort", "find", "date", "kill",
           "tee", "du", "df", "md5sum", "sha256sum", "nslookup", "ip", "ifconfig", "getfattr", "setfattr", "xargs",
           "which", "yes", "dd", "seq", "awk", "tr", "cut", "uptime", "free", "top", "vi", "less", "tar", "gzip",
           "su", "passwd", "httpd", "mkfifo", "mknod", "nproc", "timeout", "unshare")
PASSWD = (b"root:x:0:0:root:/root:/bin/sh\n"
          b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
          b"app:x:1000:1000:app:/home/app:/bin/sh\n")
GROUP = b"root:x:0:\nnobody:x:65534:\napp:x:1000:\n"


@functools.lru_cache(maxsize=1)
def _busybox_layers() -> tuple[bytes, ...]:
    with open(BUSYBOX, "rb") as f:
        busybox = f.read()

    base = LayerBuilder()
    for d, mode in (("bin", 0o755), ("etc", 0o755), ("dev", 0o755), ("proc", 0o555), ("sys", 0o555),
                    ("root", 0o700), ("home", 0o755), ("usr", 0o755), ("usr/bin", 0o755), ("var", 0o755),
                    ("run", 0o755)):
        base.add_dir(d, mode=mode)
    base.add_dir("tmp", mode=0o1777)
    base.add_dir("var/tmp", mode=0o1777)
    base.add_dir("home/app", mode=0o750, uid=1000, gid=1000)
    base.add_file("bin/busybox", busybox, mode=0o755)
    for applet in APPLETS:
        base.add_symlink(f"bin/{applet}", "busybox")
    base.add_symlink("usr/bin/env", "/bin/busybox")
    base.add_file("etc/passwd", PASSWD)
    base.add_file("etc/group", GROUP)
    base.add_file("etc/hostname", b"hawser-test\n")
    base.add_file("etc/os-release", b'NAME="hawser test rootfs"\nID=hawser-test\nVERSION_ID=1\n')

    app = LayerBuilder()
    app.add_dir("etc")
    app.add_file("etc/motd", b"hello from layer 2\n")
    app.add_dir("opt")
    app.add_dir("opt/app", mode=0o755, uid=1000, gid=1000)
    app.add_file("opt/app/config.txt", b"colour=blue\n", uid=1000, gid=1000)
    app.add_file("opt/app/run.sh", b"#!/bin/sh\necho running as $(id -u)\n", mode=0o755, uid=1000, gid=1000)
    app.add_hardlink("opt/app/run-link.sh", "opt/app/run.sh")
    app.add_symlink("opt/app/current", "data")
    app.add_dir("opt/app/data", mode=0o750, uid=1000, gid=1000)
    app.add_file("opt/app/data/a.txt", b"a\n", uid=1000, gid=1000)
    app.add_file("opt/app/data/b.txt", b"b\n", uid=1000, gid=1000)
    app.add_char("opt/app/null", 1, 3, mode=0o666)
    app.add_file("opt/app/tagged.txt", b"tagged\n", xattrs={"user.hawser.test": b"layer2"})
    app.add_file("opt/app/setuid", b"#!/bin/sh\n", mode=0o4755)
    app.add_file("opt/app/old.txt", b"deleted by layer 3\n")
    app.add_dir("opt/app/olddir")
    app.add_file("opt/app/olddir/stale.txt", b"hidden by layer 3\n")
    app.add_dir("opt/app/olddir/sub")
    app.add_file("opt/app/olddir/sub/deep.txt", b"hidden by layer 3\n")

    top = LayerBuilder()
    top.add_dir("opt/app", mode=0o755, uid=1000, gid=1000)
    top.add_whiteout("opt/app/old.txt")
    top.add_dir("opt/app/olddir", mode=0o755)
    top.add_opaque("opt/app/olddir")
    top.add_file("opt/app/olddir/fresh.txt", b"from layer 3\n")
    top.add_file("etc/layer3", b"3\n")
    return base.build(), app.build(), top.build()


def busybox_layers() -> list[bytes]:
    """Three uncompressed layer tars of a small busybox rootfs.

    1. ``/bin/busybox`` (from busybox-static) with applet symlinks (sh, ls,
       cat, echo, true, sleep, id, wget, ...), ``/usr/bin/env``,
       ``/etc/passwd`` and ``/etc/group`` (root, nobody, app = 1000:1000),
       ``/etc/hostname``, ``/tmp`` and ``/var/tmp`` 1777, ``/dev``, ``/proc``,
       ``/sys``, ``/root`` 0700, ``/home/app`` owned by app.
    2. ``/etc/motd``; ``/opt/app`` owned by app with ``config.txt``,
       ``run.sh`` (0755) and its hardlink ``run-link.sh``, symlink
       ``current -> data``, dir ``data/`` (a.txt, b.txt), char device ``null``
       (1:3), ``tagged.txt`` with xattr ``user.hawser.test=layer2``,
       ``setuid`` (04755), ``old.txt``, and ``olddir/`` (stale.txt, sub/deep.txt).
    3. a whiteout of ``/opt/app/old.txt``; ``/opt/app/olddir`` made opaque
       with only ``fresh.txt``; ``/etc/layer3``.

    Byte-for-byte reproducible (fixed mtimes)."""
    return list(_busybox_layers())


__all__ = ["BLOCK", "BUSYBOX", "MTIME", "LayerBuilder", "busybox_layers", "gzip_compress", "header", "zstd_compress"]


if __name__ == "__main__":  # pragma: no cover - a quick look at the layers
    import tarfile

    for i, layer in enumerate(busybox_layers(), 1):
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            print(f"layer {i}: {len(layer)} bytes, {len(tar.getmembers())} entries")
