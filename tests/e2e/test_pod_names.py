"""RunPodSandbox's names and paths through CRI (issue 12): a pod's name stays
reserved while its record lives, the metadata must make valid container names,
and a log directory that cannot be one is refused with its path."""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cri_api.v1 import api_pb2

from tests.e2e.helpers import pull_request, status_code
from tests.support.cni import CniEnv
from tests.support.hawserd import Cri, Hawserd
from tests.support.host import cgroups_under, mounts_under, remove_cgroup_parent
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry


@pytest.fixture(autouse=True)
def _store_cgroups_removed(hawserd: Hawserd) -> Iterator[None]:
    """The store's own cgroup parent (its pods' cgroups go below it) goes after each test."""
    yield
    remove_cgroup_parent(store_cgroup_parent(hawserd))


def store_cgroup_parent(hawserd: Hawserd) -> str:
    # hawserd runs with no runtime.cgroup_parent: the store's own, /hawser/<store id[:12]>.
    return f"/hawser/{(hawserd.root / 'store-id').read_text().strip()[:12]}"


def pod_config(name: str, logs: Path, *, namespace: str = "names", uid: str | None = None,
               attempt: int = 0) -> api_pb2.PodSandboxConfig:
    # No cgroup parent: the pod's cgroup is hawser's own, and goes with the pod.
    uid = uid or secrets.token_hex(8)
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, namespace=namespace, uid=uid, attempt=attempt),
        log_directory=str(logs / f"{namespace}_{name}_{uid}"), labels={"test": "names"})


def run_pod(cri: Cri, config: api_pb2.PodSandboxConfig) -> str:
    return str(cri.runtime.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id)


def run_container(cri: Cri, pod_id: str, image: str, name: str, *argv: str) -> str:
    config = api_pb2.ContainerConfig(metadata=api_pb2.ContainerMetadata(name=name),
                                     image=api_pb2.ImageSpec(image=image), command=list(argv),
                                     log_path=f"{name}/0.log")
    container_id = str(cri.runtime.CreateContainer(
        api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=config)).container_id)
    cri.runtime.StartContainer(api_pb2.StartContainerRequest(container_id=container_id))
    return container_id


def wait_exit(cri: Cri, container_id: str, timeout: float = 20.0) -> api_pb2.ContainerStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = cri.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=container_id)).status
        if status.state == api_pb2.CONTAINER_EXITED or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def pull(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage]) -> str:
    ref, _ = busybox
    hawserd.plain_http(registry.host)
    hawserd.client().images.PullImage(pull_request(ref))
    return ref


def remove_all_and_assert_clean(hawserd: Hawserd, pod_network: CniEnv) -> None:
    """Remove every pod through CRI, then nothing of them may be left: no
    record, container, network, mount, state directory, cgroup, or problem
    that ``hawser system check`` finds."""
    cri = hawserd.client()
    for pod in cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items:
        cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id))
        cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id))
    assert cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []
    assert cri.runtime.ListContainers(api_pb2.ListContainersRequest()).containers == []
    pod_network.assert_clean(pins=False)
    assert mounts_under(str(hawserd.state)) == []
    sandboxes = hawserd.state / "sandboxes"  # made by the first pod
    assert not sandboxes.exists() or os.listdir(sandboxes) == []
    assert cgroups_under(store_cgroup_parent(hawserd)) == []
    check = hawserd.cli("system", "check", "--format", "json", check=False)
    findings: list[dict[str, Any]] = json.loads(check.stdout)
    assert check.returncode == 0 and [f for f in findings if f["severity"] == "problem"] == [], findings


