"""Pods with a user namespace of their own (Kubernetes' UserNamespacesSupport,
hostUsers: false) over hawserd's CRI socket: the uid and gid maps kubelet
sends, processes running as the mapped host ids, the image's rootfs and the
volumes made idmapped mounts (not chowned copies), ProcMountType Unmasked,
and the requests that cannot be honoured."""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2

from hawser.registry import RegistryClient
from tests.e2e.helpers import pull_request, status_code
from tests.support.cri_pods import Pods
from tests.support.hawserd import Hawserd, running_hawserd
from tests.support.images import build_image, push_image
from tests.support.layers import LayerBuilder
from tests.support.registry_fixtures import Registry

HOST_BASE = 1 << 20  # 1048576: far above any id this machine uses, as kubelet picks 65536-aligned ranges
SIZE = 65536


@pytest.fixture
def hawserd() -> Iterator[Hawserd]:
    """hawserd with its state where others may search, as /run/hawser is
    (pytest's temp dirs are 0700): a container's root reaches its rootfs
    from inside its user namespace."""
    base = Path(tempfile.mkdtemp(prefix="hawser-userns-"))
    base.chmod(0o711)
    try:
        with running_hawserd(base) as daemon:
            yield daemon
    finally:
        shutil.rmtree(base, ignore_errors=True)


def userns(mode: int = api_pb2.POD, base: int = HOST_BASE, size: int = SIZE) -> api_pb2.NamespaceOption:
    mapping = [api_pb2.IDMapping(host_id=base, container_id=0, length=size)] if mode == api_pb2.POD else []
    return api_pb2.NamespaceOption(userns_options=api_pb2.UserNamespace(mode=mode, uids=mapping, gids=mapping))


def with_userns(config: api_pb2.ContainerConfig, options: api_pb2.NamespaceOption | None = None,
                ) -> api_pb2.ContainerConfig:
    config.linux.security_context.namespace_options.CopyFrom(options or userns())
    return config


def volume(host: Path, path: str, readonly: bool = False) -> api_pb2.Mount:
    return api_pb2.Mount(host_path=str(host), container_path=path, readonly=readonly)


def out(pods: Pods, container_id: str, *cmd: str) -> str:
    reply = pods.exec(container_id, *cmd)
    assert reply.exit_code == 0, (cmd, reply.stdout, reply.stderr)
    return bytes(reply.stdout).decode()


def host_ids(pid: int) -> tuple[int, int]:
    text = Path(f"/proc/{pid}/status").read_text()
    uid = re.search(r"^Uid:\s+(\d+)", text, re.M)
    gid = re.search(r"^Gid:\s+(\d+)", text, re.M)
    assert uid and gid
    return int(uid.group(1)), int(gid.group(1))


def container_pid(pods: Pods, container_id: str) -> int:
    import json

    info = json.loads(pods.status(container_id, verbose=True).info["info"])
    return int(info["pid"])


def test_status_reports_user_namespaces(pods: Pods) -> None:
    status = pods.rt.Status(api_pb2.StatusRequest())
    handlers = {h.name: h.features for h in status.runtime_handlers}
    assert handlers[""].user_namespaces and handlers["runc"].user_namespaces


