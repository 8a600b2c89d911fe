"""hawserd killed (SIGKILL) or failed (an injected error) at the failpoints of
pod setup and teardown (CNI ADD/DEL, namespaces, the pod record), and CNI
plugins that fail on demand (tests/support/failpoints/cni-plugin).

A kill case: hawserd runs with one point armed, the RPC reaching it kills
the daemon; hawserd starts again (unarmed) and what kubelet does next (the
same RunPodSandbox again, or Stop and Remove) must complete.  Then the
victim pod holds nothing: no pinned namespace, veth, IP (host-local's
files), iptables rule or CNI cache entry; and the bystander pod made before
the crash is still ready, with its address, until it is removed in turn.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cri_api.v1 import api_pb2

from tests.e2e.helpers import status_code
from tests.support.cni import CniEnv
from tests.support.failpoints import Faults, cni_bin_dir, failpoint_env, fired
from tests.support.hawserd import Hawserd

# Pods record it; no container is made, so no cgroup either.
CGROUP_PARENT = f"/hawser-e2e-faults-{secrets.token_hex(3)}"


def pod_config(name: str, uid: str = "") -> api_pb2.PodSandboxConfig:
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="faults", uid=uid or secrets.token_hex(8)),
        hostname=name, linux=api_pb2.LinuxPodSandboxConfig(cgroup_parent=f"{CGROUP_PARENT}/{name}"))


def start(hawserd: Hawserd, env: dict[str, str] | None = None, timeout: float = 20.0) -> None:
    """``hawserd.start()`` with ``env`` added to the daemon's environment (and
    only to its: the test process must never arm a failpoint for itself)."""
    assert not hawserd.running
    seen = len(hawserd.log())
    with open(hawserd.log_path, "ab") as log:
        hawserd.process = subprocess.Popen(hawserd.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                           env={**os.environ, **(env or {})})
    deadline = time.monotonic() + timeout
    while "msg=serving" not in hawserd.log()[seen:]:
        assert hawserd.process.poll() is None, f"hawserd exited with {hawserd.process.returncode}:\n{hawserd.log()}"
        assert time.monotonic() < deadline, f"hawserd did not serve within {timeout}s:\n{hawserd.log()}"
        time.sleep(0.02)


def restart(hawserd: Hawserd, env: dict[str, str] | None = None) -> None:
    if hawserd.running:
        assert hawserd.stop() == 0, hawserd.log()
    start(hawserd, env)


def pods(hawserd: Hawserd) -> dict[str, tuple[str, int]]:
    """name -> (id, state) of every pod."""
    items = hawserd.client().runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
    return {p.metadata.name: (p.id, p.state) for p in items}


def pod_ip(hawserd: Hawserd, pod_id: str) -> str:
    response = hawserd.client().runtime.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
    return str(response.status.network.ip)


def run_pod(hawserd: Hawserd, config: api_pb2.PodSandboxConfig) -> str:
    request = api_pb2.RunPodSandboxRequest(config=config)
    return str(hawserd.client().runtime.RunPodSandbox(request).pod_sandbox_id)


def stop_pod(hawserd: Hawserd, pod_id: str) -> None:
    hawserd.client().runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))


def remove_pod(hawserd: Hawserd, pod_id: str) -> None:
    hawserd.client().runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path) + "/")]


def footprint(hawserd: Hawserd, network: CniEnv, pod_ids: list[str]) -> dict[str, Any]:
    """What the host holds for pods: addresses (host-local's files), bridge
    ports (veths), hawserd's CNI cache entries, pinned namespaces, sandbox
    dirs, and iptables rules of pods other than ``pod_ids``."""
    found = network.footprint()
    cache = hawserd.root / "cni" / "results"
    return {"reserved_ips": len(found["reserved_ips"]), "bridge_ports": len(found["bridge_ports"]),
            "cache": sorted(os.listdir(cache)) if cache.exists() else [],
            "rules_of_others": [r for r in found["rules"] if "id: " in r and not any(p in r for p in pod_ids)],
            "pins": sorted({m.split("/sandboxes/")[1].split("/")[0] for m in mounts_under(hawserd.state)
                            if "/sandboxes/" in m}),
            "sandbox_dirs": sorted(os.listdir(hawserd.state / "sandboxes"))}


def only(network: CniEnv, pod_id: str) -> dict[str, Any]:
    """The footprint of one ready pod and nothing else."""
    return {"reserved_ips": 1, "bridge_ports": 1, "cache": [f"{pod_id}:{network.name}:eth0.json"],
            "rules_of_others": [], "pins": [pod_id], "sandbox_dirs": [pod_id]}


NOTHING = {"reserved_ips": 0, "bridge_ports": 0, "cache": [], "rules_of_others": [], "pins": [], "sandbox_dirs": []}


def assert_log_clean(hawserd: Hawserd) -> None:
    # (Not `hawser system check` here: hawserd's cgroup parent is the host's shared /hawser.)
    log = hawserd.log()
    assert "with a bug" not in log and "Traceback" not in log, log


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    return tmp_path / "failpoints.log"


ADD_POINTS = ["sandbox.run.after-namespaces", "cni.add.after-plugin@1", "cni.add.after-plugin@2",
              "cni.add.after-result"]


def _arm(point: str, action: str, log: Path) -> dict[str, str]:
    name, _, hit = point.partition("@")
    return failpoint_env(f"{name}={action}" + (f"@{hit}" if hit else ""), log)


def _died_at(hawserd: Hawserd, point: str, log: Path) -> None:
    assert hawserd.process is not None
    assert hawserd.process.wait(10) == -signal.SIGKILL, hawserd.log()
    assert fired(log) == [(point.partition("@")[0], "kill")], fired(log)
    hawserd.close_clients()


@pytest.mark.parametrize("next_step", ["retry", "remove"])
@pytest.mark.parametrize("point", ADD_POINTS)
def test_kill_during_run_pod(hawserd: Hawserd, pod_network: CniEnv, log_file: Path, point: str,
                             next_step: str) -> None:
    bystander = run_pod(hawserd, pod_config("bystander"))
    ip = pod_ip(hawserd, bystander)
    restart(hawserd, _arm(point, "kill", log_file))
    config = pod_config("victim")
    code, _ = status_code(hawserd.client().runtime.RunPodSandbox, api_pb2.RunPodSandboxRequest(config=config))
    assert code == grpc.StatusCode.UNAVAILABLE
    _died_at(hawserd, point, log_file)

    start(hawserd)
    listed = pods(hawserd)
    assert listed["bystander"] == (bystander, api_pb2.SANDBOX_READY) and pod_ip(hawserd, bystander) == ip
    victim, state = listed["victim"]
    assert state == api_pb2.SANDBOX_NOTREADY  # half made: listed, not ready
    # What the crash left (the namespaces; from the first ADD on, an address and a veth too) is there to clean.
    held = footprint(hawserd, pod_network, [bystander, victim])
    assert held["pins"] == sorted([bystander, victim])
    if point.startswith("cni."):
        assert (held["reserved_ips"], held["bridge_ports"], len(held["cache"])) == (2, 2, 2), held
    if next_step == "retry":
        # kubelet's retry of the same request: the half-made pod goes, a whole one takes its place.
        again = run_pod(hawserd, config)
        assert again != victim and pods(hawserd)["victim"] == (again, api_pb2.SANDBOX_READY)
        victim = again
    for _ in range(2):  # idempotent
        stop_pod(hawserd, victim)
        remove_pod(hawserd, victim)
    _only_bystander_left_then_nothing(hawserd, pod_network, bystander)


def _a_retry_comes_and_goes_without_a_trace(hawserd: Hawserd, pod_network: CniEnv,
                                            config: api_pb2.PodSandboxConfig) -> None:
    """The fault fired once: the same request now makes a whole pod, which goes without a trace."""
    victim = run_pod(hawserd, config)
    stop_pod(hawserd, victim)
    remove_pod(hawserd, victim)
    pod_network.assert_clean(pins=False)
    assert footprint(hawserd, pod_network, []) == NOTHING
    assert_log_clean(hawserd)


def _only_bystander_left_then_nothing(hawserd: Hawserd, pod_network: CniEnv, bystander: str) -> None:
    """The victim is gone without a trace; the bystander pod is whole, and goes without a trace too."""
    assert set(pods(hawserd)) == {"bystander"}
    assert footprint(hawserd, pod_network, [bystander]) == only(pod_network, bystander)
    stop_pod(hawserd, bystander)
    remove_pod(hawserd, bystander)
    pod_network.assert_clean(pins=False)
    assert footprint(hawserd, pod_network, []) == NOTHING
    assert_log_clean(hawserd)


TEARDOWN_POINTS = [("cni.del.after-plugin@1", "stop"), ("cni.del.after-plugin@2", "stop"),
                   ("sandbox.remove.before-record-delete", "remove")]


@pytest.mark.parametrize(("point", "rpc"), TEARDOWN_POINTS)
def test_kill_during_pod_teardown(hawserd: Hawserd, pod_network: CniEnv, log_file: Path, point: str,
                                  rpc: str) -> None:
    bystander = run_pod(hawserd, pod_config("bystander"))
    victim = run_pod(hawserd, pod_config("victim"))
    restart(hawserd, _arm(point, "kill", log_file))
    call = hawserd.client().runtime.StopPodSandbox if rpc == "stop" else hawserd.client().runtime.RemovePodSandbox
    request_type = api_pb2.StopPodSandboxRequest if rpc == "stop" else api_pb2.RemovePodSandboxRequest
    code, _ = status_code(call, request_type(pod_sandbox_id=victim))
    assert code == grpc.StatusCode.UNAVAILABLE
    _died_at(hawserd, point, log_file)

    start(hawserd)
    assert pods(hawserd)["bystander"] == (bystander, api_pb2.SANDBOX_READY)
    # Still listed, and not ready: it was marked so before its network went.
    assert pods(hawserd)["victim"] == (victim, api_pb2.SANDBOX_NOTREADY)
    if rpc == "stop":  # the cache entry stays until every DEL ran; the bridge's (the 2nd) frees the address
        held = footprint(hawserd, pod_network, [bystander, victim])
        freed = point.endswith("@2")
        assert (held["reserved_ips"], held["bridge_ports"], len(held["cache"])) == (2 - freed, 2 - freed, 2), held
    stop_pod(hawserd, victim)  # DELs again what the first one did not finish
    remove_pod(hawserd, victim)
    _only_bystander_left_then_nothing(hawserd, pod_network, bystander)


@pytest.mark.parametrize("point", ADD_POINTS)
def test_error_during_run_pod(hawserd: Hawserd, pod_network: CniEnv, log_file: Path, point: str) -> None:
    restart(hawserd, _arm(point, "raise", log_file))
    config = pod_config("victim")
    code, message = status_code(hawserd.client().runtime.RunPodSandbox, api_pb2.RunPodSandboxRequest(config=config))
    assert code == grpc.StatusCode.UNAVAILABLE and "injected failure at failpoint" in message, (code, message)
    assert fired(log_file) == [(point.partition("@")[0], "raise")]
    # Undone whole: no pod, namespace, address, veth, rule or cache entry.
    assert pods(hawserd) == {}
    pod_network.assert_clean(pins=False)
    assert footprint(hawserd, pod_network, []) == NOTHING
    # The point fires once: the retry goes through.
    _a_retry_comes_and_goes_without_a_trace(hawserd, pod_network, config)


@pytest.mark.parametrize(("point", "rpc"), TEARDOWN_POINTS)
def test_error_during_pod_teardown(hawserd: Hawserd, pod_network: CniEnv, log_file: Path, point: str,
                                   rpc: str) -> None:
    victim = run_pod(hawserd, pod_config("victim"))
    restart(hawserd, _arm(point, "raise", log_file))
    call = hawserd.client().runtime.StopPodSandbox if rpc == "stop" else hawserd.client().runtime.RemovePodSandbox
    request_type = api_pb2.StopPodSandboxRequest if rpc == "stop" else api_pb2.RemovePodSandboxRequest
    code, message = status_code(call, request_type(pod_sandbox_id=victim))
    assert "injected failure at failpoint" in message, (code, message)
    assert fired(log_file) == [(point.partition("@")[0], "raise")]
    stop_pod(hawserd, victim)  # the retry finishes
    remove_pod(hawserd, victim)
    assert pods(hawserd) == {}
    pod_network.assert_clean(pins=False)
    assert footprint(hawserd, pod_network, []) == NOTHING
    assert_log_clean(hawserd)


# --- CNI plugins that fail ---------------------------------------------------------------------


@pytest.fixture
def faults(hawserd: Hawserd, pod_network: CniEnv, tmp_path: Path) -> Faults:
    """hawserd on a CNI bin dir whose bridge and portmap fail on demand."""
    control = Faults(tmp_path / "faults")
    bin_dir = cni_bin_dir(tmp_path / "cni-bin", ["bridge", "portmap"])
    argv = hawserd.argv
    hawserd.argv = lambda *extra: [*argv(*extra), "--cni-bin-dir", str(bin_dir)]  # type: ignore[method-assign]
    restart(hawserd, control.env())
    return control


def test_add_fails_at_the_second_plugin(hawserd: Hawserd, pod_network: CniEnv, faults: Faults) -> None:
    faults.fail("cni.portmap.ADD")
    config = pod_config("victim")
    code, message = status_code(hawserd.client().runtime.RunPodSandbox, api_pb2.RunPodSandboxRequest(config=config))
    assert code == grpc.StatusCode.UNAVAILABLE and "injected failure of portmap ADD" in message, (code, message)
    # The bridge's ADD is undone: the whole chain is DELeted, in reverse.
    assert [" ".join(c.split()[1:3]) + (" FAILED" if c.endswith("FAILED") else "") for c in faults.calls()] == [
        "bridge ADD", "portmap ADD FAILED", "portmap DEL", "bridge DEL"]
    assert pods(hawserd) == {}
    pod_network.assert_clean(pins=False)
    assert footprint(hawserd, pod_network, []) == NOTHING
    faults.heal()
    _a_retry_comes_and_goes_without_a_trace(hawserd, pod_network, config)


def test_del_fails_then_the_retry_succeeds(hawserd: Hawserd, pod_network: CniEnv, faults: Faults) -> None:
    victim = run_pod(hawserd, pod_config("victim"))
    faults.fail("cni.bridge.DEL", times=1)
    code, message = status_code(hawserd.client().runtime.StopPodSandbox,
                                api_pb2.StopPodSandboxRequest(pod_sandbox_id=victim))
    assert "injected failure of bridge DEL" in message, (code, message)
    assert pods(hawserd)["victim"][1] == api_pb2.SANDBOX_NOTREADY
    # The bridge still holds the pod's address and veth, and the cache what the retry needs.
    held = footprint(hawserd, pod_network, [victim])
    assert (held["reserved_ips"], held["bridge_ports"], held["cache"]) == (1, 1, [f"{victim}:{pod_network.name}:eth0.json"])
    stop_pod(hawserd, victim)
    remove_pod(hawserd, victim)
    assert pods(hawserd) == {}
    pod_network.assert_clean(pins=False)
    assert footprint(hawserd, pod_network, []) == NOTHING
    assert_log_clean(hawserd)
