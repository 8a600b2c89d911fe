"""A full disk, on a small tmpfs the test mounts: a layer that does not fit when
unpacked, a container that fills its writable layer, and run/create while
nothing is left.  Each fails with one "no space left on device" line (or, for
the container's own writes, is the container's business), leaves no partial
data, record, bundle, mount or snapshot behind, and works again once there is
room.  (Running out of space while downloading: test_pull_errors.py.)

Two layouts: root and state on one small tmpfs ("shared"), and root on a small
tmpfs with state elsewhere ("split", as /var/lib beside a /run tmpfs).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.images import ImageService
from hawser.registry import RegistryClient
from hawser.snapshots import Kind
from tests.integration.conftest import Env, one_line
from tests.support.host import unmount_under
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.layers import LayerBuilder, busybox_layers
from tests.support.registry_fixtures import Registry

pytestmark = pytest.mark.integration

MiB = 1 << 20
# What a full tmpfs may still report free: a few pages it keeps back from
# writes through overlayfs.
FULL = 128 * 1024


def free_bytes(path: str | Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "hawser-test-disk-full", str(path)], check=True)
    try:
        yield path
    finally:
        unmount_under(str(path))
        subprocess.run(["umount", str(path)], check=True)


def fill(directory: Path, *, leave: int = 0) -> Path:
    """A file that takes every block left under ``directory`` but ``leave`` bytes."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as f:
        for block in (64 * 1024, 4096):
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\1" * block)
        if leave:
            f.truncate(f.tell() - leave)
    assert free_bytes(directory) == leave
    return filler


def state_on(env: Env, disk: Path) -> bool:
    return Path(env.state).parent == disk


def check_no_leftovers(env: Env) -> None:
    """No container record, bundle, log dir, mount, or snapshot that is not an image layer."""
    assert env.cli("ps", "-a", "-q").stdout.strip() == ""
    for directory in (os.path.join(env.state, "containers"), os.path.join(env.root, "containers")):
        assert not os.path.isdir(directory) or os.listdir(directory) == [], directory
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        assert [line for line in f if env.root in line or env.state in line] == []
    store = env.store()
    try:
        snapshots = list(store.snapshotter.walk())
        assert [s.key for s in snapshots if s.kind is not Kind.COMMITTED] == []
        assert len(os.listdir(os.path.join(store.snapshotter.root, "snapshots"))) == len(snapshots)
        assert store.metadata.leases.list(namespace=store.namespace) == []
    finally:
        store.close()


@pytest.fixture(params=["shared", "split"])
def small_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Env]:
    """hawser on a 24 MiB tmpfs (busybox takes about 4 MiB of it, with the reserve)."""
    with tmpfs(tmp_path / "disk", "24m") as disk:
        state = disk / "state" if request.param == "shared" else tmp_path / "state"
        env = Env(root=str(disk / "root"), state=str(state), snapshotter="overlayfs")
        try:
            yield env
        finally:
            # What a failed test left goes before its disk does, with room to do it.
            subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
            ids = env.cli("ps", "-a", "-q", check=False).stdout.split()
            if ids:
                env.cli("rm", "-f", *ids, check=False)
            unmount_under(env.state)


# --- containers -------------------------------------------------------------------------


def test_container_filling_its_layer_gets_enospc_and_rm_frees_the_space(
        small_env: Env, busybox: tuple[str, BuiltImage]) -> None:
    ref, _ = busybox
    env = small_env
    disk = Path(env.root).parent
    env.cli("pull", "--plain-http", ref)
    before = free_bytes(disk)
    proc = env.cli("run", "--name", "filler", ref, "dd", "if=/dev/zero", "of=/fill", "bs=4k", check=False)
    assert free_bytes(disk) < FULL
    if not state_on(env, disk):
        # dd's own exit status: 1, for its write that failed with ENOSPC.  (With the
        # state on the full disk too, conmon has no room to record it: exit status unknown.)
        assert proc.returncode == 1, proc.stdout + proc.stderr
    else:
        assert proc.returncode in (1, 125), proc.stdout + proc.stderr
        if proc.returncode == 125:
            assert "exit status is unknown" in proc.stderr, proc.stderr
    fill(disk)  # the last pages too: rm must work on a disk with nothing left at all
    assert env.cli("rm", "filler").stdout.strip() == "filler"
    (disk / "filler").unlink()
    assert free_bytes(disk) >= before - 64 * 1024
    check_no_leftovers(env)
    env.cli("run", "--rm", ref, "true")
    check_no_leftovers(env)


