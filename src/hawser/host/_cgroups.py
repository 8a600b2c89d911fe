"""Container cgroups: where they live, what they use, and how they go away.

runc creates a container's cgroup from ``linux.cgroupsPath`` (cgroupfs driver:
an absolute path such as ``/hawser/<id>`` joined to every hierarchy's mount
point, ignoring the mount's root, as runc does).  hawser only reads and tears
down what runc built: stats for CRI, OOM kills for exit reasons, the processes
left behind, and the directories.

Two layouts exist and both are found in ``/proc/self/mountinfo``:

* v1 ("legacy", or "hybrid" when a cgroup2 mount sits beside the v1 ones, as
  systemd does at ``/sys/fs/cgroup/unified``): one hierarchy per controller
  (or per group of co-mounted controllers, e.g. ``cpu,cpuacct``), plus named
  hierarchies such as ``name=systemd``.  runc 1.1 also joins the cgroup2
  hierarchy of a hybrid host, so it is kept in the layout under the key ``""``.
* v2 ("unified"): one cgroup2 hierarchy, key ``""``.

Every function takes the layout as an argument, so tests point it at a fake
tree in a temporary directory (:meth:`CgroupLayout.rebased`) instead of
patching ``os``.

Missing *files* are normal (a controller not mounted or not enabled, an old
kernel) and read as 0 or ``None``; a missing *directory* means the cgroup is
gone and raises :class:`~hawser.errors.NotFound`.
"""

from __future__ import annotations

import errno
import os
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cache

from hawser._dataclass import dataclass, field, replace
from hawser.errors import FailedPrecondition, Internal, InvalidArgument, NotFound

# Mount options of a v1 cgroup mount that are not controllers.
_V1_NON_CONTROLLER_OPTIONS = frozenset(
    {"rw", "ro", "noprefix", "xattr", "clone_children", "all", "none", "cpuset_v2_mode", "favordynmods"}
)

# The kernel reports "no limit" as the largest page-aligned long, which depends
# on the page size (9223372036854771712 with 4 KiB pages).  No machine has
# 4 EiB of memory, so anything above this is "unlimited".
_UNLIMITED_FLOOR = 1 << 62

# How long kill_cgroup waits for a freeze to take hold.  A task in
# uninterruptible sleep can hold a cgroup in FREEZING for as long as its I/O
# takes; signalling anyway is better than waiting forever: the signal is
# delivered once the task leaves the kernel.
_FREEZE_TIMEOUT = 1.0

# kill_cgroup signals, then looks again for processes it has not seen: without
# a freezer, a fork can land after the listing.  A few rounds catch those.
_KILL_ROUNDS = 5

_MOUNTINFO_ESCAPE = re.compile(r"\\([0-7]{3})")

# v1 controllers read_stats needs; each one that is mounted must hold the cgroup.
_V1_STATS_CONTROLLERS = ("cpuacct", "memory", "pids", "blkio")


