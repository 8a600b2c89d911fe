"""PodSandboxStats and ListPodSandboxStats: "returns stats of the pod sandbox.
If the pod sandbox does not exist, the call returns an error." (cri-api api.proto)

A pod's CPU, memory and process counts are its cgroup parent's (on both cgroup
versions the parent's counters include its containers'); network usage is
read from ``/proc/thread-self/net/dev`` by a thread inside the pod's network
namespace.  A pod with no container yet has no cgroup: its counters are zero.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from cri_api.v1 import api_pb2

from hawser.cri._sandbox_convert import cri_metadata
from hawser.cri._sandbox_types import Sandbox
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument, NotFound

if TYPE_CHECKING:
    from hawser.cri.container_stats import ContainerStatsReader


async def pod_sandbox_stats(deps: CriDeps, request: api_pb2.PodSandboxStatsRequest) -> api_pb2.PodSandboxStatsResponse:
    if not request.pod_sandbox_id:
        raise InvalidArgument("PodSandboxStats: pod_sandbox_id is empty")
    sandbox = await deps.blocking(deps.require_sandboxes().get, request.pod_sandbox_id)
    return api_pb2.PodSandboxStatsResponse(stats=await deps.blocking(sandbox_stats, sandbox, deps.container_stats))


async def list_pod_sandbox_stats(deps: CriDeps,
                                 request: api_pb2.ListPodSandboxStatsRequest) -> api_pb2.ListPodSandboxStatsResponse:
    wanted = request.filter
    sandboxes = [s for s in await deps.blocking(deps.require_sandboxes().all)
                 if (not wanted.id or s.id.startswith(wanted.id))
                 and all(s.labels.get(k) == v for k, v in wanted.label_selector.items())]
    stats = []
    for sandbox in sandboxes:
        stats.append(await deps.blocking(sandbox_stats, sandbox, deps.container_stats))
    return api_pb2.ListPodSandboxStatsResponse(stats=stats)


def sandbox_stats(sandbox: Sandbox, reader: ContainerStatsReader) -> api_pb2.PodSandboxStats:
    """One sample of the pod's counters (blocking: reads cgroup files and /proc), on the
    cgroup layout the container stats reader detected once."""
    from hawser.host import read_stats

    now = time.time_ns()
    linux = api_pb2.LinuxPodSandboxStats()
    try:
        sample = read_stats(reader.layout(), sandbox.cgroup_parent) if sandbox.cgroup_parent else None
    except NotFound:
        sample = None
    linux.cpu.timestamp = linux.memory.timestamp = linux.process.timestamp = now
    if sample is not None:
        linux.cpu.usage_core_nano_seconds.value = sample.cpu_usage_ns
        linux.memory.working_set_bytes.value = sample.memory_working_set
        linux.memory.usage_bytes.value = sample.memory_usage
        linux.memory.rss_bytes.value = sample.memory_rss
        if sample.memory_limit is not None:
            linux.memory.available_bytes.value = max(0, sample.memory_limit - sample.memory_working_set)
        linux.process.process_count.value = sample.pids_current
    if sandbox.netns and sandbox.ready:
        linux.network.CopyFrom(_network_usage(sandbox.netns, now))
    return api_pb2.PodSandboxStats(
        attributes=api_pb2.PodSandboxAttributes(id=sandbox.id, metadata=cri_metadata(sandbox),
                                                labels=sandbox.labels, annotations=sandbox.annotations),
        linux=linux)


def _network_usage(netns: str, timestamp: int) -> api_pb2.NetworkUsage:
    from hawser.host import run_in_netns

    def read() -> str:
        with open("/proc/thread-self/net/dev", encoding="ascii") as f:
            return f.read()

    usage = api_pb2.NetworkUsage(timestamp=timestamp)
    try:
        text = run_in_netns(netns, read)
    except OSError:
        return usage
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        name = name.strip()
        if name == "lo" or not counters:
            continue
        fields = [int(v) for v in counters.split()]
        iface = api_pb2.NetworkInterfaceUsage(name=name)
        iface.rx_bytes.value, iface.rx_errors.value = fields[0], fields[2]
        iface.tx_bytes.value, iface.tx_errors.value = fields[8], fields[10]
        usage.interfaces.append(iface)
        if name == "eth0":
            usage.default_interface.CopyFrom(iface)
    return usage

