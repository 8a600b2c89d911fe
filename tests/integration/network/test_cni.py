"""CNINetwork with Debian's CNI plugins (bridge, host-local, portmap) on a test network."""

from __future__ import annotations

import asyncio
import os
import statistics
import time

import pytest

from hawser.errors import DeadlineExceeded, FailedPrecondition
from hawser.network import CNIError, PodNetworkRequest, PortMapping
from tests.support.cni import CniEnv, ask, free_port, links, wait_until

pytestmark = pytest.mark.integration


def request(cni: CniEnv, pod_id: str, netns: str, *ports: PortMapping) -> PodNetworkRequest:
    return PodNetworkRequest(pod_id=pod_id, netns=netns, name=pod_id, namespace="default", port_mappings=ports)


def test_pod_is_reachable_from_the_host_and_through_a_localhost_hostport(cni: CniEnv) -> None:
    net = cni.network()
    assert net.status().ready
    pins = cni.pin("pod-a")
    cni.serve(pins["net"], 8080, "pod-a")
    host_port, any_port = free_port(), free_port()
    before = cni.footprint()
    assert before["rules"] == [] and before["reserved_ips"] == []
    pod = asyncio.run(net.setup(request(cni, "pod-a", pins["net"], PortMapping(8080, host_port, "TCP", "127.0.0.1"),
                                        PortMapping(8080, any_port))))
    assert pod.network == cni.name and pod.netns == pins["net"]
    assert pod.ip in [str(h) for h in cni.subnet.hosts()]
    (ipc,) = pod.ip_configs
    assert str(ipc.gateway) == str(next(cni.subnet.hosts()))  # isGateway: the bridge is .1
    host_veth = next(i.name for i in pod.result.interfaces if not i.sandbox and i.name != cni.bridge)
    assert host_veth in links()
    during = cni.footprint()
    assert during["reserved_ips"] == [pod.ip]
    assert during["bridge_ports"] == [host_veth]
    assert any("DNAT" in r and f"{pod.ip}:8080" in r for r in during["rules"])
    # the pod answers on its IP, and on 127.0.0.1:hostPort (portmap's DNAT + masquerade, route_localnet)
    assert ask(pod.ip, 8080) == f"pod-a {ipc.gateway}"
    assert ask("127.0.0.1", host_port).startswith("pod-a ")
    assert ask("127.0.0.1", any_port).startswith("pod-a ")  # a hostPort on every address includes 127.0.0.1
    with open(f"/proc/sys/net/ipv4/conf/{cni.bridge}/route_localnet") as f:
        assert f.read().strip() == "1"

    asyncio.run(net.teardown("pod-a"))
    assert host_veth not in links()
    cni.assert_clean(pins=False)
    for port in (host_port, any_port):
        with pytest.raises(OSError):
            ask("127.0.0.1", port, timeout=1)
    asyncio.run(net.teardown("pod-a"))  # a second teardown succeeds
    asyncio.run(net.teardown("pod-a", pins["net"]))
    cni.unpin("pod-a")
    cni.assert_clean()


def test_check_with_real_plugins(cni: CniEnv) -> None:
    # Debian's portmap 1.1.1 fails CHECK for IPv4-only pods (it looks for its
    # chain in ip6tables too), so the chain checked here is bridge + host-local.
    doc = cni.conflist()
    doc["plugins"] = doc["plugins"][:1]
    cni.write_conflist(doc)
    net = cni.network()
    pins = cni.pin("pod-c")
    asyncio.run(net.setup(request(cni, "pod-c", pins["net"])))
    asyncio.run(net.check("pod-c"))
    asyncio.run(net.teardown("pod-c"))
    cni.unpin("pod-c")
    cni.assert_clean()


def test_teardown_after_a_restart_with_the_conf_dir_emptied(cni: CniEnv) -> None:
    pins = cni.pin("pod-r")
    host_port = free_port()
    pod = asyncio.run(cni.network().setup(request(cni, "pod-r", pins["net"], PortMapping(80, host_port))))
    assert cni.footprint()["reserved_ips"] == [pod.ip]
    for name in os.listdir(cni.conf_dir):
        os.unlink(cni.conf_dir / name)
    restarted = cni.network()
    status = restarted.status()
    assert not status.ready and status.reason == "NetworkPluginNotReady"
    asyncio.run(restarted.teardown("pod-r"))
    cni.unpin("pod-r")
    cni.assert_clean()


