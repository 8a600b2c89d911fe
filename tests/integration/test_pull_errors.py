"""The CLI's one-line errors for what goes wrong around a pull: refused
credentials (basic and bearer), credentials from a docker config.json, and a
disk that fills up mid-pull."""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.errors import ResourceExhausted, Unavailable
from hawser.oci import Digest
from hawser.registry import Credentials, RegistryClient, RegistryOptions
from tests.integration.conftest import Env
from tests.support.host import unmount_under
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.layers import busybox_layers
from tests.support.registry_server import RegistryHandle, start_registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module", params=["htpasswd", "token"])
def auth_registry(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[tuple[RegistryHandle, str]]:
    with start_registry(str(tmp_path_factory.mktemp("auth-registry")), auth=request.param) as handle:
        user, password = next(iter(handle.users.items()))
        client = RegistryClient(RegistryOptions(plain_http=True, credentials=lambda host: Credentials(user, password),
                                                docker_config=None))
        try:
            ref = f"{handle.host}/private/busybox:latest"
            push_image(client, ref, build_image(busybox_layers()), tag="latest")
        finally:
            client.close()
        yield handle, ref


def _docker_config(directory: Path, host: str, user: str, password: str) -> str:
    directory.mkdir()
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return str(directory)


def test_auth_refused_then_docker_config_credentials(overlay_env: Env, auth_registry: tuple[RegistryHandle, str],
                                                     tmp_path: Path) -> None:
    handle, ref = auth_registry
    user = next(iter(handle.users))
    # No credentials: one line naming the registry and the refusal.
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = overlay_env.cli("pull", "--plain-http", ref, check=False, env={"DOCKER_CONFIG": str(empty)})
    assert proc.returncode == 1, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert handle.host in proc.stderr and ("auth" in proc.stderr.lower() or "denied" in proc.stderr.lower())
    # Wrong password: also refused, and nothing is stored.
    wrong = _docker_config(tmp_path / "wrong", handle.host, user, "not-the-password")
    proc = overlay_env.cli("pull", "--plain-http", ref, check=False, env={"DOCKER_CONFIG": wrong})
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert overlay_env.cli("images", "-q").stdout.strip() == ""
    # The right ones from config.json `auths`: the pull works.
    good = _docker_config(tmp_path / "good", handle.host, user, handle.users[user])
    overlay_env.cli("pull", "--plain-http", ref, env={"DOCKER_CONFIG": good})
    assert ref in overlay_env.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.splitlines()


def _tmpfs(path: Path, size: str) -> None:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "hawser-test-tiny", str(path)], check=True)


@pytest.fixture
def tiny_env(tmp_path: Path) -> Iterator[Env]:
    """A root on a 3 MiB tmpfs: the busybox test image (about 1 MiB
    compressed, 1.5 MiB unpacked, with a 1 MiB reserve) cannot fit."""
    mnt = tmp_path / "tiny"
    _tmpfs(mnt, "3m")
    try:
        yield Env(root=str(mnt / "root"), state=str(tmp_path / "state"), snapshotter="overlayfs")
    finally:
        unmount_under(str(mnt))
        subprocess.run(["umount", str(mnt)], check=True)


def _check_consistent(env: Env) -> None:
    store = env.store()
    try:
        for info in store.content.walk():
            assert store.content.verify(info.digest), info.digest
        assert list(store.content.list_statuses()) == []
    finally:
        store.close()


def test_disk_full_mid_pull_is_one_line_and_loses_nothing(tiny_env: Env, busybox: tuple[str, BuiltImage]) -> None:
    ref, _ = busybox
    proc = tiny_env.cli("pull", "--plain-http", ref, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no space left" in lines[0].lower(), proc.stderr
    assert tiny_env.cli("images", "-q").stdout.strip() == ""
    _check_consistent(tiny_env)
    # Room again (the disk grows): the same pull completes, nothing lost or doubled.
    subprocess.run(["mount", "-o", "remount,size=16m", os.path.dirname(tiny_env.root)], check=True)
    tiny_env.cli("pull", "--plain-http", ref)
    assert ref in tiny_env.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.splitlines()
    _check_consistent(tiny_env)


@pytest.mark.parametrize("failure", [ResourceExhausted("no space left on device writing layer-b"),
                                     OSError(errno.ENOSPC, "No space left on device")])
def test_out_of_space_takes_the_operations_other_partial_downloads(overlay_env: Env, failure: Exception) -> None:
    """Layers download side by side: when one finds no room, the others' partial
    data (closed for a resume when the pull stopped) goes too, since it is what
    fills the disk; another failure keeps it for the next pull to resume."""
    data = os.urandom(4096)
    store = overlay_env.store()
    try:
        def partial_download(lease: str, ref: str) -> None:
            store.metadata.leases.add_resource(lease, "ingest", ref)
            with store.content.writer(ref, expected=Digest.of(data), total=len(data)) as writer:
                writer.write(data[:1000])

        with pytest.raises(type(failure)), store.lease() as lease:
            partial_download(lease, "layer-a")
            raise failure
        assert list(store.content.list_statuses()) == []

        with pytest.raises(Unavailable), store.lease() as lease:
            partial_download(lease, "layer-a")
            raise Unavailable("the registry dropped the connection")
        assert [(s.ref, s.offset) for s in store.content.list_statuses()] == [("layer-a", 1000)]
    finally:
        store.close()


def test_rmi_and_prune_free_a_full_disk(tmp_path: Path, busybox: tuple[str, BuiltImage]) -> None:
    """A disk filled to the last block by someone else: rmi (which collects
    what the image held) and prune still work.  SQLite needs a little room to
    record a removal; the store keeps a reserve file for exactly that."""
    ref, _ = busybox
    mnt = tmp_path / "disk"
    _tmpfs(mnt, "8m")
    env = Env(root=str(mnt / "root"), state=str(tmp_path / "state"), snapshotter="overlayfs")
    try:
        env.cli("pull", "--plain-http", ref)
        filler = mnt / "filler"
        # Unbuffered: what does not fit fails in write(), not later in close() (outside the suppress).
        with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
            while True:
                f.write(b"\0" * 65536)
        assert os.statvfs(mnt).f_bavail == 0
        env.cli("rmi", ref)
        # The image's blobs and snapshots went, and the reserve was taken again.
        assert os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize > 2 << 20
        assert os.path.getsize(os.path.join(env.root, "reserve")) == 1 << 20
        store = env.store()
        try:
            assert list(store.content.walk()) == [] and list(store.snapshotter.walk()) == []
        finally:
            store.close()
        env.cli("system", "prune")
        filler.unlink()
        env.cli("pull", "--plain-http", ref)
        _check_consistent(env)
    finally:
        unmount_under(str(mnt))
        subprocess.run(["umount", str(mnt)], check=True)