@dataclass(frozen=True, slots=True)
class CgroupLayout:
    """Where the cgroup hierarchies of this host are mounted.

    ``version`` is 1 on legacy and hybrid hosts, 2 on unified ones.  ``mounts``
    maps a v1 controller (``"memory"``, ``"cpuacct"``, ``"name=systemd"``...)
    to its mount point; the key ``""`` is the cgroup2 hierarchy (the only key
    on v2, the ``unified`` mount on hybrid hosts).  Co-mounted controllers map
    to the same mount point.
    """

    version: int
    # Mappings do not hash; equal layouts share their version, so that is enough.
    mounts: Mapping[str, str] = field(hash=False)

    def __post_init__(self) -> None:
        if self.version not in (1, 2):
            raise InvalidArgument(f"cgroup layout version {self.version}: must be 1 or 2")
        if self.version == 2 and set(self.mounts) != {""}:
            raise InvalidArgument(f"cgroup v2 layout must have exactly the unified mount (key ''), got {sorted(self.mounts)}")
        for key, mount_point in self.mounts.items():
            if not os.path.isabs(mount_point):
                raise InvalidArgument(f"cgroup mount point {mount_point!r} of {key!r} is not absolute")
        # A private copy: the caller's dict must not change a frozen layout.
        object.__setattr__(self, "mounts", dict(self.mounts))

    @classmethod
    def detect(cls, mountinfo: str | None = None) -> CgroupLayout:
        """The layout described by ``mountinfo`` (the text of
        ``/proc/self/mountinfo``, read when ``None``).

        v1 controllers (any v1 mount with a real controller) make a version 1
        layout, keeping a cgroup2 mount beside them as ``""`` (hybrid);
        otherwise a cgroup2 mount makes a version 2 layout.  When a hierarchy
        is mounted several times (bind mounts), the mount of its root wins.
        Raises FailedPrecondition if no cgroup filesystem is mounted."""
        if mountinfo is None:
            with open("/proc/self/mountinfo", encoding="utf-8") as f:
                mountinfo = f.read()
        v1: dict[str, tuple[bool, str]] = {}  # controller -> (mount root is "/", mount point)
        v2: list[tuple[bool, str]] = []
        for line in mountinfo.splitlines():
            parsed = _parse_mountinfo_line(line)
            if parsed is None:
                continue
            root, mount_point, fstype, super_options = parsed
            at_root = root == "/"
            if fstype == "cgroup2":
                v2.append((at_root, mount_point))
            elif fstype == "cgroup":
                for option in super_options.split(","):
                    if option in _V1_NON_CONTROLLER_OPTIONS or ("=" in option and not option.startswith("name=")):
                        continue
                    known = v1.get(option)
                    if known is None or (at_root and not known[0]):
                        v1[option] = (at_root, mount_point)
        unified = _pick_unified(v2)
        if any(not name.startswith("name=") for name in v1):
            mounts = {name: mount_point for name, (_, mount_point) in v1.items()}
            if unified is not None:
                mounts[""] = unified
            return cls(version=1, mounts=mounts)
        if unified is not None:
            # Named-only v1 mounts beside cgroup2 (a name=systemd mount for old
            # containers) hold no controllers: the host is unified.
            return cls(version=2, mounts={"": unified})
        raise FailedPrecondition("no cgroup filesystem is mounted (none in the mount table)",
                                 hint="mount cgroup2 on /sys/fs/cgroup")

    def rebased(self, root: str) -> CgroupLayout:
        """The same layout with every mount point moved under ``root``
        (``/sys/fs/cgroup/memory`` -> ``<root>/sys/fs/cgroup/memory``), for
        tests that build a fake tree from a real mountinfo."""
        return CgroupLayout(
            version=self.version,
            mounts={key: os.path.join(root, mount_point.lstrip("/")) for key, mount_point in self.mounts.items()},
        )

    def paths(self, cgroup: str) -> dict[str, str]:
        """Controller -> absolute directory of ``cgroup`` (a cgroupsPath such
        as ``/hawser/abc``) in each hierarchy.  Pure: touches no file.
        Raises InvalidArgument for a path that is not absolute, has empty,
        ``.`` or ``..`` components, or names the root."""
        parts = _split(cgroup)
        return {key: os.path.join(mount_point, *parts) for key, mount_point in self.mounts.items()}

    def directories(self, cgroup: str) -> list[str]:
        """The distinct directories of ``cgroup``, one per hierarchy
        (co-mounted controllers share one), in a stable order."""
        return sorted(set(self.paths(cgroup).values()))


@dataclass(frozen=True, slots=True)
class PsiData:
    """One line of a cgroup2 pressure file (the kernel's psi.rst)."""

    total_us: int  # cumulative stall time, in microseconds (the kernel's unit)
    avg10: float  # percent of wall time stalled, averaged over 10 s
    avg60: float
    avg300: float


