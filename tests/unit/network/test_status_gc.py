"""Spec 1.1's STATUS and GC against fake plugins: who gets called with what,
when (only for 1.1.0 configs), how answers are reused, and the stale DELs."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

from hawser.network import GCReport, PodNetworkRequest
from hawser.network._config import parse_network_config
from hawser.network._status import StatusProbe
from tests.unit.network.conftest import FakeCNI, standard_plugins


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def summary(calls: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(c["plugin"], c["env"]["CNI_COMMAND"]) for c in calls]


def attach(fake: FakeCNI, *pod_ids: str, **kw: Any) -> None:
    net = fake.network()
    for pod_id in pod_ids:
        run(net.setup(PodNetworkRequest(pod_id=pod_id, netns=fake.netns, name=pod_id, namespace="default", **kw)))


# --- STATUS -----------------------------------------------------------------------------


def test_status_asks_every_plugin_of_a_1_1_network(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(), version="1.1.0")
    assert fake.network().status().ready
    calls = fake.calls()
    assert summary(calls) == [("fake-bridge", "STATUS"), ("fake-portmap", "STATUS")]
    # only CNI_COMMAND and CNI_PATH: STATUS is about the network, not an attachment
    assert calls[0]["env"] == {"CNI_COMMAND": "STATUS", "CNI_PATH": str(fake.bin_dir)}
    bridge, portmap = calls[0]["stdin"], calls[1]["stdin"]
    assert (bridge["name"], bridge["cniVersion"], bridge["type"]) == ("fakenet", "1.1.0", "fake-bridge")
    assert bridge["ipam"] == {"type": "fake-ipam"}
    for conf in (bridge, portmap):
        assert not {"prevResult", "runtimeConfig", "capabilities"} & set(conf)


def test_a_status_error_makes_the_network_not_ready_with_the_plugins_word(fake: FakeCNI) -> None:
    plugins = standard_plugins(fail_on=["STATUS"], code=50, msg="agent down", details="no socket at /run/x.sock")
    fake.conflist(plugins, version="1.1.0")
    status = fake.network().status()
    assert not status.ready and status.reason == "NetworkPluginNotReady"
    assert "network 'fakenet'" in status.message and "is not ready" in status.message
    assert "fake-bridge STATUS (code 50, the plugin is not available): agent down: no socket at /run/x.sock" \
        in status.message
    # the first failure ends the probe, as in libcni
    assert summary(fake.calls()) == [("fake-bridge", "STATUS")]


def test_code_51_and_plugin_specific_codes_are_reported(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(fail_on=["STATUS"], code=51, msg="dataplane degraded"), version="1.1.0")
    message = fake.network().status().message
    assert "(code 51, the plugin is not available, existing containers may be damaged): dataplane degraded" \
        in message
    fake.conflist(standard_plugins(fail_on=["STATUS"], code=142, msg="quota"), version="1.1.0")
    assert "fake-bridge STATUS (code 142): quota" in fake.network().status().message


def test_older_configs_get_no_status(fake: FakeCNI) -> None:
    for version in ("1.0.0", "0.4.0", "0.3.1"):
        fake.conflist(standard_plugins(fail_on=["STATUS"], code=50), version=version)
        assert fake.network().status().ready, version
    assert fake.calls() == []


def test_a_status_answer_is_reused_briefly_and_a_config_change_asks_again(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(), version="1.1.0")
    net = fake.network()
    for _ in range(5):
        assert net.status().ready
    assert len(fake.calls()) == 2  # one probe: two plugins
    fake.conflist(standard_plugins(fail_on=["STATUS"], code=50, msg="gone"), version="1.1.0", name="other")
    status = net.status()
    assert not status.ready and "gone" in status.message
    assert len(fake.calls()) == 3


def test_status_answers_expire(fake: FakeCNI) -> None:
    now = [100.0]
    toggle = fake.root / "down"
    # a plugin whose readiness follows a file, as a daemon-backed plugin's would
    path = fake.bin_dir / "fake-flaky"
    path.write_text(f"#!/bin/sh\n[ -e {toggle} ] || exit 0\n"
                    'echo \'{"cniVersion":"1.1.0","code":50,"msg":"flaky is down"}\'\nexit 1\n')
    path.chmod(0o755)
    net = parse_network_config(json.dumps({"cniVersion": "1.1.0", "name": "n", "plugins": [{"type": "fake-flaky"}]}))
    probe = StatusProbe([str(fake.bin_dir)], ttl=1.5, clock=lambda: now[0])
    assert probe.failure(net) is None
    toggle.touch()
    now[0] += 1.0
    assert probe.failure(net) is None  # still the remembered answer
    now[0] += 1.0
    failure = probe.failure(net)
    assert failure is not None and (failure.code, failure.msg, failure.command) == (50, "flaky is down", "STATUS")
    toggle.unlink()
    now[0] += 2.0
    assert probe.failure(net) is None


def test_concurrent_callers_share_one_probe(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(sleep_on=["STATUS"], sleep=0.5), version="1.1.0")
    net = fake.network()
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(net.status().ready)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == [True] * 4
    assert summary(fake.calls()) == [("fake-bridge", "STATUS"), ("fake-portmap", "STATUS")]


def test_a_hanging_status_is_killed_and_reported(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(sleep_on=["STATUS"], sleep=60), version="1.1.0")
    status = fake.network(plugin_timeout=0.5).status()
    assert not status.ready and "fake-bridge STATUS: no answer within 0.5s: killed" in status.message


def test_status_of_a_missing_plugin_runs_nothing(fake: FakeCNI) -> None:
    fake.conflist([*standard_plugins(), {"type": "fake-absent"}], version="1.1.0")
    status = fake.network().status()
    assert not status.ready and "needs CNI plugins fake-absent" in status.message
    assert fake.calls() == []


# --- GC ---------------------------------------------------------------------------------


def test_gc_dels_stale_attachments_then_gcs_with_the_live_ones(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(), version="1.1.0")
    attach(fake, "pod-a", "pod-b", "pod-gone")
    fake.clear()
    report = run(fake.network().gc({"pod-a", "pod-b", "pod-unattached"}))
    assert report == GCReport(deleted=("pod-gone:fakenet:eth0",), network="fakenet",
                              valid=(("pod-a", "eth0"), ("pod-b", "eth0")))
    calls = fake.calls()
    # the stale attachment: a DEL over the chain (reversed), with its ADD's result
    assert summary(calls) == [("fake-portmap", "DEL"), ("fake-bridge", "DEL"),
                              ("fake-bridge", "GC"), ("fake-portmap", "GC")]
    assert calls[0]["env"]["CNI_CONTAINERID"] == "pod-gone" and "prevResult" in calls[0]["stdin"]
    for call in calls[2:]:
        assert call["env"] == {"CNI_COMMAND": "GC", "CNI_PATH": str(fake.bin_dir)}
        conf = call["stdin"]
        assert conf["cni.dev/valid-attachments"] == [{"containerID": "pod-a", "ifname": "eth0"},
                                                     {"containerID": "pod-b", "ifname": "eth0"}]
        assert (conf["name"], conf["cniVersion"]) == ("fakenet", "1.1.0") and "prevResult" not in conf
    assert fake.cache_files() == ["pod-a:fakenet:eth0.json", "pod-b:fakenet:eth0.json"]


def test_gc_with_no_pods_left_gives_an_empty_list(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(), version="1.1.0")
    report = run(fake.network().gc(set()))
    assert report == GCReport(network="fakenet")
    assert [c["stdin"]["cni.dev/valid-attachments"] for c in fake.calls()] == [[], []]


def test_gc_of_older_configs_only_dels_the_stale(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(), version="1.0.0")
    attach(fake, "pod-a", "pod-gone")
    fake.clear()
    report = run(fake.network().gc({"pod-a"}))
    assert report == GCReport(deleted=("pod-gone:fakenet:eth0",))
    assert summary(fake.calls()) == [("fake-portmap", "DEL"), ("fake-bridge", "DEL")]


def test_gc_leaves_a_disable_gc_network_alone(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(), version="1.1.0", disableGC=True)
    attach(fake, "pod-gone")
    fake.clear()
    assert run(fake.network().gc(set())) == GCReport()
    assert fake.calls() == [] and fake.cache_files() == ["pod-gone:fakenet:eth0.json"]


def test_gc_dels_stale_attachments_of_an_older_network_with_their_own_config(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(), version="1.0.0", name="oldnet")
    attach(fake, "pod-old")
    fake.conflist([{"type": "fake-other"}], version="1.1.0", name="newnet")
    attach(fake, "pod-new")
    fake.clear()
    report = run(fake.network().gc({"pod-new"}))
    assert report == GCReport(deleted=("pod-old:oldnet:eth0",), network="newnet", valid=(("pod-new", "eth0"),))
    assert summary(fake.calls()) == [("fake-portmap", "DEL"), ("fake-bridge", "DEL"), ("fake-other", "GC")]
    assert fake.calls()[0]["stdin"]["name"] == "oldnet"


def test_gc_keeps_going_past_failures_and_reports_them(fake: FakeCNI) -> None:
    plugins = standard_plugins()
    plugins[0]["fake"]["fail_on"] = ["GC"]
    plugins[0]["fake"]["msg"] = "cannot list reservations"
    fake.conflist(plugins, version="1.1.0")
    attach(fake, "pod-gone")
    fake.write("10-fake.conflist", json.dumps({"cniVersion": "1.1.0", "name": "fakenet", "plugins": plugins}))
    # the stale pod's DEL fails too this time: its record stays for the next GC
    cached = fake.cache_dir / "pod-gone:fakenet:eth0.json"
    doc = json.loads(cached.read_text())
    doc["config"]["plugins"][1]["fake"] = {"fail_on": ["DEL"], "msg": "rules locked"}
    cached.write_text(json.dumps(doc))
    fake.clear()
    report = run(fake.network().gc(set()))
    assert report.deleted == () and report.network == "fakenet"
    assert [(f.plugin, f.command, f.msg) for f in report.failures] == [
        ("fake-portmap", "DEL", "rules locked"), ("fake-bridge", "GC", "cannot list reservations")]
    assert summary(fake.calls()) == [("fake-portmap", "DEL"), ("fake-bridge", "DEL"),
                                     ("fake-bridge", "GC"), ("fake-portmap", "GC")]
    assert fake.cache_files() == ["pod-gone:fakenet:eth0.json"]


def test_startup_gc_lists_the_pods_and_never_raises(fake: FakeCNI) -> None:
    fake.conflist(standard_plugins(), version="1.1.0")
    attach(fake, "pod-a", "pod-gone")
    fake.clear()
    net = fake.network()
    run(net.recoverer(lambda: ["pod-a"]).recover())
    assert summary(fake.calls()) == [("fake-portmap", "DEL"), ("fake-bridge", "DEL"),
                                     ("fake-bridge", "GC"), ("fake-portmap", "GC")]

    def broken() -> list[str]:
        raise OSError("database is locked")

    fake.clear()
    run(net.recoverer(broken).recover())  # no list, no GC: a wrong list would detach live pods
    assert fake.calls() == []
