"""Pressure stall information (PSI) in the CRI's stats (kubelet's KubeletPSI):
a cgroup sample's CPU, memory and I/O pressure as ``CpuUsage.psi``,
``MemoryUsage.psi`` and ``IoUsage.psi``, for containers and pods alike.

"PsiData.Total: Total time duration for tasks in the cgroup have waited due
to congestion. Unit: nanoseconds." (cri-api api.proto): the kernel counts
microseconds.  Avg10/Avg60/Avg300 are percentages, as the kernel has them.
A pressure the host does not have (no cgroup2 hierarchy holding the cgroup,
PSI off) leaves its ``psi`` unset, never zeros; a file without a ``full``
line leaves ``Full`` unset.  The CRI's IoUsage has no byte counters: the
bytes read and written are cAdvisor's ``container_fs_{reads,writes}_bytes_total``
of ListPodSandboxMetrics.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hawser.pods import CgroupStats


def fill_psi(cpu: api_pb2.CpuUsage, memory: api_pb2.MemoryUsage, io: api_pb2.IoUsage, sample: CgroupStats,
             timestamp_ns: int) -> None:
    """Set ``io``'s timestamp and each usage's ``psi`` that ``sample`` has."""
    io.timestamp = timestamp_ns
    # Reading a message field does not set it: only the pressures present are.
    for psi, pressure in ((cpu.psi, sample.cpu_pressure), (memory.psi, sample.memory_pressure),
                          (io.psi, sample.io_pressure)):
        if pressure is None:
            continue
        psi.SetInParent()  # present even if both lines read zero: zero pressure is a fact the kernel gave
        for line, data in ((psi.Some, pressure.some), (psi.Full, pressure.full)):
            if data is None:
                continue
            line.SetInParent()
            line.Total = data.total_us * 1000
            line.Avg10, line.Avg60, line.Avg300 = data.avg10, data.avg60, data.avg300