@dataclass(frozen=True, slots=True)
class Pressure:
    """Pressure stall information of one resource (``cpu.pressure``,
    ``memory.pressure``, ``io.pressure``): ``some``: time at least one task
    was stalled on it; ``full``: time all non-idle tasks were at once."""

    some: PsiData
    full: PsiData | None  # None: the file has no "full" line (cpu.pressure before kernel 5.13)


@dataclass(frozen=True, slots=True)
class CgroupStats:
    """One sample of a cgroup's counters, in bytes and nanoseconds.

    The pressures are the cgroup's in the cgroup2 hierarchy (on a hybrid
    host, the ``unified`` mount runc also places containers in); None where
    the host has none for it: no cgroup2 hierarchy, or it lacks the cgroup,
    a kernel without PSI, or PSI switched off for the cgroup
    (``cgroup.pressure`` 0).  Never zeros in place of a missing file."""

    timestamp_ns: int  # wall clock (time.time_ns) when the sample was taken
    cpu_usage_ns: int
    cpu_user_ns: int
    cpu_system_ns: int
    memory_usage: int
    memory_working_set: int  # usage - inactive_file, floor 0 (kubelet's definition)
    memory_limit: int | None  # None: unlimited
    memory_rss: int
    memory_cache: int
    pids_current: int
    pids_limit: int | None  # None: unlimited
    blkio_read_bytes: int
    blkio_write_bytes: int
    oom_kills: int
    cpu_pressure: Pressure | None = None
    memory_pressure: Pressure | None = None
    io_pressure: Pressure | None = None


def read_stats(layout: CgroupLayout, cgroup: str) -> CgroupStats:
    """A sample of ``cgroup``'s CPU, memory, pids, block I/O and OOM counters,
    and its CPU, memory and I/O pressure (PSI) where the host has them.

    Counters a host lacks (a controller not mounted or not enabled, a file an
    old kernel does not have) read as 0, limits and pressures as ``None``.
    Each file is read once.
    Raises NotFound if the cgroup is gone, also when it disappears while being
    read (on v1: when any mounted cpuacct/memory/pids/blkio hierarchy lacks
    it); InvalidArgument for a malformed path.  Read-only."""
    paths = layout.paths(cgroup)
    reader = _Reader(cgroup)
    timestamp_ns = time.time_ns()
    if layout.version == 2:
        return _with_pressure(_read_stats_v2(reader, paths[""], timestamp_ns), reader, paths[""])
    stats_dirs = {key: paths[key] for key in _V1_STATS_CONTROLLERS if key in paths}
    for key, directory in stats_dirs.items():
        if not os.path.isdir(directory):
            raise NotFound(f"cgroup {cgroup}: no directory in the {key} hierarchy ({directory})",
                           hint="the container's cgroup was removed or never created")
    if not stats_dirs and not any(os.path.isdir(d) for d in paths.values()):
        raise NotFound(f"cgroup {cgroup}", hint="the container's cgroup was removed or never created")
    stats = _read_stats_v1(reader, stats_dirs, timestamp_ns)
    unified = paths.get("")
    if unified is None or not os.path.isdir(unified):
        return stats  # no cgroup2 hierarchy, or the runtime did not place the cgroup in it: no PSI
    try:
        return _with_pressure(stats, reader, unified)
    except NotFound:
        return stats  # its cgroup2 directory went first; the v1 counters stand


def page_faults(layout: CgroupLayout, cgroup: str) -> tuple[int, int]:
    """(all, major) page faults of ``cgroup`` and its sub-cgroups, cumulative,
    from memory.stat (v1: ``total_pgfault``/``total_pgmajfault``; v2:
    ``pgfault``/``pgmajfault``).  (0, 0) without a memory controller.
    Raises NotFound if the cgroup is gone; InvalidArgument for a malformed
    path.  Read-only."""
    paths = layout.paths(cgroup)
    reader = _Reader(cgroup)
    directory = paths.get("") if layout.version == 2 else paths.get("memory")
    if directory is None:
        if not any(os.path.isdir(d) for d in paths.values()):
            raise NotFound(f"cgroup {cgroup}", hint="the container's cgroup was removed or never created")
        return 0, 0
    reader.require_dir(directory)
    stat = _keyed(reader.text(directory, "memory.stat"))
    if layout.version == 2:
        return stat.get("pgfault", 0), stat.get("pgmajfault", 0)
    return (stat.get("total_pgfault", stat.get("pgfault", 0)),
            stat.get("total_pgmajfault", stat.get("pgmajfault", 0)))


