"""Pulls from a real docker-registry, checked against the layer tars themselves."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import tarfile
import time
from pathlib import Path

import pytest

from hawser.images import ImageService
from hawser.oci import Platform
from hawser.registry import RegistryClient
from tests.integration.conftest import Env
from tests.support.images import BuiltImage, build_image, push_image, write_layout
from tests.support.layers import busybox_layers
from tests.support.proxy import Fault, fault_proxy
from tests.support.registry_fixtures import Registry
from tests.support.tree import actual_tree, expected_tree, mounted


def _tar(*entries: tuple[str, str, bytes | str]) -> bytes:
    """A layer from (type, name, data-or-linkname) triples: f file, d dir, s symlink, h hardlink."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, name, payload in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000
            if kind == "f":
                data = payload if isinstance(payload, bytes) else payload.encode()
                info.size = len(data)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(data))
                continue
            if kind == "d":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
            elif kind == "s":
                info.type, info.linkname = tarfile.SYMTYPE, str(payload)
            elif kind == "h":
                info.type, info.linkname = tarfile.LNKTYPE, str(payload)
            tar.addfile(info)
    return buf.getvalue()


def _check_tree(env: Env, ref: str, tars: list[bytes], tmp_path: Path) -> None:
    store = env.store()
    try:
        detail = ImageService(store).inspect(ImageService(store).resolve_name(ref))
        view = "test-view"
        mounts = store.snapshotter.view(view, str(detail.chain_ids[-1]))
        try:
            with mounted(mounts, str(tmp_path / "mnt")) as root:
                actual, inodes = actual_tree(root)
        finally:
            store.snapshotter.remove(view)
    finally:
        store.close()
    expected, groups = expected_tree(tars)
    missing = sorted(set(expected) - set(actual))
    extra = sorted(set(actual) - set(expected))
    wrong = sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p])
    assert not missing and not extra and not wrong, (
        f"missing {missing}\nextra {extra}\nwrong {[(p, expected[p], actual[p]) for p in wrong]}")
    for group in groups:
        assert len({inodes[p] for p in group}) == 1, f"not hardlinked: {group}"


def _snapshot_keys(env: Env) -> list[str]:
    store = env.store()
    try:
        return sorted(info.key for info in store.snapshotter.walk())
    finally:
        store.close()


def test_pull_unpacks_exactly_what_the_layers_say(env: Env, busybox: tuple[str, BuiltImage], tmp_path: Path) -> None:
    ref, image = busybox
    out = env.cli("pull", "--plain-http", ref)
    assert str(image.manifest_desc.digest) in out.stdout
    _check_tree(env, ref, image.tars, tmp_path)
    # One committed snapshot per layer, named by chain ID, nothing else left over.
    store = env.store()
    detail = ImageService(store).inspect(ImageService(store).resolve_name(ref))
    store.close()
    assert _snapshot_keys(env) == sorted(str(c) for c in detail.chain_ids)
    # Pulling again is a no-op that still succeeds.
    env.cli("pull", "--plain-http", ref)
    assert _snapshot_keys(env) == sorted(str(c) for c in detail.chain_ids)


@pytest.mark.parametrize(("compression", "docker"), [("zstd", False), ("none", False), ("gzip", True)])
def test_layer_formats(overlay_env: Env, registry: Registry, push_client: RegistryClient, tmp_path: Path,
                       compression: str, docker: bool) -> None:
    tars = busybox_layers()
    image = build_image(tars, compression=compression, docker=docker)
    ref = f"{registry.host}/test/formats:{compression}-{int(docker)}"
    push_image(push_client, ref, image, tag=ref.rsplit(":", 1)[1])
    overlay_env.cli("pull", "--plain-http", ref)
    _check_tree(overlay_env, ref, tars, tmp_path)


def test_index_platform_selection_and_digest_pull(overlay_env: Env, registry: Registry,
                                                  push_client: RegistryClient) -> None:
    host = build_image([_tar(("f", "host.txt", "host"))])
    other = build_image([_tar(("f", "other.txt", "other"))], platform=Platform("linux", "s390x"))
    ref = f"{registry.host}/test/multi:latest"
    from tests.support.images import push_index

    index_desc = push_index(push_client, ref, [other, host], tag="latest")
    overlay_env.cli("pull", "--plain-http", ref)
    info = json.loads(overlay_env.cli("image", "inspect", ref).stdout)[0]
    assert info["ManifestDigest"] == str(host.manifest_desc.digest)
    assert info["Target"]["digest"] == str(index_desc.digest)
    # --platform picks the other one; a platform the index lacks is a clear error.
    overlay_env.cli("pull", "--plain-http", "--platform", "linux/s390x", ref)
    proc = overlay_env.cli("pull", "--plain-http", "--platform", "linux/riscv64", ref, check=False)
    assert proc.returncode == 1 and "riscv64" in proc.stderr and "s390x" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    # By digest.
    by_digest = f"{registry.host}/test/multi@{host.manifest_desc.digest}"
    overlay_env.cli("pull", "--plain-http", by_digest)
    repository, digest = by_digest.split("@")
    assert f"{repository} <none> {digest}" in overlay_env.cli(
        "images", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}").stdout.splitlines()


