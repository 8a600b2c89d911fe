"""Fixtures of the fault battery: stores copied from pulled templates (one pull
per session, not per case), a CLI runner that arms failpoints, and the checks
every case ends with.

Two images: ``busybox`` (the integration tier's) for containers, and a
second one, ``victim``, that shares no blob and no layer snapshot with it (a
layer of its own at the bottom, zstd instead of gzip): pulling it goes
through every step of a pull even in a store holding busybox.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.conftest import TEST_CONFIG, Env
from tests.support.aio import conmons_of
from tests.support.failpoints import Faults, failpoint_env, fired
from tests.support.failpoints.check import (
    container_ids,
    leaks,
    remove_cgroups,
    store_findings,
    system_check,
)
from tests.support.host import unmount_under
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.layers import LayerBuilder, busybox_layers
from tests.support.registry_fixtures import Registry

pytestmark = pytest.mark.integration


@dataclass
class Images:
    busybox: str
    victim: str


@pytest.fixture(scope="session")
def images(registry: Registry, push_client: object, busybox: tuple[str, BuiltImage]) -> Images:
    marker = LayerBuilder().add_dir("etc").add_file("etc/victim", b"pulled by the fault battery\n").build()
    victim = build_image([marker, *busybox_layers()], compression="zstd")
    ref = f"{registry.host}/test/victim:latest"
    push_image(push_client, ref, victim, tag="latest")
    return Images(busybox=busybox[0], victim=ref)


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory, images: Images) -> dict[str, Path]:
    """Roots to copy: "busybox" (busybox pulled), "both" (busybox and victim)."""
    base = tmp_path_factory.mktemp("fault-templates")
    out = {}
    one = Env(root=str(base / "busybox" / "root"), state=str(base / "busybox" / "state"), snapshotter="overlayfs")
    one.cli("pull", "--plain-http", "-q", images.busybox)
    out["busybox"] = Path(one.root)
    (base / "both").mkdir()
    _copy_tree(Path(one.root), base / "both" / "root")
    both = Env(root=str(base / "both" / "root"), state=str(base / "both" / "state"), snapshotter="overlayfs")
    both.cli("pull", "--plain-http", "-q", images.victim)
    out["both"] = Path(both.root)
    return out


def _copy_tree(src: Path, dst: Path) -> None:
    # cp -a keeps what overlay layers hold: whiteout devices, xattrs, owners, hardlinks.
    subprocess.run(["cp", "-a", str(src), str(dst)], check=True)


@dataclass
class FaultEnv(Env):
    """A test's own store, state and cgroup parent, with failpoint helpers."""

    base: str = ""
    runc: str = ""
    faults: Faults | None = None
    images: Images | None = None
    log: str = field(init=False, default="")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.log = os.path.join(self.base, "failpoints.log")
        with open(self.config_file, "w", encoding="utf-8") as f:
            f.write(TEST_CONFIG + f'[runtime]\ncgroup_parent = "{self.cgroup_parent}"\ndefault_network = "none"\n'
                    + (f'runc = "{self.runc}"\n' if self.runc else ""))

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The CLI, with the wrappers' control dir in its environment."""
        extra = dict(self.faults.env()) if self.faults else {}
        extra.update(env or {})
        return self.cli(*args, check=check, env=extra, timeout=timeout)

    def crash(self, point: str, *args: str, action: str = "kill") -> subprocess.CompletedProcess[str]:
        """Run the command with ``point`` (``name[@N]``) armed; check that it died
        (kill) or failed (raise) there and nowhere else: a failure is exit 1 (125 for run and create) and a
        line naming the point (GC carries on past an item it fails to remove, and
        says so)."""
        name, _, hit = point.partition("@")
        spec = f"{name}={action}" + (f"@{hit}" if hit else "")
        if os.path.exists(self.log):
            os.unlink(self.log)
        proc = self.run(*args, check=False, env=failpoint_env(spec, self.log))
        assert fired(self.log) == [(name, action)], (fired(self.log), proc.stdout, proc.stderr)
        if action == "kill":
            assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr)
        else:
            # docker's codes: run and create fail with 125 (an error of the runtime's own), the rest with 1
            assert proc.returncode == (125 if args[0] in ("run", "create") else 1), (proc.returncode, proc.stderr)
            assert f"injected failure at failpoint {name}" in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr and proc.stderr.count("\n") <= 2, proc.stderr
        return proc

    # --- containers -----------------------------------------------------------

    def ids(self) -> list[str]:
        return self.run("ps", "-a", "-q", "--no-trunc").stdout.split()

    def state_of(self, id_: str) -> str:
        return str(json.loads(self.run("inspect", id_).stdout)[0]["State"]["Status"])

    def bystander(self) -> str:
        """A running container made before the fault: it must survive it."""
        assert self.images is not None
        return self.run("run", "-d", "--name", "bystander", self.images.busybox, "sleep", "1000").stdout.strip()

    # --- checks ---------------------------------------------------------------

    def leaks(self, keep: tuple[str, ...] = ()) -> dict[str, list[str]]:
        return leaks(base=self.base, root=self.root, state=self.state, cgroup_parent=self.cgroup_parent, keep=keep)

    def assert_not_corrupt(self) -> None:
        found = store_findings(self.root, self.snapshotter)
        assert found.corrupt == [], found.corrupt

    def settle(self, keep: tuple[str, ...] = ()) -> None:
        """The end of every case: the kept containers still run and go with
        ``rm -f``; then nothing is left: GC collects every crash leftover, the
        store checks clean, the host holds nothing of the test's."""
        for id_ in keep:
            assert self.state_of(id_) == "running", id_
        assert set(keep) <= set(self.ids())
        for id_ in self.ids():
            self.run("rm", "-f", id_)
        self.run("system", "prune")
        found = store_findings(self.root, self.snapshotter)
        assert (found.corrupt, found.garbage) == ([], []), found
        checked = system_check(self._argv(()))
        if checked is not None:
            assert checked.returncode == 0, checked.stdout + checked.stderr
        left = self.leaks()
        assert not any(left.values()), left


