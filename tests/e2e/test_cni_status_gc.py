"""CNI spec 1.1's STATUS and GC through hawserd: the CRI's NetworkReady
condition follows the plugins' STATUS, and at start-up the plugins get GC
with the attachments of exactly the pods that exist then.

Debian 12's plugins (1.1.1) speak CNI up to 1.0.0, so these tests run a
small spec 1.1 plugin of their own (``TEST_PLUGIN``) in a CNI bin dir of
their own: ADD hands out an address it configures nowhere, DEL, CHECK and
GC succeed, STATUS fails with code 50 while a file in its state dir exists,
and every call is recorded (command, CNI_* variables, stdin) in that dir.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from cri_api.v1 import api_pb2

from hawser.metadata import Metadata
from hawser.network._status import STATUS_TTL
from tests.support.hawserd import Hawserd

PLUGIN = "hawser-test-cni"

TEST_PLUGIN = """\
#!{python} -IS
import json, os, sys

cmd = os.environ.get("CNI_COMMAND", "")
raw = sys.stdin.read()
conf = json.loads(raw) if raw.strip() else {{}}


def fail(code, msg, details=""):
    print(json.dumps({{"cniVersion": "1.1.0", "code": code, "msg": msg, "details": details}}))
    sys.exit(1)


if cmd == "VERSION":
    print(json.dumps({{"cniVersion": "1.1.0", "supportedVersions": ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]}}))
    sys.exit(0)
state = conf.get("stateDir")
if not state:
    fail(7, "stateDir is missing from the config")
with open(os.path.join(state, "calls.jsonl"), "a") as log:
    log.write(json.dumps({{"command": cmd, "env": {{k: v for k, v in os.environ.items() if k.startswith("CNI_")}},
                          "stdin": conf}}) + "\\n")
if cmd == "STATUS":
    down = os.path.join(state, "unavailable")
    if os.path.exists(down):
        with open(down) as f:
            fail(50, f.read().strip() or "not available", "the test toggled it")
elif cmd == "ADD":
    with open(os.path.join(state, "adds"), "a+") as f:
        f.write("x")
        f.seek(0)
        n = len(f.read())
    print(json.dumps({{"cniVersion": conf["cniVersion"],
                      "interfaces": [{{"name": os.environ["CNI_IFNAME"], "sandbox": os.environ["CNI_NETNS"]}}],
                      "ips": [{{"address": f"192.0.2.{{n + 1}}/24", "interface": 0}}]}}))
elif cmd not in ("DEL", "CHECK", "GC"):
    fail(4, f"unknown CNI_COMMAND {{cmd!r}}")
"""


class Spec11Plugin:
    """The plugin in a bin dir of its own, its state dir, and hawserd restarted on both."""

    def __init__(self, hawserd: Hawserd, root: Path) -> None:
        self.hawserd = hawserd
        self.bin_dir = root / "cni-bin"
        self.state = root / "cni-state"
        self.bin_dir.mkdir()
        self.state.mkdir()
        path = self.bin_dir / PLUGIN
        path.write_text(TEST_PLUGIN.format(python=sys.executable))
        path.chmod(0o755)
        self.network = f"hwt-{secrets.token_hex(3)}"

    def use(self, version: str = "1.1.0") -> None:
        """Write the network's conflist (spec ``version``) and restart hawserd on the bin dir."""
        doc = {"cniVersion": version, "name": self.network,
               "plugins": [{"type": PLUGIN, "stateDir": str(self.state)}]}
        (self.hawserd.cni_conf / "10-test.conflist").write_text(json.dumps(doc))
        hawserd = self.hawserd
        if hawserd.running:
            assert hawserd.stop() == 0
        base = Hawserd.argv.__get__(hawserd)
        hawserd.argv = lambda *extra: [*base(*extra), "--cni-bin-dir", str(self.bin_dir)]  # type: ignore[method-assign]
        hawserd.start()

    def calls(self, command: str | None = None) -> list[dict[str, Any]]:
        path = self.state / "calls.jsonl"
        found = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return [c for c in found if command is None or c["command"] == command]

    def clear(self) -> None:
        (self.state / "calls.jsonl").unlink(missing_ok=True)

    def set_unavailable(self, message: str | None) -> None:
        down = self.state / "unavailable"
        if message is None:
            down.unlink(missing_ok=True)
        else:
            down.write_text(message)


def network_ready(hawserd: Hawserd) -> api_pb2.RuntimeCondition:
    answer = hawserd.client().runtime.Status(api_pb2.StatusRequest())
    conditions = {c.type: c for c in answer.status.conditions}
    assert conditions["RuntimeReady"].status
    return conditions["NetworkReady"]


def wait_for_ready(hawserd: Hawserd, ready: bool, timeout: float = 10.0) -> api_pb2.RuntimeCondition:
    deadline = time.monotonic() + timeout
    while True:
        condition = network_ready(hawserd)
        if condition.status == ready or time.monotonic() > deadline:
            return condition
        time.sleep(0.1)


