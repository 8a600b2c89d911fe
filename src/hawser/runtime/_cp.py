"""``cp`` between a container's filesystem and the host, as docker's.

A container's side is a directory fd of its root: ``/proc/<pid>/root`` while
its processes exist (the container's own mount tree, its volumes
included), else its bundle's mounted rootfs.  Every path given for that side
is opened with openat2's RESOLVE_IN_ROOT (``host.open_in_root``): an
absolute symlink or a ``..`` chain in the container lands inside its root,
never on the host's files.  Below the path given, the tree is walked and
written one component at a time through directory fds with ``O_NOFOLLOW``:
a symlink swapped in during the copy makes it fail, never follows it.

What travels is a stream of ``tarfile.TarInfo`` entries (each with a way to
read a regular file's bytes), named relative to the copy's top; the same
stream is written to a directory, or to a tar archive (``cp c:/x -``), or
read from one (``cp - c:/dir``).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tarfile

from hawser.errors import FailedPrecondition, InvalidArgument, NotFound

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import BinaryIO, TypeAlias

    from hawser.metadata import Container
    from hawser.runtime._containers import ContainerManager

    Opener: TypeAlias = Callable[[], BinaryIO]
    Entries: TypeAlias = Iterator[tuple[tarfile.TarInfo, Opener | None]]

_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_COPY_CHUNK = 1 << 20


class CopySide:
    """Where one end of a copy is: the host (paths as given) or a container's
    root (``root_fd``: every path resolved inside it)."""

    def __init__(self, root_fd: int | None = None, *, label: str = "") -> None:
        self.root_fd = root_fd
        self.label = label

    def open(self, path: str, flags: int, *, follow: bool = True) -> int:
        if self.root_fd is None:
            return os.open(path, flags | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
        from hawser.host import open_in_root

        return open_in_root(self.root_fd, path, flags, follow=follow)

    def name(self, path: str) -> str:
        return f"{self.label}:{path}" if self.label else path


@contextlib.contextmanager
def container_side(manager: ContainerManager, record: Container) -> Iterator[CopySide]:
    """The root of a container's filesystem as a Side, open while in the block.

    A stopped container whose rootfs is no longer mounted (after a reboot,
    say) has its snapshot mounted for the block, in a mount namespace this
    process enters for it (``host.private_mount_namespace``): nobody else
    sees that mount, and it cannot outlive the process.  FailedPrecondition
    if that cannot be done."""
    from hawser.host import is_mountpoint
    from hawser.runtime._types import CREATED, PAUSED, RUNNING

    status = manager.status(record)
    fd = -1
    if status.state in (RUNNING, PAUSED, CREATED) and status.pid:
        with contextlib.suppress(OSError):
            fd = os.open(f"/proc/{status.pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    rootfs = os.path.join(manager.bundle(record.id), "rootfs")
    if fd < 0 and os.path.isdir(rootfs) and is_mountpoint(rootfs):
        fd = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if fd >= 0:
        try:
            yield CopySide(fd, label=record.name)
        finally:
            os.close(fd)
        return
    with _snapshot_mounted(manager, record) as fd:
        yield CopySide(fd, label=record.name)


@contextlib.contextmanager
def _snapshot_mounted(manager: ContainerManager, record: Container) -> Iterator[int]:
    import tempfile

    from hawser.host import private_mount_namespace, unmount_all
    from hawser.snapshots import mount_all

    try:
        mounts = manager.snapshotter.mounts(record.snapshot_key)
        private_mount_namespace()
    except (NotFound, OSError) as exc:
        raise FailedPrecondition(f"container {record.name}'s filesystem is not mounted and cannot be: {exc}",
                                 hint="start it, then copy") from None
    target = tempfile.mkdtemp(prefix="hawser-cp-")
    try:
        mount_all(mounts, target)
        try:
            fd = os.open(target, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                yield fd
            finally:
                os.close(fd)
        finally:
            unmount_all(target, detach=True)
    finally:
        os.rmdir(target)


def _error(exc: OSError, what: str) -> Exception:
    if exc.errno == errno.ENOENT:
        return NotFound(f"no such file or directory: {what}")
    if exc.errno in (errno.ELOOP, errno.EXDEV):
        return InvalidArgument(f"{what}: a symlink on the way changed or leads out of the container's root")
    return FailedPrecondition(f"{what}: {exc.strerror}")


# --- sources ------------------------------------------------------------------


class Source:
    """What a copy reads: the top's TarInfo (type of the whole) and the entries."""

    def __init__(self, top: tarfile.TarInfo, entries: Entries, *, contents_only: bool = False) -> None:
        self.top = top
        self.entries = entries
        self.contents_only = contents_only


