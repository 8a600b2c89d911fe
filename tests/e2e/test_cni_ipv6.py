"""IPv6 and dual-stack pods with the real bridge and host-local plugins,
through hawserd's CRI socket: the addresses in PodSandboxStatus (the IPv4 one
first, as ``network.ip``; the IPv6 one in ``additional_ips``), inside a
container of the pod, and on the wire to the bridge's gateways and back.

The networks are the ``pod_network`` fixture's (its bridge, IPv4 subnet and
IPAM dir; its cleanup removes the bridge and every rule naming the network)
with a ULA /64 of the test's own.  The bridge plugin turns IPv6 forwarding on
for a gateway; ``ipv6_forwarding`` puts back what it was.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import random
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from hawser.host import run_in_netns
from tests.support.cni import CniEnv, sh
from tests.support.cri_pods import Pods

FORWARDING = [Path("/proc/sys/net/ipv6/conf/all/forwarding"), Path("/proc/sys/net/ipv6/conf/default/forwarding")]


@pytest.fixture(autouse=True)
def ipv6_forwarding() -> Iterator[None]:
    if Path("/proc/sys/net/ipv6/conf/all/disable_ipv6").read_text().strip() != "0":
        pytest.skip("IPv6 is disabled on this host (net.ipv6.conf.all.disable_ipv6 = 1)")
    before = [p.read_text() for p in FORWARDING]
    yield
    for path, value in zip(FORWARDING, before, strict=True):
        if path.read_text() != value:
            path.write_text(value)


def pick_subnet6() -> ipaddress.IPv6Network:
    """A ULA /64 (fd00:10:XXXX::/64) no route or address of the host overlaps."""
    used = []
    for line in sh("ip", "-6", "route", "show", "table", "all").splitlines() + \
            [f.split()[3] for f in sh("ip", "-6", "-o", "addr").splitlines()]:
        with contextlib.suppress(ValueError, IndexError):
            used.append(ipaddress.ip_network(line.split()[0], strict=False))
    for _ in range(100):
        net = ipaddress.IPv6Network(f"fd00:10:{random.randint(1, 0xffff):x}::/64")
        if not any(net.overlaps(u) for u in used if u.version == 6 and u.prefixlen > 0):
            return net
    raise AssertionError("no free fd00:10:XXXX::/64")


def use_ranges(hawserd_conf: Path, env: CniEnv, *subnets: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
    """The fixture's network with host-local handing out one address of each subnet."""
    doc = env.conflist()
    ipam = doc["plugins"][0]["ipam"]
    ipam["ranges"] = [[{"subnet": str(s)}] for s in subnets]
    ipam["routes"] = [{"dst": "0.0.0.0/0" if s.version == 4 else "::/0"} for s in subnets]
    (hawserd_conf / "10-test.conflist").write_text(json.dumps(doc))


def pod_ips(pods: Pods, pod_id: str) -> list[str]:
    network = pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status.network
    return [network.ip, *(a.ip for a in network.additional_ips)]


def ping(pods: Pods, container: str, *args: str, tries: int = 20) -> api_pb2.ExecSyncResponse:
    # The bridge's own IPv6 address may still be tentative (DAD) for a moment after the first port came up.
    for _ in range(tries):
        answer = pods.exec(container, "busybox", "ping", *args, "-c", "1", "-W", "1")
        if answer.exit_code == 0:
            return answer
        time.sleep(0.5)
    raise AssertionError(f"ping {' '.join(args)} failed: {answer.stdout!r} {answer.stderr!r}")


def serve6(netns: str) -> tuple[socket.socket, int]:
    """A TCP listener on [::] inside the pod's netns (what the host connects to)."""
    def listen() -> socket.socket:
        return socket.create_server(("::", 0), family=socket.AF_INET6)

    sock = run_in_netns(netns, listen)
    return sock, int(sock.getsockname()[1])


def connect6(sock: socket.socket, address: str, port: int) -> tuple[str, Any]:
    with socket.create_connection((address, port), timeout=5) as client:
        conn, peer = sock.accept()
        with conn:
            conn.sendall(b"hello over ipv6")
            return client.recv(100).decode(), peer[0]


def left_on_the_host(env: CniEnv, subnet6: ipaddress.IPv6Network) -> dict[str, Any]:
    """What of the network is on the host besides its bridge (which keeps its gateway addresses)."""
    prefix = str(subnet6.network_address).rstrip(":")
    return {**{k: v for k, v in env.footprint().items() if k != "mounts"},
            "rules6": [r for r in sh("ip6tables-save").splitlines() if env.name in r or prefix in r]}


CLEAN = {"rules": [], "reserved_ips": [], "bridge_ports": [], "cache": [], "rules6": []}


