"""mount(8)-style option handling on top of mount(2).

A snapshotter describes a mount as ``type``, ``source`` and a list of options
(``rbind``, ``ro``, ``lowerdir=...``), the way containerd's ``mount.Mount``
does.  This module splits the options into flags and filesystem data and
performs the calls the kernel needs: a read-only bind mount takes two calls
(bind, then remount read-only), propagation changes another.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from hawser._dataclass import dataclass
from hawser.host._libc import sys_mount, sys_umount2

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_SYNCHRONOUS = 0x10
MS_REMOUNT = 0x20
MS_DIRSYNC = 0x80
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_UNBINDABLE = 0x20000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

MNT_FORCE = 0x1
MNT_DETACH = 0x2
UMOUNT_NOFOLLOW = 0x8

# option -> (clear these flags, set these flags)
_FLAGS: dict[str, tuple[int, int]] = {
    "ro": (0, MS_RDONLY),
    "rw": (MS_RDONLY, 0),
    "bind": (0, MS_BIND),
    "rbind": (0, MS_BIND | MS_REC),
    "nosuid": (0, MS_NOSUID),
    "suid": (MS_NOSUID, 0),
    "nodev": (0, MS_NODEV),
    "dev": (MS_NODEV, 0),
    "noexec": (0, MS_NOEXEC),
    "exec": (MS_NOEXEC, 0),
    "sync": (0, MS_SYNCHRONOUS),
    "async": (MS_SYNCHRONOUS, 0),
    "dirsync": (0, MS_DIRSYNC),
    "noatime": (0, MS_NOATIME),
    "atime": (MS_NOATIME, 0),
    "nodiratime": (0, MS_NODIRATIME),
    "diratime": (MS_NODIRATIME, 0),
    "relatime": (0, MS_RELATIME),
    "norelatime": (MS_RELATIME, 0),
    "strictatime": (0, MS_STRICTATIME),
    "remount": (0, MS_REMOUNT),
    "defaults": (0, 0),
}

_PROPAGATION: dict[str, int] = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# mount(2) copies at most one page of filesystem data.
_PAGE_SIZE = os.sysconf("SC_PAGESIZE")


@dataclass(frozen=True, slots=True)
class MountOptions:
    flags: int
    propagation: int
    data: tuple[str, ...]


def parse_options(options: Sequence[str]) -> MountOptions:
    """Split mount(8)-style options into mount(2) flags, a propagation change and fs data."""
    flags = 0
    propagation = 0
    data: list[str] = []
    for option in options:
        if option in _FLAGS:
            clear, set_ = _FLAGS[option]
            flags = (flags & ~clear) | set_
        elif option in _PROPAGATION:
            propagation = _PROPAGATION[option]
        else:
            data.append(option)
    return MountOptions(flags=flags, propagation=propagation, data=tuple(data))


def mount(fstype: str, source: str, target: str, options: Sequence[str] = ()) -> None:
    """Mount ``source`` on ``target`` like ``mount -t fstype -o options source target``.

    Bind mounts with ``ro`` are remounted read-only (the kernel ignores
    MS_RDONLY on the first bind call).  Overlay data longer than a page is
    passed with paths relative to their common parent by running mount(8)
    there.  Raises OSError with the kernel's errno.
    """
    opts = parse_options(options)
    data = ",".join(opts.data)
    if opts.flags & MS_BIND:
        sys_mount(source, target, None, opts.flags & (MS_BIND | MS_REC), None)
        extra = opts.flags & ~(MS_BIND | MS_REC)
        if extra:
            try:
                sys_mount(None, target, None, extra | MS_BIND | MS_REMOUNT, None)
            except OSError:
                sys_umount2(target, MNT_DETACH)
                raise
    elif fstype == "overlay" and len(data) >= _PAGE_SIZE:
        _mount_overlay_relative(source, target, opts.flags, opts.data)
    else:
        sys_mount(source, target, fstype, opts.flags, data or None)
    if opts.propagation:
        sys_mount(None, target, None, opts.propagation, None)


def _mount_overlay_relative(source: str, target: str, flags: int, data: Sequence[str]) -> None:
    """Overlay with many lowers: shorten the paths by making them relative to
    their common parent and mounting from there (what containerd does with a
    forked child).  chdir is process-wide, so mount(8) runs in a subprocess."""
    paths: list[str] = []
    for option in data:
        key, _, value = option.partition("=")
        if key in ("lowerdir", "upperdir", "workdir"):
            paths.extend(value.split(":"))
    common = os.path.commonpath(paths) if paths else "/"
    rewritten: list[str] = []
    for option in data:
        key, sep, value = option.partition("=")
        if key in ("lowerdir", "upperdir", "workdir"):
            value = ":".join(os.path.relpath(p, common) for p in value.split(":"))
        rewritten.append(f"{key}{sep}{value}")
    for name, bit in (("ro", MS_RDONLY), ("nosuid", MS_NOSUID), ("nodev", MS_NODEV), ("noexec", MS_NOEXEC)):
        if flags & bit:
            rewritten.append(name)
    text = ",".join(rewritten)
    if len(text) >= _PAGE_SIZE:
        raise OSError(errno.E2BIG, f"overlay options for {target} exceed a page even with relative paths")
    from hawser.host._process import run_process

    proc = run_process(["mount", "-t", "overlay", source, os.path.abspath(target), "-o", text], cwd=common,
                       timeout=60)
    if proc.returncode != 0:
        raise OSError(errno.EINVAL, f"mount overlay on {target}: {proc.stderr.decode(errors='replace').strip()}")


def unmount(target: str, *, detach: bool = False) -> None:
    """Unmount ``target`` (not following a symlink there). EINVAL (not a mount
    point) is not an error, so it is safe to call on cleanup paths; anything
    else raises OSError."""
    flags = UMOUNT_NOFOLLOW | (MNT_DETACH if detach else 0)
    try:
        sys_umount2(target, flags)
    except OSError as e:
        if e.errno not in (errno.EINVAL, errno.ENOENT):
            raise


def unmount_all(target: str, *, detach: bool = False) -> None:
    """Unmount ``target`` until nothing is mounted there (mounts can stack)."""
    for _ in range(64):
        if not is_mountpoint(target):
            return
        unmount(target, detach=detach)


def is_mountpoint(path: str) -> bool:
    """Whether something is mounted on ``path`` (per /proc/self/mountinfo)."""
    real = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                fields = line.split(b" ", 5)
                if len(fields) > 4 and _unescape(fields[4]) == real:
                    return True
    except OSError:
        return os.path.ismount(path)
    return False


def _unescape(field: bytes) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if b"\\" in field:
        out = bytearray()
        i = 0
        while i < len(field):
            if field[i] == 0x5C and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
                out.append(int(field[i + 1 : i + 4], 8))
                i += 4
            else:
                out.append(field[i])
                i += 1
        field = bytes(out)
    return os.fsdecode(field)
