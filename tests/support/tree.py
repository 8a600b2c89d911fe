"""Compare an unpacked rootfs with what its layer tars say it should be.

``expected_tree`` applies the layers to an in-memory model (whiteouts, opaque
directories, hardlinks) as the OCI image spec defines it; ``actual_tree``
reads a mounted rootfs the same way.  Tests assert they are equal.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass


@dataclass(frozen=True)
class Entry:
    kind: str            # file, dir, symlink, char, block, fifo
    mode: int            # permission bits incl. setuid/setgid/sticky
    uid: int
    gid: int
    content: str = ""    # sha256 of a file's data, a symlink's target, a device's major:minor
    mtime: int = -1      # files only (directory times move as entries change)
    xattrs: tuple[tuple[str, bytes], ...] = ()


def _kind(member: tarfile.TarInfo) -> str:
    return {tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir", tarfile.SYMTYPE: "symlink",
            tarfile.CHRTYPE: "char", tarfile.BLKTYPE: "block", tarfile.FIFOTYPE: "fifo",
            tarfile.LNKTYPE: "link"}[member.type]


def expected_tree(layers: Sequence[bytes]) -> tuple[dict[str, Entry], list[set[str]]]:
    """The merged tree of the layers, and the groups of paths that are hardlinked."""
    tree: dict[str, Entry] = {}
    links: dict[str, str] = {}  # path -> representative of its hardlink group
    for layer in layers:
        created: set[str] = set()
        with tarfile.open(fileobj=io.BytesIO(layer), mode="r:") as tar:
            for m in tar:
                path = os.path.normpath(m.name.lstrip("/")).removeprefix("./")
                parent, base = os.path.split(path)
                if base == ".wh..wh..opq":
                    for p in [p for p in tree if p.startswith(parent + "/") and p not in created]:
                        tree.pop(p)
                    continue
                if base.startswith(".wh."):
                    gone = os.path.join(parent, base[4:])
                    for p in [p for p in tree if p == gone or p.startswith(gone + "/")]:
                        tree.pop(p)
                    continue
                kind = _kind(m)
                if kind != "dir" or tree.get(path, Entry("x", 0, 0, 0)).kind != "dir":
                    for p in [p for p in tree if p.startswith(path + "/")]:
                        tree.pop(p)
                links.pop(path, None)
                if kind == "link":
                    target = os.path.normpath(m.linkname.lstrip("/"))
                    tree[path] = tree[target]
                    links[path] = links.setdefault(target, target)
                else:
                    if kind == "file":
                        data = tar.extractfile(m).read()  # type: ignore[union-attr]
                        content = hashlib.sha256(data).hexdigest()
                    elif kind == "symlink":
                        content = m.linkname
                    elif kind in ("char", "block"):
                        content = f"{m.devmajor}:{m.devminor}"
                    else:
                        content = ""
                    xattrs = tuple(sorted((k.removeprefix("SCHILY.xattr."), v.encode("utf-8", "surrogateescape"))
                                          for k, v in m.pax_headers.items()
                                          if k.startswith("SCHILY.xattr.user.")))
                    tree[path] = Entry(kind, m.mode & 0o7777, m.uid, m.gid, content,
                                       int(m.mtime) if kind == "file" else -1, xattrs)
                created.add(path)
    groups: dict[str, set[str]] = {}
    for path, rep in links.items():
        if path in tree and rep in tree:
            groups.setdefault(rep, {rep}).add(path)
    return tree, [g for g in groups.values() if len(g) > 1]


def actual_tree(root: str) -> tuple[dict[str, Entry], dict[str, int]]:
    """The tree under ``root`` and each regular file's inode (to check hardlinks)."""
    tree: dict[str, Entry] = {}
    inodes: dict[str, int] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root)
            st = os.lstat(full)
            mode = st.st_mode
            if stat.S_ISREG(mode):
                with open(full, "rb") as f:
                    kind, content = "file", hashlib.sha256(f.read()).hexdigest()
                inodes[rel] = st.st_ino
            elif stat.S_ISDIR(mode):
                kind, content = "dir", ""
            elif stat.S_ISLNK(mode):
                kind, content = "symlink", os.readlink(full)
            elif stat.S_ISCHR(mode):
                kind, content = "char", f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            elif stat.S_ISBLK(mode):
                kind, content = "block", f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
            else:
                kind, content = "fifo", ""
            xattrs: tuple[tuple[str, bytes], ...] = ()
            if kind != "symlink":
                xattrs = tuple(sorted((k, os.getxattr(full, k, follow_symlinks=False))
                                      for k in os.listxattr(full, follow_symlinks=False) if k.startswith("user.")))
            tree[rel] = Entry(kind, stat.S_IMODE(mode), st.st_uid, st.st_gid, content,
                              int(st.st_mtime) if kind == "file" else -1, xattrs)
    return tree, inodes


@contextmanager
def mounted(mounts: Sequence[object], target: str) -> Iterator[str]:
    """Mount a snapshot's mounts (hawser.snapshots.Mount) on ``target``."""
    os.makedirs(target, exist_ok=True)
    done = []
    try:
        for m in mounts:
            options = ",".join(m.options)  # type: ignore[attr-defined]
            if m.type == "bind" or "bind" in m.options or "rbind" in m.options:  # type: ignore[attr-defined]
                cmd = ["mount", "-o", options, m.source, target]  # type: ignore[attr-defined]
            else:
                cmd = ["mount", "-t", m.type, "-o", options, m.source, target]  # type: ignore[attr-defined]
            subprocess.run(cmd, check=True, capture_output=True)
            done.append(target)
        yield target
    finally:
        for t in reversed(done):
            subprocess.run(["umount", t], check=False)
