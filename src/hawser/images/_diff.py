"""The layer maker: a tar of the difference between two directory trees, as
containerd's walking differ writes one for ``ctr snapshots diff``.

Two ways to find the changes (:class:`DiffSource`):

* ``overlay``: ``upper`` is an overlayfs upper dir (or a committed overlay
  snapshot's directory), which IS the change set.  Everything in it is
  written; a 0/0 character device is a deletion, written as ``.wh.NAME``;
  a directory with ``trusted.overlay.opaque=y`` gets ``.wh..wh..opq`` after
  its own entry (overlayfs ignores the xattr on the root, so the root's is
  ignored too).
* a tree comparison (``lower`` a full tree, ``upper`` another), after
  containerd's ``fs.Changes``: an entry only in ``upper`` is added (a whole
  new directory with everything below it), one only in ``lower`` gets a
  whiteout, one in both is changed when its type, mode, owner, device
  number or kept xattrs differ, or (not for directories) its size, its mtime
  in seconds, its nanoseconds when either has some, or else (both mtimes
  whole seconds, as a layer leaves them) its content or symlink target.
  Opaque directories are not detected: each deleted child gets a whiteout.

``lower=None`` without ``overlay``: everything in ``upper`` is new.

The tar: PAX, numeric owner only (no user or group names), mtimes in whole
seconds, directories named with a trailing ``/``, xattrs as
``SCHILY.xattr.*`` (``trusted.*`` and ``user.overlay.*`` are never written:
they are overlayfs's and the applier drops them), a regular file with more
than one link written as a hardlink to the first name it was written under,
sockets skipped, whiteouts empty regular files with mode 0 and the mtime of
their directory.  Every entry's parent directories come before it, written
from ``upper`` if they did not change themselves (as containerd's change
writer includes parents).  Entries are in path order, so the same trees
make the same tar, and gzip's header carries no name and no time: the same
trees make the same blob.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from typing import BinaryIO

from hawser._dataclass import dataclass
from hawser.errors import InvalidArgument
from hawser.images._lowers import _OPAQUE_XATTR, _is_whiteout_device
from hawser.images._xattr import _keep_xattr
from hawser.oci import Digest

_WH = ".wh."
_WH_OPAQUE = ".wh..wh..opq"
_CHUNK = 1 << 20
# containerd compresses with Go's default gzip level.
_GZIP_LEVEL = 6
COMPRESSIONS = ("gzip", "none")

# What a change is: the entry at the path in upper, a deletion, or an opaque marker in the directory.
_ADD, _DELETE, _OPAQUE = "add", "delete", "opaque"


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffSource:
    """What a layer is made from: see the module docstring."""

    upper: str
    lower: str | None = None
    overlay: bool = False
    skip: frozenset[str] = frozenset()  # paths (relative to upper) left out of the layer

    def __post_init__(self) -> None:
        if self.overlay and self.lower is not None:
            raise InvalidArgument("an overlay upper dir is the change set itself: no lower tree is compared")


@dataclass(frozen=True, slots=True)
class WrittenLayer:
    """A layer :func:`write_layer` wrote: the blob's digest and size, and its
    diff ID (the uncompressed tar's digest; the digest itself when uncompressed)."""

    digest: Digest
    size: int
    diff_id: Digest


class _Hashing:
    """A write-only stream that hashes and counts what goes through it."""

    __slots__ = ("_sink", "hasher", "size")

    def __init__(self, sink: BinaryIO | gzip.GzipFile) -> None:
        self._sink = sink
        self.hasher = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hasher.update(data)
        self.size += len(data)
        self._sink.write(data)
        return len(data)

    def flush(self) -> None:
        return None


def write_layer(out: BinaryIO, source: DiffSource, *, compression: str = "gzip") -> WrittenLayer:
    """Write the layer of ``source``'s changes to ``out`` (``compression``:
    ``gzip`` or ``none``); its digests and size.  Blocking.  InvalidArgument
    for another compression; OSError when a tree cannot be read (or changes
    under the writer: a file shorter than its stat)."""
    if compression not in COMPRESSIONS:
        raise InvalidArgument(f"cannot write a {compression!r} layer", hint="gzip or uncompressed only")
    blob = _Hashing(out)
    if compression == "gzip":
        # No file name and a zero time in the gzip header: the same tar makes the same blob.
        with gzip.GzipFile(filename="", mode="wb", fileobj=blob, compresslevel=_GZIP_LEVEL,  # type: ignore[arg-type]
                           mtime=0) as zipped:
            tar = _Hashing(zipped)
            _write_tar(tar, source)
    else:
        tar = blob
        _write_tar(tar, source)
    diff_id = Digest.from_hasher(tar.hasher)
    return WrittenLayer(digest=Digest.from_hasher(blob.hasher), size=blob.size, diff_id=diff_id)


def _write_tar(out: _Hashing, source: DiffSource) -> None:
    if source.overlay:
        changes = _overlay_changes(source.upper, "")
    elif source.lower is None:
        changes = _all_added(source.upper, "")
    else:
        changes = _tree_changes(source.lower, source.upper, "")
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                      encoding="utf-8") as tar:
        writer = _TarWriter(tar, source.upper)
        for kind, rel in changes:
            if rel not in source.skip:
                writer.change(kind, rel)


