"""Look things up inside an image's root filesystem without leaving it: the
user database (/etc/passwd, /etc/group) and executables on $PATH.

An image is untrusted input.  ``/etc/passwd`` may be a symlink to
``/../../../host/etc/passwd``; followed naively from the host that reads the
host's file.  Every path is therefore resolved one component at a time with
the rootfs as ``/``: absolute symlinks restart at the rootfs, ``..`` stops at it
(what the kernel does inside a chroot, and what filepath-securejoin does for
runc).  The rootfs belongs to a container that is not running yet, so nothing
races the walk.
"""

from __future__ import annotations

import os
import posixpath
import stat

from hawser._dataclass import dataclass
from hawser.errors import InvalidArgument

_MAX_SYMLINKS = 40  # the kernel's limit (MAXSYMLINKS) for one lookup
_MAX_DB_BYTES = 8 << 20  # a passwd/group file bigger than this is hostile, not a user database


@dataclass(frozen=True, slots=True)
class ResolvedUser:
    """The identity a container process runs as.

    ``additional_gids`` always starts with ``gid``: runc only calls setgroups()
    when the list is non-empty, and an empty list would leave the process with
    the runtime's own supplementary groups (CVE-2023-25173).
    """

    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    home: str


def resolve_in_root(rootfs: str, path: str) -> str:
    """Map the in-container ``path`` to a host path under ``rootfs``, following
    symlinks as the container would see them and never leaving the rootfs.

    Components that do not exist are kept as they are (the caller's open()
    then fails with ENOENT).  Raises InvalidArgument on a symlink loop.
    """
    root = os.path.abspath(rootfs)
    done: list[str] = []  # resolved components, all existing non-symlinks (or missing)
    todo = [c for c in path.split("/") if c not in ("", ".")]
    todo.reverse()  # a stack: next component last
    links = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if done:
                done.pop()
            continue
        host = os.path.join(root, *done, part)
        try:
            st = os.lstat(host)
        except OSError:
            done.append(part)
            continue
        if not stat.S_ISLNK(st.st_mode):
            done.append(part)
            continue
        links += 1
        if links > _MAX_SYMLINKS:
            raise InvalidArgument(f"too many levels of symbolic links resolving {path!r} in the image")
        target = os.readlink(host)
        if target.startswith("/"):
            done = []
        todo.extend(reversed([c for c in target.split("/") if c not in ("", ".")]))
    return os.path.join(root, *done)


