"""Against a real docker-registry: push images, then resolve and fetch them."""

from __future__ import annotations

import hashlib

import pytest
from live_images import push_image, push_index
from tests.support.registry_server import RegistryHandle

from hawser.errors import NotFound, Unavailable
from hawser.oci import Descriptor, Digest, Platform, media, parse_index, parse_manifest, parse_reference
from hawser.registry import RegistryClient, RegistryOptions, select_platform

pytestmark = pytest.mark.integration


def client_for(**options: object) -> RegistryClient:
    return RegistryClient(RegistryOptions(plain_http=True, docker_config=None, **options))  # type: ignore[arg-type]


@pytest.mark.parametrize("docker", [False, True], ids=["oci", "docker"])
def test_push_then_resolve_and_fetch_by_tag_and_digest(plain_registry: RegistryHandle, docker: bool) -> None:
    ref = parse_reference(f"{plain_registry.host}/hawser/test-image:v1")
    with client_for() as client:
        image = push_image(client, ref, docker=docker)

        by_tag = client.resolve(ref)
        assert by_tag.descriptor == image.manifest
        assert by_tag.data == image.manifest_bytes
        by_digest = client.resolve(ref.with_digest(image.manifest.digest))
        assert by_digest.descriptor == image.manifest

        manifest = parse_manifest(by_tag.data)
        assert manifest.media_type == (media.DOCKER_MANIFEST if docker else media.OCI_MANIFEST)
        assert client.fetch_manifest(ref, image.manifest) == image.manifest_bytes
        assert client.fetch_blob_bytes(ref, manifest.config) == image.config_bytes
        for (desc, data), listed in zip(image.layers, manifest.layers, strict=True):
            assert listed == desc
            hasher = hashlib.sha256()
            with client.fetch_blob(ref, desc) as stream:
                for chunk in stream:
                    hasher.update(chunk)
            assert f"sha256:{hasher.hexdigest()}" == desc.digest
            with client.fetch_blob(ref, desc, offset=len(data) // 2) as stream:
                assert b"".join(stream) == data[len(data) // 2:]


@pytest.mark.parametrize("docker", [False, True], ids=["oci-index", "docker-list"])
def test_index_and_platform_selection(plain_registry: RegistryHandle, docker: bool) -> None:
    ref = parse_reference(f"{plain_registry.host}/hawser/multi:latest")
    with client_for() as client:
        images = {arch: push_image(client, ref, docker=docker, architecture=arch, tag="", layer_sizes=(100,))
                  for arch in ("amd64", "arm64")}
        index_desc, index_bytes = push_index(client, ref, images, docker=docker)

        root = client.resolve(ref)
        assert root.descriptor == index_desc and root.data == index_bytes
        index = parse_index(root.data)
        chosen = select_platform(index, Platform("linux", "arm64"))
        assert chosen.digest == images["arm64"].manifest.digest
        assert client.fetch_manifest(ref, chosen) == images["arm64"].manifest_bytes
        # By digest, the index itself.
        assert client.resolve(ref.with_digest(index_desc.digest)).data == index_bytes


def test_not_found(plain_registry: RegistryHandle) -> None:
    ref = parse_reference(f"{plain_registry.host}/hawser/absent:nope")
    with client_for() as client:
        with pytest.raises(NotFound, match=r"MANIFEST_UNKNOWN|NAME_UNKNOWN") as info:
            client.resolve(ref)
        assert plain_registry.host in str(info.value)
        missing = Descriptor(media.OCI_LAYER_GZIP, Digest.of(b"never pushed"), 12)
        with pytest.raises(NotFound, match="BLOB_UNKNOWN"):
            client.fetch_blob(ref, missing)


def test_push_is_idempotent(plain_registry: RegistryHandle) -> None:
    ref = parse_reference(f"{plain_registry.host}/hawser/again:v1")
    with client_for() as client:
        image = push_image(client, ref, layer_sizes=(10,))
        desc, data = image.layers[0]
        client.push_blob(ref, data, desc)
        assert client.push_manifest(ref, image.manifest_bytes, media.OCI_MANIFEST, tag="v1") == image.manifest


def test_https_to_plain_registry_hints_plain_http(plain_registry: RegistryHandle) -> None:
    ref = parse_reference(f"{plain_registry.host}/hawser/test-image:v1")
    with RegistryClient(RegistryOptions(docker_config=None)) as client, pytest.raises(Unavailable) as info:
        client.resolve(ref)
    assert plain_registry.host in str(info.value)
    assert "--plain-http" in (info.value.hint or "")


def test_registry_down_is_unavailable(plain_registry: RegistryHandle) -> None:
    ref = parse_reference(f"{plain_registry.host}/hawser/test-image:v1")
    plain_registry.stop()
    with client_for() as client, pytest.raises(Unavailable, match="refused") as info:
        client.resolve(ref)
    assert "running" in (info.value.hint or "")