# --- finding the changes ----------------------------------------------------------


def _join(rel: str, name: str) -> str:
    return f"{rel}/{name}" if rel else name


def _names(root: str, rel: str) -> list[str]:
    return sorted(os.listdir(os.path.join(root, rel) if rel else root))


def _all_added(upper: str, rel: str) -> Iterator[tuple[str, str]]:
    for name in _names(upper, rel):
        path = _join(rel, name)
        yield _ADD, path
        if stat.S_ISDIR(os.lstat(os.path.join(upper, path)).st_mode):
            yield from _all_added(upper, path)


def _overlay_changes(upper: str, rel: str) -> Iterator[tuple[str, str]]:
    for name in _names(upper, rel):
        path = _join(rel, name)
        full = os.path.join(upper, path)
        st = os.lstat(full)
        if _is_whiteout_device(st):
            yield _DELETE, path
            continue
        yield _ADD, path
        if stat.S_ISDIR(st.st_mode):
            if _xattr(full, _OPAQUE_XATTR) == b"y":
                yield _OPAQUE, path
            yield from _overlay_changes(upper, path)


def _tree_changes(lower: str, upper: str, rel: str) -> Iterator[tuple[str, str]]:
    """The changes below ``rel``, a directory in both trees."""
    upper_names = _names(upper, rel)
    lower_names = _names(lower, rel)
    in_upper, in_lower = set(upper_names), set(lower_names)
    for name in sorted(in_upper | in_lower):
        path = _join(rel, name)
        if name not in in_upper:
            yield _DELETE, path
            continue
        ust = os.lstat(os.path.join(upper, path))
        lst = os.lstat(os.path.join(lower, path)) if name in in_lower else None
        if lst is None or not _same(os.path.join(lower, path), lst, os.path.join(upper, path), ust):
            yield _ADD, path
        if stat.S_ISDIR(ust.st_mode):
            if lst is not None and stat.S_ISDIR(lst.st_mode):
                yield from _tree_changes(lower, upper, path)
            else:
                yield from _all_added(upper, path)


def _same(lpath: str, lst: os.stat_result, upath: str, ust: os.stat_result) -> bool:
    """Whether the entry is unchanged, as containerd's ``sameFile`` judges."""
    if (lst.st_mode, lst.st_uid, lst.st_gid) != (ust.st_mode, ust.st_uid, ust.st_gid):
        return False
    if (stat.S_ISCHR(ust.st_mode) or stat.S_ISBLK(ust.st_mode)) and lst.st_rdev != ust.st_rdev:
        return False
    if _kept_xattrs(lpath) != _kept_xattrs(upath):
        return False
    if stat.S_ISDIR(ust.st_mode):
        return True
    if lst.st_size != ust.st_size:
        return False
    lsec, lnsec = divmod(lst.st_mtime_ns, 10**9)
    usec, unsec = divmod(ust.st_mtime_ns, 10**9)
    if lsec != usec or lnsec != unsec:
        return False
    if lnsec or unsec:
        return True
    # Whole seconds in both (a layer's mtimes): a change within the second would not show; look.
    if stat.S_ISLNK(ust.st_mode):
        return os.readlink(lpath) == os.readlink(upath)
    if stat.S_ISREG(ust.st_mode) and ust.st_size:
        return _same_content(lpath, upath)
    return True


