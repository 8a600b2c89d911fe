"""I/O and pressure stall information (PSI) in the CRI's stats (kubelet's
KubeletPSI), over hawserd's CRI socket: a container that writes 8 MiB with
O_DIRECT shows its written bytes grow (cAdvisor's container_fs_writes_bytes_total
of ListPodSandboxMetrics, as the blkio/io cgroup counts them: the CRI's
IoUsage has no byte field), and ContainerStats, ListContainerStats,
PodSandboxStats and ListPodSandboxStats carry the CPU, memory and I/O
pressure of the container's and the pod's cgroup2 directory, the totals in
nanoseconds between two reads of the host's own files.  A pod with no
container has no cgroup: no I/O usage, no pressure, rather than zeros."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cri_api.v1 import api_pb2

from tests.support.cri_pods import CGROUP_ROOT, Pods, cgroup_dir

MIB = 1 << 20
V2 = Path(CGROUP_ROOT, "cgroup.controllers").exists()
# On a hybrid host runc also places containers in the cgroup2 mount beside the v1 controllers.
UNIFIED = "" if V2 else "unified"
RESOURCES = ("cpu", "memory", "io")

pytestmark = pytest.mark.skipif(not Path(CGROUP_ROOT, UNIFIED, "cpu.pressure").exists(),
                                reason="no cgroup2 hierarchy with PSI on this host")

Psi = dict[str, tuple[int, float, float, float]]  # some/full -> (total ns, avg10, avg60, avg300)


def host_psi(directory: Path) -> dict[str, Psi]:
    """The pressure files of a cgroup2 directory: resource -> some/full -> (total ns, avg10, avg60, avg300)."""
    out: dict[str, Psi] = {}
    for resource in RESOURCES:
        lines: Psi = {}
        for line in (directory / f"{resource}.pressure").read_text().splitlines():
            kind, *items = line.split()
            values = dict(item.split("=") for item in items)
            lines[kind] = (int(values["total"]) * 1000, float(values["avg10"]), float(values["avg60"]),
                           float(values["avg300"]))
        out[resource] = lines
    return out


def cri_psi(cpu: api_pb2.CpuUsage, memory: api_pb2.MemoryUsage, io: api_pb2.IoUsage) -> dict[str, Psi]:
    out: dict[str, Psi] = {}
    assert cpu.HasField("psi") and memory.HasField("psi") and io.HasField("psi")
    for resource, psi in zip(RESOURCES, (cpu.psi, memory.psi, io.psi), strict=True):
        assert psi.HasField("Some") and psi.HasField("Full"), resource  # kernel >= 5.13 has both lines
        out[resource] = {kind: (line.Total, line.Avg10, line.Avg60, line.Avg300)
                         for kind, line in (("some", psi.Some), ("full", psi.Full))}
    return out


def assert_between(before: dict[str, Psi], got: dict[str, Psi], after: dict[str, Psi]) -> None:
    """Each total and average as the host had it at some point between the two reads."""
    for resource in RESOURCES:
        for kind in ("some", "full"):
            low, high = before[resource][kind], after[resource][kind]
            value = got[resource][kind]
            assert low[0] <= value[0] <= high[0], (resource, kind, low, value, high)
            for i in (1, 2, 3):  # the averages move both ways, every 2 s
                assert min(low[i], high[i]) - 0.01 <= value[i] <= max(low[i], high[i]) + 0.01, \
                    (resource, kind, low, value, high)


def written_bytes(pods: Pods, pod_id: str, container_id: str) -> int:
    answer = pods.rt.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest())
    (pod,) = [p for p in answer.pod_metrics if p.pod_sandbox_id == pod_id]
    (container,) = [c for c in pod.container_metrics if c.container_id == container_id]
    (metric,) = [m for m in container.metrics if m.name == "container_fs_writes_bytes_total"]
    return int(metric.value.value)


def host_written_bytes(container_id: str, config: api_pb2.PodSandboxConfig) -> int:
    if V2:
        text = (cgroup_dir("", container_id, config) / "io.stat").read_text()
        return sum(int(item.split("=")[1]) for line in text.splitlines()
                   for item in line.split()[1:] if item.startswith("wbytes="))
    text = (cgroup_dir("blkio", container_id, config) / "blkio.throttle.io_service_bytes_recursive").read_text()
    return sum(int(fields[2]) for fields in (line.split() for line in text.splitlines())
               if len(fields) == 3 and fields[1] == "Write")


def test_io_bytes_and_pressure_in_container_and_pod_stats(pods: Pods) -> None:
    pod_id, config = pod = pods.pod("io")
    # Before its first container the pod has no cgroup: no I/O usage and no pressure, not zeros.
    empty = pods.rt.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats.linux
    assert not empty.HasField("io") and not empty.cpu.HasField("psi") and not empty.memory.HasField("psi")

    writer = pods.run(pod, pods.config("writer", "sleep", "1000"))
    before = written_bytes(pods, pod_id, writer)
    # O_DIRECT: the block I/O happens now, in the container's cgroup, not in a later writeback.
    done = pods.exec(writer, "dd", "if=/dev/zero", "of=/data", "bs=1M", "count=8", "oflag=direct", timeout=60)
    assert done.exit_code == 0, done.stderr
    deadline = time.monotonic() + 10
    while (after := written_bytes(pods, pod_id, writer)) < before + 8 * MIB and time.monotonic() < deadline:
        time.sleep(0.2)
    assert after >= before + 8 * MIB, (before, after)
    assert after <= host_written_bytes(writer, config)

    # ContainerStats: the container's cgroup2 pressure files, read by the test around the call.
    directory = cgroup_dir(UNIFIED, writer, config)
    host_before = host_psi(directory)
    stats = pods.rt.ContainerStats(api_pb2.ContainerStatsRequest(container_id=writer)).stats
    host_after = host_psi(directory)
    assert stats.io.timestamp > 0 and stats.io.timestamp == stats.cpu.timestamp
    got = cri_psi(stats.cpu, stats.memory, stats.io)
    assert_between(host_before, got, host_after)
    assert got["io"]["some"][0] > 0  # dd waited for the disk

    listed = pods.rt.ListContainerStats(api_pb2.ListContainerStatsRequest(
        filter=api_pb2.ContainerStatsFilter(pod_sandbox_id=pod_id))).stats
    (mine,) = [s for s in listed if s.attributes.id == writer]
    assert_between(host_before, cri_psi(mine.cpu, mine.memory, mine.io), host_psi(directory))

    # The pod: its cgroup parent's pressure, which covers its containers'.
    pod_dir = Path(CGROUP_ROOT, UNIFIED, config.linux.cgroup_parent.lstrip("/"))
    pod_before = host_psi(pod_dir)
    pod_stats = pods.rt.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats.linux
    pod_after = host_psi(pod_dir)
    pod_got = cri_psi(pod_stats.cpu, pod_stats.memory, pod_stats.io)
    assert_between(pod_before, pod_got, pod_after)
    assert pod_got["io"]["some"][0] >= got["io"]["some"][0]
    (inner,) = [c for c in pod_stats.containers if c.attributes.id == writer]
    assert cri_psi(inner.cpu, inner.memory, inner.io)["io"]["some"][0] >= got["io"]["some"][0]

    everything = pods.rt.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest()).stats
    (listed_pod,) = [s for s in everything if s.attributes.id == pod_id]
    assert_between(pod_before, cri_psi(listed_pod.linux.cpu, listed_pod.linux.memory, listed_pod.linux.io),
                   host_psi(pod_dir))
