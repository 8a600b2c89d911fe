"""``hawser system check`` and the snapshots a killed pull leaves (issue 12):
the extract-* snapshots its unpack pipeline prepared and the layers it
committed, which only its lease held.  Once the pull is dead, garbage
collection removes them; the check must report them, and ``--repair`` remove
them as GC would, but never those of a pull still at work."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest

from hawser._failpoints import ENV as FAILPOINTS
from hawser._failpoints import LOG_ENV as FAILPOINTS_LOG
from hawser.registry import RegistryClient
from hawser.snapshots import Kind
from tests.integration.conftest import Env, problems, system_check
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.layers import LayerBuilder
from tests.support.registry_fixtures import Registry

pytestmark = pytest.mark.integration

UNREFERENCED = "snapshot-unreferenced"


def unreferenced(findings: list[dict[str, Any]]) -> set[str]:
    return {f["subject"] for f in findings if f["kind"] == UNREFERENCED}


def snapshots(env: Env) -> dict[str, Kind]:
    store = env.store()
    try:
        return {info.key: info.kind for info in store.snapshotter.walk()}
    finally:
        store.close()


def killed_pull(env: Env, ref: str, log: Path, *, when: str) -> None:
    """``hawser pull ref``, SIGKILLed (by its failpoint) as it is about to commit a layer."""
    before = log.read_text().count("\n") if log.exists() else 0
    proc = env.cli("pull", "--plain-http", "-q", ref, check=False,
                   env={FAILPOINTS: f"unpack.before-commit={when}", FAILPOINTS_LOG: str(log)})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert log.read_text().count("unpack.before-commit kill") == before + 1


def test_killed_pulls_leave_snapshots_the_check_reports_and_repair_removes(
        env: Env, busybox: tuple[str, BuiltImage], tmp_path: Path) -> None:
    ref, _ = busybox
    log = tmp_path / "failpoints.log"
    # Each dies at its second layer's commit: a committed first layer, and extract-* snapshots.
    killed_pull(env, ref, log, when="kill@2")
    killed_pull(env, ref, log, when="kill@2")
    left = snapshots(env)
    assert any(key.startswith("extract-") and kind is Kind.ACTIVE for key, kind in left.items()), left
    assert any(kind is Kind.COMMITTED for kind in left.values()), left

    # No image names any of them and their pulls are dead: every one is reported, with its size.
    code, findings = system_check(env)
    assert code == 1 and unreferenced(findings) == set(left), findings
    assert all("bytes" in f["detail"] for f in findings if f["kind"] == UNREFERENCED)
    assert snapshots(env) == left  # a check alone changes nothing

    code, findings = system_check(env, "--repair")
    assert code == 0 and unreferenced(findings) == set(left), findings
    assert all(f["repaired"] and f["error"] is None for f in findings if f["severity"] == "problem"), findings
    assert snapshots(env) == {}
    code, findings = system_check(env)
    assert code == 0 and problems(findings) == [], findings

    # Garbage collection finds no snapshot (nor a leftover directory) the check left behind.
    pruned = env.cli("system", "prune").stdout.splitlines()
    assert not [line for line in pruned if line.startswith(("removed snapshot", "removed leftover"))], pruned
    # And the store still works: the pull completes, and the store is clean.
    env.cli("pull", "--plain-http", "-q", ref)
    code, findings = system_check(env)
    assert code == 0 and problems(findings) == [], findings


def _wait_for(log: Path, text: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not (log.exists() and text in log.read_text()):
        assert time.monotonic() < deadline, f"no {text!r} in {log}"
        time.sleep(0.05)


def test_a_pull_still_at_work_keeps_its_snapshots(
        overlay_env: Env, busybox: tuple[str, BuiltImage], registry: Registry, push_client: RegistryClient,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = overlay_env
    ref, _ = busybox
    other = build_image([LayerBuilder().add_file(f"layer-{i}.txt", f"layer {i}\n".encode() * 1000).build()
                         for i in range(3)])
    other_ref = f"{registry.host}/test/check-extract:1"
    push_image(push_client, other_ref, other, tag="1")
    log = tmp_path / "failpoints.log"
    killed_pull(env, ref, log, when="kill")
    dead = set(snapshots(env))
    assert dead and all(key.startswith("extract-") for key in dead), dead

    # Another image's pull, paused as it is about to commit its first layer: its
    # lease lives (its owner runs), and it holds its extract-* snapshots.
    with monkeypatch.context() as m:
        m.setenv(FAILPOINTS, "unpack.before-commit=sleep:300")
        m.setenv(FAILPOINTS_LOG, str(log))
        live = env.popen("pull", "--plain-http", "-q", other_ref)
    try:
        _wait_for(log, "unpack.before-commit sleep:300")
        held = set(snapshots(env)) - dead
        assert held and all(key.startswith("extract-") for key in held), held

        code, findings = system_check(env)
        assert code == 1 and unreferenced(findings) == dead, findings
        code, findings = system_check(env, "--repair")
        assert code == 0 and unreferenced(findings) == dead, findings
        assert set(snapshots(env)) == held
        code, findings = system_check(env)
        assert code == 0 and problems(findings) == [], findings
    finally:
        live.kill()
        live.communicate(timeout=60)

    # Dead now: what it held is garbage like the rest.
    code, findings = system_check(env)
    assert code == 1 and unreferenced(findings) == held, findings
    code, findings = system_check(env, "--repair")
    assert code == 0 and snapshots(env) == {}
    code, findings = system_check(env)
    assert code == 0 and problems(findings) == [], findings