def test_a_pod_runs_as_its_mapped_ids_on_idmapped_rootfs_and_volumes(pods: Pods, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o1777)
    (data / "by-root").write_text("root's\n")
    (data / "by-app").write_text("app's\n")
    os.chown(data / "by-app", 1000, 1000)
    pod = pods.pod("userns", namespace_options=userns())
    sleeper = pods.run(pod, with_userns(pods.config("main", "sleep", "1000", mounts=[volume(data, "/data")])))

    # The process: root inside, the mapped host ids outside, with the map kubelet sent.
    pid = container_pid(pods, sleeper)
    assert host_ids(pid) == (HOST_BASE, HOST_BASE)
    assert Path(f"/proc/{pid}/uid_map").read_text().split() == ["0", str(HOST_BASE), str(SIZE)]
    assert Path(f"/proc/{pid}/gid_map").read_text().split() == ["0", str(HOST_BASE), str(SIZE)]
    assert out(pods, sleeper, "id", "-u").strip() == "0"

    # The image's files keep their owners as the container sees them (not the overflow id 65534) ...
    assert out(pods, sleeper, "stat", "-c", "%u:%g", "/bin/busybox", "/etc/passwd").split() == ["0:0", "0:0"]
    # ... and root can write anywhere in its rootfs, as without a user namespace.
    out(pods, sleeper, "sh", "-c", "echo x > /made-by-root && mkdir /etc/more && touch /etc/more/f")

    # The volume: an idmapped mount, its files' owners as on disk.
    assert out(pods, sleeper, "stat", "-c", "%u", "/data/by-root", "/data/by-app").split() == ["0", "1000"]
    mountinfo = out(pods, sleeper, "cat", "/proc/self/mountinfo")
    data_line = next(line for line in mountinfo.splitlines() if line.split()[4] == "/data")
    assert "idmapped" in data_line.split()[5], data_line
    # What the container writes there is stored under the ids the map gives, not chowned after.
    out(pods, sleeper, "sh", "-c", "echo new > /data/new-by-root && chown 1000:1000 /data/by-root")
    out(pods, sleeper, "su", "app", "-s", "/bin/sh", "-c", "echo app > /data/new-by-app")
    assert (os.stat(data / "new-by-root").st_uid, os.stat(data / "new-by-root").st_gid) == (0, 0)
    assert os.stat(data / "new-by-app").st_uid == 1000
    assert os.stat(data / "by-root").st_uid == 1000
    # A host file the map does not cover stays out of reach of the container's root.
    (data / "foreign").write_text("nobody's\n")
    os.chown(data / "foreign", SIZE + 5, SIZE + 5)
    os.chmod(data / "foreign", 0o600)
    assert out(pods, sleeper, "stat", "-c", "%u", "/data/foreign").strip() == "65534"
    assert pods.exec(sleeper, "cat", "/data/foreign").exit_code != 0

    # The layers on disk were not chowned: the image's files are still root's on the host.
    snapshots = Path(pods.hawserd.root) / "snapshots"
    busyboxes = [p for p in snapshots.rglob("bin/busybox") if p.is_file()]
    assert busyboxes and all(p.stat().st_uid == 0 for p in busyboxes)

    # The pod's files (hostname, resolv.conf, /dev/shm) are idmapped too: the container's root owns its shm.
    assert out(pods, sleeper, "stat", "-c", "%u", "/etc/hostname", "/etc/resolv.conf").split() == ["0", "0"]
    out(pods, sleeper, "sh", "-c", "echo s > /dev/shm/segment")


def test_a_user_namespaced_pod_owns_its_namespaces(pods: Pods) -> None:
    """sysfs, mqueue and /proc mount because the pod's network, IPC and pid
    namespaces belong to its user namespace; the pod shares one pid namespace."""
    pod = pods.pod("userns-shared", namespace_options=api_pb2.NamespaceOption(
        pid=api_pb2.POD, userns_options=userns().userns_options))
    first = pods.run(pod, with_userns(pods.config("first", "sleep", "1000"),
                                      api_pb2.NamespaceOption(pid=api_pb2.POD,
                                                              userns_options=userns().userns_options)))
    second = pods.run(pod, with_userns(pods.config("second", "sleep", "2000"),
                                       api_pb2.NamespaceOption(pid=api_pb2.POD,
                                                               userns_options=userns().userns_options)))
    procs = out(pods, second, "ps", "-o", "pid,user,args")
    assert "sleep 1000" in procs and "sleep 2000" in procs
    assert out(pods, first, "hostname").strip() == "userns-shared-host"
    mounts = {line.split()[4]: line.split()[8] for line in out(pods, first, "cat", "/proc/self/mountinfo").splitlines()}
    assert mounts["/sys"] == "sysfs" and mounts["/proc"] == "proc" and mounts["/dev/mqueue"] == "mqueue"
    for cid in (first, second):
        assert host_ids(container_pid(pods, cid)) == (HOST_BASE, HOST_BASE)