def run_pod(hawserd: Hawserd, name: str) -> str:
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="default", uid=secrets.token_hex(8)),
        hostname=name)
    return str(hawserd.client().runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id)


def test_network_ready_follows_the_plugins_status(hawserd: Hawserd, tmp_path: Path) -> None:
    plugin = Spec11Plugin(hawserd, tmp_path)
    plugin.use("1.1.0")
    condition = network_ready(hawserd)
    assert condition.status and condition.reason == "" and condition.message == ""
    status_calls = plugin.calls("STATUS")
    assert status_calls, "hawserd did not ask the plugin's STATUS"
    # STATUS concerns the network: only CNI_COMMAND and CNI_PATH, the plugin's config, no prevResult
    assert status_calls[0]["env"] == {"CNI_COMMAND": "STATUS", "CNI_PATH": str(plugin.bin_dir)}
    assert status_calls[0]["stdin"] == {"type": PLUGIN, "stateDir": str(plugin.state), "name": plugin.network,
                                        "cniVersion": "1.1.0"}

    # kubelet polls Status every few seconds: an answer is reused for a moment, not asked per call
    before = len(plugin.calls("STATUS"))
    started = time.monotonic()
    for _ in range(10):
        assert network_ready(hawserd).status
    elapsed = time.monotonic() - started
    assert len(plugin.calls("STATUS")) - before <= 1 + int(elapsed / STATUS_TTL), elapsed

    plugin.set_unavailable("the test agent is down")
    condition = wait_for_ready(hawserd, False)
    assert not condition.status and condition.reason == "NetworkPluginNotReady"
    assert f"network '{plugin.network}'" in condition.message
    assert f"{PLUGIN} STATUS (code 50, the plugin is not available): the test agent is down: the test toggled it" \
        in condition.message, condition.message

    plugin.set_unavailable(None)
    condition = wait_for_ready(hawserd, True)
    assert condition.status and condition.message == ""
    assert f"CNI network {plugin.network!r} is ready again" in hawserd.log()


def test_older_configs_get_neither_status_nor_gc(hawserd: Hawserd, tmp_path: Path) -> None:
    plugin = Spec11Plugin(hawserd, tmp_path)
    plugin.set_unavailable("ignored: a 1.0.0 network is never asked")
    plugin.use("1.0.0")
    assert network_ready(hawserd).status
    pod_id = run_pod(hawserd, "old")
    assert [c["command"] for c in plugin.calls()] == ["ADD"]
    assert hawserd.stop() == 0
    plugin.clear()
    hawserd.start()
    assert network_ready(hawserd).status
    assert plugin.calls() == []  # no GC at start-up, no STATUS for Status
    hawserd.client().runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert [c["command"] for c in plugin.calls()] == ["DEL"]


def test_gc_at_start_up_gets_exactly_the_pods_that_exist(hawserd: Hawserd, tmp_path: Path) -> None:
    plugin = Spec11Plugin(hawserd, tmp_path)
    plugin.use("1.1.0")
    rt = hawserd.client().runtime
    kept, stopped, removed, lost = (run_pod(hawserd, name) for name in ("kept", "stopped", "removed", "lost"))
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=stopped))  # not ready: its network is torn down
    rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=removed))
    lost_add = next(c for c in plugin.calls("ADD") if c["env"]["CNI_CONTAINERID"] == lost)
    assert hawserd.stop() == 0

    # While hawserd is down, a pod's record goes (its network state stays behind).
    metadata = Metadata(str(hawserd.root / "metadata.db"))
    try:
        metadata.sandboxes.delete(lost, namespace="k8s.io")
    finally:
        metadata.close()
    plugin.clear()
    hawserd.start()

    calls = plugin.calls()
    # The lost pod's attachment gets its DEL (with what its ADD was given), then GC keeps only the kept pod's.
    assert [c["command"] for c in calls] == ["DEL", "GC"], calls
    delete, gc = calls
    assert delete["env"]["CNI_CONTAINERID"] == lost and delete["env"]["CNI_IFNAME"] == "eth0"
    assert delete["env"]["CNI_NETNS"] == lost_add["env"]["CNI_NETNS"]
    assert delete["stdin"]["prevResult"]["ips"] == [{"address": "192.0.2.5/24", "interface": 0}]
    assert gc["env"] == {"CNI_COMMAND": "GC", "CNI_PATH": str(plugin.bin_dir)}
    assert gc["stdin"] == {"type": PLUGIN, "stateDir": str(plugin.state), "name": plugin.network,
                           "cniVersion": "1.1.0",
                           "cni.dev/valid-attachments": [{"containerID": kept, "ifname": "eth0"}]}

    rt = hawserd.client().runtime
    pods = {p.id: p.state for p in rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items}
    assert pods == {kept: api_pb2.SANDBOX_READY, stopped: api_pb2.SANDBOX_NOTREADY}
    status = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=kept)).status
    assert status.network.ip == "192.0.2.2"
    for pod_id in (kept, stopped):
        rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    assert [c["command"] for c in plugin.calls()] == ["DEL", "GC", "DEL"]
    assert not list((hawserd.root / "cni" / "results").iterdir())