def _info(name: str, st: os.stat_result, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid, info.gid = st.st_uid, st.st_gid
    info.mtime = int(st.st_mtime)
    kind = stat.S_IFMT(st.st_mode)
    types = {stat.S_IFDIR: tarfile.DIRTYPE, stat.S_IFLNK: tarfile.SYMTYPE, stat.S_IFIFO: tarfile.FIFOTYPE,
             stat.S_IFCHR: tarfile.CHRTYPE, stat.S_IFBLK: tarfile.BLKTYPE}
    info.type = types.get(kind, tarfile.REGTYPE)
    if kind == stat.S_IFREG:
        info.size = st.st_size
    elif kind == stat.S_IFLNK:
        info.linkname = linkname
    elif kind in (stat.S_IFCHR, stat.S_IFBLK):
        info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
    elif kind == stat.S_IFSOCK:
        info.type = tarfile.REGTYPE  # docker's tar skips sockets too; see _walk
    return info


def _reader(dir_fd: int, name: str) -> Opener:
    def open_() -> BinaryIO:
        return os.fdopen(os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd), "rb")

    return open_


def _walk_dir(dir_fd: int, prefix: str) -> Entries:
    """The entries below an open directory, depth first, names under ``prefix``."""
    for child in sorted(os.listdir(dir_fd)):
        st = os.stat(child, dir_fd=dir_fd, follow_symlinks=False)
        name = f"{prefix}/{child}" if prefix else child
        if stat.S_ISSOCK(st.st_mode):
            continue
        link = os.readlink(child, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else ""
        if stat.S_ISDIR(st.st_mode):
            yield _info(name, st), None
            sub = os.open(child, _DIR, dir_fd=dir_fd)
            try:
                yield from _walk_dir(sub, name)
            finally:
                os.close(sub)
        else:
            yield _info(name, st, link), _reader(dir_fd, child) if stat.S_ISREG(st.st_mode) else None


def _split(path: str) -> tuple[str, str]:
    """(parent, last component) of a path; the last one is "." for ``dir/.`` and ``/``."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/", "."
    parent, base = os.path.split(stripped)
    return parent or ".", base


def open_source(side: CopySide, path: str, *, follow: bool) -> Source:
    """The tree at ``path`` on ``side``.  ``follow`` (cp -L): a symlink at
    ``path`` is copied as what it points at (inside the container's root),
    else as the link.  ``dir/.``: the directory's contents, not itself."""
    parent, base = _split(path)
    contents_only = base == "."
    trailing = path.endswith("/") or contents_only
    top_name = os.path.basename(os.path.normpath(path.rstrip("/"))) if not contents_only else "."
    if top_name in ("", "/", ".."):
        top_name = "."
    try:
        if follow or trailing or base in (".", ".."):
            fd = side.open(path, os.O_PATH)
            st = os.fstat(fd)
            if trailing and not stat.S_ISDIR(st.st_mode):
                os.close(fd)
                raise InvalidArgument(f"not a directory: {side.name(path)}")
            return _from_fd(fd, st, top_name, contents_only=contents_only)
        parent_fd = side.open(parent, os.O_PATH | os.O_DIRECTORY)
    except OSError as exc:
        raise _error(exc, side.name(path)) from None
    try:
        st = os.stat(base, dir_fd=parent_fd, follow_symlinks=False)
    except OSError as exc:
        os.close(parent_fd)
        raise _error(exc, side.name(path)) from None
    if stat.S_ISDIR(st.st_mode):
        try:
            fd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd)
        except OSError as exc:
            raise _error(exc, side.name(path)) from None
        finally:
            os.close(parent_fd)
        return _from_fd(fd, st, top_name, contents_only=False)
    link = os.readlink(base, dir_fd=parent_fd) if stat.S_ISLNK(st.st_mode) else ""
    top = _info(top_name, st, link)

    def entries() -> Entries:
        try:
            yield top, _reader(parent_fd, base) if stat.S_ISREG(st.st_mode) else None
        finally:
            os.close(parent_fd)

    return Source(top, entries())


def _from_fd(fd: int, st: os.stat_result, top_name: str, *, contents_only: bool) -> Source:
    """A source from an O_PATH fd of the object itself (already resolved)."""
    top = _info(top_name, st)

    def entries() -> Entries:
        try:
            if stat.S_ISDIR(st.st_mode):
                # Reopened through the fd's own magic link in this process's /proc: the same directory.
                dir_fd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    yield top, None
                    yield from _walk_dir(dir_fd, "" if contents_only else top_name)
                finally:
                    os.close(dir_fd)
            elif stat.S_ISREG(st.st_mode):
                yield top, lambda: open(f"/proc/self/fd/{fd}", "rb")  # noqa: SIM115 (the caller closes it)
            else:
                yield top, None
        finally:
            os.close(fd)

    return Source(top, entries(), contents_only=contents_only)


def tar_entries(stream: BinaryIO) -> Entries:
    """The entries of a tar archive read from ``stream`` (``cp - c:/dir``)."""
    try:
        with tarfile.open(fileobj=stream, mode="r|*") as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isreg() else None
                yield member, (lambda data=data: data) if data is not None else None  # type: ignore[misc]
    except tarfile.TarError as exc:
        raise InvalidArgument(f"the input is not a tar archive: {exc}") from None


# --- sinks --------------------------------------------------------------------


def _parts(name: str) -> list[str]:
    """An entry's name as components; InvalidArgument for one that would leave its directory."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidArgument(f"refusing an entry with '..' in its name: {name}")
    return parts


class Writer:
    """Writes entries below the directory ``dir_fd``, never through a symlink.

    ``owner``: keep the entries' uid and gid (cp -a); else what is made
    belongs to this process's user (root: the container's root user)."""

    def __init__(self, dir_fd: int, *, keep_owner: bool, where: str) -> None:
        self.dir_fd = dir_fd
        self.keep_owner = keep_owner
        self.where = where
        self.copied = 0

    def _parent(self, parts: list[str]) -> int:
        fd = os.dup(self.dir_fd)
        try:
            for part in parts:
                try:
                    sub = os.open(part, _DIR, dir_fd=fd)
                except FileNotFoundError:
                    os.mkdir(part, 0o755, dir_fd=fd)
                    sub = os.open(part, _DIR, dir_fd=fd)
                os.close(fd)
                fd = sub
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidArgument(f"{self.where}/{'/'.join(parts)}: not a directory (or a symlink), "
                                      "not written through") from None
            raise
        return fd

    def put(self, info: tarfile.TarInfo, opener: Opener | None, parts: list[str]) -> None:
        if not parts:  # the destination directory itself
            return
        parent = self._parent(parts[:-1])
        name = parts[-1]
        shown = f"{self.where}/{'/'.join(parts)}"
        try:
            self._put(parent, name, info, opener, shown)
        except OSError as exc:
            raise FailedPrecondition(f"cannot write {shown}: {exc.strerror}") from None
        finally:
            os.close(parent)

    def _put(self, parent: int, name: str, info: tarfile.TarInfo, opener: Opener | None, shown: str) -> None:
        try:
            existing: os.stat_result | None = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            existing = None
        if info.isdir():
            if existing is not None and not stat.S_ISDIR(existing.st_mode):
                raise InvalidArgument(f"cannot overwrite non-directory {shown} with a directory")
            if existing is None:
                os.mkdir(name, 0o700, dir_fd=parent)
            fd = os.open(name, _DIR, dir_fd=parent)
            try:
                self._meta(fd, info)
            finally:
                os.close(fd)
            return
        if existing is not None:
            if stat.S_ISDIR(existing.st_mode):
                raise InvalidArgument(f"cannot overwrite directory {shown} with a non-directory")
            os.unlink(name, dir_fd=parent)  # a symlink there is replaced, never followed
        if info.isreg():
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=parent)
            with os.fdopen(fd, "wb") as out:
                if opener is not None:
                    with opener() as data:
                        while chunk := data.read(_COPY_CHUNK):
                            out.write(chunk)
                            self.copied += len(chunk)
                self._meta(out.fileno(), info)
        elif info.issym():
            os.symlink(info.linkname, name, dir_fd=parent)
            if self.keep_owner:
                os.chown(name, info.uid, info.gid, dir_fd=parent, follow_symlinks=False)
        elif info.islnk():
            target = _parts(info.linkname)
            if not target:
                raise InvalidArgument(f"hard link {shown} has no target")
            src_dir = self._parent(target[:-1])
            try:
                os.link(target[-1], name, src_dir_fd=src_dir, dst_dir_fd=parent, follow_symlinks=False)
            finally:
                os.close(src_dir)
        elif info.isfifo() or info.ischr() or info.isblk():
            kind = stat.S_IFIFO if info.isfifo() else stat.S_IFCHR if info.ischr() else stat.S_IFBLK
            os.mknod(name, kind | 0o600, os.makedev(info.devmajor, info.devminor), dir_fd=parent)
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
            try:
                # chmod and chown through an O_PATH fd: the /proc path of the fd, never the name again.
                os.chmod(f"/proc/self/fd/{fd}", info.mode & 0o7777)
                if self.keep_owner:
                    os.chown(f"/proc/self/fd/{fd}", info.uid, info.gid)
            finally:
                os.close(fd)

    def _meta(self, fd: int, info: tarfile.TarInfo) -> None:
        if self.keep_owner:
            os.fchown(fd, info.uid, info.gid)
        os.fchmod(fd, info.mode & 0o7777)
        os.utime(fd, (info.mtime, info.mtime))


def _rename(name: str, top: str, new_top: str | None) -> list[str]:
    """An entry's components once the copy's top is renamed (None: dropped, its contents land in place)."""
    parts = _parts(name)
    top_parts = _parts(top)
    if parts[:len(top_parts)] == top_parts:
        parts = parts[len(top_parts):]
    return parts if new_top is None else [new_top, *parts]


def copy_tree(source: Source, dest: CopySide, path: str, *, keep_owner: bool) -> int:
    """Copy ``source`` to ``path`` on ``dest`` with docker's rules: into an
    existing directory (under the source's name, or its contents for
    ``dir/.``), over an existing file, or as a new ``path`` whose parent
    exists.  The bytes of regular files copied."""
    top = source.top
    try:
        fd = dest.open(path, os.O_PATH)
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        raise _error(exc, dest.name(path)) from None
    new_top: str | None
    try:
        if fd >= 0 and stat.S_ISDIR(os.fstat(fd).st_mode):
            dir_fd, where = fd, path.rstrip("/") or "/"
            new_top = None if source.contents_only else top.name
            if new_top == ".":
                new_top = None
            fd = -1
        elif fd >= 0:
            if top.isdir():
                raise InvalidArgument(f"cannot copy a directory to a file: {dest.name(path)}")
            if path.endswith("/"):
                raise InvalidArgument(f"not a directory: {dest.name(path)}")
            dir_fd, where, new_top = _open_parent(dest, path)
        else:
            if path.endswith("/") and not top.isdir():
                raise NotFound(f"destination directory {dest.name(path)} does not exist")
            dir_fd, where, new_top = _open_parent(dest, path)
    finally:
        if fd >= 0:
            os.close(fd)
    try:
        writer = Writer(dir_fd, keep_owner=keep_owner, where=dest.name(where))
        for info, opener in source.entries:
            writer.put(info, opener, _rename(info.name, top.name, new_top))
        return writer.copied
    finally:
        os.close(dir_fd)


def _open_parent(dest: CopySide, path: str) -> tuple[int, str, str]:
    parent, base = _split(path)
    if base in (".", ".."):
        raise InvalidArgument(f"cannot copy to {dest.name(path)}")
    try:
        fd = dest.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        raise NotFound(f"destination directory {dest.name(parent)} does not exist") from None
    except OSError as exc:
        raise _error(exc, dest.name(parent)) from None
    return fd, parent, base


def extract_tar(entries: Entries, dest: CopySide, path: str, *, keep_owner: bool) -> int:
    """A tar stream's entries below the existing directory ``path`` on ``dest``."""
    try:
        fd = dest.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise InvalidArgument(f"destination {dest.name(path)} must be a directory") from None
        raise _error(exc, dest.name(path)) from None
    try:
        writer = Writer(fd, keep_owner=keep_owner, where=dest.name(path.rstrip("/") or "/"))
        for info, opener in entries:
            writer.put(info, opener, _parts(info.name))
        return writer.copied
    finally:
        os.close(fd)


def archive_tree(source: Source, out: BinaryIO) -> int:
    """The source as a tar stream on ``out`` (``cp c:/x -``)."""
    copied = 0
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for info, opener in source.entries:
            if opener is None:
                tar.addfile(info)
                continue
            with opener() as data:
                tar.addfile(info, data)
            copied += info.size
    return copied
