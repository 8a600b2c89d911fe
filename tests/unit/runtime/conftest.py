"""Fixtures for the spec-generation unit tests: a fake image rootfs, fixed host
limits, and a validator for the vendored OCI runtime-spec JSON schema."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4

from hawser.runtime._options import HostLimits

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "data" / "runtime-spec"

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin
# a comment, then a malformed line that must be skipped
broken:x:notanumber
app:x:1000:1000:App User:/home/app:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
"""

GROUP = """\
root:x:0:
wheel:x:10:root,app
audio:x:29:app
app:x:1000:
staff:x:50:daemon
nogroup:x:65534:
"""


@pytest.fixture(scope="session")
def validate_spec() -> Callable[[dict[str, Any]], None]:
    """Validate a spec against config-schema.json, resolving $refs from the
    vendored files only (the registry has no retriever: no network)."""
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        contents = json.loads(path.read_text(encoding="utf-8"))
        resources.append((path.name, Resource.from_contents(contents, default_specification=DRAFT4)))
    registry: Registry[Any] = Registry().with_resources(resources)
    schema = json.loads((SCHEMA_DIR / "config-schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft4Validator.check_schema(schema)
    validator = jsonschema.Draft4Validator(schema, registry=registry)

    def check(spec: dict[str, Any]) -> None:
        errors = sorted(validator.iter_errors(spec), key=lambda e: list(e.absolute_path))
        if errors:
            lines = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]
            raise AssertionError("spec does not match the OCI schema:\n" + "\n".join(lines))

    return check


@pytest.fixture
def host() -> HostLimits:
    """A host like the test machines: hard NOFILE 20000, no CAP_SYS_RESOURCE."""
    return HostLimits(rlimits={"RLIMIT_NOFILE": (1024, 20000)}, min_oom_score_adj=0, cap_last_cap=40,
                      machine="x86_64")


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    """A small image root: user database, a busybox-like /bin, an app dir."""
    root = tmp_path / "rootfs"
    write(root / "etc" / "passwd", PASSWD)
    write(root / "etc" / "group", GROUP)
    write(root / "bin" / "busybox", "#!binary\n", 0o755)
    (root / "bin" / "sh").symlink_to("/bin/busybox")  # absolute: must resolve inside the root
    (root / "bin" / "ls").symlink_to("busybox")
    write(root / "usr" / "local" / "bin" / "app", "#!binary\n", 0o755)
    write(root / "usr" / "local" / "bin" / "data.txt", "not a program\n", 0o644)
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "home" / "app").mkdir(parents=True)
    return root