def oom_kills(layout: CgroupLayout, cgroup: str) -> int:
    """How many processes the kernel's OOM killer has killed in ``cgroup``
    and its sub-cgroups.

    v1: the ``oom_kill`` line of memory.oom_control (kernel >= 4.13), summed
    over the subtree because v1 counts a kill only in the victim's own cgroup;
    v2: ``oom_kill`` in memory.events (hierarchical already).  0 when the host
    cannot tell (no memory controller, old kernel).
    Raises NotFound if the cgroup is gone (read it before removing the
    cgroup); InvalidArgument for a malformed path.  Read-only."""
    paths = layout.paths(cgroup)
    reader = _Reader(cgroup)
    if layout.version == 2:
        reader.require_dir(paths[""])
        return _keyed(reader.text(paths[""], "memory.events")).get("oom_kill", 0)
    memory = paths.get("memory")
    if memory is None:
        if not any(os.path.isdir(d) for d in paths.values()):
            raise NotFound(f"cgroup {cgroup}", hint="the container's cgroup was removed or never created")
        return 0
    return _v1_oom_kills(reader, memory)


def cgroup_exists(layout: CgroupLayout, cgroup: str) -> bool:
    """Whether ``cgroup`` has a directory in any hierarchy (a partly removed
    cgroup still exists).  Raises InvalidArgument for a malformed path."""
    return any(os.path.isdir(d) for d in layout.directories(cgroup))


def cgroup_pids(layout: CgroupLayout, cgroup: str) -> list[int]:
    """Every process (thread-group id) in ``cgroup`` or any of its
    sub-cgroups, in any hierarchy, sorted.

    All hierarchies are read because a process moved out of one (by hand, by
    a misbehaving tool) is still a leftover in the others.
    Raises NotFound if the cgroup exists in no hierarchy; InvalidArgument for
    a malformed path.  Read-only."""
    directories = layout.directories(cgroup)
    if not any(os.path.isdir(d) for d in directories):
        raise NotFound(f"cgroup {cgroup}", hint="the container's cgroup was removed or never created")
    return sorted(_pids_under(directories))


def kill_cgroup(layout: CgroupLayout, cgroup: str, sig: int = signal.SIGKILL) -> int:
    """Send ``sig`` to every process in ``cgroup`` and its sub-cgroups;
    return how many processes were signalled.

    The cgroup is frozen while its processes are listed and signalled (v1:
    the freezer hierarchy; v2: cgroup.freeze) so a fork cannot slip past the
    listing, then thawed so the signals are delivered.  On v2, SIGKILL goes
    through cgroup.kill (kernel >= 5.14), which the kernel applies atomically.
    The signal is asynchronous: processes may still be exiting on return.
    Idempotent: a gone or empty cgroup returns 0.
    Raises InvalidArgument for a malformed path; FailedPrecondition if the
    calling process is itself in the cgroup (it would kill or freeze itself)."""
    directories = layout.directories(cgroup)
    if not any(os.path.isdir(d) for d in directories):
        return 0
    if os.getpid() in _pids_under(directories):
        raise FailedPrecondition(f"refusing to signal cgroup {cgroup}: the calling process (pid {os.getpid()}) is in it")
    freeze: Callable[[str, bool], bool]
    freeze_dir: str | None
    if layout.version == 2:
        freeze, freeze_dir = _freeze_v2, layout.paths(cgroup)[""]
        kill_file = os.path.join(freeze_dir, "cgroup.kill")
        if sig == signal.SIGKILL and os.path.exists(kill_file):
            pids = _pids_under([freeze_dir])
            if _write_if_present(kill_file, "1"):
                return len(pids)
    else:
        freeze, freeze_dir = _freeze_v1, layout.paths(cgroup).get("freezer")
    signalled: set[int] = set()
    for _ in range(_KILL_ROUNDS):
        frozen = freeze_dir is not None and freeze(freeze_dir, True)
        try:
            fresh = _pids_under(directories) - signalled
            for pid in fresh:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    continue  # exited between the listing and the signal
                signalled.add(pid)
        finally:
            if frozen and freeze_dir is not None:
                freeze(freeze_dir, False)
        if not fresh:
            break
    return len(signalled)


