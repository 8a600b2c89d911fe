"""ContainerStats: "returns stats of the container. If the container does not
exist, the call returns an error." ListContainerStats: "returns stats of all
running containers." (cri-api api.proto)

From the container's cgroup: cumulative CPU time and, from the previous
sample of the same container, the CPU rate (``usage_nano_cores``); memory
working set (usage - inactive_file, kubelet's definition), usage, RSS, page
faults, and what is left below the limit; CPU, memory and I/O pressure
(PSI, ``_psi.py``) where the host has them.  The writable layer is the
container snapshot's own directory (its overlay upper dir).  A container
whose cgroup is gone (exited and cleaned up) reports no CPU, memory or I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from cri_api.v1 import api_pb2

from hawser.cri._containers import cri_annotations, cri_labels, cri_list, cri_metadata, lookup, select
from hawser.cri._psi import fill_psi
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument, NotFound
from hawser.metadata import Container
from hawser.runtime import PAUSED, RUNNING, ContainerManager, ContainerStats


def to_cri(record: Container, sample: ContainerStats) -> api_pb2.ContainerStats:
    """A runtime sample as the CRI's ContainerStats."""
    out = api_pb2.ContainerStats(attributes=api_pb2.ContainerAttributes(
        id=record.id, metadata=cri_metadata(record), labels=cri_labels(record),
        annotations=cri_annotations(record)))
    now = sample.timestamp_ns
    cgroup = sample.cgroup
    if cgroup is not None:
        out.cpu.timestamp = now
        out.cpu.usage_core_nano_seconds.value = cgroup.cpu_usage_ns
        if sample.nano_cores is not None:
            out.cpu.usage_nano_cores.value = sample.nano_cores
        memory = out.memory
        memory.timestamp = now
        memory.working_set_bytes.value = cgroup.memory_working_set
        memory.usage_bytes.value = cgroup.memory_usage
        memory.rss_bytes.value = cgroup.memory_rss
        memory.page_faults.value = sample.page_faults
        memory.major_page_faults.value = sample.major_page_faults
        if cgroup.memory_limit is not None:
            memory.available_bytes.value = max(0, cgroup.memory_limit - cgroup.memory_working_set)
        fill_psi(out.cpu, memory, out.io, cgroup, now)
    layer = sample.writable_layer
    if layer is not None:
        out.writable_layer.timestamp = now
        out.writable_layer.fs_id.mountpoint = layer.mountpoint
        out.writable_layer.used_bytes.value = layer.used_bytes
        out.writable_layer.inodes_used.value = layer.inodes_used
    return out


async def container_stats(deps: CriDeps, request: api_pb2.ContainerStatsRequest) -> api_pb2.ContainerStatsResponse:
    if not request.container_id:
        raise InvalidArgument("ContainerStats: container_id is empty")
    manager = deps.require_containers()

    def read() -> api_pb2.ContainerStats:
        record = lookup(manager, request.container_id)
        return to_cri(record, deps.container_stats.read(record))

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
    stats = await deps.blocking(running_container_stats, deps, manager, flt.id, pod, dict(flt.label_selector))
    return api_pb2.ListContainerStatsResponse(stats=stats)


def running_container_stats(deps: CriDeps, manager: ContainerManager, id_prefix: str = "", pod: str = "",
                            labels: Mapping[str, str] | None = None) -> list[api_pb2.ContainerStats]:
    """Stats of the running (or paused) CRI containers selected. Blocking."""
    labels = labels or {}
    reader = deps.container_stats
    every = cri_list(manager)
    out = []
    for record in select(every, id_prefix=id_prefix, pod=pod, labels=labels):
        if manager.status(record).state not in (RUNNING, PAUSED):
            continue
        out.append(to_cri(record, reader.read(record)))
    if not (id_prefix or pod or labels):
        reader.forget_except({r.id for r in every})
    return out
