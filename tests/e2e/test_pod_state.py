"""What hawserd reports of pods and containers is what the host has (issue 12):
an exited or stopped container has no process left, a pod whose pid namespace
init died is not ready, a stop is recorded on a full disk."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import grpc
from cri_api.v1 import api_pb2

from tests.e2e.helpers import status_code
from tests.support.aio import processes_running
from tests.support.cni import CniEnv
from tests.support.cri_pods import CGROUP_PARENT, CGROUP_ROOT, Pods, cgroup_dir

SHARED_PID = api_pb2.NamespaceOption(pid=api_pb2.POD)


def cgroup_procs(container_id: str, pod_config: api_pb2.PodSandboxConfig) -> list[int]:
    """Every process in the container's cgroup (pids hierarchy, sub-cgroups too)."""
    top = cgroup_dir("pids", container_id, pod_config)
    pids: list[int] = []
    for procs in [top / "cgroup.procs", *top.rglob("*/cgroup.procs")]:
        with contextlib.suppress(FileNotFoundError):
            pids += [int(p) for p in procs.read_text().split()]
    return pids


def check_clean(pods: Pods) -> None:
    proc = pods.hawserd.cli("system", "check", "--format", "json", check=False)
    findings = json.loads(proc.stdout)
    assert proc.returncode == 0 and not [f for f in findings if f["severity"] == "problem"], findings


def assert_nothing_left(pods: Pods, network: CniEnv) -> None:
    """Every pod removed through the CRI, then nothing of them on the host: no
    process in their cgroups, no pinned namespace or mount, no veth, IP or
    rule, and a clean ``system check``."""
    for pod_id in list(pods.pods):
        pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        pods.pods.remove(pod_id)
    assert pods.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []
    assert pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers == []
    leftover = [str(d) for d in Path(CGROUP_ROOT).glob(f"*/{CGROUP_PARENT.lstrip('/')}/*/*")
                if d.is_dir() and (d / "cgroup.procs").read_text().strip()]
    assert leftover == []
    assert [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if str(pods.hawserd.state) in line] == []
    network.assert_clean()
    check_clean(pods)


def test_an_exited_container_leaves_no_process_behind(pods: Pods, pod_network: CniEnv) -> None:
    """In a shared pid namespace the children of an exited main process are
    re-parented to the pod's init; the container is Exited only once they are gone."""
    pod = pods.pod("exiting", namespace_options=SHARED_PID)
    container = pods.run(pod, pods.config("parent", "sh", "-c", "sleep 901 & exit 0",
                                          linux__security_context__namespace_options=SHARED_PID))
    status = pods.wait_exit(container)
    assert status.state == api_pb2.CONTAINER_EXITED and status.exit_code == 0
    assert cgroup_procs(container, pod[1]) == [] and processes_running("901") == []
    assert_nothing_left(pods, pod_network)


def test_a_stopped_container_leaves_no_process_behind(pods: Pods, pod_network: CniEnv) -> None:
    pod = pods.pod("stopping", namespace_options=SHARED_PID)
    script = "for i in $(seq 300); do sleep 902 & done; exec sleep 903"
    container = pods.run(pod, pods.config("many", "sh", "-c", script,
                                          linux__security_context__namespace_options=SHARED_PID))
    deadline = time.monotonic() + 20
    while len(cgroup_procs(container, pod[1])) < 301 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(cgroup_procs(container, pod[1])) == 301
    pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=container, timeout=1))
    assert pods.status(container).status.state == api_pb2.CONTAINER_EXITED
    assert cgroup_procs(container, pod[1]) == [] and processes_running("902") == []
    assert_nothing_left(pods, pod_network)


def test_a_pod_whose_pid_namespace_init_died_is_not_ready(pods: Pods, pod_network: CniEnv) -> None:
    pod = pods.pod("holder", namespace_options=SHARED_PID)
    first = pods.run(pod, pods.config("first", "sleep", "904", linux__security_context__namespace_options=SHARED_PID))
    info = json.loads(pods.rt.PodSandboxStatus(
        api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod[0], verbose=True)).info["info"])
    # The pid namespace is pinned, not named by a pid that another process may get later.
    pid_ns = info["namespaces"]["pid"]
    assert pid_ns.startswith(str(pods.hawserd.state)) and not pid_ns.startswith("/proc/")
    inits = [p for p in processes_running(pod[0]) if Path(f"/proc/{p}/comm").read_text().strip() == "catatonit"]
    assert len(inits) == 1
    os.kill(inits[0], signal.SIGKILL)

    deadline = time.monotonic() + 10
    while True:
        status = pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod[0], verbose=True))
        if status.status.state == api_pb2.SANDBOX_NOTREADY or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status.status.state == api_pb2.SANDBOX_NOTREADY
    assert "pid" in json.loads(status.info["info"])["reason"]
    listed = {p.id: p.state for p in pods.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items}
    assert listed[pod[0]] == api_pb2.SANDBOX_NOTREADY
    code, message = status_code(pods.rt.CreateContainer, api_pb2.CreateContainerRequest(
        pod_sandbox_id=pod[0], config=pods.config("second", "sleep", "905"), sandbox_config=pod[1]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not ready" in message
    # The pod's init took its container's processes with it; kubelet now stops and removes the pod.
    assert pods.wait_exit(first).state == api_pb2.CONTAINER_EXITED
    pods.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod[0]))
    assert_nothing_left(pods, pod_network)


def test_stop_and_remove_a_pod_on_a_full_disk(pods: Pods, pod_network: CniEnv, tmp_path: Path) -> None:
    """The disk under the root fills up with the pod running: its stop (which
    records the pod not ready) and its removal still go through, on the reserve
    the store keeps for removals."""
    hawserd = pods.hawserd
    hawserd.stop()
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    subprocess.run(["cp", "-a", f"{hawserd.root}/.", str(disk)], check=True)
    subprocess.run(["mount", "--bind", str(disk), str(hawserd.root)], check=True)
    hawserd.start()
    pod = pods.pod("full")
    container = pods.run(pod, pods.config("idle", "sleep", "906"))
    filler = hawserd.root / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 65536)
    assert os.statvfs(hawserd.root).f_bavail == 0

    pods.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod[0]))
    assert pods.status(container).status.state == api_pb2.CONTAINER_EXITED
    state = pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod[0])).status.state
    assert state == api_pb2.SANDBOX_NOTREADY
    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod[0]))
    filler.unlink()
    assert_nothing_left(pods, pod_network)



def test_pod_and_container_changes_reach_the_event_journal(pods: Pods, pod_network: CniEnv) -> None:
    """The CRI's pods and containers are journaled beside the CLI's: `hawser events` on the daemon's store shows them."""
    import time

    begun = time.time()
    pod = pods.pod("journaled")
    container = pods.run(pod, pods.config("once", "sh", "-c", "exit 4"))
    assert pods.wait_exit(container).exit_code == 4
    pods.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod[0]))
    assert_nothing_left(pods, pod_network)
    out = pods.hawserd.cli("events", "--since", str(begun), "--until", str(time.time()), "--format", "json").stdout
    seen = [json.loads(line) for line in out.splitlines()]
    assert [(e["type"], e["action"]) for e in seen if e["id"] in (pod[0], container)] == [
        ("pod", "ready"), ("container", "create"), ("container", "start"), ("container", "exit"),
        ("pod", "notready"), ("container", "remove"), ("pod", "removed")]
    exit_event = next(e for e in seen if e["action"] == "exit")
    assert exit_event["attributes"]["exitCode"] == "4" and exit_event["namespace"] == "k8s.io"