def test_a_pod_whose_setup_completed_keeps_its_name(hawserd: Hawserd, pod_network: CniEnv, registry: Registry,
                                                    busybox: tuple[str, BuiltImage], tmp_path: Path) -> None:
    image = pull(hawserd, registry, busybox)
    cri = hawserd.client()
    logs = tmp_path / "logs"

    # A stopped pod: its name stays reserved, and the pod and its exited container stay as they were.
    config = pod_config("stopped", logs)
    pod_id = run_pod(cri, config)
    container_id = run_container(cri, pod_id, image, "bye", "sh", "-c", "echo bye; exit 3")
    assert wait_exit(cri, container_id).exit_code == 3
    cri.runtime.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id))
    code, message = status_code(cri.runtime.RunPodSandbox, api_pb2.RunPodSandboxRequest(config=config))
    key = f"stopped_names_{config.metadata.uid}_0"
    assert code == grpc.StatusCode.ALREADY_EXISTS, (code, message)
    assert f'pod sandbox name "{key}" is reserved for {pod_id}' in message, message
    assert [p.id for p in cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items] == [pod_id]
    pod = cri.runtime.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
    assert pod.state == api_pb2.SANDBOX_NOTREADY
    exited = cri.runtime.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=container_id)).status
    assert (exited.state, exited.exit_code) == (api_pb2.CONTAINER_EXITED, 3)
    # kubelet's way on: the next attempt.
    config.metadata.attempt = 1
    next_id = run_pod(cri, config)
    assert next_id != pod_id

    # A ready pod: the same request again is a retry and gets the same pod; another config is refused.
    assert run_pod(cri, config) == next_id
    other = api_pb2.PodSandboxConfig()
    other.CopyFrom(config)
    other.log_directory = str(logs / "elsewhere")
    code, message = status_code(cri.runtime.RunPodSandbox, api_pb2.RunPodSandboxRequest(config=other))
    assert code == grpc.StatusCode.ALREADY_EXISTS and f"reserved for {next_id}" in message, (code, message)
    ready = cri.runtime.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=next_id)).status
    assert ready.state == api_pb2.SANDBOX_READY and ready.metadata.attempt == 1

    remove_all_and_assert_clean(hawserd, pod_network)


def test_pod_metadata_must_make_valid_container_names(hawserd: Hawserd, pod_network: CniEnv, registry: Registry,
                                                      busybox: tuple[str, BuiltImage], tmp_path: Path) -> None:
    image = pull(hawserd, registry, busybox)
    cri = hawserd.client()
    logs = tmp_path / "logs"
    for field, config in [
        ("name", pod_config("a/../../b", logs)),
        ("name", pod_config("caf\u00e9", logs)),
        ("name", pod_config("web\n", logs)),
        ("name", pod_config("x" * 500, logs)),
        ("namespace", pod_config("web", logs, namespace="na\u00efve")),
        ("namespace", pod_config("web", logs, namespace="a b")),
        ("uid", pod_config("web", logs, uid="\u00fc-1")),
        ("uid", pod_config("web", logs, uid="../1")),
    ]:
        code, message = status_code(cri.runtime.RunPodSandbox, api_pb2.RunPodSandboxRequest(config=config))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and f"metadata.{field}" in message, (field, code, message)
    assert cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []

    # What Kubernetes names hold is taken, and containers are made in it.
    pod_id = run_pod(cri, pod_config("web-1.example", logs, namespace="kube-system",
                                     uid="0b5a2c4e-7f1d-4c3e-9a8b-1d2e3f4a5b6c"))
    container_id = run_container(cri, pod_id, image, "main", "true")
    assert wait_exit(cri, container_id).exit_code == 0

    remove_all_and_assert_clean(hawserd, pod_network)


def test_a_log_directory_that_is_no_directory_is_refused(hawserd: Hawserd, pod_network: CniEnv,
                                                         tmp_path: Path) -> None:
    cri = hawserd.client()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")
    for log_directory in (a_file, a_file / "under"):
        config = pod_config("logs", tmp_path)
        config.log_directory = str(log_directory)
        code, message = status_code(cri.runtime.RunPodSandbox, api_pb2.RunPodSandboxRequest(config=config))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and str(log_directory) in message, (code, message)
    assert a_file.read_text() == "not a directory\n"
    assert cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items == []

    remove_all_and_assert_clean(hawserd, pod_network)
