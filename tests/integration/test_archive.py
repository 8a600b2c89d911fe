"""``hawser save`` and ``hawser load`` against podman and skopeo, both formats, both ways:
``podman save`` and ``skopeo copy`` into ``hawser load``; ``hawser save`` into
``podman load`` and ``skopeo inspect``; and hawser to hawser through pipes.

podman pulls the test image from the session's docker-registry on 127.0.0.1
into a store of its own under the test's directory (tests/support/podman.py).
Digests are compared: an oci-archive keeps every digest (manifest, config,
layers); a docker-archive keeps the config (the image ID) and the layers'
diff_ids (its layers are uncompressed, so their digests are their diff_ids).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest

from hawser.registry import RegistryClient
from tests.integration.conftest import Env
from tests.support.host import remove_store_cgroups
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.layers import LayerBuilder, busybox_layers
from tests.support.podman import Podman, skopeo_inspect, tools_available
from tests.support.registry_fixtures import Registry

pytestmark = pytest.mark.skipif(not tools_available(),
                                reason="podman and skopeo are not installed (scripts/setup.sh installs them)")

FORMATS = ["oci-archive", "docker-archive"]


def _inspect(env: Env, name: str) -> dict[str, Any]:
    out: list[dict[str, Any]] = json.loads(env.cli("image", "inspect", name).stdout)
    return out[0]


def _index_digests(archive: Path) -> list[str]:
    with tarfile.open(archive) as tar:
        f = tar.extractfile("index.json")
        assert f is not None
        return [m["digest"] for m in json.load(f)["manifests"]]


@pytest.mark.parametrize("fmt", FORMATS)
def test_podman_save_into_hawser_load(overlay_env: Env, podman: Podman, busybox: tuple[str, BuiltImage],
                                      tmp_path: Path, fmt: str) -> None:
    ref, image = busybox
    podman("pull", "-q", "--tls-verify=false", ref)
    archive = tmp_path / f"podman.{fmt}.tar"
    podman("save", "-q", "--format", fmt, "-o", str(archive), ref)

    assert overlay_env.cli("load", "-q", "-i", str(archive)).stdout.split() == [ref]

    got = _inspect(overlay_env, ref)
    reference = skopeo_inspect(f"{fmt}:{archive}")
    assert got["Id"] == f"sha256:{podman.inspect(ref)['Id']}" == str(image.config_desc.digest)
    assert [layer["digest"] for layer in got["Layers"]] == reference["Layers"]
    assert got["RootFS"]["DiffIDs"] == image.diff_ids
    if fmt == "oci-archive":
        # podman recompresses the layers it saves: its manifest is its own, and kept as it is.
        assert got["ManifestDigest"] == reference["Digest"] == _index_digests(archive)[0]
    else:
        assert reference["Layers"] == image.diff_ids
    # Unpacked as a pull unpacks: it runs at once.
    run = overlay_env.cli("run", "--rm", ref, "cat", "/etc/layer3", "/opt/app/olddir/fresh.txt")
    assert run.stdout == "3\nfrom layer 3\n"


@pytest.mark.parametrize("fmt", FORMATS)
def test_skopeo_copy_into_hawser_load(overlay_env: Env, podman: Podman, busybox: tuple[str, BuiltImage],
                                      tmp_path: Path, fmt: str) -> None:
    ref, image = busybox
    archive = tmp_path / f"skopeo.{fmt}.tar"
    podman.skopeo("copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"{fmt}:{archive}:{ref}")
    assert overlay_env.cli("load", "-q", "-i", str(archive)).stdout.split() == [ref]
    got = _inspect(overlay_env, ref)
    assert got["Id"] == str(image.config_desc.digest) and got["RootFS"]["DiffIDs"] == image.diff_ids
    if fmt == "oci-archive":  # skopeo copies the registry's blobs as they are: every digest is the registry's
        assert got["ManifestDigest"] == str(image.manifest_desc.digest)
        assert [layer["digest"] for layer in got["Layers"]] == [str(d.digest) for d, _ in image.layers]
    else:
        assert [layer["digest"] for layer in got["Layers"]] == image.diff_ids


@pytest.mark.parametrize("fmt", FORMATS)
def test_hawser_save_into_podman_load_and_skopeo(overlay_env: Env, podman: Podman, busybox: tuple[str, BuiltImage],
                                                 tmp_path: Path, fmt: str) -> None:
    ref, image = busybox
    overlay_env.cli("pull", "--plain-http", "-q", ref)
    archive = tmp_path / f"hawser.{fmt}.tar"
    overlay_env.cli("save", "--format", fmt, "-o", str(archive), ref)

    config = skopeo_inspect(f"{fmt}:{archive}", raw=True, config=True)
    assert f"sha256:{hashlib.sha256(config).hexdigest()}" == str(image.config_desc.digest)
    reference = skopeo_inspect(f"{fmt}:{archive}")
    if fmt == "oci-archive":
        assert reference["Digest"] == str(image.manifest_desc.digest) == _index_digests(archive)[0]
        assert skopeo_inspect(f"{fmt}:{archive}", raw=True) == image.manifest
        assert reference["Layers"] == [str(d.digest) for d, _ in image.layers]
    else:
        assert reference["Layers"] == image.diff_ids

    assert f"Loaded image: {ref}" in podman("load", "-i", str(archive)).stdout
    loaded = podman.inspect(ref)
    assert f"sha256:{loaded['Id']}" == str(image.config_desc.digest)
    if fmt == "oci-archive":
        assert loaded["Digest"] == str(image.manifest_desc.digest)
    assert loaded["RootFS"]["Layers"] == image.diff_ids


def test_save_and_load_through_pipes(overlay_env: Env, busybox: tuple[str, BuiltImage], registry: Registry,
                                     push_client: RegistryClient, tmp_path: Path) -> None:
    """save to standard output, load from standard input: a file, a pipe, a gzip stream; two images in one archive."""
    ref, image = busybox
    other_ref = f"{registry.host}/test/archive-other:1"
    other = build_image([*busybox_layers(), LayerBuilder().add_dir("etc").add_file("etc/other", b"other\n").build()])
    push_image(push_client, other_ref, other, tag="1")
    overlay_env.cli("pull", "--plain-http", "-q", ref)
    overlay_env.cli("pull", "--plain-http", "-q", other_ref)
    target = Env(root=str(tmp_path / "root2"), state=str(tmp_path / "state2"), snapshotter="overlayfs")

    for fmt in FORMATS:
        archive = tmp_path / f"stdout.{fmt}.tar"
        with open(archive, "wb") as out:
            subprocess.run(overlay_env._argv(("save", "--format", fmt, ref, other_ref)), stdout=out, check=True,
                           timeout=60)
        with open(archive, "rb") as stdin:  # a regular file on standard input: read in place
            loaded = subprocess.run(target._argv(("load", "-q")), stdin=stdin, capture_output=True, timeout=120)
        assert loaded.returncode == 0, loaded.stderr
        assert sorted(loaded.stdout.decode().split()) == sorted([ref, other_ref])
        for name, built in ((ref, image), (other_ref, other)):
            got = _inspect(target, name)
            assert got["Id"] == str(built.config_desc.digest)
            assert got["RootFS"]["DiffIDs"] == built.diff_ids
            if fmt == "oci-archive":
                assert got["ManifestDigest"] == str(built.manifest_desc.digest)

    # A compressed archive through a pipe: spooled (decompressed) into the store's directory, then read.
    piped = subprocess.run(target._argv(("load", "-q", "-i", "-")), capture_output=True, timeout=120,
                           input=gzip.compress((tmp_path / "stdout.oci-archive.tar").read_bytes(), compresslevel=1))
    assert piped.returncode == 0, piped.stderr
    assert sorted(piped.stdout.decode().split()) == sorted([ref, other_ref])
    assert sorted(p.name for p in (tmp_path / "root2").iterdir()) == sorted(
        ["content", "metadata.db", "reserve", "snapshots", "store-id"])
    try:
        assert target.cli("run", "--rm", other_ref, "cat", "/etc/other").stdout == "other\n"
    finally:
        remove_store_cgroups(target.root)
