"""A pod's resources after kubelet resized it in place (the CRI's
UpdatePodSandboxResources, InPlacePodVerticalScaling).

kubelet sends the pod's overhead (its RuntimeClass's, "guaranteed": requests
equal limits) and the sum of its containers' resources, the pod-level
cgroup's size less that overhead, in the CRI's LinuxContainerResources (0 and
"" mean "not specified": the value kept so far stays).  Both are kept in the
pod's record, in its status (``status["resources"]``: the config is the
RunPodSandbox request, which a retried RunPodSandbox must find unchanged), merged
field by field with what earlier updates kept.

kubelet calls it after it has resized the pod-level cgroup it made itself (the
pod's ``cgroup_parent``): that cgroup is kubelet's and is left alone, as
containerd leaves it (containerd 2.1 keeps the values in its sandbox store and
hands them to NRI plugins).  A pod with a cgroup of hawser's own (no
``cgroup_parent`` was asked: ``<runtime.cgroup_parent>/pod-<id[:12]>``) has
nobody else to size it: hawser writes its limits, resources plus overhead,
as kubelet sizes its own pod cgroups: CPU shares and quota add up (the
overhead's quota taken to the resources' period), the memory limit is the sum,
and an unlimited quota (-1) or an unset memory limit stays so whatever the
overhead.  The cgroup is made if no container made it yet (runc makes the
rest when one comes).  Swap, hugepages and cgroup v2 ``unified`` entries are
kept, not applied (kubelet sends none for a pod).  A write the kernel refuses
undoes the ones before it: the cgroup keeps its old limits.
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hawser._logging import get_logger
from hawser.errors import FailedPrecondition, InvalidArgument
from hawser.metadata import SandboxRecord
from hawser.pods._types import REASON_KEY, SANDBOX_READY
from hawser.runtime import Resources

if TYPE_CHECKING:
    from hawser.host import CgroupLayout
    from hawser.metadata import SandboxRecords

log = get_logger("hawser.pods")

# The key of a pod record's status that holds its resources.
RESOURCES_KEY = "resources"
# The largest cpu.shares the kernel takes (runc's and kubelet's MaxShares).
MAX_SHARES = 262144
_CPUSET = re.compile(r"^\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*$")
# The fields of ``Resources`` the CRI's LinuxContainerResources can set.
_FIELDS = ("cpu_shares", "cpu_quota", "cpu_period", "cpuset_cpus", "cpuset_mems", "memory_limit", "memory_swap")


def check_pod_resources(res: Resources, what: str) -> None:
    """InvalidArgument for a value no cgroup takes; ``what`` names the
    request's field ("resources", "overhead").  Pure."""
    def bad(message: str, hint: str | None = None) -> InvalidArgument:
        return InvalidArgument(f"UpdatePodSandboxResources: invalid {what}: {message}", hint=hint)

    if res.cpu_shares is not None and not 2 <= res.cpu_shares <= MAX_SHARES:
        raise bad(f"cpu shares {res.cpu_shares} must be between 2 and {MAX_SHARES}")
    if res.cpu_quota is not None and res.cpu_quota != -1 and res.cpu_quota < 1000:
        raise bad(f"cpu quota {res.cpu_quota} must be at least 1000 (µs), or -1 (no limit)")
    if res.cpu_period is not None and not 1000 <= res.cpu_period <= 1_000_000:
        raise bad(f"cpu period {res.cpu_period} must be between 1000 and 1000000 (µs)")
    if res.memory_limit is not None and res.memory_limit < 0:
        raise bad(f"memory limit {res.memory_limit} is negative")
    if res.memory_swap is not None and res.memory_swap < -1:
        raise bad(f"memory+swap limit {res.memory_swap} must not be negative, but for -1 (unlimited swap)")
    for name, value in (("cpus", res.cpuset_cpus), ("mems", res.cpuset_mems)):
        if value is not None and not _CPUSET.match(value):
            raise bad(f"cpuset {name} {value!r}", hint="use a list like 0-3,6")


