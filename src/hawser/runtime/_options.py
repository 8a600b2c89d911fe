"""What a caller asks of a container (ContainerOptions) and what the host lets
this process grant (HostLimits): the two inputs of spec generation besides the
image configuration.

Options are plain frozen data; they are validated where they are turned into a
spec (``build_spec``), except for the few checks that need no context, done
at construction so a bad value fails where it was written.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Mapping
from dataclasses import dataclass, field

from hawser.errors import InvalidArgument

PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


@dataclass(frozen=True, slots=True, kw_only=True)
class BindMount:
    """A host path bound into the container (always recursive, like docker's -v)."""

    source: str
    destination: str
    readonly: bool = False
    propagation: str = "rprivate"

    def __post_init__(self) -> None:
        if self.propagation not in PROPAGATIONS:
            raise InvalidArgument(f"invalid propagation {self.propagation!r} for mount {self.destination!r}",
                                  hint="use one of " + ", ".join(PROPAGATIONS))


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


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerOptions:
    """Everything a run/create request may set beyond the image configuration."""

    args: tuple[str, ...] | None = None  # overrides the image's Cmd
    entrypoint: tuple[str, ...] | None = None  # overrides the image's Entrypoint; () clears it
    env: tuple[str, ...] = ()  # "KEY=VALUE", later entries win
    workdir: str | None = None
    user: str | None = None  # "name", "uid", "name:group", "uid:gid"...; None: the image's
    tty: bool = False
    stdin: bool = False
    hostname: str = ""
    read_only: bool = False
    mounts: tuple[BindMount, ...] = ()
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
    stop_signal: str | None = None


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
