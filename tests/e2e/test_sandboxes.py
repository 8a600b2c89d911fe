"""Pod sandboxes through CRI: namespaces, CNI, idempotency, rollback, restarts, leaks."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import signal
import socket
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from cri_api.v1 import api_pb2

from hawser.host import namespace_kind, run_in_namespaces, run_in_netns
from tests.e2e.helpers import status_code
from tests.support.cni import CniEnv, ask
from tests.support.hawserd import Hawserd

CGROUP_PARENT = f"/hawser-e2e-{secrets.token_hex(3)}"


def pod_config(name: str = "web", *, uid: str | None = None, attempt: int = 0, **extra: Any) -> api_pb2.PodSandboxConfig:
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="default", uid=uid or secrets.token_hex(8),
                                            attempt=attempt),
        hostname=f"{name}-host", labels={"app": name, "tier": "test"}, annotations={"note": "e2e"},
        linux=api_pb2.LinuxPodSandboxConfig(cgroup_parent=f"{CGROUP_PARENT}/pod-{name}"),
    )
    for key, value in extra.items():
        if key == "port_mappings":
            config.port_mappings.extend(value)
        elif key == "dns_config":
            config.dns_config.CopyFrom(value)
        elif key == "sysctls":
            config.linux.sysctls.update(value)
        elif key == "pid":
            config.linux.security_context.namespace_options.pid = value
        else:
            raise AssertionError(key)
    return config


def run_pod(hawserd: Hawserd, config: api_pb2.PodSandboxConfig) -> str:
    cri = hawserd.client()
    return str(cri.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id)


def status(hawserd: Hawserd, pod_id: str) -> tuple[api_pb2.PodSandboxStatus, dict[str, Any]]:
    response = hawserd.client().runtime.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True))
    return response.status, json.loads(response.info["info"])


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_pod_lifecycle_network_and_idempotency(hawserd: Hawserd, pod_network: CniEnv) -> None:
    cri = hawserd.client()
    host_port = free_port()
    config = pod_config(
        port_mappings=[api_pb2.PortMapping(protocol=api_pb2.TCP, container_port=8080, host_port=host_port,
                                           host_ip="127.0.0.1")],
        dns_config=api_pb2.DNSConfig(servers=["10.0.0.10"], searches=["svc.test"], options=["ndots:5"]),
        sysctls={"net.ipv4.ip_unprivileged_port_start": "80"})
    pod_id = run_pod(hawserd, config)
    # A retry of the same request (kubelet after a timeout) gets the same pod.
    assert run_pod(hawserd, config) == pod_id

    pod, info = status(hawserd, pod_id)
    assert pod.state == api_pb2.SANDBOX_READY
    assert (pod.metadata.name, pod.metadata.namespace, pod.metadata.attempt) == ("web", "default", 0)
    assert dict(pod.labels) == {"app": "web", "tier": "test"} and dict(pod.annotations) == {"note": "e2e"}
    assert ipaddress.ip_address(pod.network.ip) in pod_network.subnet
    netns = info["namespaces"]["network"]
    assert namespace_kind(netns) == "net" and namespace_kind(info["namespaces"]["uts"]) == "uts"
    assert Path(info["resolvConf"]).read_text() == "nameserver 10.0.0.10\nsearch svc.test\noptions ndots:5\n"
    assert run_in_namespaces({"uts": info["namespaces"]["uts"]}, socket.gethostname) == "web-host"
    sysctl = "/proc/sys/net/ipv4/ip_unprivileged_port_start"
    assert run_in_netns(netns, lambda: Path(sysctl).read_text().strip()) == "80"

    # The pod IP from the host, and the hostPort on 127.0.0.1, reach a server in the pod.
    pod_network.serve(netns, 8080, "in-pod")
    assert ask(pod.network.ip, 8080).startswith("in-pod")
    assert ask("127.0.0.1", host_port).startswith("in-pod")

    listed = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
    assert [p.id for p in listed] == [pod_id]
    for wanted, expect in [
        (api_pb2.PodSandboxFilter(id=pod_id[:10]), [pod_id]),
        (api_pb2.PodSandboxFilter(label_selector={"app": "web"}), [pod_id]),
        (api_pb2.PodSandboxFilter(label_selector={"app": "db"}), []),
        (api_pb2.PodSandboxFilter(state=api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_NOTREADY)), []),
    ]:
        got = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest(filter=wanted)).items
        assert [p.id for p in got] == expect, wanted

    for _ in range(2):  # idempotent
        cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    pod, _ = status(hawserd, pod_id)
    assert pod.state == api_pb2.SANDBOX_NOTREADY
    assert pod_network.footprint()["reserved_ips"] == [] and pod_network.footprint()["bridge_ports"] == []

    for _ in range(2):  # idempotent
        cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    code, _ = status_code(cri.runtime.PodSandboxStatus, api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id))
    assert code == grpc.StatusCode.NOT_FOUND
    assert not os.path.exists(netns)
    pod_network.servers.clear()
    pod_network.assert_clean(pins=False)
    assert mounts_under(hawserd.state) == []


def test_invalid_requests_and_unknown_pods(hawserd: Hawserd, pod_network: CniEnv) -> None:
    cri = hawserd.client()
    no_name = pod_config()
    no_name.metadata.name = ""
    for request in [api_pb2.RunPodSandboxRequest(config=no_name),
                    api_pb2.RunPodSandboxRequest(config=pod_config(), runtime_handler="kata"),
                    api_pb2.RunPodSandboxRequest(config=pod_config(sysctls={"kernel.panic": "1"}))]:
        code, message = status_code(cri.runtime.RunPodSandbox, request)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, message
    assert cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []
    missing = "f" * 64
    code, _ = status_code(cri.runtime.PodSandboxStatus, api_pb2.PodSandboxStatusRequest(pod_sandbox_id=missing))
    assert code == grpc.StatusCode.NOT_FOUND
    # Stop and remove of what is not there succeed (CRI: idempotent).
    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=missing))
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=missing))
    code, _ = status_code(cri.runtime.StopPodSandbox, api_pb2.StopPodSandboxRequest())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert mounts_under(hawserd.state) == []


def test_failed_network_setup_rolls_everything_back(hawserd: Hawserd, pod_network: CniEnv, tmp_path: Path) -> None:
    # A chain whose last plugin fails: the bridge ADD already ran, so the rollback must DEL it.
    doc = pod_network.conflist()
    doc["plugins"].append({"type": "failing"})
    (hawserd.cni_conf / "10-test.conflist").write_text(json.dumps(doc))
    # It fails ADD and lets DEL succeed, as a plugin with nothing to undo does.
    _plugins_with(hawserd, tmp_path, "failing", '[ "$CNI_COMMAND" = DEL ] && exit 0\n'
                  'echo \'{"cniVersion":"1.0.0","code":11,"msg":"no way"}\'\nexit 1\n')
    cri = hawserd.client()
    code, message = status_code(cri.runtime.RunPodSandbox, api_pb2.RunPodSandboxRequest(config=pod_config()))
    assert code == grpc.StatusCode.UNAVAILABLE and "no way" in message, (code, message)
    assert cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []
    assert pod_network.footprint()["reserved_ips"] == [] and pod_network.footprint()["bridge_ports"] == []
    assert mounts_under(hawserd.state) == []
    assert os.listdir(hawserd.state / "sandboxes") == []


def test_pods_survive_a_hawserd_crash(hawserd: Hawserd, pod_network: CniEnv) -> None:
    pod_id = run_pod(hawserd, pod_config("survivor"))
    before, info = status(hawserd, pod_id)
    hawserd.stop(signal.SIGKILL)
    hawserd.start()
    after, info_after = status(hawserd, pod_id)
    assert after.state == api_pb2.SANDBOX_READY and after.network.ip == before.network.ip
    assert info_after["namespaces"] == info["namespaces"]
    cri = hawserd.client()
    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    pod_network.assert_clean(pins=False)
    assert mounts_under(hawserd.state) == []


def test_shared_pid_namespace_has_an_infra_init(hawserd: Hawserd, pod_network: CniEnv) -> None:
    pod_id = run_pod(hawserd, pod_config("shared", pid=api_pb2.POD))
    _, info = status(hawserd, pod_id)
    pid_ns = info["namespaces"]["pid"]
    # The namespace is pinned under the pod's state dir; its init is the pod's catatonit.
    inits = [int(p) for p in os.listdir("/proc") if p.isdigit() and _alive(int(p))
             and pod_id.encode() in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert len(inits) == 1
    init = inits[0]
    assert os.stat(pid_ns).st_ino == os.stat(f"/proc/{init}/ns/pid").st_ino != os.stat("/proc/self/ns/pid").st_ino
    hawserd.client().runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    deadline = time.monotonic() + 10
    while _alive(init) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _alive(init), "the pod's pid namespace init outlived the pod"


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and "(catatonit)" in stat


def test_twenty_pods_leave_nothing_behind(hawserd: Hawserd, pod_network: CniEnv) -> None:
    cri = hawserd.client()
    ids = [run_pod(hawserd, pod_config(f"p{i}")) for i in range(20)]
    ips = {status(hawserd, i)[0].network.ip for i in ids}
    assert len(ips) == 20
    for pod_id in ids:
        cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    pod_network.assert_clean(pins=False)
    assert mounts_under(hawserd.state) == []
    assert os.listdir(hawserd.state / "sandboxes") == []


@pytest.fixture(autouse=True)
def _no_pod_cgroups_left() -> Any:
    yield
    for controller in os.listdir("/sys/fs/cgroup"):
        path = Path("/sys/fs/cgroup", controller, CGROUP_PARENT.lstrip("/"))
        if path.is_dir():
            for child in sorted(path.glob("**/"), key=lambda p: len(str(p)), reverse=True):
                try:
                    child.rmdir()
                except OSError:
                    pass


def test_pod_stats(hawserd: Hawserd, pod_network: CniEnv) -> None:
    cri = hawserd.client()
    pod_id = run_pod(hawserd, pod_config("stats"))
    _, info = status(hawserd, pod_id)
    pod_network.serve(info["namespaces"]["network"], 8080, "in-pod")
    pod, _ = status(hawserd, pod_id)
    ask(pod.network.ip, 8080)  # some traffic on eth0
    stats = cri.runtime.PodSandboxStats(api_pb2.PodSandboxStatsRequest(pod_sandbox_id=pod_id)).stats
    assert stats.attributes.id == pod_id and stats.attributes.metadata.name == "stats"
    assert stats.linux.network.default_interface.name == "eth0"
    assert stats.linux.network.default_interface.rx_bytes.value > 0
    listed = cri.runtime.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(
        filter=api_pb2.PodSandboxStatsFilter(label_selector={"app": "stats"}))).stats
    assert [s.attributes.id for s in listed] == [pod_id]
    code, _ = status_code(cri.runtime.PodSandboxStats, api_pb2.PodSandboxStatsRequest(pod_sandbox_id="e" * 64))
    assert code == grpc.StatusCode.NOT_FOUND


def _plugins_with(hawserd: Hawserd, tmp_path: Path, name: str, script: str) -> None:
    """Restart hawserd on a CNI bin dir holding the real plugins plus ``name``."""
    bin_dir = tmp_path / "cni-bin"
    bin_dir.mkdir()
    for plugin in os.listdir("/usr/lib/cni"):
        os.symlink(f"/usr/lib/cni/{plugin}", bin_dir / plugin)
    (bin_dir / name).write_text("#!/bin/sh\n" + script)
    (bin_dir / name).chmod(0o755)
    hawserd.stop()
    argv = hawserd.argv
    hawserd.argv = lambda *extra: [*argv(*extra), "--cni-bin-dir", str(bin_dir)]  # type: ignore[method-assign]
    hawserd.start()


def test_a_pod_half_made_by_a_crash_is_finished_off(hawserd: Hawserd, pod_network: CniEnv,
                                                     tmp_path: Path) -> None:
    import threading

    # A first plugin that takes its time on ADD: hawserd is killed while it runs.
    doc = pod_network.conflist()
    doc["plugins"].insert(0, {"type": "slow"})
    (hawserd.cni_conf / "10-test.conflist").write_text(json.dumps(doc))
    _plugins_with(hawserd, tmp_path, "slow", '[ "$CNI_COMMAND" = ADD ] && sleep 30\n'
                                             'echo \'{"cniVersion":"1.0.0"}\'\n')
    config = pod_config("crashed")
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_pod(hawserd, config)
        except BaseException as exc:  # the daemon dies under it
            errors.append(exc)

    caller = threading.Thread(target=run)
    caller.start()
    deadline = time.monotonic() + 20
    while not list((hawserd.state / "sandboxes").glob("*/ns/net")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # inside the slow ADD
    hawserd.stop(signal.SIGKILL)
    caller.join(30)
    assert errors, "RunPodSandbox should have failed with the daemon"
    subprocess_kill_slow_plugins()

    # Back with a working network: the half-made pod is listed not ready, and it goes.
    (hawserd.cni_conf / "10-test.conflist").write_text(json.dumps(pod_network.conflist()))
    hawserd.start()
    cri = hawserd.client()
    pods = cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items
    assert [(p.metadata.name, p.state) for p in pods] == [("crashed", api_pb2.SANDBOX_NOTREADY)]
    # kubelet's retry of the same request makes a new, working pod in its place.
    pod_id = run_pod(hawserd, config)
    assert pod_id != pods[0].id
    assert status(hawserd, pod_id)[0].state == api_pb2.SANDBOX_READY
    assert [p.id for p in cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items] == [pod_id]
    for _ in range(2):
        cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
        cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    pod_network.assert_clean(pins=False)
    assert mounts_under(hawserd.state) == []
    assert os.listdir(hawserd.state / "sandboxes") == []


def subprocess_kill_slow_plugins() -> None:
    from tests.support.aio import processes_running

    for pid in processes_running("30"):  # the slow plugin's `sleep 30`
        with open(f"/proc/{pid}/comm") as f:
            if f.read().strip() == "sleep":
                os.kill(pid, signal.SIGKILL)