def pod_limits(resources: Resources, overhead: Resources) -> Resources:
    """The pod cgroup's limits: ``resources`` plus ``overhead``, as kubelet
    sizes a pod cgroup.  None fields are left as the cgroup has them.  Pure."""
    shares = None
    if resources.cpu_shares is not None or overhead.cpu_shares is not None:
        shares = min((resources.cpu_shares or 0) + (overhead.cpu_shares or 0), MAX_SHARES)
    period = resources.cpu_period or overhead.cpu_period
    quota = resources.cpu_quota
    if quota is not None and quota > 0 and overhead.cpu_quota is not None and overhead.cpu_quota > 0:
        extra = overhead.cpu_quota
        if period and overhead.cpu_period and overhead.cpu_period != period:
            extra = extra * period // overhead.cpu_period
        quota += extra
    memory = resources.memory_limit
    if memory and overhead.memory_limit:
        memory += overhead.memory_limit
    return Resources(cpu_shares=shares, cpu_quota=quota, cpu_period=period, cpuset_cpus=resources.cpuset_cpus,
                     cpuset_mems=resources.cpuset_mems, memory_limit=memory or None)


def _to_json(res: Resources) -> dict[str, Any]:
    return {name: getattr(res, name) for name in _FIELDS if getattr(res, name) is not None}


def _from_json(data: Mapping[str, Any] | None) -> Resources:
    data = data or {}
    return Resources(**{name: data[name] for name in _FIELDS if data.get(name) is not None})


def _merged(kept: Mapping[str, Any] | None, new: Resources) -> Resources:
    return _from_json({**(kept or {}), **_to_json(new)})


def update_pod_resources(records: SandboxRecords, record: SandboxRecord, *, resources: Resources,
                         overhead: Resources, own_cgroup: str, layout: CgroupLayout | None = None) -> Resources | None:
    """Keep a ready pod's new ``resources`` and ``overhead`` in its record
    (merged with what it kept), and, when the pod's cgroup is ``own_cgroup``
    (hawser's, not kubelet's), write that cgroup's limits first.  The limits
    written, or None (kubelet's cgroup).  FailedPrecondition for a pod that
    is not ready, or a limit the pod's cgroup cannot take now (memory in use
    above it; a quota below one of its containers' on cgroup v1);
    InvalidArgument for a value the kernel refuses.  Idempotent.  Blocking."""
    if record.state != SANDBOX_READY:
        why = record.status.get(REASON_KEY) or "it was stopped"
        raise FailedPrecondition(f"pod sandbox {record.id[:12]} is not ready ({why}): its resources cannot change",
                                 hint="kubelet makes the pod anew")
    kept = record.status.get(RESOURCES_KEY) or {}
    new_resources = _merged(kept.get("resources"), resources)
    new_overhead = _merged(kept.get("overhead"), overhead)
    applied = None
    if record.status.get("cgroup_parent") == own_cgroup:
        if layout is None:
            from hawser.host import CgroupLayout

            layout = CgroupLayout.detect()
        applied = pod_limits(new_resources, new_overhead)
        apply_pod_limits(layout, own_cgroup, applied)
    records.update(record.id, namespace=record.namespace, status_entries={RESOURCES_KEY: {
        "resources": _to_json(new_resources), "overhead": _to_json(new_overhead),
        "applied": _to_json(applied) if applied is not None else None}})
    log.info("pod sandbox resources updated", extra={
        "id": record.id, "resources": _to_json(new_resources), "overhead": _to_json(new_overhead),
        "cgroup": own_cgroup if applied is not None else None})
    return applied


# --- the cgroup's files ---------------------------------------------------------------


