"""Fakes of the CRI container handlers' inputs, shared by the unit tests and the
fuzz targets: a pod sandbox view and the host files the mapping reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hawser.errors import InvalidArgument, NotFound
from hawser.pods import SANDBOX_READY, Sandbox
from hawser.runtime import Device


@dataclass
class FakeFiles:
    """HostFiles over dicts: no host file is read."""

    files: dict[str, bytes] = field(default_factory=dict)
    existing: set[str] = field(default_factory=set)
    nodes: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # host path -> (type, major, minor)
    host: tuple[Device, ...] = ()
    shared: dict[str, str] = field(default_factory=dict)  # host path -> propagation of its mount

    def propagation(self, path: str) -> str:
        return self.shared.get(path, "private")

    def read(self, path: str) -> bytes:
        if path not in self.files:
            raise NotFound(f"file {path} not found")
        return self.files[path]

    def exists(self, path: str) -> bool:
        return path in self.existing

    def devices(self, host_path: str, container_path: str, permissions: str) -> tuple[Device, ...]:
        if host_path not in self.nodes:
            raise InvalidArgument(f"invalid device {host_path!r}: not a device node")
        kind, major, minor = self.nodes[host_path]
        return (Device(path=container_path, type=kind, major=major, minor=minor, file_mode=0o666, uid=0, gid=0,
                       permissions=permissions),)

    def host_devices(self) -> tuple[Device, ...]:
        return self.host


def make_sandbox(root: str = "/run/hawser/sandboxes/sb1", **changes: Any) -> Sandbox:
    fields: dict[str, Any] = dict(
        id="sb1" + "0" * 61, name="web", namespace="ns", uid="u1", attempt=0, state=SANDBOX_READY,
        created_at=1_700_000_000.5, labels={"app": "web"}, hostname="web-host",
        log_directory="/var/log/pods/ns_web_u1", cgroup_parent="/kubepods/pod-u1",
        netns=f"{root}/ns/net", ipc=f"{root}/ns/ipc", uts=f"{root}/ns/uts", pid=None,
        resolv_conf=f"{root}/resolv.conf", hostname_file=f"{root}/hostname", shm=f"{root}/shm")
    fields.update(changes)
    return Sandbox(**fields)