def _read_db(rootfs: str, path: str) -> list[list[str]] | None:
    """The colon-separated records of a user database, or None when the image has none."""
    host = resolve_in_root(rootfs, path)
    try:
        # O_NOFOLLOW: the walk resolved every link; a link here would be a race, so refuse it.
        # O_PATH first: opening an image's device node or FIFO for real, as root on the
        # host, can have effects (a watchdog arms, a blocked FIFO writer wakes).
        pfd = os.open(host, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidArgument(f"cannot read the image's {path}: {exc.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(pfd).st_mode):
            raise InvalidArgument(f"the image's {path} is not a regular file")
        fd = os.open(f"/proc/self/fd/{pfd}", os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise InvalidArgument(f"cannot read the image's {path}: {exc.strerror}") from None
    finally:
        os.close(pfd)
    try:
        data = b""
        while len(data) <= _MAX_DB_BYTES:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    if len(data) > _MAX_DB_BYTES:
        raise InvalidArgument(f"the image's {path} is over {_MAX_DB_BYTES} bytes")
    records = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            records.append(line.split(":"))
    return records


def _id(text: str) -> int | None:
    """A numeric uid/gid, or None when ``text`` is a name."""
    if not text.isdigit():
        return None
    value = int(text)
    if value > 0xFFFFFFFE:  # (uid_t)-1 is "no change" to the kernel, never an id
        raise InvalidArgument(f"invalid id {text}: out of range")
    return value


@dataclass(frozen=True, slots=True)
class _Passwd:
    name: str
    uid: int
    gid: int
    home: str


def _passwd_entries(rootfs: str) -> list[_Passwd] | None:
    records = _read_db(rootfs, "/etc/passwd")
    if records is None:
        return None
    out = []
    for rec in records:
        if len(rec) < 4 or not rec[2].isdigit() or not rec[3].isdigit():
            continue  # malformed lines are skipped, as glibc and runc do
        out.append(_Passwd(name=rec[0], uid=int(rec[2]), gid=int(rec[3]), home=rec[5] if len(rec) > 5 else ""))
    return out


def resolve_user(rootfs: str, user: str) -> ResolvedUser:
    """Resolve a docker-style user spec against the image's /etc/passwd and /etc/group.

    Accepted: ``""`` (root), ``name``, ``uid``, ``name:group``, ``name:gid``,
    ``uid:gid``, ``uid:group``.  A numeric uid needs no passwd entry (its gid is
    0 unless given).  Supplementary groups are the /etc/group groups listing the
    user's name.  Raises InvalidArgument for a name the image does not know or a
    malformed spec.
    """
    user_part, sep, group_part = user.partition(":")
    if sep and not group_part:
        raise InvalidArgument(f"invalid user {user!r}: empty group", hint="use user:group, e.g. 1000:1000")
    if not user_part and sep:
        raise InvalidArgument(f"invalid user {user!r}: empty user", hint="use user:group, e.g. 1000:1000")
    passwd = _passwd_entries(rootfs)
    uid = _id(user_part) if user_part else 0
    entry: _Passwd | None = None
    if uid is None:
        entry = next((p for p in passwd or () if p.name == user_part), None)
        if entry is None:
            raise InvalidArgument(f"unknown user {user_part!r}: not in the image's /etc/passwd",
                                  hint="use a numeric uid, or a user the image defines")
        uid = entry.uid
    else:
        entry = next((p for p in passwd or () if p.uid == uid), None)
    gid = entry.gid if entry is not None else 0
    groups = _read_db(rootfs, "/etc/group") or []
    if group_part:
        named = _id(group_part)
        if named is None:
            match = next((g for g in groups if len(g) >= 3 and g[0] == group_part and g[2].isdigit()), None)
            if match is None:
                raise InvalidArgument(f"unknown group {group_part!r}: not in the image's /etc/group",
                                      hint="use a numeric gid, or a group the image defines")
            named = int(match[2])
        gid = named
    extra = [gid]
    if entry is not None:
        for rec in groups:
            if len(rec) >= 4 and rec[2].isdigit() and entry.name in rec[3].split(","):
                g = int(rec[2])
                if g not in extra:
                    extra.append(g)
    home = entry.home if entry is not None and entry.home else "/"
    return ResolvedUser(uid=uid, gid=gid, additional_gids=tuple(extra), home=home)


def _is_executable(rootfs: str, path: str) -> bool:
    try:
        st = os.stat(resolve_in_root(rootfs, path), follow_symlinks=False)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and bool(st.st_mode & 0o111)


def find_executable(rootfs: str, argv0: str, path_env: str, workdir: str) -> str:
    """Find the program ``argv0`` as execvp() inside the container would.

    A name with a slash is taken as a path (relative to ``workdir``); a bare
    name is searched in ``path_env`` (the container's $PATH).  Returns the
    in-container path.  Raises InvalidArgument when nothing executable is found.
    """
    if not argv0:
        raise InvalidArgument("empty command name")
    if "/" in argv0:
        candidate = posixpath.normpath(posixpath.join(workdir or "/", argv0))
        if _is_executable(rootfs, candidate):
            return candidate
        # docker's exit codes: 126 for a command that cannot be invoked (a directory,
        # not executable), 127 for one that is not there
        found = resolve_in_root(rootfs, candidate)
        if os.path.isdir(found):
            error = InvalidArgument(f"cannot run {argv0!r}: it is a directory in the image")
            error.exit_code = 126
        elif os.path.lexists(found):
            error = InvalidArgument(f"cannot run {argv0!r}: permission denied (not an executable file)",
                                    hint=f"looked at {candidate}")
            error.exit_code = 126
        else:
            error = InvalidArgument(f"executable {argv0!r} not found in the image", hint=f"looked for {candidate}")
            error.exit_code = 127
        raise error
    for directory in path_env.split(":"):
        # An empty $PATH entry means the working directory, as in execvp().
        base = posixpath.join(workdir or "/", directory or ".")
        candidate = posixpath.normpath(posixpath.join(base, argv0))
        if _is_executable(rootfs, candidate):
            return candidate
    error = InvalidArgument(f"executable {argv0!r} not found in the image ($PATH {path_env})",
                            hint="give the full path, or check the image's PATH")
    error.exit_code = 127
    raise error
