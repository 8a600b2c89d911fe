"""kubelet's in-place pod resize (InPlacePodVerticalScaling, issue 16) over
hawserd's CRI socket: UpdateContainerResources reaches the container's cgroup,
its spec and its record, so ContainerStatus.resources reports the new limits
after a restart of hawserd and after a host restart (simulated: hawserd
stopped, every process of the pod killed, the state dir, /run's part, and the
cgroups gone); UpdatePodSandboxResources keeps the pod's resources and sets
the limits of a pod cgroup of hawser's own, leaves kubelet's alone, and
answers NOT_FOUND, FAILED_PRECONDITION and INVALID_ARGUMENT as it should."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import grpc
from cri_api.v1 import api_pb2

from tests.e2e.helpers import status_code
from tests.support.cri_pods import CGROUP_ROOT, Pods, cgroup_dir
from tests.support.host import unmount_under

MiB = 1 << 20


def limits(pods: Pods, container: str) -> tuple[int, int, int, int, int]:
    """(shares, quota, period, memory, memory+swap) as ContainerStatus reports them."""
    seen = pods.status(container).status.resources.linux
    return (seen.cpu_shares, seen.cpu_quota, seen.cpu_period, seen.memory_limit_in_bytes,
            seen.memory_swap_limit_in_bytes)


def cgroup_limits(directory_of: Any) -> tuple[int, int, int, int]:
    """(cpu.shares, cfs quota, cfs period, memory limit) of a cgroup (v1 files: this host is hybrid)."""
    cpu, memory = directory_of("cpu"), directory_of("memory")
    return (int((cpu / "cpu.shares").read_text()), int((cpu / "cpu.cfs_quota_us").read_text()),
            int((cpu / "cpu.cfs_period_us").read_text()), int((memory / "memory.limit_in_bytes").read_text()))


def record_resources(pods: Pods, container: str) -> dict[str, Any]:
    """The resources the container's record keeps (``hawser inspect``)."""
    out = pods.hawserd.cli("-n", "k8s.io", "inspect", container).stdout
    resources: dict[str, Any] = json.loads(out)[0]["Config"]["resources"]
    return resources


def pod_status_record(pods: Pods, pod_id: str) -> dict[str, Any]:
    """The pod's record's status, read from hawserd's database (read-only)."""
    db = sqlite3.connect(f"file:{pods.hawserd.root / 'metadata.db'}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT status FROM sandboxes WHERE id = ?", (pod_id,)).fetchone()
    finally:
        db.close()
    status: dict[str, Any] = json.loads(row[0])
    return status


def own_cgroup_pod(pods: Pods, name: str) -> tuple[str, api_pb2.PodSandboxConfig, str]:
    """A pod with no cgroup_parent: hawser gives it a cgroup of its own; (id, config, that cgroup)."""
    uid = secrets.token_hex(8)
    config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace="e2e", uid=uid, attempt=0),
        hostname=name, log_directory=str(pods.logs / f"e2e_{name}_{uid}"))
    pod_id = str(pods.rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id)
    pods.pods.append(pod_id)
    info = json.loads(pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(
        pod_sandbox_id=pod_id, verbose=True)).info["info"])
    return pod_id, config, str(info["cgroupParent"])


def update_pod(pods: Pods, pod_id: str, *, resources: api_pb2.LinuxContainerResources | None = None,
               overhead: api_pb2.LinuxContainerResources | None = None) -> None:
    request = api_pb2.UpdatePodSandboxResourcesRequest(pod_sandbox_id=pod_id)
    if resources is not None:
        request.resources.CopyFrom(resources)
    if overhead is not None:
        request.overhead.CopyFrom(overhead)
    pods.rt.UpdatePodSandboxResources(request)


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.02)
    return not os.path.exists(f"/proc/{pid}")


def simulate_host_restart(pods: Pods, containers: list[str], cgroups: list[str]) -> None:
    """What a reboot does to hawser, as far as a test can: hawserd stops, every
    process of the containers and their conmons die, the state dir (on /run, a
    tmpfs) and the cgroups (``cgroups``: the pods') are gone; hawserd starts again
    on the root dir, which a reboot keeps."""
    hawserd = pods.hawserd
    conmons = [int((hawserd.state / "containers" / c / "conmon.pid").read_text()) for c in containers]
    assert hawserd.stop() == 0
    victims: list[int] = []
    for cgroup in cgroups:
        top = Path(CGROUP_ROOT, "pids", cgroup.lstrip("/"))
        for procs in top.rglob("cgroup.procs"):
            victims += [int(p) for p in procs.read_text().split()]
    for pid in [*victims, *conmons]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert all(_gone(pid) for pid in [*victims, *conmons])
    unmount_under(str(hawserd.state))
    shutil.rmtree(hawserd.state)
    for cgroup in cgroups:
        for hierarchy in Path(CGROUP_ROOT).iterdir():
            top = hierarchy / cgroup.lstrip("/")
            if top.is_dir():
                for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                    directory.rmdir()
                top.rmdir()
    hawserd.start()


