"""Pods and containers of one e2e test, driven over hawserd's CRI socket as
kubelet drives them: the ``Pods`` helper and its ``pods`` fixture (a running
hawserd with CNI and the session's busybox image pulled)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from tests.support.cni import CniEnv
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage
from tests.support.protos import set_fields
from tests.support.registry_fixtures import Registry

CGROUP_PARENT = f"/hawser-e2e-ctr-{secrets.token_hex(3)}"
CGROUP_ROOT = "/sys/fs/cgroup"


@dataclass
class Pods:
    """Pods and containers of one test, over hawserd's CRI socket."""

    hawserd: Hawserd
    image: str
    image_id: str
    logs: Path
    pods: list[str] = field(default_factory=list)
    _client: Any = None

    @property
    def rt(self) -> Any:
        if self._client is None or self._client not in self.hawserd.clients:
            self._client = self.hawserd.client()
        return self._client.runtime

    def pod(self, name: str = "pod", **security: Any) -> tuple[str, api_pb2.PodSandboxConfig]:
        uid = secrets.token_hex(8)
        config = api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=name, namespace="e2e", uid=uid, attempt=0),
            hostname=f"{name}-host", log_directory=str(self.logs / f"e2e_{name}_{uid}"),
            labels={"pod": name}, linux=api_pb2.LinuxPodSandboxConfig(cgroup_parent=f"{CGROUP_PARENT}/{uid}"))
        for key, value in security.items():
            if hasattr(value, "CopyFrom"):
                getattr(config.linux.security_context, key).CopyFrom(value)
            else:
                setattr(config.linux.security_context, key, value)
        pod_id = str(self.rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=config)).pod_sandbox_id)
        self.pods.append(pod_id)
        return pod_id, config

    def config(self, name: str, *args: str, attempt: int = 0, **fields: Any) -> api_pb2.ContainerConfig:
        config = api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name=name, attempt=attempt), image=api_pb2.ImageSpec(image=self.image),
            command=list(args[:1]), args=list(args[1:]), log_path=f"{name}/{attempt}.log",
            labels={"container": name}, annotations={"note": f"about {name}"})
        set_fields(config, **fields)
        return config

    def create(self, pod: tuple[str, api_pb2.PodSandboxConfig], config: api_pb2.ContainerConfig) -> str:
        request = api_pb2.CreateContainerRequest(pod_sandbox_id=pod[0], config=config, sandbox_config=pod[1])
        return str(self.rt.CreateContainer(request).container_id)

    def run(self, pod: tuple[str, api_pb2.PodSandboxConfig], config: api_pb2.ContainerConfig) -> str:
        container_id = self.create(pod, config)
        self.rt.StartContainer(api_pb2.StartContainerRequest(container_id=container_id))
        return container_id

    def status(self, container_id: str, verbose: bool = False) -> api_pb2.ContainerStatusResponse:
        return self.rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=container_id, verbose=verbose))

    def wait_exit(self, container_id: str, timeout: float = 20.0) -> api_pb2.ContainerStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(container_id).status
            if status.state == api_pb2.CONTAINER_EXITED or time.monotonic() > deadline:
                return status
            time.sleep(0.05)

    def exec(self, container_id: str, *cmd: str, timeout: int = 10) -> api_pb2.ExecSyncResponse:
        return self.rt.ExecSync(api_pb2.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout))

    def log_lines(self, path: str) -> list[str]:
        """The messages of a CRI-format log file, partial lines joined."""
        out: list[str] = []
        partial = ""
        for line in Path(path).read_text().splitlines():
            when, stream, tag, *message = line.split(" ", 3)
            assert stream in ("stdout", "stderr") and tag in ("F", "P"), line
            assert when[:4].isdigit() and "T" in when, line
            partial += message[0] if message else ""
            if tag == "F":
                out.append(partial)
                partial = ""
        return out


@pytest.fixture
def pods(hawserd: Hawserd, pod_network: CniEnv, registry: Registry, busybox: tuple[str, BuiltImage],
         tmp_path: Path) -> Iterator[Pods]:
    ref, _ = busybox
    hawserd.plain_http(registry.host)
    image_id = hawserd.client().images.PullImage(
        api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref))).image_ref
    env = Pods(hawserd=hawserd, image=ref, image_id=image_id, logs=tmp_path / "pod-logs")
    try:
        yield env
    finally:
        if hawserd.running:
            rt = hawserd.client().runtime
            for pod_id in env.pods:
                rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
            left = rt.ListContainers(api_pb2.ListContainersRequest()).containers
            assert not left, f"containers left behind: {[c.id for c in left]}"
        _remove_cgroups(CGROUP_PARENT)


def _remove_cgroups(parent: str) -> None:
    for hierarchy in Path(CGROUP_ROOT).iterdir():
        top = hierarchy / parent.lstrip("/")
        if top.is_dir():
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                directory.rmdir()
            top.rmdir()


def cgroup_dir(controller: str, container_id: str, pod_config: api_pb2.PodSandboxConfig) -> Path:
    return Path(CGROUP_ROOT, controller, pod_config.linux.cgroup_parent.lstrip("/"), container_id)