HOSTILE = {
    "dotdot": [("f", "../escape", "x")],
    "dotdot-inside": [("d", "a", b""), ("f", "a/../../escape", "x")],
    "symlink-then-write": [("s", "etc", "/etc"), ("f", "etc/hawser-escape", "x")],
    "relative-symlink-then-write": [("s", "up", "../../../../../../.."), ("f", "up/hawser-escape", "x")],
    "hardlink-outside": [("h", "passwd", "../../../../etc/passwd")],
    "hardlink-absolute": [("h", "passwd", "/etc/passwd")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_layer_fails_and_leaves_nothing(env: Env, registry: Registry, push_client: RegistryClient,
                                                case: str, tmp_path: Path) -> None:
    base = _tar(("d", "etc", b""), ("f", "etc/ok", "fine"))
    image = build_image([base, _tar(*HOSTILE[case])])  # type: ignore[arg-type]
    ref = f"{registry.host}/test/hostile:{case}"
    push_image(push_client, ref, image, tag=case)
    before = set(os.listdir("/"))
    proc = env.cli("pull", "--plain-http", ref, check=False)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("hawser: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not os.path.exists("/etc/hawser-escape") and not os.path.exists("/escape")
    assert set(os.listdir("/")) == before
    assert "hawser" not in env.cli("images").stdout.split("\n", 1)[1]
    # Only the good first layer may stay, committed; no half-applied snapshot.
    keys = _snapshot_keys(env)
    assert all(not k.startswith("extract-") for k in keys), keys
    assert len(keys) <= 1


def test_layer_with_symlink_from_earlier_layer_is_refused(env: Env, registry: Registry,
                                                          push_client: RegistryClient) -> None:
    image = build_image([_tar(("s", "lib", "/etc")), _tar(("f", "lib/hawser-escape", "x"))])
    ref = f"{registry.host}/test/hostile:cross-layer"
    push_image(push_client, ref, image, tag="cross-layer")
    proc = env.cli("pull", "--plain-http", ref, check=False)
    assert proc.returncode == 1 and "symlink" in proc.stderr, proc.stderr
    assert not os.path.exists("/etc/hawser-escape")


def _big_image(seed: int) -> BuiltImage:
    rng = random.Random(seed)
    blobs = [_tar(("f", f"data{i}.bin", rng.randbytes(3 << 20))) for i in range(4)]
    return build_image([*busybox_layers(), *blobs])


def test_corrupt_blob_is_refused_then_a_clean_pull_works(overlay_env: Env, registry: Registry,
                                                         push_client: RegistryClient) -> None:
    image = _big_image(1)
    ref = f"{registry.host}/test/corrupt:latest"
    push_image(push_client, ref, image, tag="latest")
    layer = image.layers[-1][0]
    with fault_proxy(registry.host) as proxy:
        proxy.add(Fault(match=f"/blobs/{layer.digest}", corrupt=True))
        proc = overlay_env.cli("pull", "--plain-http", f"{proxy.host}/test/corrupt:latest", check=False)
        assert proc.returncode == 1 and "digest" in proc.stderr.lower(), proc.stderr
        store = overlay_env.store()
        with pytest.raises(Exception, match="not found"):
            store.content.info(layer.digest)
        store.close()
        proxy.faults.clear()
        overlay_env.cli("pull", "--plain-http", f"{proxy.host}/test/corrupt:latest")


def test_connection_cut_mid_blob_resumes(overlay_env: Env, registry: Registry, push_client: RegistryClient,
                                         tmp_path: Path) -> None:
    image = _big_image(2)
    ref = f"{registry.host}/test/cut:latest"
    push_image(push_client, ref, image, tag="latest")
    layer = image.layers[-1][0]
    with fault_proxy(registry.host) as proxy:
        proxy.add(Fault(match=f"/blobs/{layer.digest}", cut_after=layer.size // 2, times=1))
        overlay_env.cli("pull", "--plain-http", f"{proxy.host}/test/cut:latest")
        gets = [r for r in proxy.requests if r.startswith("GET") and str(layer.digest) in r]
        assert len(gets) >= 2, proxy.requests
    _check_tree(overlay_env, f"{proxy.host}/test/cut:latest", image.tars, tmp_path)


@pytest.mark.parametrize(("body", "content_type", "message"), [
    (json.dumps({"schemaVersion": 1, "name": "x", "tag": "latest", "fsLayers": [], "history": []}).encode(),
     "application/vnd.docker.distribution.manifest.v1+prettyjws", "schema 1"),
    (b"{" + b" " * (5 << 20) + b"}", "application/vnd.oci.image.manifest.v1+json", "limit"),
    (json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.example.thing+json"}).encode(),
     "application/vnd.example.thing+json", "media type"),
    (b"this is not json", "application/vnd.oci.image.manifest.v1+json", "json"),
])
def test_bad_manifests_are_clear_errors(overlay_env: Env, registry: Registry, busybox: tuple[str, BuiltImage],
                                        body: bytes, content_type: str, message: str) -> None:
    with fault_proxy(registry.host) as proxy:
        proxy.add(Fault(match="/manifests/latest", body=body, content_type=content_type))
        proc = overlay_env.cli("pull", "--plain-http", f"{proxy.host}/test/busybox:latest", check=False)
    assert proc.returncode == 1
    assert message in proc.stderr.lower() and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_unreachable_registry_and_unknown_image(overlay_env: Env) -> None:
    proc = overlay_env.cli("pull", "--plain-http", "127.0.0.1:9/nothing/here:latest", check=False)
    assert proc.returncode == 1 and "127.0.0.1:9" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    proc = overlay_env.cli("image", "inspect", "127.0.0.1/missing:latest", check=False)
    assert proc.returncode == 1 and "not found" in proc.stderr


def test_kill9_during_pull_then_repeat(overlay_env: Env, registry: Registry, push_client: RegistryClient,
                                       tmp_path: Path) -> None:
    image = _big_image(3)
    ref = f"{registry.host}/test/crash:latest"
    push_image(push_client, ref, image, tag="latest")
    rng = random.Random(42)
    for _ in range(6):
        proc = overlay_env.popen("pull", "--plain-http", "-q", ref)
        time.sleep(rng.uniform(0.05, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    overlay_env.cli("pull", "--plain-http", ref)
    _check_tree(overlay_env, ref, image.tars, tmp_path)
    store = overlay_env.store()
    try:
        for info in store.content.walk():
            assert store.content.verify(info.digest), info.digest
    finally:
        store.close()
    overlay_env.cli("system", "prune")
    store = overlay_env.store()
    try:
        assert list(store.content.list_statuses()) == []
        detail = ImageService(store).inspect(ImageService(store).resolve_name(ref))
        assert sorted(i.key for i in store.snapshotter.walk()) == sorted(str(c) for c in detail.chain_ids)
    finally:
        store.close()


def test_concurrent_pulls_of_one_image(overlay_env: Env, registry: Registry, push_client: RegistryClient,
                                       tmp_path: Path) -> None:
    image = _big_image(4)
    ref = f"{registry.host}/test/concurrent:latest"
    push_image(push_client, ref, image, tag="latest")
    procs = [overlay_env.popen("pull", "--plain-http", ref) for _ in range(3)]
    for proc in procs:
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = overlay_env.store()
    detail = ImageService(store).inspect(ImageService(store).resolve_name(ref))
    store.close()
    assert _snapshot_keys(overlay_env) == sorted(str(c) for c in detail.chain_ids)
    _check_tree(overlay_env, ref, image.tars, tmp_path)


@pytest.mark.parametrize("as_tar", [False, True])
def test_import_oci_layout(env: Env, tmp_path: Path, as_tar: bool) -> None:
    tars = busybox_layers()
    image = build_image(tars)
    name = "127.0.0.1/imported/busybox:1"
    path = write_layout(str(tmp_path / ("layout.tar" if as_tar else "layout")), [(name, image)], as_tar=as_tar)
    env.cli("image", "import", path)
    assert name in env.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.splitlines()
    _check_tree(env, name, tars, tmp_path)
    # Unnamed archive: --name is required, and then used.
    unnamed = write_layout(str(tmp_path / "unnamed"), [(None, build_image([_tar(("f", "a", "b"))]))])
    proc = env.cli("image", "import", unnamed, check=False)
    assert proc.returncode == 1 and "--name" in proc.stderr
    env.cli("image", "import", "--name", "127.0.0.1/imported/other:2", unnamed)


def test_rmi_and_prune_reclaim_everything(overlay_env: Env, busybox: tuple[str, BuiltImage]) -> None:
    ref, _ = busybox
    overlay_env.cli("pull", "--plain-http", ref)
    df = json.loads(overlay_env.cli("system", "df", "--format", "json").stdout)
    assert df["images"]["count"] == 1 and df["snapshots"]["count"] >= 3
    dry = overlay_env.cli("system", "prune", "--dry-run").stdout
    assert "would remove 0 objects" in dry
    overlay_env.cli("rmi", ref)
    df = json.loads(overlay_env.cli("system", "df", "--format", "json").stdout)
    assert df["images"]["count"] == 0 and df["snapshots"]["count"] == 0 and df["content"]["count"] == 0
    proc = overlay_env.cli("rmi", ref, check=False)
    assert proc.returncode == 1 and "not found" in proc.stderr