# --- UpdateContainerResources ------------------------------------------------------------


def test_a_resize_reaches_the_cgroup_and_outlives_a_hawserd_restart(pods: Pods) -> None:
    pod = pods.pod("resize")
    resources = api_pb2.LinuxContainerResources(cpu_period=100000, cpu_quota=50000, cpu_shares=512,
                                                memory_limit_in_bytes=64 * MiB)
    container = pods.run(pod, pods.config("app", "sleep", "1000", linux__resources=resources))

    def directory_of(controller: str) -> Path:
        return cgroup_dir(controller, container, pod[1])

    assert cgroup_limits(directory_of) == (512, 50000, 100000, 64 * MiB)
    assert limits(pods, container)[:4] == (512, 50000, 100000, 64 * MiB)

    # kubelet's resize: the pod's new requests and limits, as UpdateContainerResources sends them.
    pods.rt.UpdateContainerResources(api_pb2.UpdateContainerResourcesRequest(
        container_id=container, linux=api_pb2.LinuxContainerResources(
            cpu_period=100000, cpu_quota=150000, cpu_shares=1536, memory_limit_in_bytes=128 * MiB)))
    resized = (1536, 150000, 100000, 128 * MiB)
    assert cgroup_limits(directory_of) == resized
    assert limits(pods, container)[:4] == resized
    kept = record_resources(pods, container)
    assert (kept["cpu_shares"], kept["cpu_quota"], kept["cpu_period"], kept["memory_limit"]) == resized

    # A second resize that names only the memory keeps the CPU limits (0 is "not specified").
    pods.rt.UpdateContainerResources(api_pb2.UpdateContainerResourcesRequest(
        container_id=container, linux=api_pb2.LinuxContainerResources(memory_limit_in_bytes=96 * MiB)))
    resized = (1536, 150000, 100000, 96 * MiB)
    assert cgroup_limits(directory_of) == resized
    assert limits(pods, container)[:4] == resized
    assert record_resources(pods, container)["memory_limit"] == 96 * MiB

    # The container runs on through a restart of hawserd, which reports what it has.
    assert pods.hawserd.stop() == 0
    assert cgroup_limits(directory_of) == resized
    pods.hawserd.start()
    status = pods.status(container).status
    assert status.state == api_pb2.CONTAINER_RUNNING
    assert limits(pods, container)[:4] == resized
    assert pods.exec(container, "true").exit_code == 0

    # An exited container's resources cannot change; they are still reported.
    pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=container, timeout=0))
    code, message = status_code(pods.rt.UpdateContainerResources, api_pb2.UpdateContainerResourcesRequest(
        container_id=container, linux=api_pb2.LinuxContainerResources(cpu_quota=20000)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION, message
    assert limits(pods, container)[:4] == resized


def test_a_resize_outlives_a_host_restart(pods: Pods) -> None:
    pod = pods.pod("reboot")
    container = pods.run(pod, pods.config("app", "sleep", "1000", linux__resources=api_pb2.LinuxContainerResources(
        cpu_period=100000, cpu_quota=50000, cpu_shares=256, memory_limit_in_bytes=48 * MiB)))
    pods.rt.UpdateContainerResources(api_pb2.UpdateContainerResourcesRequest(
        container_id=container, linux=api_pb2.LinuxContainerResources(
            cpu_period=100000, cpu_quota=200000, cpu_shares=2048, memory_limit_in_bytes=256 * MiB)))
    resized = (2048, 200000, 100000, 256 * MiB)
    assert limits(pods, container)[:4] == resized

    simulate_host_restart(pods, [container], [pod[1].linux.cgroup_parent])

    # Nothing of the container is left on the host but its record: the bundle
    # (its spec), runc's state and the cgroup are gone.
    assert not (pods.hawserd.state / "containers" / container).exists()
    assert not cgroup_dir("memory", container, pod[1]).exists()
    status = pods.status(container).status
    assert status.state in (api_pb2.CONTAINER_UNKNOWN, api_pb2.CONTAINER_EXITED)
    assert limits(pods, container)[:4] == resized
    kept = record_resources(pods, container)
    assert (kept["cpu_shares"], kept["cpu_quota"], kept["cpu_period"], kept["memory_limit"]) == resized
    listed = pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers
    assert [c.id for c in listed] == [container]
    # Its pod lost its namespaces: kubelet makes it anew; the old one goes cleanly.
    pod_state = pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod[0])).status.state
    assert pod_state == api_pb2.SANDBOX_NOTREADY
    code, _ = status_code(update_pod, pods, pod[0], resources=api_pb2.LinuxContainerResources(cpu_shares=1024))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    pods.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container))
    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod[0]))
    pods.pods.remove(pod[0])
    assert pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers == []


# --- UpdatePodSandboxResources -------------------------------------------------------------


def test_pod_resources_size_a_pod_cgroup_of_hawsers_own(pods: Pods) -> None:
    pod_id, config, cgroup = own_cgroup_pod(pods, "sized")
    assert cgroup.endswith(f"/pod-{pod_id[:12]}")
    container = pods.run((pod_id, config), pods.config("app", "sleep", "1000", linux__resources=(
        api_pb2.LinuxContainerResources(cpu_period=100000, cpu_quota=50000, cpu_shares=512,
                                        memory_limit_in_bytes=64 * MiB))))

    def pod_dir(controller: str) -> Path:
        return Path(CGROUP_ROOT, controller, cgroup.lstrip("/"))

    # The pod's cgroup is runc's parent of the container's, with no limit of its own yet.
    assert (pod_dir("cpu") / container).is_dir()
    assert int((pod_dir("cpu") / "cpu.cfs_quota_us").read_text()) == -1

    # kubelet sends the containers' sum and the RuntimeClass's overhead apart: the cgroup gets both.
    update_pod(pods, pod_id,
               resources=api_pb2.LinuxContainerResources(cpu_period=100000, cpu_quota=150000, cpu_shares=1536,
                                                         memory_limit_in_bytes=128 * MiB),
               overhead=api_pb2.LinuxContainerResources(cpu_period=100000, cpu_quota=10000, cpu_shares=102,
                                                        memory_limit_in_bytes=16 * MiB))
    assert cgroup_limits(pod_dir) == (1638, 160000, 100000, 144 * MiB)
    kept = pod_status_record(pods, pod_id)["resources"]
    assert kept["resources"] == {"cpu_shares": 1536, "cpu_quota": 150000, "cpu_period": 100000,
                                 "memory_limit": 128 * MiB}
    assert kept["overhead"] == {"cpu_shares": 102, "cpu_quota": 10000, "cpu_period": 100000,
                                "memory_limit": 16 * MiB}
    # The same request again changes nothing (kubelet retries).
    update_pod(pods, pod_id,
               resources=api_pb2.LinuxContainerResources(cpu_period=100000, cpu_quota=150000, cpu_shares=1536,
                                                         memory_limit_in_bytes=128 * MiB))
    assert cgroup_limits(pod_dir) == (1638, 160000, 100000, 144 * MiB)

    # Smaller: only the memory named, the overhead kept; an unlimited quota (a container without a CPU limit).
    update_pod(pods, pod_id, resources=api_pb2.LinuxContainerResources(cpu_quota=-1, memory_limit_in_bytes=96 * MiB))
    assert cgroup_limits(pod_dir) == (1638, -1, 100000, 112 * MiB)
    # The container's own limits are its own.
    assert cgroup_limits(lambda c: pod_dir(c) / container) == (512, 50000, 100000, 64 * MiB)
    assert pods.exec(container, "true").exit_code == 0

    # The kernel refuses a memory limit below what the pod uses: nothing changes.
    hog = pods.run((pod_id, config), pods.config(
        "hog", "sh", "-c", "dd if=/dev/zero of=/dev/shm/fill bs=1M count=24 2>/dev/null; sleep 1000"))
    deadline = time.monotonic() + 10
    while int((pod_dir("memory") / "memory.usage_in_bytes").read_text()) < 24 * MiB and time.monotonic() < deadline:
        time.sleep(0.05)
    code, message = status_code(update_pod, pods, pod_id, resources=api_pb2.LinuxContainerResources(
        cpu_shares=4096, memory_limit_in_bytes=8 * MiB))
    assert code == grpc.StatusCode.FAILED_PRECONDITION, message
    assert "memory.limit_in_bytes" in message
    assert cgroup_limits(pod_dir) == (1638, -1, 100000, 112 * MiB)
    assert pod_status_record(pods, pod_id)["resources"]["resources"]["memory_limit"] == 96 * MiB
    pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=hog, timeout=0))

    # The record outlives hawserd.
    assert pods.hawserd.stop() == 0
    pods.hawserd.start()
    assert pod_status_record(pods, pod_id)["resources"]["resources"]["memory_limit"] == 96 * MiB
    update_pod(pods, pod_id, resources=api_pb2.LinuxContainerResources(cpu_shares=1024))
    assert cgroup_limits(pod_dir) == (1126, -1, 100000, 112 * MiB)

    # Removing the pod removes its cgroup, as before.
    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    pods.pods.remove(pod_id)
    assert not [h for h in Path(CGROUP_ROOT).iterdir() if (h / cgroup.lstrip("/")).exists()]