def remove_cgroup(layout: CgroupLayout, cgroup: str, *, timeout: float = 5.0) -> None:
    """Remove ``cgroup`` and its sub-cgroups from every hierarchy, leaf first.

    rmdir fails with EBUSY while processes remain; processes that were just
    killed take a moment to leave, so busy directories are retried until
    ``timeout`` seconds have passed.  Parents of ``cgroup`` are left alone.
    Idempotent: an absent cgroup (in some or all hierarchies) is fine.
    Raises FailedPrecondition if processes (or sub-cgroups) remain after the
    timeout, naming some of them, or if rmdir fails otherwise;
    InvalidArgument for a malformed path."""
    directories = layout.directories(cgroup)
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        busy: list[str] = []
        for top in directories:
            for directory in _leaf_first(top):
                try:
                    os.rmdir(directory)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    # cgroupfs answers EBUSY; ENOTEMPTY comes from a plain
                    # directory that still holds files (a fake tree in tests).
                    if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
                        busy.append(directory)
                        continue
                    raise FailedPrecondition(f"cannot remove cgroup {cgroup}: rmdir {directory}: {exc.strerror}") from exc
        if not busy:
            return
        if time.monotonic() >= deadline:
            break
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    pids = sorted(_pids_under(directories))
    what = f"processes {_preview(pids)} remain" if pids else f"{busy[0]} is busy"
    raise FailedPrecondition(f"cannot remove cgroup {cgroup} after {timeout:g}s: {what}",
                             hint="kill the cgroup's processes first (kill_cgroup)")


# --- paths -------------------------------------------------------------------


def _split(cgroup: str) -> list[str]:
    if not isinstance(cgroup, str) or not cgroup.startswith("/"):
        raise InvalidArgument(f"cgroup path {cgroup!r} must be absolute (like /hawser/<id>)")
    if "\0" in cgroup:
        raise InvalidArgument(f"cgroup path {cgroup!r} contains a NUL byte")
    parts = cgroup[1:].split("/")
    if parts == [""]:
        raise InvalidArgument("cgroup path '/' names the root cgroup; hawser only handles cgroups below it")
    for part in parts:
        if part in ("", ".", ".."):
            raise InvalidArgument(f"cgroup path {cgroup!r} has an empty, '.' or '..' component")
    return parts


def _parse_mountinfo_line(line: str) -> tuple[str, str, str, str] | None:
    """(root, mount point, fstype, super options) of one mountinfo line, or
    None for a line that is not one (proc(5) format)."""
    fields = line.split(" ")
    try:
        separator = fields.index("-", 6)
    except ValueError:
        return None
    if len(fields) < separator + 4:
        return None
    root, mount_point = _unescape(fields[3]), _unescape(fields[4])
    return root, mount_point, fields[separator + 1], fields[separator + 3]


def _unescape(text: str) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo.
    return _MOUNTINFO_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), text)


def _pick_unified(candidates: list[tuple[bool, str]]) -> str | None:
    if not candidates:
        return None
    best = sorted(candidates, key=lambda c: (not c[0], c[1] != "/sys/fs/cgroup"))
    return best[0][1]


def _leaf_first(top: str) -> list[str]:
    """``top`` and every directory under it, children before parents; empty
    if ``top`` does not exist."""
    return [dirpath for dirpath, _, _ in os.walk(top, topdown=False)]


