"""Runc.delete_stopped against the real runc: it does what ``runc delete``
does for a container whose init has exited, and leaves alone (for runc) every
container it cannot be sure of: one still running, one with hooks, one
sharing the host's pid namespace.  Each test's containers, cgroups and state
directories are removed afterwards."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hawser.runtime._runc import Runc

pytestmark = pytest.mark.integration

BUSYBOX = Path("/bin/busybox")


class Bundles:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.root = tmp_path / "runc"
        self.runc = Runc(str(self.root))
        self.parent = f"hawser-test-delete-{secrets.token_hex(3)}"
        self.ids: list[str] = []

    def run(self, args: list[str], edit: Callable[[dict[str, Any]], None] | None = None) -> str:
        """A container of busybox running ``args``, created and started by runc; its id."""
        id_ = f"d{len(self.ids)}-{secrets.token_hex(3)}"
        bundle = self.tmp / id_
        (bundle / "rootfs" / "bin").mkdir(parents=True)
        (bundle / "rootfs" / "bin" / "busybox").write_bytes(BUSYBOX.read_bytes())
        (bundle / "rootfs" / "bin" / "busybox").chmod(0o755)
        subprocess.run(["runc", "spec", "--bundle", str(bundle)], check=True)
        spec = json.loads((bundle / "config.json").read_text())
        spec["process"].update(args=["/bin/busybox", *args], terminal=False)
        spec["linux"]["cgroupsPath"] = f"/{self.parent}/{id_}"
        if edit is not None:
            edit(spec)
        (bundle / "config.json").write_text(json.dumps(spec))
        self.ids.append(id_)
        for cmd in (["create", "--bundle", str(bundle), id_], ["start", id_]):
            # The container's stdio: not pipes, which its init would hold open past runc's exit.
            subprocess.run(self.runc.argv(*cmd), check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        return id_

    def cgroups(self, id_: str) -> list[str]:
        return [str(p) for p in Path("/sys/fs/cgroup").glob(f"*/{self.parent}/{id_}")]

    def wait_stopped(self, id_: str) -> None:
        deadline = time.monotonic() + 10
        while (state := self.runc.state(id_)) is not None and state.status != "stopped":
            assert time.monotonic() < deadline, f"{id_} still {state.status}"
            time.sleep(0.02)

    def clean(self) -> None:
        for id_ in self.ids:
            subprocess.run(self.runc.argv("delete", "--force", id_), capture_output=True)
        for parent in Path("/sys/fs/cgroup").glob(f"*/{self.parent}"):
            for child in parent.iterdir():
                if child.is_dir():
                    child.rmdir()
            parent.rmdir()


@pytest.fixture
def bundles(tmp_path: Path) -> Iterator[Bundles]:
    if not BUSYBOX.is_file():
        pytest.fail("/bin/busybox is missing (busybox-static: run scripts/setup.sh)")
    made = Bundles(tmp_path)
    try:
        yield made
    finally:
        made.clean()


def test_an_exited_container_is_deleted_as_runc_deletes_it(bundles: Bundles) -> None:
    id_ = bundles.run(["true"])
    bundles.wait_stopped(id_)
    assert bundles.cgroups(id_)

    assert bundles.runc.delete_stopped(id_)
    assert not (bundles.root / id_).exists()
    assert bundles.cgroups(id_) == []
    gone = subprocess.run(bundles.runc.argv("state", id_), capture_output=True, text=True)
    assert gone.returncode != 0 and "does not exist" in gone.stderr
    assert not bundles.runc.delete_stopped(id_)  # nothing left: runc's delete says so, idempotently
    bundles.runc.delete(id_)


def test_what_runc_must_delete_is_left_to_it(bundles: Bundles, tmp_path: Path) -> None:
    running = bundles.run(["sleep", "30"])
    assert not bundles.runc.delete_stopped(running)
    assert (bundles.root / running / "state.json").exists() and bundles.cgroups(running)

    # A poststop hook is runc's to run, at delete.
    mark = tmp_path / "poststop-ran"

    def hook(spec: dict[str, Any]) -> None:
        spec["hooks"] = {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", f"touch {mark}"]}]}

    hooked = bundles.run(["true"], hook)
    bundles.wait_stopped(hooked)
    assert not bundles.runc.delete_stopped(hooked)
    bundles.runc.delete(hooked)
    assert mark.exists()

    # In the host's pid namespace, processes it started may outlive its init.
    def host_pids(spec: dict[str, Any]) -> None:
        spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "pid"]

    shared = bundles.run(["true"], host_pids)
    bundles.wait_stopped(shared)
    assert not bundles.runc.delete_stopped(shared)
    bundles.runc.delete(shared)
    assert bundles.cgroups(shared) == []

    subprocess.run(bundles.runc.argv("kill", running, "KILL"), check=True)
    bundles.wait_stopped(running)
    assert bundles.runc.delete_stopped(running)
    assert bundles.cgroups(running) == [] and not os.path.exists(bundles.root / running)