class _Writes:
    """cgroup file writes, each one's old text kept so that all can be undone."""

    def __init__(self, cgroup: str) -> None:
        self.cgroup = cgroup
        self.done: list[tuple[str, str]] = []  # (path, the text it had)

    def write(self, path: str, text: str, *, retry_later: bool = False) -> bool:
        """Write ``text`` to ``path``; with ``retry_later``, False instead of
        an error when the kernel refuses the value (EINVAL) for now."""
        try:
            before = _read(path)
            _write(path, text)
        except OSError as exc:
            if retry_later and exc.errno == errno.EINVAL:
                return False
            raise self._error(path, text, exc) from None
        self.done.append((path, before))
        return True

    def undo(self) -> None:
        for path, text in reversed(self.done):
            try:
                _write(path, text)
            except OSError as exc:  # the next update writes it again
                log.warning("pod cgroup limit not restored", extra={"path": path, "error": exc.strerror})
        self.done.clear()

    def _error(self, path: str, text: str, exc: OSError) -> Exception:
        name = os.path.basename(path)
        if exc.errno == errno.ENOENT:
            return FailedPrecondition(f"pod cgroup {self.cgroup} has no {name}: its controller is not there")
        if exc.errno == errno.EBUSY:
            return FailedPrecondition(f"pod cgroup {self.cgroup} cannot take {name} = {text}: it uses more than "
                                      "that (the kernel could not reclaim it)",
                                      hint="shrink the pod's containers first")
        if exc.errno == errno.EINVAL:
            return InvalidArgument(f"the kernel refused {name} = {text} for pod cgroup {self.cgroup}",
                                   hint="on cgroup v1 a pod's CPU quota must not be below any of its containers'")
        return FailedPrecondition(f"cannot write {name} = {text} of pod cgroup {self.cgroup}: {exc.strerror}")


def _write(path: str, text: str) -> None:
    # One write(2), as cgroupfs wants.
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _read(path: str) -> str:
    with open(path, encoding="ascii") as f:
        return f.read().strip()


def apply_pod_limits(layout: CgroupLayout, cgroup: str, limits: Resources) -> None:
    """Write ``limits`` (None fields left alone) into ``cgroup``, made in the
    hierarchies written if it is missing: cgroup v1's cpu, memory and cpuset
    files on a v1 or hybrid host (a hybrid host's v2 mount holds none of those
    controllers), v2's otherwise.  All or nothing (see ``_Writes``).  Blocking."""
    writes = _Writes(cgroup)
    try:
        if layout.version == 1:
            _apply_v1(layout, cgroup, limits, writes)
        else:
            _apply_v2(layout, cgroup, limits, writes)
    except OSError as exc:  # making a directory, filling a cpuset, enabling a v2 controller
        writes.undo()
        raise FailedPrecondition(f"cannot set up pod cgroup {cgroup}: {exc}") from None
    except BaseException:
        writes.undo()
        raise


def _v1_dir(layout: CgroupLayout, cgroup: str, controller: str) -> str:
    directory = layout.paths(cgroup).get(controller)
    if directory is None:
        raise FailedPrecondition(f"the {controller} cgroup controller is not mounted: pod cgroup {cgroup} "
                                 "cannot be limited")
    os.makedirs(directory, exist_ok=True)
    return directory