def _walk(top: str) -> Iterator[str]:
    # os.walk skips directories that vanish mid-walk: exactly what a cgroup
    # being torn down needs.
    for dirpath, _, _ in os.walk(top):
        yield dirpath


def _preview(pids: list[int]) -> str:
    shown = ", ".join(str(p) for p in pids[:10])
    return shown + (f" and {len(pids) - 10} more" if len(pids) > 10 else "")


# --- reading files -----------------------------------------------------------


class _Reader:
    """Reads control files of one cgroup, telling a missing file (0 / None)
    from a missing cgroup (NotFound)."""

    def __init__(self, cgroup: str) -> None:
        self.cgroup = cgroup

    def gone(self, directory: str) -> NotFound:
        return NotFound(f"cgroup {self.cgroup}: {directory} disappeared",
                        hint="the container's cgroup was removed while it was being read")

    def require_dir(self, directory: str) -> None:
        if not os.path.isdir(directory):
            raise NotFound(f"cgroup {self.cgroup}: no directory {directory}",
                           hint="the container's cgroup was removed or never created")

    def text(self, directory: str, name: str) -> str | None:
        """The file's content, or None if this cgroup has no such file."""
        try:
            with open(os.path.join(directory, name), encoding="ascii") as f:
                return f.read()
        except FileNotFoundError:
            if not os.path.isdir(directory):
                raise self.gone(directory) from None
            return None
        except OSError as exc:
            # ENODEV: the cgroup was removed after the file was opened.
            if exc.errno == errno.ENODEV:
                raise self.gone(directory) from None
            raise

    def integer(self, directory: str, name: str) -> int | None:
        """A one-number file; None if absent or "max"."""
        text = self.text(directory, name)
        if text is None:
            return None
        value = text.strip()
        if value == "max":
            return None
        try:
            return int(value)
        except ValueError:
            raise Internal(f"unexpected content in {os.path.join(directory, name)}: {value[:80]!r}") from None


def _keyed(text: str | None) -> dict[str, int]:
    """A "key value" per line file (memory.stat, cpu.stat, memory.events);
    lines that do not fit are skipped."""
    result: dict[str, int] = {}
    if text is None:
        return result
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2:
            try:
                result[fields[0]] = int(fields[1])
            except ValueError:
                continue
    return result


def _limit(value: int | None) -> int | None:
    if value is None or value >= _UNLIMITED_FLOOR:
        return None
    return value


@cache
def _ns_per_tick() -> int:
    return 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def _write_if_present(path: str, text: str) -> bool:
    """Write ``text`` in one write(2), as cgroupfs wants; False if the file
    (or its cgroup) is missing or the kernel refuses the value."""
    try:
        # O_TRUNC as runc does: cgroupfs ignores it, a plain file needs it.
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    except OSError:
        return False
    try:
        os.write(fd, text.encode())
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def _pids_in(directory: str) -> set[int]:
    try:
        with open(os.path.join(directory, "cgroup.procs"), encoding="ascii") as f:
            text = f.read()
    except OSError:
        return set()  # removed mid-walk, or not a cgroup dir after all
    return {int(word) for word in text.split()}


def _pids_under(directories: list[str]) -> set[int]:
    pids: set[int] = set()
    for top in directories:
        for directory in _walk(top):
            pids |= _pids_in(directory)
    return pids


# --- freezing ------------------------------------------------------------------


def _wait_for_line(path: str, line: str) -> None:
    """Poll ``path`` until it has ``line`` (or is gone), for at most
    _FREEZE_TIMEOUT seconds."""
    deadline = time.monotonic() + _FREEZE_TIMEOUT
    delay = 0.001
    while True:
        try:
            with open(path, encoding="ascii") as f:
                if line in f.read().splitlines():
                    return
        except OSError:
            return  # the cgroup is gone: nothing left to freeze
        if time.monotonic() >= deadline:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


def _freeze_v1(directory: str, frozen: bool) -> bool:
    """Freeze (or thaw) through the v1 freezer; True if the write took."""
    state = os.path.join(directory, "freezer.state")
    if not _write_if_present(state, "FROZEN" if frozen else "THAWED"):
        return False
    if frozen:
        _wait_for_line(state, "FROZEN")
    return True