def test_run_rm_of_a_container_that_filled_the_disk_removes_it(
        small_env: Env, busybox: tuple[str, BuiltImage]) -> None:
    """``run --rm``: the removal comes after the container filled the disk, in the
    process that opened the store while there was room."""
    ref, _ = busybox
    env = small_env
    disk = Path(env.root).parent
    env.cli("pull", "--plain-http", ref)
    before = free_bytes(disk)
    proc = env.cli("run", "--rm", ref, "sh", "-c", "dd if=/dev/zero of=/fill bs=4k; while :; do echo >>/fill || break; done",
                   check=False)
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    if not state_on(env, disk):
        assert proc.returncode == 0, proc.stderr
    assert free_bytes(disk) >= before - 64 * 1024
    check_no_leftovers(env)


@pytest.mark.parametrize("leave", [0, 96 * 1024], ids=["full", "nearly-full"])
@pytest.mark.parametrize("command", [["run", "--rm"], ["create"]], ids=["run", "create"])
def test_run_and_create_on_a_full_disk_fail_cleanly_then_work(
        small_env: Env, busybox: tuple[str, BuiltImage], command: list[str], leave: int) -> None:
    """Nearly full: the store opens and the record is written, then something
    further on finds no room, and the record must still go."""
    ref, _ = busybox
    env = small_env
    disk = Path(env.root).parent
    env.cli("pull", "--plain-http", ref)
    filler = fill(disk, leave=leave)
    line = one_line(env.cli(*command, ref, "true", check=False))
    assert "no space left on device" in line.lower(), line
    filler.unlink()
    check_no_leftovers(env)
    env.cli("run", "--rm", ref, "true")
    check_no_leftovers(env)


# --- a layer that does not fit when unpacked ----------------------------------------------


@pytest.fixture(scope="module")
def roomy_image(registry: Registry, push_client: RegistryClient) -> tuple[str, BuiltImage]:
    """busybox, plus a layer of 12 MiB that compresses to a few hundred KiB."""
    block = os.urandom(16 * 1024)  # repeats within gzip's 32 KiB window
    big = LayerBuilder().add_dir("data").add_file("data/fill", block * (12 * MiB // len(block))).build()
    image = build_image([*busybox_layers(), big])
    assert image.layers[-1][0].size < MiB
    ref = f"{registry.host}/test/roomy:latest"
    push_image(push_client, ref, image, tag="latest")
    return ref, image


def test_unpack_out_of_space_leaves_no_snapshot_and_a_retry_succeeds(
        tmp_path: Path, roomy_image: tuple[str, BuiltImage]) -> None:
    ref, image = roomy_image
    with tmpfs(tmp_path / "disk", "10m") as disk:
        env = Env(root=str(disk / "root"), state=str(tmp_path / "state"), snapshotter="overlayfs")
        line = one_line(env.cli("pull", "--plain-http", ref, check=False))
        # Usually the unpack's write fails first; at times the record of a layer
        # fetched beside it does: either way one "no space" line, and the same cleanup.
        assert "no space left on device" in line.lower(), line
        check_no_leftovers(env)
        store = env.store()
        try:
            assert ImageService(store).list_images() == []
            # Every blob there is whole; every ingest left is the start of its blob.
            for info in store.content.walk():
                assert store.content.verify(info.digest)
            blobs = {str(d.digest): data for d, data in image.layers}
            for status in store.content.list_statuses():
                with open(os.path.join(store.content._ingest_path(status.ref), "data"), "rb") as f:
                    assert f.read() == blobs[str(status.expected)][:status.offset]
        finally:
            store.close()
        subprocess.run(["mount", "-o", "remount,size=48m", str(disk)], check=True)
        env.cli("pull", "--plain-http", ref)
        env.cli("run", "--rm", ref, "sh", "-c", "test -s /data/fill")
        check_no_leftovers(env)
