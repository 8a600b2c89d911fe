"""Fakes for the CRI container handlers' unit tests: a pod sandbox view, the
host files the mapping reads, a small image rootfs, the OCI schema check."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from hawser.cri._sandbox_types import SANDBOX_READY, Sandbox
from hawser.errors import InvalidArgument, NotFound
from hawser.runtime._options import Device, HostLimits

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "data" / "runtime-spec"


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


@pytest.fixture
def sandbox() -> Sandbox:
    return make_sandbox()


@pytest.fixture
def files() -> FakeFiles:
    return FakeFiles(existing={"/srv/data", "/srv/config.yaml", "/var/lib/kubelet/pods/x/etc-hosts"},
                     nodes={"/dev/fuse": ("c", 10, 229), "/dev/sda": ("b", 8, 0)})


@pytest.fixture
def host() -> HostLimits:
    return HostLimits(rlimits={"RLIMIT_NOFILE": (1024, 20000)}, min_oom_score_adj=-998, cap_last_cap=40,
                      machine="x86_64")


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nwheel:x:10:app\napp:x:1000:\n")
    (root / "bin").mkdir()
    return root


@pytest.fixture(scope="session")
def validate_spec() -> Callable[[dict[str, Any]], None]:
    """The vendored OCI runtime-spec schema, with no network."""
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        resources.append((path.name, Resource.from_contents(json.loads(path.read_text()),
                                                            default_specification=DRAFT4)))
    registry: Registry[Any] = Registry().with_resources(resources)
    validator = jsonschema.Draft4Validator(json.loads((SCHEMA_DIR / "config-schema.json").read_text()),
                                           registry=registry)

    def check(spec: dict[str, Any]) -> None:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(spec)]
        assert not errors, "spec does not match the OCI schema:\n" + "\n".join(errors)

    return check
