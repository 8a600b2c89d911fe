"""``hawser image copy`` between transports, checked by skopeo.

A real docker-registry on 127.0.0.1 (the session's), layouts and archives in
the test's directory, and the store. Copies that do not pass through the store
keep every digest: skopeo reads back the same raw manifest (or index) bytes.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from hawser.oci import Platform
from hawser.registry import RegistryClient
from tests.integration.conftest import Env
from tests.support.images import BuiltImage, build_image, push_index
from tests.support.podman import SKOPEO, skopeo_inspect, tools_available
from tests.support.registry_fixtures import Registry

pytestmark = pytest.mark.skipif(not tools_available(), reason="skopeo is not installed (scripts/setup.sh installs it)")


def _raw(ref: str) -> bytes:
    """The manifest or index bytes skopeo reads from the registry."""
    proc = subprocess.run([SKOPEO, "inspect", "--raw", "--tls-verify=false", f"docker://{ref}"],
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _copy(env: Env, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return env.cli("image", "copy", "--src-plain-http", "--dest-plain-http", *args, check=check)


def _tar(name: str, text: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def two_platforms(registry: Registry, push_client: RegistryClient) -> tuple[str, bytes, dict[str, BuiltImage]]:
    """An index of an amd64 and an arm64 image (neither runs here: nothing is unpacked)."""
    images = {arch: build_image([_tar(f"{arch}.txt", arch)], platform=Platform("linux", arch))
              for arch in ("amd64", "arm64")}
    ref = f"{registry.host}/copy/multi:latest"
    push_index(push_client, ref, list(images.values()), tag="latest")
    return ref, _raw(ref), images


def test_registry_to_registry_keeps_digests(overlay_env: Env, busybox: tuple[str, BuiltImage], registry: Registry) -> None:
    ref, image = busybox
    dest = f"{registry.host}/copy/busybox:r2r"
    out = _copy(overlay_env, f"docker://{ref}", f"docker://{dest}").stdout
    assert str(image.manifest_desc.digest) in out
    assert _raw(dest) == _raw(ref) == image.manifest
    # Again: everything is there, nothing changes.
    _copy(overlay_env, "-q", f"docker://{ref}", f"docker://{dest}")
    assert _raw(dest) == image.manifest


def test_registry_to_oci_layout_and_back(overlay_env: Env, busybox: tuple[str, BuiltImage], registry: Registry,
                                          tmp_path: Path) -> None:
    ref, image = busybox
    layout = tmp_path / "layout"
    _copy(overlay_env, f"docker://{ref}", f"oci:{layout}:v1")
    assert skopeo_inspect(f"oci:{layout}:v1", raw=True) == image.manifest
    index = json.loads((layout / "index.json").read_text())
    assert [(m["digest"], m["annotations"]) for m in index["manifests"]] == [
        (str(image.manifest_desc.digest), {"org.opencontainers.image.ref.name": "v1"})]
    for desc, blob in [*image.layers, (image.config_desc, image.config)]:
        assert (layout / "blobs" / "sha256" / desc.digest.encoded).read_bytes() == blob

    archive = tmp_path / "layout.tar"
    _copy(overlay_env, f"docker://{ref}", f"oci-archive:{archive}:v2")
    assert skopeo_inspect(f"oci-archive:{archive}:v2", raw=True) == image.manifest

    back = f"{registry.host}/copy/from-layout:v1"
    _copy(overlay_env, f"oci:{layout}:v1", f"docker://{back}")
    assert _raw(back) == image.manifest
    # skopeo reads the image whole from the registry (config and layers).
    assert skopeo_inspect(f"oci:{layout}:v1")["Layers"] == [str(d.digest) for d, _ in image.layers]


def test_store_to_archives_read_by_skopeo(overlay_env: Env, busybox: tuple[str, BuiltImage],
                                          tmp_path: Path) -> None:
    ref, image = busybox
    overlay_env.cli("pull", "--plain-http", "-q", ref)
    oci_archive, docker_archive = tmp_path / "image.oci.tar", tmp_path / "image.docker.tar"
    _copy(overlay_env, f"hawser:{ref}", f"oci-archive:{oci_archive}")
    _copy(overlay_env, f"hawser:{ref}", f"docker-archive:{docker_archive}")

    got: dict[str, Any] = skopeo_inspect(f"oci-archive:{oci_archive}")
    assert got["Digest"] == str(image.manifest_desc.digest)
    assert got["Layers"] == [str(d.digest) for d, _ in image.layers]
    docker: dict[str, Any] = skopeo_inspect(f"docker-archive:{docker_archive}")
    assert docker["Layers"] == image.diff_ids  # docker's format keeps layers uncompressed
    assert skopeo_inspect(f"docker-archive:{docker_archive}", raw=True, config=True) == image.config

    # And from the archive into another name of the store: unpacked, with the same image.
    _copy(overlay_env, f"oci-archive:{oci_archive}", "hawser:example.com/copied:1")
    listed = {i["name"]: i for i in json.loads(overlay_env.cli("images", "--format", "json").stdout)}
    assert listed["example.com/copied:1"]["digest"] == str(image.manifest_desc.digest)
    assert listed["example.com/copied:1"]["id"] == str(image.config_desc.digest)


def test_all_keeps_the_index(overlay_env: Env, registry: Registry,
                             two_platforms: tuple[str, bytes, dict[str, BuiltImage]], tmp_path: Path) -> None:
    ref, index, images = two_platforms
    dest = f"{registry.host}/copy/multi-all:latest"
    _copy(overlay_env, "--all", f"docker://{ref}", f"docker://{dest}")
    assert _raw(dest) == index
    for image in images.values():
        assert _raw(f"{registry.host}/copy/multi-all@{image.manifest_desc.digest}") == image.manifest
    layout = tmp_path / "multi"
    _copy(overlay_env, "--all", f"docker://{dest}", f"oci:{layout}:all")
    assert skopeo_inspect(f"oci:{layout}:all", raw=True) == index


def test_platform_picks_the_child(overlay_env: Env, registry: Registry,
                                  two_platforms: tuple[str, bytes, dict[str, BuiltImage]]) -> None:
    ref, _, images = two_platforms
    for arch, image in images.items():
        dest = f"{registry.host}/copy/multi-{arch}:latest"
        out = _copy(overlay_env, "-q", "--platform", f"linux/{arch}", f"docker://{ref}", f"docker://{dest}").stdout
        assert out.strip() == str(image.manifest_desc.digest)
        assert _raw(dest) == image.manifest
        assert _digest(_raw(dest)) == str(image.manifest_desc.digest)


@pytest.mark.parametrize("source", ["dockr://127.0.0.1:1/x:1", "127.0.0.1:1/x:1", "docker:127.0.0.1:1/x:1"])
def test_bad_transport_is_one_line(overlay_env: Env, source: str, tmp_path: Path) -> None:
    proc = _copy(overlay_env, source, f"oci:{tmp_path / 'never'}", check=False)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "transport" in lines[0]
    assert not (tmp_path / "never").exists()


def test_through_the_store(overlay_env: Env, busybox: tuple[str, BuiltImage], registry: Registry,
                           tmp_path: Path) -> None:
    """Into the store is a pull (unpacked, runnable); out of it a push, with the digests kept."""
    ref, image = busybox
    _copy(overlay_env, f"docker://{ref}", "hawser:example.com/stored:1")
    listed = {i["name"]: i for i in json.loads(overlay_env.cli("images", "--format", "json").stdout)}
    assert listed["example.com/stored:1"]["digest"] == str(image.manifest_desc.digest)
    dest = f"{registry.host}/copy/from-store:1"
    _copy(overlay_env, "hawser:example.com/stored:1", f"docker://{dest}")
    assert _raw(dest) == image.manifest

    # A docker-archive has no manifest of its own: the copy's is made up, the config and layers kept.
    archive = tmp_path / "docker.tar"
    _copy(overlay_env, "hawser:example.com/stored:1", f"docker-archive:{archive}:example.com/stored:1")
    dest = f"{registry.host}/copy/from-docker-archive:1"
    _copy(overlay_env, f"docker-archive:{archive}", f"docker://{dest}")
    got = json.loads(_raw(dest))
    assert got["config"]["digest"] == str(image.config_desc.digest)
    assert [layer["digest"] for layer in got["layers"]] == image.diff_ids


def test_run_pulls_the_platform_it_is_asked_for(overlay_env: Env,
                                                 two_platforms: tuple[str, bytes, dict[str, BuiltImage]]) -> None:
    """``run --platform`` pulls that platform's image of an index (here one that cannot run: it has
    no programs, so the run itself fails, after the pull)."""
    ref, _, images = two_platforms
    proc = overlay_env.cli("run", "--rm", "--plain-http", "--platform", "linux/arm64", ref, "/bin/true", check=False)
    assert proc.returncode != 0
    [info] = json.loads(overlay_env.cli("image", "inspect", ref).stdout)
    assert str(images["arm64"].config_desc.digest) in json.dumps(info), info
    assert str(images["amd64"].config_desc.digest) not in json.dumps(info)
