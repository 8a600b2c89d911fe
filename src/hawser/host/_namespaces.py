"""Pod namespaces without a pause process: created by unshare(2), kept alive
by bind mounts of their nsfs files ("pins"), joined with setns(2).

Why a short-lived thread and not a child process: the network, IPC and UTS
namespaces are attributes of one *task*, not of the whole process, so a thread
may unshare them on its own while every other thread of the daemon stays where
it is.  The thread bind-mounts ``/proc/thread-self/ns/<kind>`` onto the pin
files (the mount namespace is shared with the rest of the process, so the pins
are visible to everyone) and ends; the pins are then the only references.
Forking a child from a multi-threaded Python process risks deadlocks on locks
held by other threads at fork time, and exec'ing a helper costs milliseconds;
a thread costs a few dozen microseconds.

The pin directory is a bind mount of itself made *shared in a peer group of
its own*.  Mount namespaces cloned later (runc's container namespaces, a
service's private namespace) receive copies of the pins as peers or slaves of
that group, so the lazy unmount in ``unpin_namespace`` reaches those copies
too and the namespace dies with its last real user.  With private propagation
each copy would silently keep the namespace alive until its mount namespace
ends.  (runc containers that join a pod's namespaces see nothing of this: they
pivot_root away from the host's tree and detach it.)

The pid namespace is not handled here: CLONE_NEWPID only applies to children
of the caller, so a shared pod pid namespace needs an infra process.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import socket
import struct
import threading
from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

from hawser.host._libc import load_libc
from hawser.host._mount import is_mountpoint

T = TypeVar("T")

CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000

# The namespaces a thread may unshare or join in a multi-threaded process.
NAMESPACE_KINDS: Mapping[str, int] = {"net": CLONE_NEWNET, "ipc": CLONE_NEWIPC, "uts": CLONE_NEWUTS}

_MS_BIND = 0x1000
_MS_PRIVATE = 0x40000
_MS_SHARED = 0x100000
_MNT_DETACH = 0x2
_UMOUNT_NOFOLLOW = 0x8

_NS_GET_NSTYPE = 0xB703  # _IO(0xb7, 0x3)
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFREQ = struct.Struct("16sH22x")  # ifr_name, ifr_flags, rest of the union

def _check(result: int, what: str, path: str | None = None) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)


def _mount(source: str | None, target: str, flags: int) -> None:
    _check(load_libc().mount(None if source is None else os.fsencode(source), os.fsencode(target), None, flags, None),
           f"mount {source or ''} on {target}", target)


def _umount_all(path: str) -> None:
    """Lazily unmount everything stacked on ``path``; not mounted is fine."""
    libc = load_libc()
    for _ in range(64):
        if libc.umount2(os.fsencode(path), _MNT_DETACH | _UMOUNT_NOFOLLOW) != 0:
            err = ctypes.get_errno()
            if err in (errno.EINVAL, errno.ENOENT):
                return
            raise OSError(err, f"umount {path}: {os.strerror(err)}", path)


def _run_in_thread(name: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread that ends right after, so whatever
    namespaces it unshared or joined die with it; re-raise its exception."""
    box: list[T] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=target, name=name, daemon=True)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return box[0]


def namespace_kind(path: str) -> str | None:
    """The kind ("net", "ipc", "uts", ...) of the namespace file at ``path``,
    or None when ``path`` is missing or not a namespace (e.g. a pin file left
    behind after its unmount).  Never raises for a missing path."""
    try:
        # no O_NOFOLLOW: /proc/<pid>/ns/* are (magic) symlinks
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        nstype = fcntl.ioctl(fd, _NS_GET_NSTYPE)
    except OSError:
        return None  # ENOTTY: an ordinary file
    finally:
        os.close(fd)
    for kind, flag in NAMESPACE_KINDS.items():
        if nstype == flag:
            return kind
    return {0x00020000: "mnt", 0x20000000: "pid", 0x10000000: "user", 0x02000000: "cgroup",
            0x00000080: "time"}.get(nstype, "unknown")


def is_netns(path: str) -> bool:
    """Whether ``path`` is a live network namespace file (a pin or /proc/<pid>/ns/net)."""
    return namespace_kind(path) == "net"


def _ensure_shared_dir(directory: str) -> bool:
    """Make ``directory`` a bind mount of itself, shared in its own peer group.
    Returns whether this call mounted it."""
    created = True
    try:
        os.makedirs(directory, mode=0o711)
    except FileExistsError:
        if is_mountpoint(directory):
            return False
        created = False
    try:
        _mount(directory, directory, _MS_BIND)
        try:
            # private first: leave the parent's peer group, then start a new one
            _mount(None, directory, _MS_PRIVATE)
            _mount(None, directory, _MS_SHARED)
        except BaseException:
            _umount_all(directory)
            raise
    except BaseException:
        if created:
            with contextlib.suppress(OSError):
                os.rmdir(directory)
        raise
    return True


def _loopback_up() -> None:
    # The socket belongs to the calling thread's (new) network namespace.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        req = fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, _IFREQ.pack(b"lo", 0))
        _, flags = _IFREQ.unpack(req)
        if not flags & _IFF_UP:
            fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, _IFREQ.pack(b"lo", flags | _IFF_UP))


