"""CNINetwork against fake plugins: chaining, capabilities, rollback, the cache,
config changes, timeouts and cancellation."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from hawser.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from hawser.network import (
    CNIError,
    CNINetwork,
    DNSConfig,
    PodNetworkRequest,
    PortMapping,
)
from tests.unit.network.conftest import FakeCNI, standard_plugins


def request(fake: FakeCNI, pod_id: str = "pod-1", **kw: Any) -> PodNetworkRequest:
    kw.setdefault("netns", fake.netns)
    return PodNetworkRequest(pod_id=pod_id, name="web", namespace="default", **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def summary(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["plugin"], c["env"]["CNI_COMMAND"]) for c in calls]


def test_status_follows_the_config_dir(fake: FakeCNI) -> None:
    net = fake.network()
    status = net.status()
    assert not status.ready and status.reason == "NetworkPluginNotReady"
    assert "no valid network config" in status.message
    fake.write("00-bad.conflist", "{")
    assert "skipped 00-bad.conflist: CNI config" in net.status().message
    fake.conflist([{"type": "fake-bridge", "ipam": {"type": "not-installed"}}, {"type": "fake-missing"}])
    status = net.status()
    assert not status.ready and "fake-missing, not-installed, not found in" in status.message
    fake.conflist(standard_plugins())
    assert net.status().ready


def test_setup_chains_plugins_and_returns_the_pod_ips(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(dns={"nameservers": ["10.22.0.1"]}))
    req = request(fake, uid="u-1", port_mappings=(PortMapping(80, 8080), PortMapping(53, 5353, "UDP", "127.0.0.1"),
                                                  PortMapping(9000, 0)),
                  dns=DNSConfig(servers=("10.96.0.10",), searches=("svc",), options=("ndots:5",)),
                  annotations=(("a", "b"),), cgroup_parent="/kubepods/pod-1")
    pod = run(fake.network().setup(req))
    assert (pod.pod_id, pod.network, pod.ifname, pod.netns) == ("pod-1", "fakenet", "eth0", fake.netns)
    assert pod.ip == "10.22.0.5" and pod.ips == ("10.22.0.5",)
    assert pod.result.dns.nameservers == ("10.22.0.1",)
    calls = fake.calls()
    assert summary(calls) == [("fake-bridge", "ADD"), ("fake-portmap", "ADD")]
    env = calls[0]["env"]
    assert env == {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "pod-1", "CNI_NETNS": fake.netns, "CNI_IFNAME": "eth0",
                   "CNI_PATH": str(fake.bin_dir),
                   "CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                               "K8S_POD_INFRA_CONTAINER_ID=pod-1;K8S_POD_UID=u-1"}
    bridge, portmap = calls[0]["stdin"], calls[1]["stdin"]
    assert bridge["name"] == "fakenet" and bridge["cniVersion"] == "1.0.0"
    assert "prevResult" not in bridge and "runtimeConfig" not in bridge
    # the meta plugin gets the previous result and only the capabilities it declared
    assert portmap["prevResult"]["ips"] == [{"address": "10.22.0.5/24", "interface": 1, "gateway": "10.22.0.1"}]
    assert "capabilities" not in portmap
    assert portmap["runtimeConfig"] == {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}]}


def test_dns_annotations_and_cgroup_reach_plugins_declaring_them(fake: FakeCNI) -> None:
    fake.conflist([{"type": "fake-bridge", "fake": {"ip": "10.22.0.5/24"},
                    "capabilities": {"dns": True, "io.kubernetes.cri.pod-annotations": True, "cgroupPath": True}}])
    run(fake.network().setup(request(fake, dns=DNSConfig(servers=("10.96.0.10",)), annotations=(("k", "v"),),
                                     cgroup_parent="/kubepods/x")))
    assert fake.calls()[0]["stdin"]["runtimeConfig"] == {
        "dns": {"servers": ["10.96.0.10"], "searches": [], "options": []},
        "io.kubernetes.cri.pod-annotations": {"k": "v"}, "cgroupPath": "/kubepods/x"}


def test_teardown_runs_the_chain_in_reverse_with_the_add_result(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins())
    net = fake.network()
    pod = run(net.setup(request(fake, port_mappings=(PortMapping(80, 8080),))))
    assert fake.cache_files() == ["pod-1:fakenet:eth0.json"]
    fake.clear()
    run(net.teardown("pod-1"))
    calls = fake.calls()
    assert summary(calls) == [("fake-portmap", "DEL"), ("fake-bridge", "DEL")]
    for call in calls:
        assert call["stdin"]["prevResult"] == json.loads(pod.result.raw)
        # the path is no namespace here, so it is "gone": DEL gets no netns, or as root
        # a stand-in holding the pod's addresses (tests/integration/network covers that)
        assert call["env"]["CNI_NETNS"] in ("", str(fake.cache_dir / ".standin-pod-1-eth0" / "net"))
        assert call["env"]["CNI_ARGS"].startswith("IgnoreUnknown=1;K8S_POD_NAMESPACE=default")
    # portmap finds its rules again only with the same mappings
    assert calls[0]["stdin"]["runtimeConfig"] == {"portMappings": [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]}
    assert fake.cache_files() == []  # and no stand-in left
    fake.clear()
    run(net.teardown("pod-1"))  # idempotent, and cheap: nothing recorded, nothing run
    run(net.teardown("never-attached"))
    assert fake.calls() == []


def test_a_restarted_network_reports_recorded_attachments(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins())
    pod = run(fake.network().setup(request(fake)))
    fake.clear()
    restarted = fake.network()
    assert run(restarted.pod_network("pod-1")) == pod
    assert run(restarted.pod_network("pod-2")) is None
    assert fake.calls() == []
    run(restarted.teardown("pod-1"))
    assert run(restarted.pod_network("pod-1")) is None


def test_teardown_uses_the_cached_config_after_a_restart_and_an_emptied_conf_dir(fake: FakeCNI) -> None:
    path = fake.conflist(standard_plugins())
    run(fake.network().setup(request(fake)))
    path.unlink()
    fake.clear()
    restarted = fake.network()
    assert not restarted.status().ready
    run(restarted.teardown("pod-1"))
    assert summary(fake.calls()) == [("fake-portmap", "DEL"), ("fake-bridge", "DEL")]
    assert fake.calls()[0]["stdin"]["name"] == "fakenet"
    assert fake.cache_files() == []


def test_teardown_uses_the_cached_config_after_the_conf_changed(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins())
    net = fake.network()
    run(net.setup(request(fake)))
    fake.conflist([{"type": "fake-other"}], name="othernet")
    fake.clear()
    run(net.teardown("pod-1"))
    assert summary(fake.calls()) == [("fake-portmap", "DEL"), ("fake-bridge", "DEL")]
    fake.clear()
    run(net.setup(request(fake, pod_id="pod-2")))  # new pods get the new network
    assert summary(fake.calls()) == [("fake-other", "ADD")]


def test_a_failing_plugin_rolls_the_chain_back(fake: FakeCNI) -> None:
    fake.conflist([*standard_plugins(),
                   {"type": "fake-tuning", "fake": {"fail_on": ["ADD"], "code": 7, "msg": "bad sysctl",
                                                    "details": "net.x does not exist"}}])
    with pytest.raises(FailedPrecondition) as info:
        run(fake.network().setup(request(fake)))
    err = info.value
    assert isinstance(err, CNIError) and err.failures[0].plugin == "fake-tuning" and err.failures[0].code == 7
    assert str(err).startswith("CNI ADD of pod pod-1 on network 'fakenet' failed: fake-tuning ADD (code 7, invalid "
                               "network config): bad sysctl: net.x does not exist")
    calls = fake.calls()
    assert summary(calls) == [("fake-bridge", "ADD"), ("fake-portmap", "ADD"), ("fake-tuning", "ADD"),
                              ("fake-tuning", "DEL"), ("fake-portmap", "DEL"), ("fake-bridge", "DEL")]
    # the rollback carries what the chain had produced so far
    assert calls[3]["stdin"]["prevResult"]["ips"][0]["address"] == "10.22.0.5/24"
    assert fake.cache_files() == []


def test_a_failing_rollback_keeps_the_record_for_the_next_teardown(fake: FakeCNI) -> None:
    plugins = standard_plugins(fail_on=["DEL"], msg="bridge DEL broke")
    plugins[1]["fake"] = {"fail_on": ["ADD"], "code": 11, "msg": "busy"}
    path = fake.conflist(plugins)
    with pytest.raises(Unavailable) as info:
        run(fake.network().setup(request(fake)))
    assert "undoing the ADD failed too: fake-bridge DEL (code 100): bridge DEL broke" in info.value.__notes__[0]
    assert fake.cache_files() == ["pod-1:fakenet:eth0.json"]
    # the admin fixes the plugin; teardown now finishes the job
    plugins[0]["fake"] = {"ip": "10.22.0.5/24"}
    path.write_text(json.dumps({"cniVersion": "1.0.0", "name": "fakenet", "plugins": plugins}))
    with pytest.raises(Unavailable):  # the cached config still has the broken DEL
        run(fake.network().teardown("pod-1"))
    assert fake.cache_files() == ["pod-1:fakenet:eth0.json"]


def test_del_keeps_going_past_a_failing_plugin_and_reports_them_all(fake: FakeCNI) -> None:
    plugins = standard_plugins()
    plugins[1]["fake"] = {"fail_on": ["DEL"], "stderr_only": True, "msg": "iptables: resource busy", "exit": 2}
    plugins.append({"type": "fake-tuning", "fake": {"fail_on": ["DEL"], "code": 5, "msg": "disk"}})
    fake.conflist(plugins)
    net = fake.network()
    run(net.setup(request(fake)))
    fake.clear()
    with pytest.raises(Unavailable) as info:
        run(net.teardown("pod-1"))
    assert summary(fake.calls()) == [("fake-tuning", "DEL"), ("fake-portmap", "DEL"), ("fake-bridge", "DEL")]
    assert [f.plugin for f in info.value.failures] == ["fake-tuning", "fake-portmap"]  # type: ignore[attr-defined]
    assert "fake-portmap DEL: iptables: resource busy" in str(info.value)
    assert fake.cache_files() == ["pod-1:fakenet:eth0.json"]  # kept for a retry


def test_setup_is_idempotent_for_the_same_netns(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins())
    net = fake.network()
    first = run(net.setup(request(fake)))
    fake.clear()
    again = run(net.setup(request(fake)))
    assert fake.calls() == [] and again == first
    # another netns for the same pod id: the old attachment is deleted first
    other = request(fake, netns=fake.netns + "-2")
    run(net.setup(other))
    assert summary(fake.calls()) == [("fake-portmap", "DEL"), ("fake-bridge", "DEL"), ("fake-bridge", "ADD"),
                                     ("fake-portmap", "ADD")]


def test_a_half_done_attachment_from_a_crash_is_deleted_before_a_new_add(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins())
    net = fake.network()
    run(net.setup(request(fake)))
    cache_file = fake.cache_dir / "pod-1:fakenet:eth0.json"
    doc = json.loads(cache_file.read_text())
    doc["result"] = None  # as if the daemon died during ADD
    cache_file.write_text(json.dumps(doc))
    fake.clear()
    run(net.setup(request(fake)))
    calls = fake.calls()
    assert summary(calls)[:2] == [("fake-portmap", "DEL"), ("fake-bridge", "DEL")]
    assert "prevResult" not in calls[0]["stdin"]


def test_no_config_no_plugin_and_bad_requests(fake: FakeCNI) -> None:
    net = fake.network()
    with pytest.raises(FailedPrecondition, match="no CNI network config"):
        run(net.setup(request(fake)))
    fake.conflist([{"type": "fake-missing"}])
    with pytest.raises(FailedPrecondition, match="fake-missing ADD: plugin not found in"):
        run(net.setup(request(fake)))
    fake.conflist([{"type": "fake-bridge", "ipam": {"type": "fake-nowhere"}}])
    with pytest.raises(FailedPrecondition, match="fake-nowhere ADD: plugin not found in"):
        run(net.setup(request(fake)))
    assert fake.cache_files() == [] and fake.calls() == []
    for bad in (request(fake, pod_id="../etc"), request(fake, ifname="a/b"), request(fake, ifname="x" * 16),
                request(fake, netns="relative"), request(fake, port_mappings=(PortMapping(0, 80),)),
                request(fake, port_mappings=(PortMapping(80, 70000),)),
                request(fake, port_mappings=(PortMapping(80, 80, "icmp"),)),
                request(fake, port_mappings=(PortMapping(80, 80, host_ip="localhost"),)),
                PodNetworkRequest(pod_id="p", netns=fake.netns, name="a;b")):
        with pytest.raises(InvalidArgument):
            run(net.setup(bad))
    with pytest.raises(InvalidArgument):
        run(net.teardown("../../etc/passwd"))


def test_invalid_plugin_output_is_rolled_back(fake: FakeCNI) -> None:
    fake.conflist([{"type": "fake-bridge", "fake": {"output": "garbage"}}])
    with pytest.raises(FailedPrecondition, match=r"CNI plugin fake-bridge .* returned an invalid CNI result: not JSON"):
        run(fake.network().setup(request(fake)))
    assert summary(fake.calls()) == [("fake-bridge", "ADD"), ("fake-bridge", "DEL")]


def test_a_plugin_timeout_is_killed_and_rolled_back(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(sleep_on=["ADD"], spawn_on=["ADD"]))
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded, match=r"no answer within 0\.5s"):
        run(fake.network(plugin_timeout=0.5).setup(request(fake)))
    assert time.monotonic() - start < 10
    calls = fake.calls()
    assert summary(calls) == [("fake-bridge", "ADD"), ("fake-portmap", "DEL"), ("fake-bridge", "DEL")]
    with pytest.raises(ProcessLookupError):
        os.kill(calls[0]["pid"], 0)
    assert fake.cache_files() == []


def test_cancelling_setup_kills_the_plugin_and_rolls_back(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(sleep_on=["ADD"]))
    net = fake.network()

    async def main() -> None:
        task = asyncio.create_task(net.setup(request(fake)))
        while not fake.calls():
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    calls = fake.calls()
    assert summary(calls) == [("fake-bridge", "ADD"), ("fake-portmap", "DEL"), ("fake-bridge", "DEL")]
    with pytest.raises(ProcessLookupError):
        os.kill(calls[0]["pid"], 0)
    assert fake.cache_files() == []


def test_check_uses_the_cached_result(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins())
    net = fake.network()
    with pytest.raises(NotFound):
        run(net.check("pod-1"))
    pod = run(net.setup(request(fake)))
    fake.clear()
    run(net.check("pod-1"))
    calls = fake.calls()
    assert summary(calls) == [("fake-bridge", "CHECK"), ("fake-portmap", "CHECK")]
    assert all(c["stdin"]["prevResult"] == json.loads(pod.result.raw) for c in calls)
    assert calls[0]["env"]["CNI_NETNS"] == fake.netns


def test_check_reports_a_failing_plugin(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(fail_on=["CHECK"], code=3, msg="no such container"))
    net = fake.network()
    run(net.setup(request(fake)))
    with pytest.raises(NotFound, match=r"fake-bridge CHECK \(code 3"):
        run(net.check("pod-1"))


@pytest.mark.parametrize("version, extra", [("1.0.0", {"disableCheck": True}), ("0.3.1", {})])
def test_check_is_skipped_where_the_spec_says_so(fake: FakeCNI, version: str, extra: dict[str, Any]) -> None:
    fake.conflist(standard_plugins(), version=version, **extra)
    net = fake.network()
    run(net.setup(request(fake)))
    fake.clear()
    run(net.check("pod-1"))
    assert fake.calls() == []


def test_spec_0_3_1_has_no_prev_result_on_del_and_0_4_0_has(fake: FakeCNI) -> None:
    for version, has_prev in (("0.3.1", False), ("0.4.0", True)):
        fake.conflist(standard_plugins(), version=version)
        net = fake.network()
        pod = run(net.setup(request(fake, pod_id=f"pod-{version}")))
        assert pod.ip == "10.22.0.5" and pod.result.cni_version == version
        fake.clear()
        run(net.teardown(f"pod-{version}"))
        assert all(("prevResult" in c["stdin"]) is has_prev for c in fake.calls())


def test_single_plugin_conf_file(fake: FakeCNI) -> None:
    fake.write("10-one.conf", {"cniVersion": "0.4.0", "name": "one", "type": "fake-bridge",
                               "fake": {"ip": "10.30.0.2/16"}})
    pod = run(fake.network().setup(request(fake)))
    assert (pod.network, pod.ip) == ("one", "10.30.0.2")


def test_parallel_pods_and_serialized_operations_per_pod(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins())
    net = fake.network()

    async def main() -> None:
        pods = await asyncio.gather(*(net.setup(request(fake, pod_id=f"pod-{i}")) for i in range(4)))
        assert sorted(p.pod_id for p in pods) == [f"pod-{i}" for i in range(4)]
        # the same pod twice at once: the second waits, then finds it attached
        a, b = await asyncio.gather(net.setup(request(fake, pod_id="pod-x")), net.setup(request(fake, pod_id="pod-x")))
        assert a == b
        await asyncio.gather(*(net.teardown(f"pod-{i}") for i in [0, 1, 2, 3, "x"]))

    run(main())
    adds = [c for c in fake.calls() if c["env"]["CNI_COMMAND"] == "ADD" and c["env"]["CNI_CONTAINERID"] == "pod-x"]
    assert len(adds) == 2  # one chain of two plugins, not two chains
    assert fake.cache_files() == []
    assert net._locks._locks == {}  # no lock left behind per pod


def test_real_netns_paths_are_passed_to_del(fake: FakeCNI, tmp_path: Path) -> None:
    # /proc/self/ns/net is a real network namespace file, readable without root
    fake.conflist([{"type": "fake-bridge", "fake": {"ip": "10.22.0.5/24"}}])
    net = CNINetwork(str(fake.conf_dir), [str(fake.bin_dir)], str(fake.cache_dir),
                     env={**os.environ, "FAKE_CNI_LOG": str(fake.log)})
    run(net.setup(request(fake, netns="/proc/self/ns/net")))
    fake.clear()
    run(net.teardown("pod-1"))
    assert fake.calls()[0]["env"]["CNI_NETNS"] == "/proc/self/ns/net"
