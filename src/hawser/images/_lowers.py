"""The overlay lower layers as overlayfs merges them: look-ups in a stack of
lower dirs for the applier (hardlinks into a lower, the metadata of implicit
parent dirs), and :func:`check_implicit_dirs`, which checks an unpacked
layer's implicit parent dirs against its lowers.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence

from hawser.errors import InvalidArgument
from hawser.images._paths import _O_DIR, normalise
from hawser.images._xattr import _copy_xattrs, _XattrSetter

_OPAQUE_XATTR = "trusted.overlay.opaque"


def _is_whiteout_device(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


class _Lowers:
    """Look-ups in a stack of overlay lower dirs (nearest first), as overlayfs
    merges them: the first lower with an entry decides; a whiteout hides
    everything below; directories merge until an opaque one; nothing here
    follows a symlink (a path is only looked up below directories already
    seen to be real directories)."""

    def __init__(self, roots: Sequence[str]) -> None:
        self.roots = list(roots)
        # dir -> the lowers whose directory at that path shows in the merge; () when there is none
        self._dirs: dict[str, tuple[int, ...]] = {"": tuple(range(len(self.roots)))}

    def _lstat(self, i: int, rel: str) -> os.stat_result | None:
        try:
            return os.lstat(os.path.join(self.roots[i], rel))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def merged_dir(self, rel: str, entry: str) -> tuple[int, ...]:
        """The lowers contributing to directory ``rel`` (empty if the merged
        tree has nothing there).  InvalidArgument if the merged tree has a
        symlink or another non-directory at ``rel`` or above: ``entry`` of
        the new layer would be written through it."""
        cached = self._dirs.get(rel)
        if cached is not None:
            return cached
        parent = rel.rpartition("/")[0]
        contributing: list[int] = []
        for i in self.merged_dir(parent, entry):
            st = self._lstat(i, rel)
            if st is None:
                continue
            if stat.S_ISDIR(st.st_mode):
                contributing.append(i)
                if self._opaque(i, rel):
                    break
                continue
            if not contributing and not _is_whiteout_device(st):
                kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a directory"
                raise InvalidArgument(
                    f"layer entry {entry!r}: {rel!r} is {kind} in a lower layer; "
                    "refusing to write through it", hint="the image is malformed or hostile")
            break  # a non-directory (or whiteout) hides what is below it
        result = tuple(contributing)
        self._dirs[rel] = result
        return result

    def _opaque(self, i: int, rel: str) -> bool:
        try:
            return os.getxattr(os.path.join(self.roots[i], rel), _OPAQUE_XATTR, follow_symlinks=False) == b"y"
        except OSError:
            return False

    def lookup(self, rel: str, entry: str) -> tuple[str, os.stat_result] | None:
        """The path and lstat of ``rel`` in the merged lowers, or None."""
        for i in self.merged_dir(rel.rpartition("/")[0], entry):
            st = self._lstat(i, rel)
            if st is None:
                continue
            if _is_whiteout_device(st):
                return None
            return os.path.join(self.roots[i], rel), st
        return None

    def dir_stat(self, rel: str, entry: str) -> tuple[str, os.stat_result] | None:
        """The nearest lower directory at ``rel`` (whose metadata the merge shows), or None."""
        contributing = self.merged_dir(rel, entry)
        if not contributing:
            return None
        path = os.path.join(self.roots[contributing[0]], rel)
        return path, os.lstat(path)


def check_implicit_dirs(implicit_dirs: Sequence[str], lowers: Sequence[str], *, upper: str | None = None) -> None:
    """Check a layer unpacked into an overlay upper dir against its lowers.

    For each implicit dir (and each of its prefixes) the lowers are searched
    nearest first, as overlayfs does: the first lower with an entry decides;
    a directory is fine, a whiteout or no entry at all is fine, an opaque
    directory stops the search below it; a symlink (or another
    non-directory) means the layer writes through something an earlier layer
    planted: InvalidArgument.

    With ``upper`` (the layer's upper dir), each implicit dir there also
    gets the owner, mode, times and xattrs of the lower directory the merge
    shows, so adding ``tmp/x`` without a ``tmp/`` entry keeps /tmp 1777.
    Call it before committing the layer on top of ``lowers`` (nearest first).
    Idempotent."""
    index = _Lowers(lowers)
    fix_fd = os.open(upper, _O_DIR) if upper is not None else -1
    try:
        for name in implicit_dirs:
            rel = normalise(name, "implicit dir")
            if not rel:
                continue
            index.merged_dir(rel, name)
            if fix_fd >= 0:
                found = index.dir_stat(rel, name)
                if found is not None:
                    _fix_upper_dir(fix_fd, rel, found)
    finally:
        if fix_fd >= 0:
            os.close(fix_fd)


def _fix_upper_dir(root_fd: int, rel: str, found: tuple[str, os.stat_result]) -> None:
    fd = os.dup(root_fd)
    try:
        for part in rel.split("/"):
            try:
                nfd = os.open(part, _O_DIR, dir_fd=fd)
            except OSError:
                return  # gone or replaced by a non-directory: nothing to fix
            os.close(fd)
            fd = nfd
        src, st = found
        os.fchown(fd, st.st_uid, st.st_gid)
        os.fchmod(fd, stat.S_IMODE(st.st_mode))
        _copy_xattrs(src, _XattrSetter(fd))
        os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns))
    finally:
        os.close(fd)


__all__ = ["check_implicit_dirs"]