def _freeze_v2(directory: str, frozen: bool) -> bool:
    """Freeze (or thaw) through cgroup.freeze; True if the write took."""
    if not _write_if_present(os.path.join(directory, "cgroup.freeze"), "1" if frozen else "0"):
        return False
    if frozen:
        _wait_for_line(os.path.join(directory, "cgroup.events"), "frozen 1")
    return True


# --- stats -------------------------------------------------------------------


def _read_stats_v1(reader: _Reader, dirs: Mapping[str, str], timestamp_ns: int) -> CgroupStats:
    cpu_usage = cpu_user = cpu_system = 0
    cpuacct = dirs.get("cpuacct")
    if cpuacct is not None:
        cpu_usage = reader.integer(cpuacct, "cpuacct.usage") or 0
        user = reader.integer(cpuacct, "cpuacct.usage_user")
        system = reader.integer(cpuacct, "cpuacct.usage_sys")
        if user is not None and system is not None:
            cpu_user, cpu_system = user, system
        else:
            # Kernels before 4.7 only have the tick-based split.
            ticks = _keyed(reader.text(cpuacct, "cpuacct.stat"))
            cpu_user = ticks.get("user", 0) * _ns_per_tick()
            cpu_system = ticks.get("system", 0) * _ns_per_tick()

    usage = inactive_file = rss = cache_bytes = oom = 0
    limit: int | None = None
    memory = dirs.get("memory")
    if memory is not None:
        usage = reader.integer(memory, "memory.usage_in_bytes") or 0
        stat = _keyed(reader.text(memory, "memory.stat"))
        # total_* include sub-cgroups; the plain keys are the fallback for
        # a kernel without hierarchy accounting.
        inactive_file = stat.get("total_inactive_file", stat.get("inactive_file", 0))
        rss = stat.get("total_rss", stat.get("rss", 0))
        cache_bytes = stat.get("total_cache", stat.get("cache", 0))
        limit = _limit(reader.integer(memory, "memory.limit_in_bytes"))
        oom = _v1_oom_kills(reader, memory)

    pids_current = 0
    pids_limit: int | None = None
    pids = dirs.get("pids")
    if pids is not None:
        pids_current = reader.integer(pids, "pids.current") or 0
        pids_limit = reader.integer(pids, "pids.max")

    read_bytes = write_bytes = 0
    blkio = dirs.get("blkio")
    if blkio is not None:
        read_bytes, write_bytes = _v1_io_bytes(reader, blkio)

    return CgroupStats(
        timestamp_ns=timestamp_ns,
        cpu_usage_ns=cpu_usage, cpu_user_ns=cpu_user, cpu_system_ns=cpu_system,
        memory_usage=usage, memory_working_set=max(0, usage - inactive_file), memory_limit=limit,
        memory_rss=rss, memory_cache=cache_bytes,
        pids_current=pids_current, pids_limit=pids_limit,
        blkio_read_bytes=read_bytes, blkio_write_bytes=write_bytes,
        oom_kills=oom,
    )


def _v1_io_bytes(reader: _Reader, blkio: str) -> tuple[int, int]:
    # The throttle file counts I/O under any scheduler (on recent kernels only
    # while a throttle rule is set); the CFQ (old kernels) and BFQ files count
    # what their scheduler saw.  The first with device lines wins: adding them
    # up would count the same I/O twice.
    for name in ("blkio.throttle.io_service_bytes_recursive", "blkio.io_service_bytes_recursive",
                 "blkio.bfq.io_service_bytes_recursive"):
        read = write = 0
        seen = False
        for line in (reader.text(blkio, name) or "").splitlines():
            fields = line.split()
            # "254:0 Read 8417280"; the last line is a bare "Total N".
            if len(fields) != 3:
                continue
            seen = True
            if fields[1] == "Read":
                read += int(fields[2])
            elif fields[1] == "Write":
                write += int(fields[2])
        if seen:
            return read, write
    return 0, 0