def pin_namespaces(directory: str, kinds: Collection[str] = ("net", "ipc", "uts"), *,
                   hostname: str | None = None, loopback_up: bool = True) -> dict[str, str]:
    """Create new namespaces of ``kinds`` and pin each at ``<directory>/<kind>``.

    ``directory`` (one per pod) is created and made a shared bind mount of
    itself.  ``hostname`` is set inside the new UTS namespace (requires "uts"),
    and ``lo`` is brought up inside a new network namespace unless
    ``loopback_up`` is False.  Returns ``{kind: pin path}``.

    Raises ValueError for an unsupported kind or a hostname without "uts",
    FileExistsError if a live pin is already at one of the paths (not
    idempotent: unpin first), and OSError (EPERM without CAP_SYS_ADMIN...).
    On failure nothing is left pinned.
    """
    wanted = [kind for kind in NAMESPACE_KINDS if kind in set(kinds)]
    unknown = set(kinds) - set(NAMESPACE_KINDS)
    if unknown or not wanted:
        raise ValueError(f"cannot pin namespaces {sorted(unknown) or list(kinds)}: "
                         f"only {', '.join(NAMESPACE_KINDS)} are supported")
    if hostname is not None and "uts" not in wanted:
        raise ValueError("a hostname needs a new uts namespace")
    directory = os.path.abspath(directory)
    pins = {kind: os.path.join(directory, kind) for kind in wanted}
    for path in pins.values():
        if namespace_kind(path) is not None:
            raise FileExistsError(errno.EEXIST, "a namespace is already pinned there", path)
    mounted = _ensure_shared_dir(directory)
    flags = 0
    for kind in wanted:
        flags |= NAMESPACE_KINDS[kind]

    def create() -> dict[str, str]:
        libc = load_libc()
        _check(libc.unshare(flags), "unshare")
        if hostname is not None:
            name = hostname.encode()
            _check(libc.sethostname(name, len(name)), f"sethostname {hostname!r}")
        if loopback_up and "net" in pins:
            _loopback_up()
        done: list[str] = []
        try:
            for kind, path in pins.items():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o444)
                os.close(fd)
                _mount(f"/proc/thread-self/ns/{kind}", path, _MS_BIND)
                done.append(path)
        except BaseException:
            for path in done:
                unpin_namespace(path)
            raise
        return pins

    try:
        return _run_in_thread("hawser-ns-pin", create)
    except BaseException:
        if mounted:
            with contextlib.suppress(OSError):  # the first error is the one to report
                remove_pin_dir(directory)
        raise


def pin_namespace_of(pid: int, kind: str, path: str) -> str:
    """Pin the ``kind`` namespace of process ``pid`` (a pid namespace, which
    cannot be created and pinned like the others) at ``path``, in a shared
    directory as ``pin_namespaces`` makes.  A pin names the namespace itself:
    unlike ``/proc/<pid>/ns/<kind>`` it never comes to mean another process's
    once ``pid`` is reused.  Returns ``path``.  Raises OSError (ESRCH-like
    FileNotFoundError if ``pid`` is gone)."""
    _ensure_shared_dir(os.path.dirname(os.path.abspath(path)))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o444)
    os.close(fd)
    try:
        _mount(f"/proc/{pid}/ns/{kind}", path, _MS_BIND)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise
    return path


def unpin_namespace(path: str) -> None:
    """Lazily unmount the pin at ``path`` and remove the file.  The namespace
    ends when its last process, open fd and pin are gone.  Idempotent: a path
    that is missing or no longer mounted is fine.  Raises OSError otherwise."""
    _umount_all(path)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def remove_pin_dir(directory: str) -> None:
    """Unpin every namespace in ``directory``, unmount the directory and remove
    it.  Idempotent.  Raises OSError (ENOTEMPTY if it holds anything else)."""
    for kind in (*NAMESPACE_KINDS, "pid", "user"):
        unpin_namespace(os.path.join(directory, kind))
    _umount_all(directory)
    try:
        os.rmdir(directory)
    except FileNotFoundError:
        pass


def run_in_namespaces(paths: Mapping[str, str], fn: Callable[[], T]) -> T:
    """Call ``fn()`` in a dedicated thread that first joins the namespaces
    ``{kind: path}`` (net, ipc, uts); return its result or raise its exception.

    Sockets ``fn`` creates stay in the joined network namespace after it
    returns, and children it spawns start in the joined namespaces.  Raises
    ValueError for other kinds, OSError if a path cannot be opened or joined.
    Blocks the caller: from async code, wrap it in ``asyncio.to_thread``.
    """
    unknown = set(paths) - set(NAMESPACE_KINDS)
    if unknown:
        raise ValueError(f"cannot join namespaces {sorted(unknown)} from a thread")
    # Open in the caller's context so a bad path fails before the thread starts.
    fds: dict[str, int] = {}
    try:
        for kind, path in paths.items():
            fds[kind] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)

        def enter() -> T:
            libc = load_libc()
            for kind, fd in fds.items():
                _check(libc.setns(fd, NAMESPACE_KINDS[kind]), f"setns {kind}", paths[kind])
            return fn()

        return _run_in_thread("hawser-ns-enter", enter)
    finally:
        for fd in fds.values():
            os.close(fd)


def run_in_netns(path: str, fn: Callable[[], T]) -> T:
    """``run_in_namespaces({"net": path}, fn)``."""
    return run_in_namespaces({"net": path}, fn)