def test_a_dual_stack_pod(pods: Pods, pod_network: CniEnv) -> None:
    subnet6 = pick_subnet6()
    use_ranges(pods.hawserd.cni_conf, pod_network, pod_network.subnet, subnet6)
    pod = pods.pod("dual")
    ips = pod_ips(pods, pod[0])
    # CRI: the primary address first (containerd's default, IPv4), the other family in additional_ips
    assert len(ips) == 2
    ip4, ip6 = ipaddress.ip_address(ips[0]), ipaddress.ip_address(ips[1])
    assert ip4 in pod_network.subnet and ip6 in subnet6, ips

    container = pods.run(pod, pods.config("probe", "sleep", "300"))
    addresses = pods.exec(container, "ip", "-o", "addr", "show", "dev", "eth0").stdout.decode()
    assert f"inet {ip4}/{pod_network.subnet.prefixlen}" in addresses, addresses
    assert f"inet6 {ip6}/64 scope global" in addresses, addresses
    routes6 = pods.exec(container, "ip", "-6", "route").stdout.decode()
    gateway6, gateway4 = subnet6[1], pod_network.subnet[1]
    assert f"default via {gateway6} dev eth0" in routes6, routes6
    # ICMPv6 and ICMP from the pod to the bridge's gateway addresses
    assert b"1 packets received" in ping(pods, container, "-6", str(gateway6)).stdout
    assert b"1 packets received" in ping(pods, container, "-4", str(gateway4)).stdout

    # TCP from the host to the pod's IPv6 address: the bridge routes the ULA /64
    netns = json.loads(pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(
        pod_sandbox_id=pod[0], verbose=True)).info["info"])["namespaces"]["network"]
    sock, port = serve6(netns)
    try:
        answer, peer = connect6(sock, str(ip6), port)
    finally:
        sock.close()
    assert answer == "hello over ipv6" and ipaddress.ip_address(peer) == gateway6

    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod[0]))
    pods.pods.remove(pod[0])
    assert left_on_the_host(pod_network, subnet6) == CLEAN


def test_an_ipv6_only_pod(pods: Pods, pod_network: CniEnv) -> None:
    subnet6 = pick_subnet6()
    use_ranges(pods.hawserd.cni_conf, pod_network, subnet6)
    pod = pods.pod("v6only")
    ips = pod_ips(pods, pod[0])
    assert len(ips) == 1 and ipaddress.ip_address(ips[0]) in subnet6, ips
    container = pods.run(pod, pods.config("probe", "sleep", "300"))
    addresses = pods.exec(container, "ip", "-o", "addr", "show", "dev", "eth0").stdout.decode()
    assert f"inet6 {ips[0]}/64 scope global" in addresses and " inet " not in addresses, addresses
    assert b"1 packets received" in ping(pods, container, "-6", str(subnet6[1])).stdout
    # a second pod on the same /64 reaches the first one
    other = pods.pod("v6peer")
    peer = pods.run(other, pods.config("probe", "sleep", "300"))
    assert b"1 packets received" in ping(pods, peer, "-6", ips[0]).stdout
    for pod_id in (pod[0], other[0]):
        pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        pods.pods.remove(pod_id)
    assert left_on_the_host(pod_network, subnet6) == CLEAN


def test_a_dual_stack_pod_whose_netns_vanished_is_torn_down_completely(pods: Pods, pod_network: CniEnv) -> None:
    subnet6 = pick_subnet6()
    use_ranges(pods.hawserd.cni_conf, pod_network, pod_network.subnet, subnet6)
    pod = pods.pod("vanished")
    ips = pod_ips(pods, pod[0])
    assert [ipaddress.ip_address(ip).version for ip in ips] == [4, 6]
    netns = json.loads(pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(
        pod_sandbox_id=pod[0], verbose=True)).info["info"])["namespaces"]["network"]
    # The pin goes (a reboot, an admin's umount): with no process in it the namespace and its veth go too,
    # while both addresses stay reserved and the IPv4 and IPv6 masquerade rules stay until a DEL.
    sh("umount", netns)
    deadline = time.monotonic() + 10
    while pod_network.footprint()["bridge_ports"] and time.monotonic() < deadline:
        time.sleep(0.05)
    left = left_on_the_host(pod_network, subnet6)
    assert left["bridge_ports"] == [] and sorted(left["reserved_ips"]) == sorted(ips)
    assert left["rules6"], "the bridge plugin's ipMasq made no IPv6 rule"
    state = pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod[0])).status.state
    assert state == api_pb2.SANDBOX_NOTREADY
    # The DEL runs in a stand-in namespace holding both recorded addresses: everything goes.
    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod[0]))
    pods.pods.remove(pod[0])
    assert left_on_the_host(pod_network, subnet6) == CLEAN