def _same_content(a: str, b: str) -> bool:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    with open(os.open(a, flags), "rb") as fa, open(os.open(b, flags), "rb") as fb:
        while True:
            ca, cb = fa.read(_CHUNK), fb.read(_CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def _xattr(path: str, name: str) -> bytes | None:
    try:
        return os.getxattr(path, name, follow_symlinks=False)
    except OSError:
        return None


def _kept_xattrs(path: str) -> dict[str, bytes]:
    """The xattrs a layer carries for ``path`` (none where the filesystem has none)."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    found: dict[str, bytes] = {}
    for name in sorted(names):
        if _keep_xattr(name):
            value = _xattr(path, name)
            if value is not None:
                found[name] = value
    return found


# --- writing them -------------------------------------------------------------------


class _TarWriter:
    def __init__(self, tar: tarfile.TarFile, upper: str) -> None:
        self._upper = upper
        self._tar = tar
        self._dirs: set[str] = {""}  # directories written (the root needs none)
        self._links: dict[tuple[int, int], str] = {}  # inode -> the name it was first written under

    def change(self, kind: str, rel: str) -> None:
        parent, _, base = rel.rpartition("/")
        self._parents(parent)
        if kind == _DELETE:
            self._empty(_join(parent, _WH + base), parent)
        elif kind == _OPAQUE:
            self._empty(_join(rel, _WH_OPAQUE), rel)
        else:
            self._entry(rel)

    def _parents(self, rel: str) -> None:
        if rel in self._dirs:
            return
        parent = rel.rpartition("/")[0]
        self._parents(parent)
        self._entry(rel)

    def _empty(self, name: str, directory: str) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.size = tarfile.REGTYPE, 0, 0
        info.mtime = int(os.lstat(os.path.join(self._upper, directory)).st_mtime)
        info.uname = info.gname = ""
        self._tar.addfile(info)

    def _entry(self, rel: str) -> None:
        path = os.path.join(self._upper, rel)
        st = os.lstat(path)
        mode = st.st_mode
        if stat.S_ISSOCK(mode):
            return  # as containerd: a socket is not layer content
        info = tarfile.TarInfo(rel)
        info.mode = stat.S_IMODE(mode)
        info.uid, info.gid = st.st_uid, st.st_gid
        info.mtime = st.st_mtime_ns // 10**9
        info.uname = info.gname = ""
        xattrs = _kept_xattrs(path)
        if xattrs:
            info.pax_headers = {"SCHILY.xattr." + k: v.decode("utf-8", "surrogateescape") for k, v in xattrs.items()}
        if stat.S_ISDIR(mode):
            info.type, info.name = tarfile.DIRTYPE, rel + "/"
            self._dirs.add(rel)
            self._tar.addfile(info)
        elif stat.S_ISLNK(mode):
            info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
            self._tar.addfile(info)
        elif stat.S_ISREG(mode):
            first = self._links.get((st.st_dev, st.st_ino)) if st.st_nlink > 1 else None
            if first is not None:
                info.type, info.linkname = tarfile.LNKTYPE, first
                self._tar.addfile(info)
                return
            if st.st_nlink > 1:
                self._links[(st.st_dev, st.st_ino)] = rel
            info.type, info.size = tarfile.REGTYPE, st.st_size
            with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC), "rb") as data:
                self._tar.addfile(info, data)
        else:
            if stat.S_ISCHR(mode):
                info.type = tarfile.CHRTYPE
            elif stat.S_ISBLK(mode):
                info.type = tarfile.BLKTYPE
            else:
                info.type = tarfile.FIFOTYPE
            info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            self._tar.addfile(info)


__all__ = ["COMPRESSIONS", "DiffSource", "WrittenLayer", "write_layer"]
