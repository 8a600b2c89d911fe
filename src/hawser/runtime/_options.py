"""What a caller asks of a container (ContainerOptions) and what the host lets
this process grant (HostLimits): the two inputs of spec generation besides the
image configuration.

Options are plain frozen data; they are validated where they are turned into a
spec (``build_spec``), except for the few checks that need no context, done
at construction so a bad value fails where it was written.
"""

from __future__ import annotations

import itertools
import os
import posixpath
import resource
import stat
from collections.abc import Mapping, Sequence

from hawser._dataclass import dataclass, field
from hawser.errors import InvalidArgument

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


@dataclass(frozen=True, slots=True, kw_only=True)
class BindMount:
    """A host path bound into the container (always recursive, like docker's -v)."""

    source: str
    destination: str
    readonly: bool = False
    propagation: str = "rprivate"
    # Submounts read-only too (runc's "rro": MOUNT_ATTR_RDONLY, recursively); needs readonly and rprivate.
    recursive_read_only: bool = False
    # More mount(8) flags for the bind ("nosuid", "nodev", "noexec"): an image volume's.
    options: tuple[str, ...] = ()
    # The source is an idmapped mount made for the container's user namespace
    # already (an image volume's layers), not to be idmapped again.
    idmapped: bool = False
    # The source is this volume's mountpoint (``hawser.volumes``): "" for a bind of a host path.
    volume: str = ""
    # Fill an empty source with the image's content at ``destination`` before
    # the container runs (docker's copy-up of a new volume).
    copy_up: bool = False

    def __post_init__(self) -> None:
        if self.propagation not in PROPAGATIONS:
            raise InvalidArgument(f"invalid propagation {self.propagation!r} for mount {self.destination!r}",
                                  hint="use one of " + ", ".join(PROPAGATIONS))


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageVolume:
    """A stored image mounted read-only at ``destination`` (the CRI's
    ``Mount.image``, Kubernetes' image volumes): a view of its layers,
    ``sub_path`` (a directory inside it, "" for its root) bound in with
    ro, nosuid, nodev and noexec.  ``image`` is what ``ImageResolver.runnable``
    takes: a stored name, an image ID or a unique prefix of one."""

    image: str
    destination: str
    sub_path: str = ""

    def __post_init__(self) -> None:
        if not self.image:
            raise InvalidArgument(f"image volume at {self.destination!r}: no image given")


@dataclass(frozen=True, slots=True, kw_only=True)
class TmpfsMount:
    """A fresh tmpfs at ``destination``; ``size`` in bytes (None: the kernel's default, half of RAM)."""

    destination: str
    size: int | None = None
    mode: int = 0o1777
    options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.size is not None and self.size <= 0:
            raise InvalidArgument(f"invalid tmpfs size {self.size} for {self.destination!r}: must be positive")
        if not 0 <= self.mode <= 0o7777:
            raise InvalidArgument(f"invalid tmpfs mode {oct(self.mode)} for {self.destination!r}")


DEVICE_TYPES = ("c", "b", "p")


@dataclass(frozen=True, slots=True, kw_only=True)
class Device:
    """A device node created in the container (``linux.devices``) and allowed
    by its device cgroup with ``permissions`` (some of "rwm")."""

    path: str  # inside the container
    type: str  # "c" (char), "b" (block), "p" (fifo)
    major: int
    minor: int
    file_mode: int | None = None  # permission bits of the node
    uid: int | None = None
    gid: int | None = None
    permissions: str = "rwm"

    def __post_init__(self) -> None:
        if not self.path.startswith("/") or posixpath.normpath(self.path) != self.path or self.path == "/":
            raise InvalidArgument(f"invalid device path {self.path!r}: must be a normalised absolute path")
        if self.type not in DEVICE_TYPES:
            raise InvalidArgument(f"invalid device type {self.type!r} for {self.path}: use c, b or p")
        if not self.permissions or set(self.permissions) - set("rwm") or len(set(self.permissions)) != len(
                self.permissions):
            raise InvalidArgument(f"invalid device permissions {self.permissions!r} for {self.path}",
                                  hint='use one or more of "r", "w" and "m", e.g. "rwm"')
        if self.major < 0 or self.minor < 0:
            raise InvalidArgument(f"invalid device numbers {self.major}:{self.minor} for {self.path}")


def _device(st: os.stat_result, path: str, permissions: str) -> Device | None:
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    elif stat.S_ISFIFO(st.st_mode):
        kind = "p"
    else:
        return None
    return Device(path=path, type=kind, major=os.major(st.st_rdev), minor=os.minor(st.st_rdev),
                  file_mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid, permissions=permissions)