def test_pod_resources_make_the_pod_cgroup_before_any_container(pods: Pods) -> None:
    pod_id, config, cgroup = own_cgroup_pod(pods, "early")
    assert not Path(CGROUP_ROOT, "memory", cgroup.lstrip("/")).exists()
    update_pod(pods, pod_id, resources=api_pb2.LinuxContainerResources(
        cpu_period=100000, cpu_quota=100000, cpu_shares=1024, memory_limit_in_bytes=64 * MiB, cpuset_cpus="0"))
    assert cgroup_limits(lambda c: Path(CGROUP_ROOT, c, cgroup.lstrip("/"))) == (1024, 100000, 100000, 64 * MiB)
    assert Path(CGROUP_ROOT, "cpuset", cgroup.lstrip("/"), "cpuset.cpus").read_text().strip() == "0"
    # runc puts the first container in the cgroup as it is.
    container = pods.run((pod_id, config), pods.config("app", "sleep", "1000"))
    assert (Path(CGROUP_ROOT, "memory", cgroup.lstrip("/"), container)).is_dir()
    assert pods.exec(container, "true").exit_code == 0
    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
    pods.pods.remove(pod_id)
    assert not [h for h in Path(CGROUP_ROOT).iterdir() if (h / cgroup.lstrip("/")).exists()]


def test_pod_resources_leave_kubelets_cgroup_alone(pods: Pods) -> None:
    pod = pods.pod("kubelets")
    container = pods.run(pod, pods.config("app", "sleep", "1000"))
    parent = Path(CGROUP_ROOT, "memory", pod[1].linux.cgroup_parent.lstrip("/"))
    before = (parent / "memory.limit_in_bytes").read_text()
    update_pod(pods, pod[0], resources=api_pb2.LinuxContainerResources(memory_limit_in_bytes=64 * MiB))
    assert (parent / "memory.limit_in_bytes").read_text() == before
    kept = pod_status_record(pods, pod[0])["resources"]
    assert kept["resources"] == {"memory_limit": 64 * MiB} and kept["applied"] is None
    assert pods.status(container).status.state == api_pb2.CONTAINER_RUNNING


def test_pod_resources_errors(pods: Pods) -> None:
    rt = pods.rt
    code, _ = status_code(rt.UpdatePodSandboxResources, api_pb2.UpdatePodSandboxResourcesRequest())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, message = status_code(rt.UpdatePodSandboxResources,
                                api_pb2.UpdatePodSandboxResourcesRequest(pod_sandbox_id="0" * 64))
    assert code == grpc.StatusCode.NOT_FOUND, message

    pod_id, _, cgroup = own_cgroup_pod(pods, "errors")
    for bad in (api_pb2.LinuxContainerResources(cpu_shares=1), api_pb2.LinuxContainerResources(cpu_quota=500),
                api_pb2.LinuxContainerResources(cpu_period=10),
                api_pb2.LinuxContainerResources(memory_limit_in_bytes=-5),
                api_pb2.LinuxContainerResources(cpuset_cpus="zero")):
        code, message = status_code(update_pod, pods, pod_id, resources=bad)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (bad, message)
        code, message = status_code(update_pod, pods, pod_id, overhead=bad)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "overhead" in message, (bad, message)
    # Nothing was written: no cgroup, no record.
    assert not Path(CGROUP_ROOT, "cpu", cgroup.lstrip("/")).exists()
    assert "resources" not in pod_status_record(pods, pod_id)

    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    code, message = status_code(update_pod, pods, pod_id, resources=api_pb2.LinuxContainerResources(cpu_shares=512))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not ready" in message, message