def _apply_v1(layout: CgroupLayout, cgroup: str, limits: Resources, writes: _Writes) -> None:
    if limits.cpu_shares is not None or limits.cpu_quota is not None or limits.cpu_period is not None:
        cpu = _v1_dir(layout, cgroup, "cpu")
        if limits.cpu_shares is not None:
            writes.write(os.path.join(cpu, "cpu.shares"), str(limits.cpu_shares))
        quota, period = os.path.join(cpu, "cpu.cfs_quota_us"), os.path.join(cpu, "cpu.cfs_period_us")
        # The kernel checks the quota/period ratio against the children's at each
        # write: a period it refuses before the new quota may pass after it (as runc does).
        period_written = limits.cpu_period is None or writes.write(
            period, str(limits.cpu_period), retry_later=limits.cpu_quota is not None)
        if limits.cpu_quota is not None:
            writes.write(quota, str(limits.cpu_quota))
        if not period_written:
            writes.write(period, str(limits.cpu_period))
    if limits.memory_limit is not None:
        memory = _v1_dir(layout, cgroup, "memory")
        writes.write(os.path.join(memory, "memory.limit_in_bytes"), str(limits.memory_limit))
    if limits.cpuset_cpus is not None or limits.cpuset_mems is not None:
        mount = layout.mounts.get("cpuset")
        if mount is None:
            raise FailedPrecondition(f"the cpuset cgroup controller is not mounted: pod cgroup {cgroup} "
                                     "cannot be limited")
        cpuset = _cpuset_v1(mount, cgroup)
        if limits.cpuset_cpus is not None:
            writes.write(os.path.join(cpuset, "cpuset.cpus"), limits.cpuset_cpus)
        if limits.cpuset_mems is not None:
            writes.write(os.path.join(cpuset, "cpuset.mems"), limits.cpuset_mems)


def _cpuset_v1(mount: str, cgroup: str) -> str:
    """The cgroup's cpuset directory, made with its parents' CPUs and memory
    nodes where it (or a parent on the way) has none yet: a v1 cpuset with an
    empty set holds no process, and runc would find it so."""
    directory = mount
    for part in cgroup.strip("/").split("/"):
        parent, directory = directory, os.path.join(directory, part)
        os.makedirs(directory, exist_ok=True)
        for name in ("cpuset.cpus", "cpuset.mems"):
            path = os.path.join(directory, name)
            if not _read(path):
                _write(path, _read(os.path.join(parent, name)))
    return directory


def _apply_v2(layout: CgroupLayout, cgroup: str, limits: Resources, writes: _Writes) -> None:
    directory = layout.paths(cgroup)[""]
    wanted = []
    if limits.cpu_shares is not None or limits.cpu_quota is not None or limits.cpu_period is not None:
        wanted.append("cpu")
    if limits.memory_limit is not None:
        wanted.append("memory")
    if limits.cpuset_cpus is not None or limits.cpuset_mems is not None:
        wanted.append("cpuset")
    if not wanted:
        return
    _enable_v2(layout.mounts[""], cgroup, wanted)
    if limits.cpu_shares is not None:
        # runc's conversion of the v1 shares [2, 262144] to the v2 weight [1, 10000].
        weight = 1 + ((limits.cpu_shares - 2) * 9999) // 262142
        writes.write(os.path.join(directory, "cpu.weight"), str(weight))
    if limits.cpu_quota is not None or limits.cpu_period is not None:
        path = os.path.join(directory, "cpu.max")
        old_quota, _, old_period = _read(path).partition(" ")
        quota = old_quota if limits.cpu_quota is None else ("max" if limits.cpu_quota < 0 else str(limits.cpu_quota))
        period = old_period if limits.cpu_period is None else str(limits.cpu_period)
        writes.write(path, f"{quota} {period}")
    if limits.memory_limit is not None:
        writes.write(os.path.join(directory, "memory.max"), str(limits.memory_limit))
    if limits.cpuset_cpus is not None:
        writes.write(os.path.join(directory, "cpuset.cpus"), limits.cpuset_cpus)
    if limits.cpuset_mems is not None:
        writes.write(os.path.join(directory, "cpuset.mems"), limits.cpuset_mems)


def _enable_v2(mount: str, cgroup: str, controllers: list[str]) -> None:
    """Make the cgroup with ``controllers`` enabled on the way down to it
    (each parent's ``cgroup.subtree_control``), as runc does for a container's."""
    directory = mount
    for part in cgroup.strip("/").split("/"):
        control = os.path.join(directory, "cgroup.subtree_control")
        enabled = set(_read(control).split())
        missing = [c for c in controllers if c not in enabled]
        if missing:
            _write(control, " ".join(f"+{c}" for c in missing))
        directory = os.path.join(directory, part)
        os.makedirs(directory, exist_ok=True)
