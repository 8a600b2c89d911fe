"""Fakes for the CRI container handlers' unit tests: a pod sandbox view, the
host files the mapping reads, a small image rootfs, the OCI schema check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from hawser.pods import Sandbox
from hawser.runtime import HostLimits
from tests.support.cri_fakes import FakeFiles, make_sandbox

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "data" / "runtime-spec"


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