def test_teardown_when_the_netns_is_already_gone(cni: CniEnv) -> None:
    net = cni.network()
    pins = cni.pin("pod-g")
    pod = asyncio.run(net.setup(request(cni, "pod-g", pins["net"], PortMapping(80, free_port()))))
    host_veth = next(i.name for i in pod.result.interfaces if not i.sandbox and i.name != cni.bridge)
    cni.unpin("pod-g")
    # the kernel removes the veth pair with the namespace; IP and rules stay until DEL
    wait_until(lambda: host_veth not in links(), what="the veth to go with the netns")
    assert cni.footprint()["reserved_ips"] == [pod.ip]
    asyncio.run(net.teardown("pod-g", pins["net"]))
    cni.assert_clean()
    asyncio.run(net.teardown("pod-g", pins["net"]))


def test_a_failing_plugin_in_the_chain_rolls_back_without_leaks(cni: CniEnv) -> None:
    cni.fake_plugin("hwt-fail", 'cat >/dev/null\n'
                                'echo \'{"cniVersion":"1.0.0","code":101,"msg":"refused on purpose"}\'\n'
                                '[ "$CNI_COMMAND" = ADD ] && exit 1\nexit 0\n')
    doc = cni.conflist()
    doc["plugins"].append({"type": "hwt-fail"})
    cni.write_conflist(doc)
    net = cni.network()
    pins = cni.pin("pod-f")
    before = links()
    with pytest.raises(CNIError, match=r"hwt-fail ADD \(code 101\): refused on purpose"):
        asyncio.run(net.setup(request(cni, "pod-f", pins["net"], PortMapping(80, free_port()))))
    assert links() - {cni.bridge} == before  # the bridge is the network's, not the pod's
    assert cni.footprint()["cache"] == []
    cni.unpin("pod-f")
    cni.assert_clean()


def test_a_hanging_plugin_is_killed_and_rolled_back(cni: CniEnv) -> None:
    cni.fake_plugin("hwt-hang", 'cat >/dev/null\n[ "$CNI_COMMAND" = ADD ] && exec sleep 60\nexit 0\n')
    doc = cni.conflist()
    doc["plugins"].insert(1, {"type": "hwt-hang"})
    cni.write_conflist(doc)
    net = cni.network(plugin_timeout=2.0)
    pins = cni.pin("pod-h")
    with pytest.raises(DeadlineExceeded):
        asyncio.run(net.setup(request(cni, "pod-h", pins["net"])))
    cni.unpin("pod-h")
    cni.assert_clean()


def test_a_missing_plugin_fails_before_anything_runs(cni: CniEnv) -> None:
    doc = cni.conflist()
    doc["plugins"].append({"type": "hwt-not-installed"})
    cni.write_conflist(doc)
    net = cni.network()
    assert "hwt-not-installed" in net.status().message
    pins = cni.pin("pod-m")
    with pytest.raises(FailedPrecondition, match="hwt-not-installed"):
        asyncio.run(net.setup(request(cni, "pod-m", pins["net"])))
    cni.unpin("pod-m")
    cni.assert_clean()


def test_twenty_pods_leave_nothing_behind(cni: CniEnv, capsys: pytest.CaptureFixture[str]) -> None:
    net = cni.network()
    pin_times, setup_times, teardown_times = [], [], []
    for i in range(20):
        pod_id = f"pod-{i}"
        t0 = time.perf_counter()
        pins = cni.pin(pod_id)
        t1 = time.perf_counter()
        pod = asyncio.run(net.setup(request(cni, pod_id, pins["net"], PortMapping(80, 20000 + i, host_ip="127.0.0.1"))))
        t2 = time.perf_counter()
        assert pod.ip
        asyncio.run(net.teardown(pod_id))
        t3 = time.perf_counter()
        cni.unpin(pod_id)
        pin_times.append(t1 - t0)
        setup_times.append(t2 - t1)
        teardown_times.append(t3 - t2)
    cni.assert_clean()

    async def parallel() -> float:
        pins = {f"par-{i}": cni.pin(f"par-{i}") for i in range(10)}
        start = time.perf_counter()
        pods = await asyncio.gather(*(net.setup(request(cni, p, n["net"], PortMapping(80, 21000 + i)))
                                      for i, (p, n) in enumerate(pins.items())))
        assert len({p.ip for p in pods}) == 10
        await asyncio.gather(*(net.teardown(p) for p in pins))
        return time.perf_counter() - start

    elapsed = asyncio.run(parallel())
    for i in range(10):
        cni.unpin(f"par-{i}")
    cni.assert_clean()
    ms = [statistics.median(t) * 1000 for t in (pin_times, setup_times, teardown_times)]
    with capsys.disabled():
        print(f"\nper pod (median of 20): pin {ms[0]:.1f} ms, CNI setup {ms[1]:.1f} ms, teardown {ms[2]:.1f} ms; "
              f"10 pods set up and torn down concurrently in {elapsed * 1000:.0f} ms")