def test_proc_mount_unmasked_and_default(pods: Pods) -> None:
    """kubelet sends the default masked and read-only paths for procMount
    Default and none for Unmasked, which needs hostUsers: false."""
    pod = pods.pod("procmount", namespace_options=userns())
    unmasked = pods.run(pod, with_userns(pods.config("unmasked", "sleep", "1000")))
    default = with_userns(pods.config("default", "sleep", "1000"))
    default.linux.security_context.masked_paths.extend(["/proc/kcore", "/proc/timer_list"])
    default.linux.security_context.readonly_paths.extend(["/proc/sys"])
    masked = pods.run(pod, default)

    def mounted(cid: str) -> set[str]:
        return {line.split()[4] for line in out(pods, cid, "cat", "/proc/self/mountinfo").splitlines()}

    # (runc masks a file by binding /dev/null on it: a mount point; this kernel has no /proc/kcore.)
    assert "/proc/timer_list" not in mounted(unmasked) and "/proc/sys" not in mounted(unmasked)
    assert {"/proc/timer_list", "/proc/sys"} <= mounted(masked)
    # Without a user namespace, no lists still means the runtime's defaults.
    plain_pod = pods.pod("procmount-host-users")
    plain = pods.run(plain_pod, pods.config("plain", "sleep", "1000"))
    assert {"/proc/timer_list", "/proc/sys"} <= mounted(plain)


def test_requests_that_cannot_be_honoured(pods: Pods) -> None:
    def run_pod(options: api_pb2.NamespaceOption) -> tuple[grpc.StatusCode, str]:
        return status_code(pods.pod, "bad", namespace_options=options)

    overlapping = api_pb2.NamespaceOption(userns_options=api_pb2.UserNamespace(
        mode=api_pb2.POD, uids=[api_pb2.IDMapping(host_id=HOST_BASE, container_id=0, length=SIZE),
                                api_pb2.IDMapping(host_id=HOST_BASE + 10, container_id=SIZE, length=10)],
        gids=[api_pb2.IDMapping(host_id=HOST_BASE, container_id=0, length=SIZE)]))
    code, message = run_pod(overlapping)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "overlap on the host side" in message
    no_gids = api_pb2.NamespaceOption(userns_options=api_pb2.UserNamespace(
        mode=api_pb2.POD, uids=[api_pb2.IDMapping(host_id=HOST_BASE, container_id=0, length=SIZE)]))
    assert run_pod(no_gids)[0] == grpc.StatusCode.INVALID_ARGUMENT
    code, message = run_pod(api_pb2.NamespaceOption(network=api_pb2.NODE,
                                                    userns_options=userns().userns_options))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "host's network" in message
    code, _ = run_pod(userns(mode=api_pb2.CONTAINER))
    assert code == grpc.StatusCode.UNIMPLEMENTED
    assert not pods.rt.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items  # nothing half-made

    pod = pods.pod("userns-ok", namespace_options=userns())
    code, message = status_code(pods.create, pod, with_userns(pods.config("c", "true"), userns(api_pb2.NODE)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "mode NODE" in message
    other = userns(base=HOST_BASE + SIZE)
    code, message = status_code(pods.create, pod, with_userns(pods.config("c", "true"), other))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "differ from the pod's" in message
    bidirectional = pods.config("c", "true", mounts=[api_pb2.Mount(
        host_path="/tmp", container_path="/t", propagation=api_pb2.PROPAGATION_BIDIRECTIONAL)])
    code, message = status_code(pods.create, pod, with_userns(bidirectional))
    assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION), message


def test_removal_leaves_no_mounts_or_pins(pods: Pods, tmp_path: Path) -> None:
    data = tmp_path / "vol"
    data.mkdir()
    (data / "keep").write_text("kept\n")
    pod = pods.pod("userns-gone", namespace_options=userns())
    cid = pods.run(pod, with_userns(pods.config("c", "sleep", "1000", mounts=[volume(data, "/vol")])))
    assert out(pods, cid, "cat", "/vol/keep") == "kept\n"
    # system check knows the idmapped copies and the user namespace pin: nothing to report.
    check = pods.hawserd.cli("system", "check", "--format", "json", check=False)
    problems = [f for f in json.loads(check.stdout) if f["severity"] == "problem"]
    assert check.returncode == 0 and not problems, problems
    state = str(pods.hawserd.state)
    pods.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod[0]))
    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod[0]))
    pods.pods.remove(pod[0])
    mounts = Path("/proc/self/mountinfo").read_text()
    assert f"{state}/idmap/" not in mounts and f"{state}/sandboxes/{pod[0]}" not in mounts
    assert not any(Path(state, "idmap").iterdir()) if Path(state, "idmap").exists() else True
    # The volume's data is untouched by the removal of its idmapped copy.
    assert (data / "keep").read_text() == "kept\n"