def devices_from_host(host_path: str, container_path: str, permissions: str = "rwm") -> tuple[Device, ...]:
    """The device node at ``host_path`` (symlinks followed), or every device
    node under it when it is a directory, as containerd does for ``/dev/snd``.

    Raises InvalidArgument when the path is missing or is neither a device
    nor a directory of devices."""
    if not host_path.startswith("/"):
        raise InvalidArgument(f"invalid device {host_path!r}: the host path must be absolute")
    try:
        st = os.stat(host_path)
    except OSError as exc:
        raise InvalidArgument(f"invalid device {host_path!r}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        device = _device(st, container_path, permissions)
        if device is None:
            raise InvalidArgument(f"invalid device {host_path!r}: not a device node")
        return (device,)
    found: list[Device] = []
    for directory, dirs, files in os.walk(host_path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(directory, name)
            try:
                entry = os.stat(full)
            except OSError:
                continue
            rel = os.path.relpath(full, host_path)
            device = _device(entry, posixpath.join(container_path, rel), permissions)
            if device is not None:
                found.append(device)
    if not found:
        raise InvalidArgument(f"invalid device {host_path!r}: a directory without device nodes")
    return tuple(found)


# Under /dev, what a privileged container does not get as a device (containerd's HostDevices).
_SKIPPED_DEV_DIRS = frozenset({"pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"})


def host_devices(root: str = "/dev") -> tuple[Device, ...]:
    """Every char and block device of the host (for privileged containers),
    keeping their host paths.  Unreadable entries are skipped."""
    found: list[Device] = []
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not (directory == root and d in _SKIPPED_DEV_DIRS))
        for name in sorted(files):
            full = os.path.join(directory, name)
            if full == os.path.join(root, "console"):
                continue
            try:
                entry = os.stat(full, follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISCHR(entry.st_mode) or stat.S_ISBLK(entry.st_mode):
                device = _device(entry, "/dev/" + os.path.relpath(full, root), "rwm")
                if device is not None:
                    found.append(device)
    return tuple(found)


@dataclass(frozen=True, slots=True, kw_only=True)
class Resources:
    """cgroup limits; None leaves the kernel's default (no limit)."""

    cpu_shares: int | None = None
    cpu_quota: int | None = None
    cpu_period: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    memory_limit: int | None = None
    memory_swap: int | None = None  # memory + swap, docker's meaning; -1: unlimited swap
    pids_limit: int | None = None  # -1: unlimited


@dataclass(frozen=True, slots=True, kw_only=True)
class Namespaces:
    """Which namespaces to join instead of creating new ones.

    For each: None creates a new namespace, ``"host"`` shares the host's, an
    absolute path (``/var/run/netns/x``, ``/proc/<pid>/ns/ipc``) joins that one:
    CRI containers join their sandbox's namespaces this way.
    """

    network: str | None = None
    ipc: str | None = None
    uts: str | None = None
    pid: str | None = None


# (container id, host id, size): one line of /proc/<pid>/uid_map.
IdMapping = tuple[int, int, int]


def check_id_mappings(uids: Sequence[IdMapping], gids: Sequence[IdMapping]) -> None:
    """ValueError unless each map has 1-340 ranges of positive size, inside
    32-bit ids, not overlapping on either side (the kernel's own rules for
    uid_map; checked first for a clear message)."""
    for what, ranges in (("uid", uids), ("gid", gids)):
        if not ranges:
            raise ValueError(f"a user namespace needs at least one {what} mapping")
        if len(ranges) > 340:
            raise ValueError(f"{len(ranges)} {what} mappings: Linux takes at most 340")
        for inside, outside, size in ranges:
            if size <= 0 or inside < 0 or outside < 0 or inside + size > 1 << 32 or outside + size > 1 << 32:
                raise ValueError(f"invalid {what} mapping {inside}:{outside}:{size}: "
                                 "ids and sizes must fit in 32 bits and sizes be positive")
        for side, name in ((0, "container"), (1, "host")):
            spans = sorted((r[side], r[side] + r[2]) for r in ranges)
            for (_, end), (start, _) in itertools.pairwise(spans):
                if start < end:
                    raise ValueError(f"{what} mappings overlap on the {name} side")


def map_id(ranges: Sequence[IdMapping], inside: int) -> int | None:
    """The host id of container id ``inside`` under ``ranges``; None if unmapped."""
    for start, host, size in ranges:
        if start <= inside < start + size:
            return host + inside - start
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class UserNamespace:
    """A user namespace to run in (a pod's, pinned at ``path``) and its id
    maps, ``(container id, host id, size)`` each: the spec's uidMappings and
    gidMappings, and the map the rootfs and bind mounts are idmapped with."""

    path: str
    uid_map: tuple[tuple[int, int, int], ...]
    gid_map: tuple[tuple[int, int, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerOptions:
    """Everything a run/create request may set beyond the image configuration."""

    args: tuple[str, ...] | None = None  # overrides the image's Cmd
    entrypoint: tuple[str, ...] | None = None  # overrides the image's Entrypoint; () clears it
    env: tuple[str, ...] = ()  # "KEY=VALUE", later entries win
    workdir: str | None = None
    user: str | None = None  # "name", "uid", "name:group", "uid:gid"...; None: the image's
    additional_gids: tuple[int, ...] = ()  # supplementary groups beyond the user's own
    # Whether the groups the image's /etc/group lists the user in are added (the
    # CRI's SupplementalGroupsPolicy Merge); False (Strict): only the user's gid
    # and ``additional_gids``.
    image_groups: bool = True
    tty: bool = False
    stdin: bool = False
    # With stdin: the first attached client closing its input closes the
    # container's (the CRI's stdin_once); False keeps it open for later attaches.
    stdin_once: bool = True
    hostname: str = ""
    read_only: bool = False
    mounts: tuple[BindMount, ...] = ()
    # Mounted by ContainerManager.create, which adds their binds to ``mounts``.
    image_volumes: tuple[ImageVolume, ...] = ()
    tmpfs: tuple[TmpfsMount, ...] = ()
    cap_add: tuple[str, ...] = ()  # "NET_ADMIN", "CAP_NET_ADMIN", "all"
    cap_drop: tuple[str, ...] = ()
    privileged: bool = False
    no_new_privileges: bool = True
    resources: Resources = Resources()
    sysctls: Mapping[str, str] = field(default_factory=dict)
    oom_score_adj: int | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    namespaces: Namespaces = Namespaces()
    cgroups_path: str = ""  # chosen by the caller, e.g. "/hawser/<id>"; "" lets runc pick
    seccomp: bool = True  # False: unconfined
    # A seccomp profile in docker's JSON format (a CRI Localhost profile), used
    # instead of hawser's default; None: the default.  Ignored when unconfined.
    seccomp_profile: Mapping[str, Any] | None = None
    stop_signal: str | None = None
    devices: tuple[Device, ...] = ()
    # Overrides of the default masked and read-only paths; None: the defaults.
    # Privileged containers get neither.
    masked_paths: tuple[str, ...] | None = None
    readonly_paths: tuple[str, ...] | None = None
    userns: UserNamespace | None = None  # None: the host's user namespace


# Resource limits the spec may carry, by OCI name (the same names as resource.RLIMIT_*).
_RLIMIT_NAMES = ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_CORE", "RLIMIT_MEMLOCK", "RLIMIT_STACK")

# Capability numbers and names the kernel defines today; cap_last_cap says how many this kernel knows.
CAP_LAST_CAP = 40  # CAP_CHECKPOINT_RESTORE, Linux 5.9
_CAP_SYS_RESOURCE = 24


@dataclass(frozen=True, slots=True)
class HostLimits:
    """What this process may grant a container, read from the host once and
    injected so that spec generation stays a pure function.

    ``rlimits`` maps OCI names (``RLIMIT_NOFILE``) to this process's (soft, hard)
    limits, -1 meaning unlimited; hard limits cannot be raised without
    CAP_SYS_RESOURCE, so specs are clamped to them.  ``min_oom_score_adj`` is the
    lowest oom_score_adj a child may be given (this process's own, or -1000 with
    CAP_SYS_RESOURCE).
    """

    rlimits: Mapping[str, tuple[int, int]]
    min_oom_score_adj: int
    cap_last_cap: int = CAP_LAST_CAP
    machine: str = "x86_64"  # os.uname().machine: picks the seccomp architectures
    # This process's capability bounding set (a bit per capability number);
    # nothing outside it can be granted (here CAP_SYS_RESOURCE is withheld). None: all.
    bounding: int | None = None

    @classmethod
    def current(cls) -> HostLimits:
        """Read the limits of the calling process (getrlimit, /proc/self, /proc/sys)."""
        rlimits: dict[str, tuple[int, int]] = {}
        for name in _RLIMIT_NAMES:
            soft, hard = resource.getrlimit(getattr(resource, name))
            rlimits[name] = (_unlimited(soft), _unlimited(hard))
        min_oom = _read_int("/proc/self/oom_score_adj", 0)
        if _has_capability(_CAP_SYS_RESOURCE):
            min_oom = -1000
        cap_last = _read_int("/proc/sys/kernel/cap_last_cap", CAP_LAST_CAP)
        return cls(rlimits=rlimits, min_oom_score_adj=min_oom, cap_last_cap=cap_last, machine=os.uname().machine,
                   bounding=_status_mask("CapBnd:"))


def _unlimited(value: int) -> int:
    return -1 if value == resource.RLIM_INFINITY or value < 0 else value


def _read_int(path: str, default: int) -> int:
    try:
        with open(path, encoding="ascii") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


def _status_mask(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return None


def _has_capability(number: int) -> bool:
    mask = _status_mask("CapEff:")
    return bool(mask is not None and mask >> number & 1)
