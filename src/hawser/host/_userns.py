"""User namespaces for pods and idmapped mounts (Kubernetes' hostUsers: false).

A pod's user namespace is made by util-linux ``unshare --user --net --ipc
--uts`` running ``sh``: one unshare(2) call, so the network, IPC and UTS
namespaces it makes are *owned by* the new user namespace (the container's
root can then mount sysfs and mqueue, which the kernel refuses in namespaces
owned by the host's).  Why a process and not a thread, as for pods without
one: a multi-threaded process may neither unshare nor join a user namespace.
Why ``sh`` waits instead of doing the work: after its exec it holds no
capability in the namespace (its host uid 0 is not mapped there); hawserd,
root of the initial namespace, writes the id maps and pins the namespaces
from outside, then lets it exit.  The hostname and ``lo`` are set from a
thread that joins the new UTS and network namespaces (allowed: hawserd's root
is capable in every namespace its children own).

Idmapped mounts (open_tree(2) + mount_setattr(2) with MOUNT_ATTR_IDMAP +
move_mount(2), Linux 5.12+) show a filesystem through the namespace's map:
a file owned by uid 0 on disk is seen as the container's root, and a file
the container's root writes is stored as uid 0.  overlayfs itself cannot be
idmapped (it lacks FS_ALLOW_IDMAP), but its layers can (Linux 5.19+): the
rootfs is an overlay of idmapped lower layers, as containerd makes it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
import struct
import subprocess
from collections.abc import Collection, Sequence

from hawser.host._libc import load_libc, sys_mount, sys_umount2
from hawser.host._mount import MNT_DETACH, is_mountpoint
from hawser.host._namespaces import (
    NAMESPACE_KINDS,
    _check,
    _ensure_shared_dir,
    _loopback_up,
    pin_namespace_of,
    remove_pin_dir,
    run_in_namespaces,
    unpin_namespace,
)

# (container id, host id, size): one line of /proc/<pid>/uid_map.
IdMapping = tuple[int, int, int]

_SYS_OPEN_TREE = 428  # the same number on every architecture Linux gave the new mount API
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_AT_FDCWD = -100
_AT_EMPTY_PATH = 0x1000
_AT_RECURSIVE = 0x8000
_OPEN_TREE_CLONE = 1
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_IDMAP = 0x00100000
_MOUNT_ATTR = struct.Struct("QQQQ")  # attr_set, attr_clr, propagation, userns_fd

_UNSHARE_FLAGS = {"net": "--net", "ipc": "--ipc", "uts": "--uts"}
_START_TIMEOUT = 10.0


def pin_user_namespace(directory: str, uids: Sequence[IdMapping], gids: Sequence[IdMapping],
                       kinds: Collection[str] = ("net", "ipc", "uts"), *, hostname: str | None = None,
                       loopback_up: bool = True) -> dict[str, str]:
    """Create a user namespace with the given id maps and, owned by it, new
    namespaces of ``kinds``; pin each at ``<directory>/<kind>`` (the user
    namespace at ``<directory>/user``) as ``pin_namespaces`` does.  Returns
    ``{kind: pin path}``.  ValueError for bad kinds, OSError from the kernel
    (EINVAL for maps it refuses) or when util-linux ``unshare`` fails;
    nothing is left pinned then."""
    unknown = set(kinds) - set(NAMESPACE_KINDS)
    if unknown:
        raise ValueError(f"cannot pin namespaces {sorted(unknown)} in a user namespace")
    if hostname is not None and "uts" not in kinds:
        raise ValueError("a hostname needs a new uts namespace")
    directory = os.path.abspath(directory)
    pins = {"user": os.path.join(directory, "user")}
    pins.update({kind: os.path.join(directory, kind) for kind in NAMESPACE_KINDS if kind in kinds})
    mounted = _ensure_shared_dir(directory)
    argv = ["unshare", "--user", *(_UNSHARE_FLAGS[k] for k in NAMESPACE_KINDS if k in kinds),
            "--", "/bin/sh", "-c", "echo ready; read _"]
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                close_fds=True, start_new_session=True)
    except OSError:
        if mounted:
            with contextlib.suppress(OSError):
                remove_pin_dir(directory)
        raise
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if proc.stdout.readline() != b"ready\n":
            proc.wait(_START_TIMEOUT)
            err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
            raise OSError(errno.EPERM, f"unshare --user failed (status {proc.returncode}): {err}")
        _write_map(f"/proc/{proc.pid}/uid_map", uids)
        _write_map(f"/proc/{proc.pid}/gid_map", gids)
        for kind, path in pins.items():
            pin_namespace_of(proc.pid, kind, path)
        joined: dict[str, str] = {k: pins[k] for k in ("net", "uts") if k in pins}
        if joined and (hostname is not None or (loopback_up and "net" in pins)):
            run_in_namespaces(joined, lambda: _set_up(hostname, loopback_up and "net" in pins))
        return pins
    except BaseException:
        for path in pins.values():
            with contextlib.suppress(OSError):
                unpin_namespace(path)
        if mounted:
            with contextlib.suppress(OSError):
                remove_pin_dir(directory)
        raise
    finally:
        with contextlib.suppress(OSError):
            proc.kill()
        proc.communicate()


def _write_map(path: str, ranges: Sequence[IdMapping]) -> None:
    # One write(2): the kernel takes a map once, whole.
    text = "".join(f"{inside} {outside} {size}\n" for inside, outside, size in ranges)
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _set_up(hostname: str | None, loopback: bool) -> None:
    if hostname is not None:
        name = hostname.encode()
        _check(load_libc().sethostname(name, len(name)), f"sethostname {hostname!r}")
    if loopback:
        _loopback_up()


def _syscall(number: int, *args: object) -> int:
    libc = load_libc()
    libc.syscall.restype = ctypes.c_long
    result = int(libc.syscall(number, *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def idmapped_mount(source: str, target: str, userns: str, *, recursive: bool = True,
                   readonly: bool = False) -> None:
    """Mount a copy of the mount tree at ``source`` on ``target`` (created as
    a file or directory to match), shown through the id map of the user
    namespace ``userns`` (a pin or /proc/<pid>/ns/user).  The copy is private
    to the host's tree it lands in; ``readonly`` makes it read-only.  OSError with what the kernel said:
    EINVAL where the filesystem cannot be idmapped (overlayfs, before 6.3
    tmpfs)."""
    flags = _OPEN_TREE_CLONE | os.O_CLOEXEC | (_AT_RECURSIVE if recursive else 0)
    try:
        tree = _syscall(_SYS_OPEN_TREE, _AT_FDCWD, os.fsencode(source), flags)
    except OSError as e:
        raise OSError(e.errno, f"open_tree {source}: {e.strerror}", source) from None
    try:
        ns = os.open(userns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            attr = ctypes.create_string_buffer(_MOUNT_ATTR.pack(
                _MOUNT_ATTR_IDMAP | (_MOUNT_ATTR_RDONLY if readonly else 0), 0, 0, ns), _MOUNT_ATTR.size)
            try:
                _syscall(_SYS_MOUNT_SETATTR, tree, b"", _AT_EMPTY_PATH | (_AT_RECURSIVE if recursive else 0),
                         attr, _MOUNT_ATTR.size)
            except OSError as e:
                raise OSError(e.errno, f"idmapped mount of {source}: {e.strerror}"
                              + (" (its filesystem cannot be idmapped)" if e.errno == errno.EINVAL else ""),
                              source) from None
        finally:
            os.close(ns)
        if stat.S_ISDIR(os.stat(source).st_mode):
            os.makedirs(target, mode=0o700, exist_ok=True)
        elif not os.path.exists(target):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600))
        try:
            _syscall(_SYS_MOVE_MOUNT, tree, b"", _AT_FDCWD, os.fsencode(target), _MOVE_MOUNT_F_EMPTY_PATH)
        except OSError as e:
            raise OSError(e.errno, f"move_mount to {target}: {e.strerror}", target) from None
    finally:
        os.close(tree)


def detach(target: str) -> None:
    """Lazily unmount whatever is stacked on ``target``; missing is fine."""
    for _ in range(16):
        if not is_mountpoint(target):
            return
        try:
            sys_umount2(target, MNT_DETACH)
        except OSError as e:
            if e.errno in (errno.EINVAL, errno.ENOENT):
                return
            raise


def idmapped_mounts_supported() -> str:
    """"" where this kernel makes an idmapped mount of a tmpfs for a fresh
    user namespace (what pods with a user namespace of their own need), else
    why not.  Costs a process and a few mounts; callers cache it."""
    import shutil
    import tempfile

    scratch = tempfile.mkdtemp(prefix="hawser-idmap-probe-")
    pins, src, dst = (os.path.join(scratch, name) for name in ("ns", "src", "dst"))
    try:
        pin_user_namespace(pins, [(0, 1 << 30, 65536)], [(0, 1 << 30, 65536)], kinds=())
        os.mkdir(src)
        sys_mount("tmpfs", src, "tmpfs", 0, None)
        idmapped_mount(src, dst, os.path.join(pins, "user"))
        return ""
    except (OSError, ValueError) as e:
        return str(e)
    finally:
        for path in (dst, src):
            with contextlib.suppress(OSError):
                detach(path)
        with contextlib.suppress(OSError):
            remove_pin_dir(pins)
        shutil.rmtree(scratch, ignore_errors=True)
