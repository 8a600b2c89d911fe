"""PodSandboxStats and ListPodSandboxStats: "returns stats of the pod sandbox.
If the pod sandbox does not exist, the call returns an error." (cri-api api.proto)

The pod part reads the counters (``pods.read_pod_stats``); this converts them,
and adds its running containers' stats (``linux.containers``), as containerd
does.  A pod with no container yet has no cgroup: its counters are zero
(and it has no I/O usage or pressure).  The pod's pressure (PSI) is its
cgroup parent's, which covers its containers'.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._psi import fill_psi
from hawser.cri._sandbox_convert import cri_metadata
from hawser.cri.container_stats import running_container_stats
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument
from hawser.pods import InterfaceUsage, PodStats, Sandbox, read_pod_stats


async def pod_sandbox_stats(deps: CriDeps, request: api_pb2.PodSandboxStatsRequest) -> api_pb2.PodSandboxStatsResponse:
    if not request.pod_sandbox_id:
        raise InvalidArgument("PodSandboxStats: pod_sandbox_id is empty")
    sandbox = await deps.blocking(deps.require_sandboxes().get, request.pod_sandbox_id)
    return api_pb2.PodSandboxStatsResponse(stats=await deps.blocking(sandbox_stats, sandbox, deps))


async def list_pod_sandbox_stats(deps: CriDeps,
                                 request: api_pb2.ListPodSandboxStatsRequest) -> api_pb2.ListPodSandboxStatsResponse:
    wanted = request.filter
    sandboxes = [s for s in await deps.blocking(deps.require_sandboxes().all)
                 if (not wanted.id or s.id.startswith(wanted.id))
                 and all(s.labels.get(k) == v for k, v in wanted.label_selector.items())]
    stats = []
    for sandbox in sandboxes:
        stats.append(await deps.blocking(sandbox_stats, sandbox, deps))
    return api_pb2.ListPodSandboxStatsResponse(stats=stats)


def sandbox_stats(sandbox: Sandbox, deps: CriDeps) -> api_pb2.PodSandboxStats:
    """One sample of the pod's counters, with its running containers' (as
    containerd answers: kubelet reads them from here). Blocking."""
    stats = to_cri(read_pod_stats(sandbox, deps.container_stats.layout()))
    if deps.containers is not None:
        stats.linux.containers.extend(running_container_stats(deps, deps.containers, pod=sandbox.id))
    return stats


def to_cri(stats: PodStats) -> api_pb2.PodSandboxStats:
    sandbox, now = stats.sandbox, stats.timestamp_ns
    linux = api_pb2.LinuxPodSandboxStats()
    linux.cpu.timestamp = linux.memory.timestamp = linux.process.timestamp = now
    sample = stats.cgroup
    if sample is not None:
        linux.cpu.usage_core_nano_seconds.value = sample.cpu_usage_ns
        linux.memory.working_set_bytes.value = sample.memory_working_set
        linux.memory.usage_bytes.value = sample.memory_usage
        linux.memory.rss_bytes.value = sample.memory_rss
        if sample.memory_limit is not None:
            linux.memory.available_bytes.value = max(0, sample.memory_limit - sample.memory_working_set)
        linux.process.process_count.value = sample.pids_current
        fill_psi(linux.cpu, linux.memory, linux.io, sample, now)
    if stats.interfaces is not None:
        usage = linux.network
        usage.timestamp = now
        for found in stats.interfaces:
            usage.interfaces.append(_interface(found))
        default = stats.default_interface
        if default is not None:
            usage.default_interface.CopyFrom(_interface(default))
    return api_pb2.PodSandboxStats(
        attributes=api_pb2.PodSandboxAttributes(id=sandbox.id, metadata=cri_metadata(sandbox),
                                                labels=sandbox.labels, annotations=sandbox.annotations),
        linux=linux)


def _interface(found: InterfaceUsage) -> api_pb2.NetworkInterfaceUsage:
    iface = api_pb2.NetworkInterfaceUsage(name=found.name)
    iface.rx_bytes.value, iface.rx_errors.value = found.rx_bytes, found.rx_errors
    iface.tx_bytes.value, iface.tx_errors.value = found.tx_bytes, found.tx_errors
    return iface
