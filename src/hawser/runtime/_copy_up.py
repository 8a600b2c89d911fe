"""Copy-up: a volume empty when a container is made gets the image's content
at the mount's destination (docker's "populate a new volume"): files with
their data, owners, modes, times and extended attributes, directories,
symlinks (as links, never followed), device nodes and fifos; hard links kept
within the copy.

The image is untrusted: its destination path is resolved inside the rootfs
(``resolve_in_root``: absolute symlinks restart at the rootfs, ``..`` stops
there), and the walk goes by directory fds with O_NOFOLLOW on both sides, so a
symlink in the image can neither make the copy read a host file nor write
through one.  The container is not running, so nothing in the rootfs moves;
the volume's directory is flocked while it is checked and filled, so two
containers made at once copy once.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat

from hawser.errors import FailedPrecondition
from hawser.runtime._user import resolve_in_root

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def copy_up(rootfs: str, destination: str, target: str) -> bool:
    """Fill ``target`` (a volume's host directory) with the image's content
    at ``destination`` (a path in the container) if ``target`` is empty and
    the path is a directory in the image.  True when it copied.
    FailedPrecondition when the copy fails."""
    source = resolve_in_root(rootfs, destination)
    try:
        src = os.open(source, _DIR)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
            return False  # nothing there in the image (runc makes the directory), or not a directory
        raise
    try:
        dst = os.open(target, _DIR)
        try:
            fcntl.flock(dst, fcntl.LOCK_EX)
            if os.listdir(dst):
                return False  # used before: its content is its own
            st = os.fstat(src)
            links: dict[tuple[int, int], tuple[int, str]] = {}
            held: list[int] = []
            try:
                _copy_tree(src, dst, links, held)
            finally:
                for fd in held:
                    os.close(fd)
            _attributes(src, dst, st)
            os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns))
            return True
        finally:
            os.close(dst)
    except OSError as exc:
        raise FailedPrecondition(f"cannot copy the image's {destination} into its volume: {exc}") from None
    finally:
        os.close(src)


def _attributes(src: int, dst: int, st: os.stat_result) -> None:
    """Owner (first: chown clears setuid), mode, extended attributes of an open file."""
    os.fchown(dst, st.st_uid, st.st_gid)
    os.fchmod(dst, stat.S_IMODE(st.st_mode))
    try:
        names = os.listxattr(src)
    except OSError:
        return
    for name in names:
        with contextlib.suppress(OSError):  # trusted.overlay.*, a security module's own: skipped
            os.setxattr(dst, name, os.getxattr(src, name))


def _copy_tree(src: int, dst: int, links: dict[tuple[int, int], tuple[int, str]], held: list[int]) -> None:
    own: int | None = None  # a dup of dst, kept while a hard link may still point into it
    with os.scandir(src) as entries:
        names = [e.name for e in entries]
    for name in names:
        st = os.stat(name, dir_fd=src, follow_symlinks=False)
        mode = st.st_mode
        if stat.S_ISDIR(mode):
            os.mkdir(name, 0o700, dir_fd=dst)
            s = os.open(name, _DIR, dir_fd=src)
            try:
                d = os.open(name, _DIR, dir_fd=dst)
                try:
                    _copy_tree(s, d, links, held)
                    _attributes(s, d, st)
                    os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
                finally:
                    os.close(d)
            finally:
                os.close(s)
        elif stat.S_ISREG(mode):
            key = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and key in links:
                first_dir, first_name = links[key]
                os.link(first_name, name, src_dir_fd=first_dir, dst_dir_fd=dst, follow_symlinks=False)
                continue
            _copy_file(src, dst, name, st)
            if st.st_nlink > 1:
                if own is None:
                    own = os.dup(dst)
                    held.append(own)
                links[key] = (own, name)
        elif stat.S_ISLNK(mode):
            os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
            os.mknod(name, mode, st.st_rdev, dir_fd=dst)
            # A node just made in a directory only this copy writes: no symlink can be there.
            os.chown(name, st.st_uid, st.st_gid, dir_fd=dst, follow_symlinks=False)
            os.chmod(name, stat.S_IMODE(mode), dir_fd=dst)
            os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)
        # sockets are not copied (docker's copy skips them too)


def _copy_file(src: int, dst: int, name: str, st: os.stat_result) -> None:
    s = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
    try:
        d = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dst)
        try:
            remaining = st.st_size
            while remaining > 0:
                sent = os.sendfile(d, s, None, min(remaining, 1 << 30))
                if sent == 0:
                    break
                remaining -= sent
            _attributes(s, d, st)
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
        finally:
            os.close(d)
    finally:
        os.close(s)
