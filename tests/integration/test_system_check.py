"""``hawser system check [--repair]`` on a real store: real overlayfs, runc,
conmon, cgroups, pinned namespaces and a local registry.

Every test runs in a cgroup parent of its own (the check looks at everything
under it) and checks at teardown that nothing is left: no conmon of its state
dir, no mount under its tmp dir, no cgroup under its cgroup parent.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.images import ImageService
from tests.integration.conftest import Env, container_env, problems, system_check
from tests.support.aio import conmons_of
from tests.support.host import cgroups_under, mounts_under, remove_cgroup_parent, unmount_under
from tests.support.images import BuiltImage

pytestmark = pytest.mark.integration

@pytest.fixture
def node(tmp_path: Path, busybox: tuple[str, BuiltImage]) -> Iterator[tuple[Env, str]]:
    ref, _ = busybox
    with container_env(tmp_path, ref, "/hawser-test-check") as env:
        yield env, ref


def assert_clean(env: Env) -> None:
    code, findings = system_check(env)
    assert code == 0 and problems(findings) == [], findings


def _layers(env: Env, ref: str) -> list[str]:
    detail = json.loads(env.cli("image", "inspect", ref).stdout)[0]
    return [layer["digest"] for layer in detail["Layers"]]  # the manifest's (RootFS.Layers: docker's diff ids)


def _blob_path(env: Env, digest: str) -> str:
    algorithm, hex_ = digest.split(":", 1)
    return os.path.join(env.root, "content", "blobs", algorithm, hex_)


def test_a_store_after_pull_and_run_is_clean(node: tuple[Env, str]) -> None:
    env, ref = node
    assert env.cli("run", "--rm", ref, "echo", "hi").stdout == "hi\n"
    running = env.cli("run", "-d", ref, "sleep", "1000").stdout.strip()
    stopped = env.cli("run", "-d", ref, "true").stdout.strip()
    env.cli("wait", stopped)
    code, findings = system_check(env)
    assert code == 0 and problems(findings) == [], findings
    # `run --rm` leaves conmon's attach directory behind: info, not a problem.
    assert {f["kind"] for f in findings} <= {"attach-dir-orphan"}
    table = env.cli("system", "check").stdout
    assert table.splitlines()[-1].startswith("no problems found")
    code, findings = system_check(env, "--repair")
    assert code == 0 and all(f["repaired"] for f in findings)
    assert json.loads(env.cli("inspect", running).stdout)[0]["State"]["Status"] == "running"
    assert_clean(env)


def test_a_corrupt_layer_is_removed_and_fetched_again(node: tuple[Env, str]) -> None:
    env, ref = node
    layer = _layers(env, ref)[-1]
    path = _blob_path(env, layer)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    code, findings = system_check(env)
    assert code == 1 and problems(findings) == [("blob-corrupt", layer)]
    assert ref in findings[0]["detail"]

    code, findings = system_check(env, "--repair")
    corrupt = [f for f in findings if f["kind"] == "blob-corrupt"]
    assert corrupt[0]["repaired"] and not os.path.exists(path)
    # The image needs a pull now, and says so; its unpacked layers were kept, so it still runs.
    assert code == 1 and problems(findings) == sorted([("blob-corrupt", layer), ("image-incomplete", ref)])
    assert env.cli("run", "--rm", ref, "echo", "still runs").stdout == "still runs\n"

    env.cli("pull", "--plain-http", "-q", ref)
    assert os.path.exists(path)
    assert_clean(env)


def test_a_snapshot_directory_deleted_behind_hawsers_back(node: tuple[Env, str]) -> None:
    env, ref = node
    store = env.store()
    try:
        detail = ImageService(store).inspect(ref)
        bottom = str(detail.chain_ids[0])
        directory = store.snapshotter.directory(bottom)  # type: ignore[attr-defined]
    finally:
        store.close()
    shutil.rmtree(directory)
    code, findings = system_check(env)
    assert code == 1 and problems(findings) == [("snapshot-dir-missing", bottom)]

    code, findings = system_check(env, "--repair")
    assert next(f for f in findings if f["kind"] == "snapshot-dir-missing")["repaired"]
    assert next(f for f in findings if f["kind"] == "snapshot-ref-missing")["repaired"]
    assert code == 1 and [f["kind"] for f in findings if not f["repaired"]] == ["image-incomplete"]
    proc = env.cli("run", "--rm", ref, "true", check=False)
    assert proc.returncode != 0 and "pull it again" in proc.stderr

    env.cli("pull", "--plain-http", "-q", ref)  # unpacks again
    assert_clean(env)
    assert env.cli("run", "--rm", ref, "echo", "back").stdout == "back\n"


def test_a_leftover_bundle_with_an_overlay_mounted_in_it(node: tuple[Env, str], tmp_path: Path) -> None:
    env, _ = node
    id_ = secrets.token_hex(32)
    bundle = os.path.join(env.state, "containers", id_)
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs)
    layers = tmp_path / "layers"
    for name in ("lower", "upper", "work"):
        (layers / name).mkdir(parents=True)
    (layers / "lower" / "file").write_text("lower")
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                    f"lowerdir={layers / 'lower'},upperdir={layers / 'upper'},workdir={layers / 'work'}", rootfs],
                   check=True)
    try:
        code, findings = system_check(env)
        assert code == 1 and problems(findings) == sorted([("bundle-orphan", bundle), ("mount-orphan", rootfs)])
        code, findings = system_check(env, "--repair")
        assert code == 0 and all(f["repaired"] for f in findings), findings
        assert mounts_under(env.state) == [] and not os.path.exists(bundle)
        assert (layers / "lower" / "file").read_text() == "lower"  # unmounted, never deleted through
        assert_clean(env)
    finally:
        subprocess.run(["umount", "-l", rootfs], check=False, capture_output=True)


def test_a_blob_file_without_record(node: tuple[Env, str]) -> None:
    env, _ = node
    import hashlib

    data = b"bytes no pull recorded " + secrets.token_bytes(8)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = _blob_path(env, digest)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, 0o444)
    code, findings = system_check(env)
    assert code == 1 and problems(findings) == [("blob-orphan", digest)]
    code, findings = system_check(env, "--repair")
    assert code == 0 and findings[0]["repaired"] and not os.path.exists(path)
    assert_clean(env)


def test_a_container_whose_record_is_gone_is_cleaned_off_the_host(node: tuple[Env, str]) -> None:
    env, ref = node
    id_ = env.cli("run", "-d", ref, "sleep", "1000").stdout.strip()
    assert len(conmons_of(env.state)) == 1
    # Forget the record behind hawser's back: runc, conmon, the mount, the bundle, the cgroup stay.
    import sqlite3

    db = sqlite3.connect(os.path.join(env.root, "metadata.db"))
    with db:
        db.execute("DELETE FROM containers WHERE id = ?", (id_,))
    db.close()
    code, findings = system_check(env)
    kinds = {f["kind"] for f in findings if f["severity"] == "problem"}
    assert code == 1 and {"runc-orphan", "conmon-orphan", "mount-orphan", "bundle-orphan",
                          "cgroup-orphan"} <= kinds, findings
    code, findings = system_check(env, "--repair")
    assert code == 0 and all(f["repaired"] for f in findings), findings
    assert conmons_of(env.state) == [] and mounts_under(env.state) == []
    assert cgroups_under(env.cgroup_parent) == []
    assert not os.path.exists(os.path.join(env.state, "runc", id_))
    assert_clean(env)


def test_pinned_namespaces_without_a_pod_record(node: tuple[Env, str]) -> None:
    from hawser.host import namespace_kind, pin_namespaces, remove_pin_dir

    env, _ = node
    pod = os.path.join(env.state, "sandboxes", secrets.token_hex(32))
    pins = pin_namespaces(os.path.join(pod, "ns"), ["net", "ipc", "uts"], hostname="leftover")
    try:
        code, findings = system_check(env)
        assert code == 1 and problems(findings) == sorted([("netns-orphan", os.path.join(pod, "ns")),
                                                           ("pod-dir-orphan", pod)])
        code, findings = system_check(env, "--repair")
        assert code == 0 and all(f["repaired"] for f in findings), findings
        assert all(namespace_kind(path) is None for path in pins.values())
        assert not os.path.exists(pod) and mounts_under(env.state) == []
    finally:
        if os.path.exists(os.path.join(pod, "ns")):
            remove_pin_dir(os.path.join(pod, "ns"))


def test_a_pod_whose_namespaces_are_gone_is_not_a_problem(node: tuple[Env, str]) -> None:
    from hawser.metadata import SandboxRecord

    env, _ = node
    id_ = secrets.token_hex(32)
    store = env.store()
    try:
        store.metadata.sandboxes.create(SandboxRecord(
            namespace="default", id=id_, name="web_default_uid_0", config={}, labels={}, state="ready",
            status={"net": os.path.join(env.state, "sandboxes", id_, "ns", "net")}, created_at=time.time()))
    finally:
        store.close()
    code, findings = system_check(env)
    assert code == 0 and [(f["kind"], f["severity"]) for f in findings] == [("sandbox-not-ready", "info")]


def test_hawser_run_killed_mid_way_is_fine_once_checked(node: tuple[Env, str]) -> None:
    env, ref = node
    for delay in (0.05, 0.15, 0.3, 0.6):
        proc = env.popen("run", "-d", ref, "sleep", "1000")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    env.cli("ps", "-a")
    before = {info["Id"]: info["State"]["Status"]
              for info in json.loads(env.cli("ps", "-a", "--format", "json").stdout)}
    code, findings = system_check(env)
    if code == 1:
        # Anything reported is something --repair can finish off (an interrupted create).
        code, findings = system_check(env, "--repair")
        assert code == 0, findings
    code, findings = system_check(env)
    assert code == 0 and problems(findings) == [], findings
    after = {info["Id"]: info["State"]["Status"]
             for info in json.loads(env.cli("ps", "-a", "--format", "json").stdout)}
    # No container that got far enough to run lost anything.
    assert {i for i, s in before.items() if s == "running"} <= {i for i, s in after.items() if s == "running"}


def test_a_repair_beside_a_pull_takes_nothing_the_pull_holds(node: tuple[Env, str]) -> None:
    env, ref = node
    env.cli("rmi", ref)
    env.cli("system", "prune")
    for _ in range(3):
        pull = env.popen("pull", "--plain-http", "-q", ref)
        runs = 0
        while pull.poll() is None or runs == 0:
            _, findings = system_check(env, "--repair")
            runs += 1
            # Whatever a check sees mid-pull, it must not be something it would take from the pull.
            assert not [f for f in findings if f["repaired"] and f["severity"] == "problem"], findings
        _, err = pull.communicate()
        assert pull.returncode == 0, err
        assert_clean(env)
        assert env.cli("run", "--rm", ref, "echo", "ok").stdout == "ok\n"
        env.cli("rmi", ref)
        env.cli("system", "prune")


def test_two_stores_on_one_host_each_check_only_their_own(tmp_path: Path, busybox: tuple[str, BuiltImage]) -> None:
    """Two stores with the default cgroup parent, each with a running container:
    each store's parent is its own (``/hawser/<store id>``), and a check, even a
    repair, of one reports and touches nothing of the other."""
    ref, _ = busybox
    envs = [Env(root=str(tmp_path / name / "root"), state=str(tmp_path / name / "state"), snapshotter="overlayfs",
                cgroup_parent="") for name in ("one", "two")]
    running: list[str] = []
    parents: list[str] = []
    try:
        for env in envs:
            env.cli("pull", "--plain-http", "-q", ref)
            running.append(env.cli("run", "-d", ref, "sleep", "1000").stdout.strip())
            with open(os.path.join(env.root, "store-id"), encoding="ascii") as f:
                parents.append(f"/hawser/{f.read().strip()[:12]}")
        assert parents[0] != parents[1]
        for parent, id_ in zip(parents, running, strict=True):
            # The container's cgroup is under its own store's parent.
            assert any(os.path.basename(c) == id_ for c in cgroups_under(parent)), cgroups_under(parent)
        for mine, other in ((0, 1), (1, 0)):
            for args in ((), ("--repair",)):
                code, findings = system_check(envs[mine], *args)
                assert code == 0 and problems(findings) == [], findings
                seen = json.dumps(findings)
                assert running[other] not in seen and parents[other] not in seen, findings
        for env, id_ in zip(envs, running, strict=True):
            assert json.loads(env.cli("inspect", id_).stdout)[0]["State"]["Status"] == "running"
    finally:
        for env in envs:
            for id_ in env.cli("ps", "-a", "-q", "--no-trunc", check=False).stdout.split():
                env.cli("rm", "-f", id_, check=False)
            for pid in conmons_of(env.state):
                os.kill(pid, signal.SIGKILL)
        unmount_under(str(tmp_path))
        for parent in parents:
            remove_cgroup_parent(parent)
        assert [cgroups_under(p) for p in parents] == [[] for _ in parents]