def test_a_user_namespaced_pod_survives_a_hawserd_restart(pods: Pods) -> None:
    pod = pods.pod("userns-restart", namespace_options=userns())
    cid = pods.run(pod, with_userns(pods.config("c", "sleep", "1000")))
    pods.hawserd.stop()
    pods.hawserd.start()
    status = pods.rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod[0])).status
    assert status.state == api_pb2.SANDBOX_READY
    assert out(pods, cid, "id", "-u").strip() == "0"
    again = pods.run(pod, with_userns(pods.config("after", "sleep", "1000")))
    assert host_ids(container_pid(pods, again)) == (HOST_BASE, HOST_BASE)


@pytest.mark.parametrize("size", [0])
def test_a_zero_length_map_is_refused(pods: Pods, size: int) -> None:
    code, _ = status_code(pods.pod, "zero", namespace_options=userns(size=size))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


def test_an_image_volume_in_a_user_namespaced_pod(pods: Pods, registry: Registry, push_client: RegistryClient,
                                                  ) -> None:
    """An image volume's layers are idmapped as the rootfs' are (its view is an
    overlay, which cannot be idmapped once mounted): its files are root's
    inside, and it stays read-only."""
    first = LayerBuilder().add_dir("data").add_file("data/hello.txt", b"hello\n").build()
    second = LayerBuilder().add_dir("data").add_file("data/second.txt", b"second\n").build()
    ref = f"{registry.host}/e2e/userns-volume:v1"
    push_image(push_client, ref, build_image([first, second]), tag="v1")
    pods.hawserd.client().images.PullImage(pull_request(ref))
    mount = api_pb2.Mount(container_path="/vol", image=api_pb2.ImageSpec(image=ref), readonly=True)
    pod = pods.pod("userns-volume", namespace_options=userns())
    cid = pods.run(pod, with_userns(pods.config("c", "sleep", "1000", mounts=[mount])))
    assert out(pods, cid, "cat", "/vol/data/hello.txt", "/vol/data/second.txt") == "hello\nsecond\n"
    assert out(pods, cid, "stat", "-c", "%u:%g", "/vol/data/hello.txt", "/vol/data").split() == ["0:0", "0:0"]
    touched = pods.exec(cid, "touch", "/vol/data/new")
    assert touched.exit_code != 0 and b"Read-only file system" in touched.stderr
    pods.rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod[0]))
    pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod[0]))
    pods.pods.remove(pod[0])
    assert f"{pods.hawserd.state}/" not in Path("/proc/self/mountinfo").read_text()


def test_a_retried_run_pod_sandbox_returns_the_same_pod(pods: Pods) -> None:
    """kubelet retries RunPodSandbox after a timeout: the same request gets the
    pod the first one made, its user namespace made once."""
    pod_id, config = pods.pod("userns-retry", namespace_options=userns())
    again = pods.rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id
    assert again == pod_id
    pins = Path(pods.hawserd.state, "sandboxes", pod_id, "ns")
    assert sorted(p.name for p in pins.iterdir()) == ["ipc", "net", "pid", "user", "uts"]
    # Another map for the same pod's name is another pod: refused while this one lives.
    other = api_pb2.PodSandboxConfig()
    other.CopyFrom(config)
    other.linux.security_context.namespace_options.CopyFrom(userns(base=HOST_BASE + SIZE))
    code, _ = status_code(pods.rt.RunPodSandbox, api_pb2.RunPodSandboxRequest(config=other))
    assert code == grpc.StatusCode.ALREADY_EXISTS
