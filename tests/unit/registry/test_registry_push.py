"""Pushing blobs and manifests."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from registry_fakes import FakeClock, FakeNetwork, FakeRegistry, error_body, make_client

from hawser.errors import DataLoss, InvalidArgument, Unimplemented
from hawser.oci import Descriptor, Digest, media, parse_reference

REF = parse_reference("registry.test/team/app:v1")
DATA = b"some layer content" * 500
DESC = Descriptor(media.OCI_LAYER_GZIP, Digest.of(DATA), len(DATA))


def methods(registry: FakeRegistry) -> list[str]:
    return [r.method for r in registry.requests]


def test_push_blob_head_post_put(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    with make_client(network, clock) as client:
        client.push_blob(REF, DATA, DESC)
    assert registry.blobs[DESC.digest] == DATA
    assert methods(registry) == ["HEAD", "POST", "PUT"]
    put = registry.requests[-1]
    assert put.url.params["digest"] == DESC.digest
    assert put.url.params["_state"] == "abc"  # the relative Location's query was kept
    assert put.headers["content-type"] == "application/octet-stream"
    assert put.headers["content-length"] == str(len(DATA))


def test_push_blob_skips_existing(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.add_blob(DATA)
    with make_client(network, clock) as client:
        client.push_blob(REF, DATA, DESC)
    assert methods(registry) == ["HEAD"]


def test_push_blob_from_file(tmp_path: Path, network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    path = tmp_path / "layer.tar.gz"
    path.write_bytes(DATA)
    with make_client(network, clock) as client:
        client.push_blob(REF, path, DESC)
        client.push_blob(REF, str(path), DESC)
    assert registry.blobs[DESC.digest] == DATA


def test_push_blob_file_retried_from_the_start(tmp_path: Path, network: FakeNetwork, registry: FakeRegistry,
                                               clock: FakeClock) -> None:
    path = tmp_path / "layer"
    path.write_bytes(DATA)
    puts = [0]

    def flaky_put(request: httpx.Request) -> httpx.Response | None:
        if request.method == "PUT":
            puts[0] += 1
            request.read()
            if puts[0] == 1:
                return httpx.Response(503)
        return None

    registry.hooks.append(flaky_put)
    with make_client(network, clock) as client:
        client.push_blob(REF, path, DESC)
    assert registry.blobs[DESC.digest] == DATA
    # The failed PUT's session is abandoned: a new one is started.
    assert methods(registry) == ["HEAD", "POST", "PUT", "POST", "PUT"]
    assert clock.sleeps == [0.5]


def test_push_blob_absolute_location_on_other_host(network: FakeNetwork, registry: FakeRegistry,
                                                   clock: FakeClock) -> None:
    registry.auth = "basic"
    registry.users = {"u": "p"}
    uploads: list[httpx.Request] = []

    def upload_service(request: httpx.Request) -> httpx.Response:
        uploads.append(request)
        registry.blobs[request.url.params["digest"]] = request.read()
        return httpx.Response(201)

    network.add("uploads.test:8443", upload_service)
    registry.hooks.append(lambda r: httpx.Response(202, headers={"Location": "https://uploads.test:8443/up/1?x=1"})
                          if r.method == "POST" and "authorization" in r.headers else None)
    from hawser.registry import Credentials

    with make_client(network, clock, credentials=lambda h: Credentials("u", "p")) as client:
        client.push_blob(REF, DATA, DESC)
    assert registry.blobs[DESC.digest] == DATA
    assert uploads[0].url.params["x"] == "1" and uploads[0].url.params["digest"] == DESC.digest
    assert "authorization" not in uploads[0].headers


def test_push_blob_refuses_mismatched_bytes(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock,
                                            tmp_path: Path) -> None:
    with make_client(network, clock) as client:
        with pytest.raises(InvalidArgument):
            client.push_blob(REF, DATA + b"!", DESC)
        with pytest.raises(InvalidArgument):
            client.push_blob(REF, tmp_path / "missing", DESC)
    assert registry.requests == []


def test_registry_digest_invalid_is_data_loss(network: FakeNetwork, registry: FakeRegistry,
                                              clock: FakeClock) -> None:
    registry.hooks.append(lambda r: httpx.Response(400, content=error_body("DIGEST_INVALID", "mismatch"))
                          if r.method == "PUT" else None)
    with make_client(network, clock) as client, pytest.raises(DataLoss, match="DIGEST_INVALID"):
        client.push_blob(REF, DATA, DESC)


def test_read_only_registry(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.hooks.append(lambda r: httpx.Response(405) if r.method == "POST" else None)
    with make_client(network, clock) as client, pytest.raises(Unimplemented):
        client.push_blob(REF, DATA, DESC)


def test_push_manifest_by_tag_and_digest(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media.DOCKER_MANIFEST, "config": DESC.to_json(),
                           "layers": []}).encode()
    with make_client(network, clock) as client:
        desc = client.push_manifest(REF, manifest, media.DOCKER_MANIFEST, tag="v9")
        assert desc == Descriptor(media.DOCKER_MANIFEST, Digest.of(manifest), len(manifest))
        assert client.push_manifest(REF, manifest, media.DOCKER_MANIFEST) == desc
        assert client.resolve(parse_reference("registry.test/team/app:v9")).descriptor == desc
    puts = [r for r in registry.requests if r.method == "PUT"]
    assert puts[0].url.path.endswith("/manifests/v9") and puts[1].url.path.endswith(f"/manifests/{desc.digest}")
    assert puts[0].headers["content-type"] == media.DOCKER_MANIFEST


def test_push_manifest_refuses_other_media_types(network: FakeNetwork, registry: FakeRegistry,
                                                 clock: FakeClock) -> None:
    with make_client(network, clock) as client:
        with pytest.raises(InvalidArgument):
            client.push_manifest(REF, b"{}", media.OCI_CONFIG, tag="x")
        with pytest.raises(Unimplemented):
            client.push_manifest(REF, b"{}", media.DOCKER_SCHEMA1_SIGNED, tag="x")


def test_push_manifest_rejected_by_registry(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.hooks.append(lambda r: httpx.Response(400, content=error_body("MANIFEST_BLOB_UNKNOWN", "blob unknown"))
                          if r.method == "PUT" else None)
    with make_client(network, clock) as client, pytest.raises(InvalidArgument, match="MANIFEST_BLOB_UNKNOWN"):
        client.push_manifest(REF, b"{}", media.OCI_MANIFEST, tag="x")


def test_blob_exists(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    with make_client(network, clock) as client:
        assert not client.blob_exists(REF, DESC.digest)
        registry.add_blob(DATA)
        assert client.blob_exists(REF, DESC.digest)
