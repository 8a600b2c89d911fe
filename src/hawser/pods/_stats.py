"""Pod stats: a pod's CPU, memory and process counts, block I/O and pressure
(PSI, where the host has it) are its cgroup parent's (on both cgroup versions
the parent's counters include its containers');
network usage is read from ``/proc/thread-self/net/dev`` by a thread inside the
pod's network namespace.  A pod with no container yet has no cgroup: it has no
cgroup sample."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hawser._dataclass import dataclass
from hawser.errors import NotFound

if TYPE_CHECKING:
    from hawser.host import CgroupLayout, CgroupStats
    from hawser.pods._types import Sandbox


@dataclass(frozen=True, slots=True)
class InterfaceUsage:
    name: str
    rx_bytes: int
    rx_errors: int
    tx_bytes: int
    tx_errors: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PodStats:
    sandbox: Sandbox
    timestamp_ns: int
    cgroup: CgroupStats | None = None
    # None: the pod has no network namespace of its own, or it is not ready.
    interfaces: tuple[InterfaceUsage, ...] | None = None

    @property
    def default_interface(self) -> InterfaceUsage | None:
        return next((i for i in self.interfaces or () if i.name == "eth0"), None)


def read_pod_stats(sandbox: Sandbox, layout: CgroupLayout) -> PodStats:
    """One sample of the pod's counters. Blocking (cgroup files, /proc)."""
    from hawser.host import read_stats

    now = time.time_ns()
    try:
        sample = read_stats(layout, sandbox.cgroup_parent) if sandbox.cgroup_parent else None
    except NotFound:
        sample = None
    interfaces = _network_usage(sandbox.netns) if sandbox.netns and sandbox.ready else None
    return PodStats(sandbox=sandbox, timestamp_ns=now, cgroup=sample, interfaces=interfaces)


def _network_usage(netns: str) -> tuple[InterfaceUsage, ...]:
    from hawser.host import run_in_netns

    def read() -> str:
        with open("/proc/thread-self/net/dev", encoding="ascii") as f:
            return f.read()

    try:
        text = run_in_netns(netns, read)
    except OSError:
        return ()
    found = []
    for line in text.splitlines()[2:]:
        name, _, counters = line.partition(":")
        name = name.strip()
        if name == "lo" or not counters:
            continue
        fields = [int(v) for v in counters.split()]
        found.append(InterfaceUsage(name, rx_bytes=fields[0], rx_errors=fields[2], tx_bytes=fields[8],
                                    tx_errors=fields[10]))
    return tuple(found)