def _clean_up(env: FaultEnv) -> None:
    """Whatever a failed case left: its containers, processes, mounts, cgroups."""
    for id_ in container_ids(env.root):
        env.cli("rm", "-f", id_, check=False)
    for pid in conmons_of(env.state):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    unmount_under(env.base)
    remove_cgroups(env.cgroup_parent)


def _make(tmp_path: Path, template: Path | None, images: Images, snapshotter: str = "overlayfs",
          **kwargs: object) -> FaultEnv:
    root = tmp_path / "root"
    if template is not None:
        _copy_tree(template, root)
    return FaultEnv(root=str(root), state=str(tmp_path / "state"), snapshotter=snapshotter,
                    cgroup_parent=f"/hawser-faults-{secrets.token_hex(4)}", base=str(tmp_path), images=images,
                    **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def busy_env(tmp_path: Path, templates: dict[str, Path], images: Images) -> Iterator[FaultEnv]:
    """A store holding busybox."""
    env = _make(tmp_path, templates["busybox"], images)
    try:
        yield env
    finally:
        _clean_up(env)


@pytest.fixture
def both_env(tmp_path: Path, templates: dict[str, Path], images: Images) -> Iterator[FaultEnv]:
    """A store holding busybox and victim."""
    env = _make(tmp_path, templates["both"], images)
    try:
        yield env
    finally:
        _clean_up(env)


@pytest.fixture
def native_env(tmp_path: Path, images: Images) -> Iterator[FaultEnv]:
    """An empty store with the native snapshotter (layers unpack in order, each onto a copy of its parent)."""
    env = _make(tmp_path, None, images, snapshotter="native")
    try:
        yield env
    finally:
        _clean_up(env)


@pytest.fixture
def runc_env(tmp_path: Path, templates: dict[str, Path], images: Images) -> Iterator[FaultEnv]:
    """A store holding busybox, whose runc is the failing wrapper."""
    from tests.support.failpoints import RUNC

    env = _make(tmp_path, templates["busybox"], images, runc=str(RUNC), faults=Faults(tmp_path / "faults"))
    try:
        yield env
    finally:
        if env.faults is not None:
            env.faults.heal()
        _clean_up(env)
