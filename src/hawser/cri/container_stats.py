"""ContainerStats: "returns stats of the container. If the container does not
exist, the call returns an error." ListContainerStats: "returns stats of all
running containers." (cri-api api.proto)

From the container's cgroup: cumulative CPU time and, from the previous
sample of the same container, the CPU rate (``usage_nano_cores``); memory
working set (usage - inactive_file, kubelet's definition), usage, RSS, page
faults, and what is left below the limit.  The writable layer is the
container snapshot's own directory (its overlay upper dir).  A container
whose cgroup is gone (exited and cleaned up) reports no CPU or memory.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cri_api.v1 import api_pb2

from hawser.cri.container_list import select
from hawser.cri.container_status import cri_annotations, cri_labels, cri_list, cri_metadata, lookup
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument, NotFound
from hawser.metadata import Container
from hawser.runtime import PAUSED, RUNNING, ContainerManager

if TYPE_CHECKING:
    from hawser.host._cgroups import CgroupLayout

# A previous sample older than this is too old to average over (kubelet polls every 10-15 s).
MAX_SAMPLE_AGE_NS = 120 * 10**9


class ContainerStatsReader:
    """Reads container stats; remembers each container's last CPU sample.
    Thread-safe: handlers call it from worker threads."""

    def __init__(self, layout: CgroupLayout | None = None) -> None:
        self._layout = layout
        self._lock = threading.Lock()
        self._last: dict[str, tuple[int, int]] = {}

    def layout(self) -> CgroupLayout:
        if self._layout is None:
            from hawser.host._cgroups import CgroupLayout

            self._layout = CgroupLayout.detect()
        return self._layout

    def nano_cores(self, container_id: str, timestamp_ns: int, usage_ns: int) -> int | None:
        """The CPU rate since the previous sample of this container (None for the first one)."""
        with self._lock:
            previous = self._last.get(container_id)
            self._last[container_id] = (timestamp_ns, usage_ns)
        if previous is None:
            return None
        elapsed, used = timestamp_ns - previous[0], usage_ns - previous[1]
        if elapsed <= 0 or used < 0 or elapsed > MAX_SAMPLE_AGE_NS:
            return None
        return used * 10**9 // elapsed

    def forget_except(self, ids: set[str]) -> None:
        with self._lock:
            for gone in set(self._last) - ids:
                del self._last[gone]

    def stats(self, manager: ContainerManager, record: Container) -> api_pb2.ContainerStats:
        """One container's stats. Blocking."""
        from hawser.host._cgroups import page_faults, read_stats

        out = api_pb2.ContainerStats(attributes=api_pb2.ContainerAttributes(
            id=record.id, metadata=cri_metadata(record), labels=cri_labels(record),
            annotations=cri_annotations(record)))
        cgroup = str(record.config.get("cgroups_path") or "")
        now = time.time_ns()
        if cgroup:
            try:
                sample = read_stats(self.layout(), cgroup)
                faults, major = page_faults(self.layout(), cgroup)
            except (NotFound, InvalidArgument):
                sample = None
            if sample is not None:
                now = sample.timestamp_ns
                out.cpu.timestamp = now
                out.cpu.usage_core_nano_seconds.value = sample.cpu_usage_ns
                rate = self.nano_cores(record.id, now, sample.cpu_usage_ns)
                if rate is not None:
                    out.cpu.usage_nano_cores.value = rate
                memory = out.memory
                memory.timestamp = now
                memory.working_set_bytes.value = sample.memory_working_set
                memory.usage_bytes.value = sample.memory_usage
                memory.rss_bytes.value = sample.memory_rss
                memory.page_faults.value = faults
                memory.major_page_faults.value = major
                if sample.memory_limit is not None:
                    memory.available_bytes.value = max(0, sample.memory_limit - sample.memory_working_set)
        try:
            mountpoint, used, inodes = manager.writable_layer(record)
        except NotFound:
            return out
        out.writable_layer.timestamp = now
        out.writable_layer.fs_id.mountpoint = mountpoint
        out.writable_layer.used_bytes.value = used
        out.writable_layer.inodes_used.value = inodes
        return out


async def container_stats(deps: CriDeps, request: api_pb2.ContainerStatsRequest) -> api_pb2.ContainerStatsResponse:
    if not request.container_id:
        raise InvalidArgument("ContainerStats: container_id is empty")
    manager = deps.require_containers()

    def read() -> api_pb2.ContainerStats:
        return deps.container_stats.stats(manager, lookup(manager, request.container_id))

    return api_pb2.ContainerStatsResponse(stats=await deps.blocking(read))


async def list_container_stats(deps: CriDeps,
                               request: api_pb2.ListContainerStatsRequest) -> api_pb2.ListContainerStatsResponse:
    manager = deps.require_containers()
    flt = request.filter
    pod = ""
    if flt.pod_sandbox_id:
        try:
            pod = (await deps.blocking(deps.require_sandboxes().get, flt.pod_sandbox_id)).id
        except (NotFound, InvalidArgument):
            return api_pb2.ListContainerStatsResponse()
    stats = await deps.blocking(_list, deps, manager, flt.id, pod, dict(flt.label_selector))
    return api_pb2.ListContainerStatsResponse(stats=stats)


def _list(deps: CriDeps, manager: ContainerManager, id_prefix: str, pod: str,
          labels: Mapping[str, str]) -> list[api_pb2.ContainerStats]:
    reader = deps.container_stats
    every = cri_list(manager)
    out = []
    for record in select(every, id_prefix=id_prefix, pod=pod, labels=labels):
        if manager.status(record).state not in (RUNNING, PAUSED):
            continue
        out.append(reader.stats(manager, record))
    if not (id_prefix or pod or labels):
        reader.forget_except({r.id for r in every})
    return out
