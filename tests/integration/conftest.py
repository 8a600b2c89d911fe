"""Fixtures of the integration tier: a fresh hawser root per test (unmounted and
removed afterwards).  The real docker-registry with the test images pushed to it
(``registry``, ``push_client``, ``busybox``) is tests/support/registry_fixtures.py,
shared with the e2e tier through tests/conftest.py."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hawser.config import Config, GCConfig, RuntimeConfig
from hawser.store import Store
from tests.support.aio import conmons_of
from tests.support.host import cgroups_under, remove_cgroup_parent, remove_store_cgroups, unmount_under
from tests.support.images import BuiltImage
from tests.support.podman import Podman

pytestmark = pytest.mark.integration

HAWSER = [sys.executable, "-m", "hawser.cli._run"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
    if os.geteuid() != 0:
        skip = pytest.mark.skip(reason="integration tests need root")
        for item in items:
            if "tests/integration" in str(item.fspath):
                item.add_marker(skip)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


# Tests prune right after a crash: nothing is young enough to need the grace period.
TEST_CONFIG = "[gc]\ngrace_period = 0\n"


@dataclass
class Env:
    root: str
    state: str
    snapshotter: str
    # Containers' cgroups go under a parent of the test's own, checked for leftovers.
    cgroup_parent: str = "/hawser-test"

    def __post_init__(self) -> None:
        os.makedirs(self.root, exist_ok=True)
        self.config_file = os.path.join(os.path.dirname(self.root), "config.toml")
        with open(self.config_file, "w", encoding="utf-8") as f:
            # No network unless a test asks (test_cli_network.py gives its stores a subnet and bridge of
            # their own): stores sharing the default bridge and subnet would hand out the same addresses.
            f.write(TEST_CONFIG + f'[runtime]\ncgroup_parent = "{self.cgroup_parent}"\ndefault_network = "none"\n')

    def config(self) -> Config:
        return Config(root=self.root, state=self.state, snapshotter=self.snapshotter, gc=GCConfig(grace_period=0),
                      runtime=RuntimeConfig(cgroup_parent=self.cgroup_parent))

    def _argv(self, args: tuple[str, ...]) -> list[str]:
        return [*HAWSER, "--config", self.config_file, "--root", self.root, "--state", self.state,
                "--snapshotter", self.snapshotter, *args]

    def store(self) -> Store:
        return Store.open(self.config())

    def cli(self, *args: str, check: bool = True, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        cmd = self._argv(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=None if env is None else {**os.environ, **env})
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def popen(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        cmd = self._argv(args)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=None if env is None else {**os.environ, **env})


@contextlib.contextmanager
def container_env(tmp_path: Path, ref: str, cgroup_prefix: str) -> Iterator[Env]:
    """A fresh overlayfs store under ``tmp_path`` with ``ref`` pulled, its containers
    under a cgroup parent of its own; at the end every container is removed, the
    store's networks' bridges and iptables rules too, and no conmon or cgroup
    may be left (mounts under ``tmp_path`` are undone)."""
    env = Env(root=str(tmp_path / "root"), state=str(tmp_path / "state"), snapshotter="overlayfs",
              cgroup_parent=f"{cgroup_prefix}-{secrets.token_hex(4)}")
    env.cli("pull", "--plain-http", "-q", ref)
    try:
        yield env
    finally:
        for id_ in env.cli("ps", "-a", "-q", "--no-trunc", check=False).stdout.split():
            env.cli("rm", "-f", id_, check=False)
        if os.path.isdir(os.path.join(env.root, "networks")):  # a test's `--network bridge`: the store's
            from hawser.network import UserNetworks, delete_bridge, remove_rules  # bridge and rules outlive it

            for network in UserNetworks(env.root).all_networks():
                remove_rules(network)
                delete_bridge(network.bridge)
        leftovers = {"conmon": conmons_of(env.state), "cgroups": cgroups_under(env.cgroup_parent)}
        for pid in leftovers["conmon"]:
            os.kill(pid, signal.SIGKILL)
        unmount_under(str(tmp_path))
        remove_cgroup_parent(env.cgroup_parent)
        assert leftovers == {"conmon": [], "cgroups": []}, leftovers


@pytest.fixture(scope="session", autouse=True)
def _test_cgroup_parent_goes_at_the_end() -> Iterator[None]:
    """runc makes Env's cgroup parent for the first container and leaves it; it goes
    once every test is done (rmdir: only when empty, so a leaked cgroup stays to see)."""
    yield
    parent = Env.cgroup_parent.lstrip("/")
    for directory in [*glob.glob(f"/sys/fs/cgroup/*/{parent}"), f"/sys/fs/cgroup/{parent}"]:
        with contextlib.suppress(OSError):
            os.rmdir(directory)


@pytest.fixture(params=["overlayfs", "native"])
def env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    root = tmp_path / "root"
    state = tmp_path / "state"
    yield Env(root=str(root), state=str(state), snapshotter=request.param)
    unmount_under(str(tmp_path))
    remove_store_cgroups(str(root))


@pytest.fixture
def ctr(tmp_path: Path, busybox: tuple[str, BuiltImage]) -> Iterator[tuple[Env, str]]:
    """An overlayfs store with the session's busybox image pulled, and its
    reference; every container removed at the end, nothing left (``container_env``)."""
    ref, _ = busybox
    with container_env(tmp_path, ref, "/hawser-test") as env:
        yield env, ref


@pytest.fixture
def overlay_env(tmp_path: Path) -> Iterator[Env]:
    yield Env(root=str(tmp_path / "root"), state=str(tmp_path / "state"), snapshotter="overlayfs")
    unmount_under(str(tmp_path))
    remove_store_cgroups(str(tmp_path / "root"))


def system_check(env: Env, *args: str) -> tuple[int, list[dict[str, Any]]]:
    """``hawser system check --format json [args]``: its exit code and findings."""
    proc = env.cli("system", "check", "--format", "json", *args, check=False, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def problems(findings: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (kind, subject) of each problem finding, sorted."""
    return sorted((f["kind"], f["subject"]) for f in findings if f["severity"] == "problem")


@pytest.fixture
def podman() -> Iterator[Podman]:
    """podman with a private store (tests/support/podman.py); its containers removed, the store with it."""
    p = Podman()
    try:
        yield p
    finally:
        p("rm", "-a", "-f", "-t", "0", check=False)
        p.close()