def _v1_oom_kills(reader: _Reader, memory: str) -> int:
    reader.require_dir(memory)
    total = 0
    for directory in _walk(memory):
        try:
            total += _keyed(reader.text(directory, "memory.oom_control")).get("oom_kill", 0)
        except NotFound:
            if directory == memory:
                raise
            # A sub-cgroup removed mid-walk: its kills went with it.
    return total


def _read_stats_v2(reader: _Reader, directory: str, timestamp_ns: int) -> CgroupStats:
    reader.require_dir(directory)
    cpu = _keyed(reader.text(directory, "cpu.stat"))
    usage = reader.integer(directory, "memory.current") or 0
    stat = _keyed(reader.text(directory, "memory.stat"))
    events = _keyed(reader.text(directory, "memory.events"))
    read_bytes = write_bytes = 0
    for line in (reader.text(directory, "io.stat") or "").splitlines():
        # "254:0 rbytes=8417280 wbytes=8388608 rios=15 wios=16 dbytes=0 dios=0"
        for item in line.split()[1:]:
            key, _, value = item.partition("=")
            if key == "rbytes":
                read_bytes += int(value)
            elif key == "wbytes":
                write_bytes += int(value)
    return CgroupStats(
        timestamp_ns=timestamp_ns,
        cpu_usage_ns=cpu.get("usage_usec", 0) * 1000,
        cpu_user_ns=cpu.get("user_usec", 0) * 1000,
        cpu_system_ns=cpu.get("system_usec", 0) * 1000,
        memory_usage=usage,
        memory_working_set=max(0, usage - stat.get("inactive_file", 0)),
        memory_limit=_limit(reader.integer(directory, "memory.max")),
        memory_rss=stat.get("anon", 0),
        memory_cache=stat.get("file", 0),
        pids_current=reader.integer(directory, "pids.current") or 0,
        pids_limit=reader.integer(directory, "pids.max"),
        blkio_read_bytes=read_bytes,
        blkio_write_bytes=write_bytes,
        oom_kills=events.get("oom_kill", 0),
    )


# --- pressure (PSI) ------------------------------------------------------------


def _with_pressure(stats: CgroupStats, reader: _Reader, directory: str) -> CgroupStats:
    """``stats`` with the pressures of the cgroup2 ``directory``.  Raises
    NotFound if the directory goes while it is read."""
    cpu, memory, io = (_pressure(reader, directory, name)
                       for name in ("cpu.pressure", "memory.pressure", "io.pressure"))
    if cpu is None and memory is None and io is None:
        return stats
    return replace(stats, cpu_pressure=cpu, memory_pressure=memory, io_pressure=io)


def _pressure(reader: _Reader, directory: str, name: str) -> Pressure | None:
    try:
        text = reader.text(directory, name)
    except OSError as exc:
        # EOPNOTSUPP: a kernel built with PSI off by default wants psi=1 on its
        # command line.  (cgroup.pressure 0 hides the files: None above.)
        if exc.errno == errno.EOPNOTSUPP:
            return None
        raise
    return None if text is None else _parse_pressure(text)


def _parse_pressure(text: str) -> Pressure | None:
    """A pressure file's content (``some avg10=0.12 avg60=0.05 avg300=0.01
    total=123456``, then the same for ``full``); None without a well-formed
    ``some`` line."""
    lines: dict[str, PsiData] = {}
    for line in text.splitlines():
        kind, _, rest = line.partition(" ")
        if kind not in ("some", "full"):
            continue
        values = dict(item.partition("=")[::2] for item in rest.split())
        try:
            lines[kind] = PsiData(total_us=int(values["total"]), avg10=float(values["avg10"]),
                                  avg60=float(values["avg60"]), avg300=float(values["avg300"]))
        except (KeyError, ValueError):
            continue
    some = lines.get("some")
    return None if some is None else Pressure(some=some, full=lines.get("full"))
