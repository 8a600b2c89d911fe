"""The layer applier: unpack one OCI/Docker layer tar into a snapshot.

This module writes the entries into the target directory.  The tar reader
(:mod:`hawser.images._tar`) parses them, :mod:`hawser.images._paths` checks
their names, :mod:`hawser.images._xattr` sets their xattrs and
:mod:`hawser.images._lowers` looks the lower layers up.  Decompressing the
layer is the caller's job (:func:`hawser.images._decompress.open_decompressed`).

Semantics follow the OCI image spec (layer.md): entries are regular files,
directories, symlinks, hardlinks, character and block devices and FIFOs, with
numeric owner, mode (setuid/setgid/sticky included), mtime and xattrs;
``.wh.NAME`` removes NAME from the lower layers and ``.wh..wh..opq`` hides
everything the lower layers have in its directory.  Whiteouts apply only to
lower layers: what this layer itself creates stays, wherever the marker sits
in the tar.

Two kinds of target (:class:`~hawser.snapshots.ApplyTarget`):

* an overlayfs upper dir (``overlay_whiteouts``): the dir holds only this
  layer.  A whiteout becomes a 0/0 character device, an opaque directory
  gets ``trusted.overlay.opaque=y``; a directory written over a whiteout of
  this layer is made opaque too (the lower one is gone).  overlayfs ignores
  the opaque xattr on a layer's root, so ``.wh..wh..opq`` at the top turns
  into a whiteout per top-level entry of the lowers (LowerNeeded when the
  lowers are not known yet).  Hardlinks to a file of a lower layer copy that
  file up first (as overlayfs itself would), or raise LowerNeeded.
* a full tree (native snapshotter): whiteouts delete, an opaque marker deletes
  every child of its directory that this layer did not create.

Safety: nothing is ever written outside ``target.path``.  Every path is
normalised lexically (a leading ``/`` and ``./`` are dropped, as containerd
and GNU tar do; a path whose ``..`` climbs above the root is rejected), and
the tree is walked one component at a time with ``O_NOFOLLOW | O_DIRECTORY``
from directory fds, so a symlink can never be followed: a non-final
component that is a symlink (planted by this layer, or by an earlier one in a
full tree) rejects the layer.  Rejections raise InvalidArgument naming the
entry.  Hardlinks must point at an existing non-directory inside the tree
(this layer, or a lower layer in overlay mode, which is copied up first), are
made with linkat(2) without following, and may not point at a symlink whose
target leaves the tree (absolute or climbing out with ``..``).

What this applier cannot see in overlay mode is a symlink an *earlier layer*
planted where this layer needs a directory: the upper dir does not hold the
lowers.  Every parent directory the layer needed without containing it as a
directory entry is returned in ``ApplyResult.implicit_dirs``, and
:func:`check_implicit_dirs` checks them against the lowers before the layer
is committed on top of them (and, given the upper dir, copies the lower
directories' owner, mode, times and xattrs onto those implicit dirs, as
containerd does when it creates missing parents).  When ``target.lowers``
is given the same check and copy happen while unpacking.

Xattrs come from PAX ``SCHILY.xattr.*`` (and libarchive's
``LIBARCHIVE.xattr.*``).  ``trusted.*`` and ``user.overlay.*`` from a layer
are dropped: they belong to privileged host software and overlayfs would
obey ``trusted.overlay.*`` (opaque, redirect, metacopy) as its own markers.
``security.capability`` (file capabilities) and other ``security.*``,
``system.*`` (ACLs) and ``user.*`` are kept; an attribute the filesystem or
file type does not support (user.* on a symlink) is skipped
(:mod:`hawser.images._xattr`).

Speed: the tar is parsed by a small header parser over a 1 MiB buffer
(:mod:`hawser.images._tar`; the hash of the uncompressed stream is updated
per chunk, not per entry), directory fds are cached so each entry costs one openat in its parent, file
data goes straight from the buffer to os.write, directory times are set once
at the end, and instead of an fsync per file the filesystem is synced once
(syncfs) before returning.

Atomicity: on any error the applier raises and leaves what it wrote; the
caller removes the active snapshot.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Sequence
from typing import TYPE_CHECKING, BinaryIO, NoReturn

from hawser._dataclass import dataclass
from hawser.errors import HawserError, Internal, InvalidArgument, ResourceExhausted
from hawser.images._lowers import _OPAQUE_XATTR, _Lowers
from hawser.images._paths import _O_DIR, _symlink_leaves, normalise
from hawser.images._tar import _entries, _Stream
from hawser.images._xattr import _copy_xattrs, _xattrs, _XattrSetter

if TYPE_CHECKING:
    from hawser.images._tar import _Entry
    from hawser.oci import Digest
    from hawser.snapshots import ApplyTarget

# Directory fds kept open between entries (tars list a directory's entries together).
DIR_CACHE = 128

_O_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_WH = ".wh."
_WH_META = ".wh..wh."
_WH_OPAQUE = ".wh..wh..opq"


class LowerNeeded(Exception):
    """The layer needs its lowers, which were not given: it hardlinks a file
    only a lower layer has, or hides everything below it (``.wh..wh..opq`` at
    its root, which overlayfs cannot express with an xattr).  Raised only with
    ``parent_pending=True``: the pipeline unpacks layers in parallel before
    their parents are committed.  The pipeline then removes the snapshot and
    applies the layer again on top of its committed parents."""


@dataclass(frozen=True, slots=True)
class ApplyResult:
    diff_id: Digest  # sha256 of the whole uncompressed stream, trailing bytes included
    size: int  # uncompressed bytes read
    implicit_dirs: tuple[str, ...]  # parents needed but not in the layer as directories
    entries: int  # tar entries applied (whiteouts included)


@dataclass(frozen=True, slots=True)
class RawApplyResult:
    """What :func:`apply_raw` returns: the digest as hex, so the worker never
    imports the OCI package."""

    sha256: str
    size: int
    implicit_dirs: tuple[str, ...]
    entries: int


# --- the applier ------------------------------------------------------------------


_REG_TYPES = (b"0", b"\0", b"7")


class _Applier:
    def __init__(self, root: str, *, overlay: bool, lowers: Sequence[str], parent_pending: bool) -> None:
        self.overlay = overlay
        self.lowers = _Lowers(lowers) if overlay and lowers else None
        self.parent_pending = parent_pending
        self.root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self.dirs: dict[str, int] = {}
        self.written: dict[str, int] = {}  # rel -> S_IFMT of what this layer's entries made
        self.touched: set[str] = set()  # directories this layer wrote into (parents of its entries)
        self.dir_times: dict[str, tuple[int, int]] = {}
        self.whiteouts: set[str] = set()  # overlay: 0/0 devices this layer made
        self.opaque: set[str] = set()  # overlay: dirs this layer made opaque
        self.root_opaque = False  # overlay: .wh..wh..opq at the top
        self.fresh: set[str] = set()  # overlay: dirs made where this layer whited out the lower entry
        self.entries = 0
        self.current = ""

    def close(self) -> None:
        for fd in self.dirs.values():
            os.close(fd)
        self.dirs.clear()
        os.close(self.root_fd)

    # --- directories ---

    def _dir(self, rel: str) -> int:
        """An fd of directory ``rel`` for writing into it; missing directories
        are created (implicit).  Never follows a symlink.  The fd belongs to
        the cache: valid until the next entry, or until ``rel`` is removed."""
        if not rel:
            return self.root_fd
        fd = self.dirs.get(rel)
        if fd is None:
            fd = self._open_dir(rel)
        if rel not in self.touched:
            while rel and rel not in self.touched:
                self.touched.add(rel)
                rel = rel.rpartition("/")[0]
        return fd

    def _open_dir(self, rel: str) -> int:
        parent, _, base = rel.rpartition("/")
        pfd = self._dir(parent)
        try:
            fd = os.open(base, _O_DIR, dir_fd=pfd)
        except FileNotFoundError:
            self._mkdir_implicit(pfd, base, rel)
            fd = os.open(base, _O_DIR, dir_fd=pfd)
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            if self.overlay and rel in self.whiteouts:
                # ".wh.a" then "a/b" without an "a/" entry: a new, opaque "a"
                os.unlink(base, dir_fd=pfd)
                self.whiteouts.discard(rel)
                self.fresh.add(rel)
                self._mkdir_implicit(pfd, base, rel)
                fd = os.open(base, _O_DIR, dir_fd=pfd)
                self._set_opaque(fd, rel)
            else:
                self._refuse_parent(pfd, base, rel)
        self.dirs[rel] = fd
        return fd

    def _existing_dir(self, rel: str) -> int | None:
        """Like _dir but creates nothing: None if a component is missing."""
        if not rel:
            return self.root_fd
        cached = self.dirs.get(rel)
        if cached is not None:
            return cached
        parent, _, base = rel.rpartition("/")
        pfd = self._existing_dir(parent)
        if pfd is None:
            return None
        try:
            fd = os.open(base, _O_DIR, dir_fd=pfd)
        except FileNotFoundError:
            return None
        except OSError as e:
            if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                raise
            self._refuse_parent(pfd, base, rel)
        self.dirs[rel] = fd
        return fd

    def _trim_cache(self) -> None:
        """Close the cached fds when there are many.  Only between entries:
        within one, callers hold fds from the cache."""
        if len(self.dirs) >= DIR_CACHE:
            for old in self.dirs.values():
                os.close(old)
            self.dirs.clear()

    def _forget(self, rel: str) -> None:
        """Drop cached fds of ``rel`` and below (it is being removed)."""
        prefix = rel + "/"
        for key in [k for k in self.dirs if k == rel or k.startswith(prefix)]:
            os.close(self.dirs.pop(key))

    def _refuse_parent(self, pfd: int, base: str, rel: str) -> NoReturn:
        st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
        raise InvalidArgument(f"layer entry {self.current!r}: parent {rel!r} is {kind}; refusing to write through it",
                              hint="the layer is malformed or hostile")

    def _mkdir_implicit(self, pfd: int, base: str, rel: str) -> None:
        os.mkdir(base, 0o755, dir_fd=pfd)
        if self.lowers is not None and rel not in self.fresh and not self._below_opaque(rel):
            found = self.lowers.dir_stat(rel, self.current)
            if found is not None:
                src, st = found
                fd = os.open(base, _O_DIR, dir_fd=pfd)
                try:
                    os.fchown(fd, st.st_uid, st.st_gid)
                    os.fchmod(fd, stat.S_IMODE(st.st_mode))
                    _copy_xattrs(src, _XattrSetter(fd))
                finally:
                    os.close(fd)
                if rel not in self.dir_times:
                    self.dir_times[rel] = (st.st_atime_ns, st.st_mtime_ns)
                return
        os.chmod(base, 0o755, dir_fd=pfd)  # not the umask's idea

    def _set_opaque(self, fd: int, rel: str) -> None:
        os.setxattr(fd, _OPAQUE_XATTR, b"y")
        self.opaque.add(rel)

    # --- removal ---

    def _remove(self, pfd: int, base: str, rel: str) -> None:
        """Remove whatever is at ``base`` in ``pfd`` (a tree too), not following symlinks."""
        try:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISDIR(st.st_mode):
            import shutil  # rarely needed: not at the worker's startup

            self._forget(rel)
            # rmtree with dir_fd works on fds all the way down: symlinks are removed, never followed
            shutil.rmtree(base, dir_fd=pfd)
        else:
            os.unlink(base, dir_fd=pfd)

    def _wipe_lower(self, fd: int, rel: str) -> None:
        """Full tree: remove the children of ``rel`` that this layer did not make."""
        with os.scandir(fd) as it:
            children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
        for name, is_dir in children:
            crel = f"{rel}/{name}" if rel else name
            kind = self.written.get(crel)
            if kind is not None or crel in self.touched:
                if is_dir and (kind == stat.S_IFDIR or crel in self.touched):
                    # Own fds, not the cache's: a wide tree must not pile them up.
                    cfd = os.open(name, _O_DIR, dir_fd=fd)
                    try:
                        self._wipe_lower(cfd, crel)
                    finally:
                        os.close(cfd)
                continue
            self._remove(fd, name, crel)

    # --- whiteouts ---

    def _whiteout(self, parent: str, base: str) -> None:
        if base == _WH_OPAQUE:
            self._make_opaque(parent)
            return
        if base.startswith(_WH_META):
            return  # other AUFS metadata (.wh..wh.plnk...): meaningless here, as in containerd
        victim = base[len(_WH) :]
        if victim in ("", ".", ".."):
            raise InvalidArgument(f"layer entry {self.current!r} is a whiteout of {victim!r}",
                                  hint="the layer is malformed or hostile")
        vrel = f"{parent}/{victim}" if parent else victim
        pfd = self._dir(parent)
        kind = self.written.get(vrel)
        if kind is not None or vrel in self.touched:
            # Whiteouts hide lower layers only: for a directory this layer
            # made, that means its lower contents; a file it made stays.
            if kind == stat.S_IFDIR or (kind is None and vrel in self.touched):
                self._make_opaque(vrel)
            return
        if self.overlay:
            try:
                os.mknod(victim, stat.S_IFCHR, 0, dir_fd=pfd)
            except FileExistsError:
                self._remove(pfd, victim, vrel)  # e.g. a lower file copied up for a hardlink
                os.mknod(victim, stat.S_IFCHR, 0, dir_fd=pfd)
            self.whiteouts.add(vrel)
        else:
            self._remove(pfd, victim, vrel)

    def _make_opaque(self, rel: str) -> None:
        fd = self._dir(rel)
        if self.overlay:
            if not rel:
                # overlayfs ignores the opaque xattr on the root of a layer:
                # whiteouts are made at the end instead (_opaque_root).
                self.root_opaque = True
                return
            self._set_opaque(fd, rel)
        else:
            self._wipe_lower(fd, rel)

    def _opaque_root(self) -> None:
        """Overlay, ``.wh..wh..opq`` at the top: hide every top-level entry of
        the lowers with a whiteout, or by making this layer's directory of the
        same name opaque."""
        if self.lowers is None:
            if self.parent_pending:
                raise LowerNeeded("the layer hides everything below it (.wh..wh..opq at its root)")
            return  # a base layer: nothing below to hide
        names: set[str] = set()
        for lower in self.lowers.roots:
            names.update(os.listdir(lower))
        for name in sorted(names):
            self.current = name
            try:
                st = os.stat(name, dir_fd=self.root_fd, follow_symlinks=False)
            except FileNotFoundError:
                os.mknod(name, stat.S_IFCHR, 0, dir_fd=self.root_fd)
                self.whiteouts.add(name)
                continue
            if stat.S_ISDIR(st.st_mode) and name not in self.opaque:
                self._set_opaque(self._dir(name), name)

    # --- entries ---

    def apply(self, e: _Entry, stream: _Stream) -> None:
        name = e.name
        self.current = name
        if len(self.dirs) >= DIR_CACHE:
            self._trim_cache()
        rel = normalise(name)
        t = e.type
        if (t == b"0" or t == b"\0") and name.endswith("/"):
            t = b"5"  # old tars mark directories with a trailing slash only
        if not rel:
            if t not in (b"5", b"D"):
                raise InvalidArgument(f"layer entry {name!r} would replace the root with a non-directory")
            self._dir_metadata(self.root_fd, rel, e)
            if e.size:
                stream.skip(e.size, name)
            return
        parent, _, base = rel.rpartition("/")
        if base.startswith(_WH):
            if e.size:
                stream.skip(e.size, name)
            self._whiteout(parent, base)
            return
        pfd = self._dir(parent)
        if t in _REG_TYPES:
            self._file(pfd, base, rel, e, stream)
            return
        if e.size and t != b"1":
            stream.skip(e.size, name)
        if t == b"5" or t == b"D":
            self._directory(pfd, base, rel, e)
        elif t == b"2":
            self._symlink(pfd, base, rel, e)
        elif t == b"1":
            if e.size:
                stream.skip(e.size, name)
            self._hardlink(pfd, base, rel, e)
        elif t == b"3" or t == b"4" or t == b"6":
            self._node(pfd, base, rel, e, t)
        else:
            raise InvalidArgument(f"layer entry {name!r} has unsupported type {t!r}")

    def _file(self, pfd: int, base: str, rel: str, e: _Entry, stream: _Stream) -> None:
        try:
            fd = os.open(base, _O_NEW, 0o600, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, base, rel)
            fd = os.open(base, _O_NEW, 0o600, dir_fd=pfd)
        try:
            if e.size:
                stream.copy_to(fd, e.size, e.name)
            # chown clears setuid/setgid and file capabilities: owner, then mode, then xattrs
            os.fchown(fd, e.uid, e.gid)
            os.fchmod(fd, e.mode)
            if e.pax:
                setter = _XattrSetter(fd)
                for key, value in _xattrs(e.pax):
                    setter(key, value)
            os.utime(fd, ns=(e.atime, e.mtime))
        finally:
            os.close(fd)
        self.written[rel] = stat.S_IFREG

    def _directory(self, pfd: int, base: str, rel: str, e: _Entry) -> None:
        replaced_whiteout = False
        try:
            os.mkdir(base, 0o700, dir_fd=pfd)
        except FileExistsError:
            st = os.stat(base, dir_fd=pfd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                replaced_whiteout = self.overlay and rel in self.whiteouts
                self._remove(pfd, base, rel)
                self.whiteouts.discard(rel)
                os.mkdir(base, 0o700, dir_fd=pfd)
        fd = self.dirs.get(rel)
        if fd is None:
            fd = os.open(base, _O_DIR, dir_fd=pfd)
            self.dirs[rel] = fd
        self._dir_metadata(fd, rel, e)
        if replaced_whiteout:
            # The lower directory was deleted by this layer: hide its contents.
            self._set_opaque(fd, rel)
        self.written[rel] = stat.S_IFDIR

    def _dir_metadata(self, fd: int, rel: str, e: _Entry) -> None:
        os.fchown(fd, e.uid, e.gid)
        os.fchmod(fd, e.mode)
        if e.pax:
            setter = _XattrSetter(fd)
            for key, value in _xattrs(e.pax):
                setter(key, value)
        # Later entries change the directory's mtime: set it at the end.
        self.dir_times[rel] = (e.atime, e.mtime)

    def _symlink(self, pfd: int, base: str, rel: str, e: _Entry) -> None:
        target = e.linkname
        if not target or "\x00" in target:
            raise InvalidArgument(f"layer entry {e.name!r} is a symlink with an invalid target {target!r}")
        try:
            os.symlink(target, base, dir_fd=pfd)
        except FileExistsError:
            self._remove(pfd, base, rel)
            os.symlink(target, base, dir_fd=pfd)
        os.chown(base, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        if e.pax:
            self._node_xattrs(pfd, base, e)
        os.utime(base, ns=(e.atime, e.mtime), dir_fd=pfd, follow_symlinks=False)
        self.written[rel] = stat.S_IFLNK

    def _node(self, pfd: int, base: str, rel: str, e: _Entry, t: bytes) -> None:
        if t == b"6":
            def make() -> None:
                os.mkfifo(base, 0o600, dir_fd=pfd)
            kind = stat.S_IFIFO
        else:
            kind = stat.S_IFCHR if t == b"3" else stat.S_IFBLK
            device = os.makedev(e.devmajor, e.devminor)

            def make() -> None:
                os.mknod(base, kind | 0o600, device, dir_fd=pfd)
        try:
            make()
        except FileExistsError:
            self._remove(pfd, base, rel)
            make()
        os.chown(base, e.uid, e.gid, dir_fd=pfd, follow_symlinks=False)
        # We made this node a moment ago in a directory we hold: it is not a
        # symlink, so chmod may resolve the name.
        os.chmod(base, e.mode, dir_fd=pfd)
        if e.pax:
            self._node_xattrs(pfd, base, e)
        os.utime(base, ns=(e.atime, e.mtime), dir_fd=pfd, follow_symlinks=False)
        self.written[rel] = kind

    def _node_xattrs(self, pfd: int, base: str, e: _Entry) -> None:
        # No setxattrat(2) in Python: name the entry through the directory fd.
        setter = _XattrSetter(f"/proc/self/fd/{pfd}/{base}")
        for key, value in _xattrs(e.pax):
            setter(key, value)

    def _hardlink(self, pfd: int, base: str, rel: str, e: _Entry) -> None:
        if not e.linkname:
            raise InvalidArgument(f"layer entry {e.name!r} is a hardlink without a target")
        trel = normalise(e.linkname, f"hardlink target of {e.name!r}")
        if not trel:
            raise InvalidArgument(f"layer entry {e.name!r} is a hardlink to the root directory")
        if trel == rel:
            raise InvalidArgument(f"layer entry {e.name!r} is a hardlink to itself")
        tfd, tbase = self._link_target(trel, e)
        try:
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileExistsError:
            self._remove(pfd, base, rel)
            tfd, tbase = self._link_target(trel, e)  # removing may have dropped cached fds
            os.link(tbase, base, src_dir_fd=tfd, dst_dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            raise InvalidArgument(f"layer entry {e.name!r}: hardlink target {e.linkname!r} vanished") from None
        self.written[rel] = stat.S_IFREG

    def _link_target(self, trel: str, e: _Entry) -> tuple[int, str]:
        """The directory fd and name of an existing non-directory ``trel`` to link to."""
        tparent, _, tbase = trel.rpartition("/")
        tfd = self._existing_dir(tparent)
        if tfd is not None:
            try:
                st: os.stat_result | None = os.stat(tbase, dir_fd=tfd, follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None:
                if self.overlay and trel in self.whiteouts:
                    raise InvalidArgument(f"layer entry {e.name!r} links to {e.linkname!r}, which the layer deleted")
                self._check_link_inode(trel, st, e, lambda: os.readlink(tbase, dir_fd=tfd))
                return tfd, tbase
        if not self.overlay:
            raise InvalidArgument(f"layer entry {e.name!r} links to {e.linkname!r}, which does not exist")
        if self._hidden_in_upper(trel):
            raise InvalidArgument(f"layer entry {e.name!r} links to {e.linkname!r}, which the layer deleted")
        if self.lowers is None:
            if self.parent_pending:
                raise LowerNeeded(f"layer entry {e.name!r} links to {e.linkname!r} in a lower layer")
            raise InvalidArgument(f"layer entry {e.name!r} links to {e.linkname!r}, which does not exist")
        found = self.lowers.lookup(trel, e.name)
        if found is None:
            raise InvalidArgument(f"layer entry {e.name!r} links to {e.linkname!r}, which does not exist")
        src, st = found
        self._check_link_inode(trel, st, e, lambda: os.readlink(src))
        upper_fd = self._dir(tparent)
        self._copy_up(src, st, upper_fd, tbase)
        return upper_fd, tbase

    def _check_link_inode(self, trel: str, st: os.stat_result, e: _Entry, readlink: _ReadLink) -> None:
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"layer entry {e.name!r} is a hardlink to directory {e.linkname!r}")
        if stat.S_ISLNK(st.st_mode) and _symlink_leaves(trel, readlink()):
            raise InvalidArgument(f"layer entry {e.name!r} is a hardlink to symlink {e.linkname!r}, "
                                  "which points outside the root", hint="the layer is malformed or hostile")

    def _below_opaque(self, rel: str) -> bool:
        """Overlay: whether an ancestor of ``rel`` is opaque in this layer (the
        lowers do not show below it)."""
        if self.root_opaque:
            return True
        if not self.opaque:
            return False
        parts = rel.split("/")
        return any("/".join(parts[:i]) in self.opaque for i in range(1, len(parts)))

    def _hidden_in_upper(self, rel: str) -> bool:
        """Overlay: whether this layer's whiteouts or opaque dirs hide lower ``rel``."""
        parts = rel.split("/")
        for i in range(len(parts)):
            prefix = "/".join(parts[: i + 1])
            if prefix in self.whiteouts:
                return True
            if i < len(parts) - 1 and prefix in self.opaque:
                return True
        return self.root_opaque

    def _copy_up(self, src: str, st: os.stat_result, tfd: int, tbase: str) -> None:
        """Copy a lower layer's file into the upper dir, as overlayfs copy-up would."""
        mode = st.st_mode
        if stat.S_ISREG(mode):
            sfd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                dfd = os.open(tbase, _O_NEW, 0o600, dir_fd=tfd)
                try:
                    remaining = st.st_size
                    while remaining > 0:
                        sent = os.sendfile(dfd, sfd, None, min(remaining, 1 << 30))
                        if sent == 0:
                            break
                        remaining -= sent
                    os.fchown(dfd, st.st_uid, st.st_gid)
                    os.fchmod(dfd, stat.S_IMODE(mode))
                    _copy_xattrs(src, _XattrSetter(dfd))
                    os.utime(dfd, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(dfd)
            finally:
                os.close(sfd)
            return
        if stat.S_ISLNK(mode):
            os.symlink(os.readlink(src), tbase, dir_fd=tfd)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(tbase, stat.S_IFMT(mode) | 0o600, st.st_rdev, dir_fd=tfd)
            os.chmod(tbase, stat.S_IMODE(mode), dir_fd=tfd)
        else:
            raise InvalidArgument(f"layer entry {self.current!r} links to a {stat.filemode(mode)[0]!r} file")
        os.chown(tbase, st.st_uid, st.st_gid, dir_fd=tfd, follow_symlinks=False)
        _copy_xattrs(src, _XattrSetter(f"/proc/self/fd/{tfd}/{tbase}"))
        os.utime(tbase, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=tfd, follow_symlinks=False)

    # --- the end ---

    def finish(self) -> tuple[str, ...]:
        if self.root_opaque:
            self._opaque_root()
        for rel, (atime, mtime) in self.dir_times.items():
            self._trim_cache()
            try:
                fd = self._existing_dir(rel)
            except InvalidArgument:
                continue  # replaced by a later entry with a non-directory
            if fd is not None:
                os.utime(fd, ns=(atime, mtime))
        # Not implicit: the layer's own directory entries, and directories
        # whose lower counterpart the layer hid (a whiteout, an opaque parent).
        implicit = sorted(d for d in self.touched if d and self.written.get(d) != stat.S_IFDIR
                          and d not in self.fresh and not self._below_opaque(d))
        return tuple(implicit)


if TYPE_CHECKING:
    from collections.abc import Callable

    _ReadLink = Callable[[], str]


def apply_raw(tar_stream: BinaryIO, target: ApplyTarget, *, parent_pending: bool = False,
              sync: bool = True) -> RawApplyResult:
    """:func:`apply_layer` returning the digest as a hex string (for the worker)."""
    stream = _Stream(tar_stream)
    applier = _Applier(target.path, overlay=target.overlay_whiteouts, lowers=target.lowers,
                       parent_pending=parent_pending)
    try:
        for entry in _entries(stream):
            applier.apply(entry, stream)
            applier.entries += 1
        applier.current = ""
        stream.drain()
        implicit = applier.finish()
        if sync:
            from hawser.host import syncfs

            syncfs(applier.root_fd)
    except (HawserError, LowerNeeded):
        raise
    except OSError as e:
        where = f" at entry {applier.current!r}" if applier.current else ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ResourceExhausted(f"no space left on device while unpacking a layer into {target.path}{where}",
                                    hint="free disk space (hawser image prune) and retry") from e
        raise Internal(f"unpacking a layer into {target.path}{where}: {e}") from e
    except (OverflowError, ValueError) as e:
        # e.g. a time or device number too large for the kernel
        raise InvalidArgument(f"layer entry {applier.current!r}: {e}") from e
    finally:
        applier.close()
    return RawApplyResult(sha256=stream.hasher.hexdigest(), size=stream.total, implicit_dirs=implicit,
                          entries=applier.entries)


def apply_layer(tar_stream: BinaryIO, target: ApplyTarget, *, parent_pending: bool = False,
                sync: bool = True) -> ApplyResult:
    """Apply an uncompressed layer tar to ``target``; see the module docstring.

    Reads ``tar_stream`` to EOF (so ``diff_id`` covers trailing bytes too).
    ``parent_pending``: the snapshot has parents that are not in
    ``target.lowers`` yet; a hardlink into them raises LowerNeeded instead of
    InvalidArgument.  ``sync``: syncfs the target's filesystem before
    returning (the data is durable when this returns).

    Raises InvalidArgument for a malformed or hostile layer (escaping paths,
    writing through symlinks, bad hardlinks, NUL bytes, corrupt tar or
    compressed stream), ResourceExhausted when the disk is full, LowerNeeded
    (see above), Internal for other I/O errors.  Leaves partial results for
    the caller to remove."""
    from hawser.oci import Digest

    raw = apply_raw(tar_stream, target, parent_pending=parent_pending, sync=sync)
    return ApplyResult(diff_id=Digest(f"sha256:{raw.sha256}"), size=raw.size, implicit_dirs=raw.implicit_dirs,
                       entries=raw.entries)


__all__ = ["ApplyResult", "LowerNeeded", "RawApplyResult", "apply_layer", "apply_raw"]
