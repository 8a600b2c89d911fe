"""Resolving and fetching: manifests, verification, limits, blob streams that resume."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from registry_fakes import FakeClock, FakeNetwork, FakeRegistry, FakeTokenServer, ScriptedStream, make_client

from hawser.errors import (
    DataLoss,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from hawser.oci import MAX_MANIFEST_BYTES, Descriptor, Digest, Platform, media, parse_reference
from hawser.registry import Credentials, select_platform

REF = parse_reference("registry.test/team/app:v1")


def blob_gets(registry: FakeRegistry) -> list[httpx.Request]:
    return [r for r in registry.requests if "/blobs/" in r.url.path and r.method == "GET"]


# --- manifests ----------------------------------------------------------------


def test_resolve_tag_returns_verified_root(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc, _, _ = registry.add_image()
    with make_client(network, clock) as client:
        resolved = client.resolve(REF)
    assert resolved.descriptor == Descriptor(media.OCI_MANIFEST, desc.digest, desc.size)
    assert Digest.of(resolved.data) == desc.digest
    accept = registry.requests[0].headers["accept"]
    for media_type in media.MANIFEST_ACCEPT:
        assert media_type in accept
    assert registry.requests[0].url == "https://registry.test/v2/team/app/manifests/v1"


def test_resolve_by_digest(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc, _, _ = registry.add_image()
    with make_client(network, clock) as client:
        resolved = client.resolve(REF.with_digest(desc.digest))
    assert resolved.descriptor.digest == desc.digest
    assert registry.requests[0].url.path.endswith(f"/manifests/{desc.digest}")


def test_pinned_digest_mismatch_is_data_loss(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc, _, _ = registry.add_image()
    registry.manifests[("team/app", desc.digest)] = (b'{"schemaVersion": 2, "tampered": true}', media.OCI_MANIFEST)
    with make_client(network, clock) as client, pytest.raises(DataLoss, match=str(desc.digest)):
        client.resolve(REF.with_digest(desc.digest))


def test_tag_with_lying_digest_header_is_data_loss(network: FakeNetwork, registry: FakeRegistry,
                                                   clock: FakeClock) -> None:
    registry.add_image()
    data = registry.manifests[("team/app", "v1")][0]
    registry.hooks.append(lambda r: httpx.Response(200, content=data, headers={
        "Content-Type": media.OCI_MANIFEST, "Docker-Content-Digest": str(Digest.of(b"other"))}))
    with make_client(network, clock) as client, pytest.raises(DataLoss):
        client.resolve(REF)


def test_manifest_not_found_names_repo_and_host(network: FakeNetwork, registry: FakeRegistry,
                                                clock: FakeClock) -> None:
    with make_client(network, clock) as client, pytest.raises(NotFound) as info:
        client.resolve(REF)
    text = str(info.value)
    assert "team/app" in text and "registry.test" in text and "MANIFEST_UNKNOWN" in text


def test_oversized_manifest_by_content_length(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    served: list[int] = []

    def body() -> Iterator[bytes]:
        served.append(1)
        yield b"{}"

    registry.hooks.append(lambda r: httpx.Response(200, headers={"Content-Length": str(MAX_MANIFEST_BYTES + 1),
                                                                 "Content-Type": media.OCI_MANIFEST},
                                                   content=body()))
    with make_client(network, clock) as client, pytest.raises(ResourceExhausted, match="limit"):
        client.resolve(REF)
    assert served == []  # refused on the header, body never read


def test_oversized_manifest_without_length_reads_at_most_limit_plus_a_chunk(
        network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    produced = [0]

    def endless() -> Iterator[bytes]:
        while True:
            produced[0] += 65536
            yield b" " * 65536

    registry.hooks.append(lambda r: httpx.Response(200, content=endless(), headers={"Content-Type": media.OCI_MANIFEST}))
    with make_client(network, clock) as client, pytest.raises(ResourceExhausted):
        client.resolve(REF)
    assert MAX_MANIFEST_BYTES < produced[0] <= MAX_MANIFEST_BYTES + 65536


@pytest.mark.parametrize("body, content_type", [
    (b'{"schemaVersion": 1, "name": "team/app", "tag": "v1", "fsLayers": []}', "application/json"),
    (b'{"schemaVersion": 1, "name": "team/app", "signatures": []}', media.DOCKER_SCHEMA1_SIGNED),
    (json.dumps({"schemaVersion": 1, "mediaType": media.DOCKER_SCHEMA1}).encode(), media.DOCKER_SCHEMA1),
])
def test_schema1_is_refused(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock, body: bytes,
                            content_type: str) -> None:
    registry.add_manifest("team/app", "v1", body, content_type)
    with make_client(network, clock) as client, pytest.raises(Unimplemented, match="schema 1") as info:
        client.resolve(REF)
    assert info.value.hint


@pytest.mark.parametrize("body, content_type", [
    (json.dumps({"mediaType": media.OCI_CONFIG, "architecture": "amd64"}).encode(), media.OCI_CONFIG),
    (b"<html>login page</html>", "text/html"),
    (b'{"schemaVersion": 2, "mediaType": "application/vnd.example.thing"}', "application/vnd.example.thing"),
])
def test_wrong_media_type_is_invalid_argument(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock,
                                              body: bytes, content_type: str) -> None:
    registry.add_manifest("team/app", "v1", body, content_type)
    with make_client(network, clock) as client, pytest.raises(InvalidArgument):
        client.resolve(REF)


def test_index_then_platform_then_manifest(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    amd, _, _ = registry.add_image(tag="amd")
    arm, _, _ = registry.add_image(tag="arm", layer=b"arm layer")
    index = json.dumps({"schemaVersion": 2, "mediaType": media.DOCKER_MANIFEST_LIST, "manifests": [
        {**amd.to_json(), "platform": {"os": "linux", "architecture": "amd64"}},
        {**arm.to_json(), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    ]}).encode()
    registry.add_manifest("team/app", "v1", index, media.DOCKER_MANIFEST_LIST)
    with make_client(network, clock) as client:
        root = client.resolve(REF)
        assert root.descriptor.media_type == media.DOCKER_MANIFEST_LIST
        chosen = select_platform(root.data, Platform("linux", "arm64"))
        assert chosen.digest == arm.digest
        data = client.fetch_manifest(REF, chosen)
    assert Digest.of(data) == arm.digest
    assert registry.requests[-1].headers["accept"].startswith(media.OCI_MANIFEST)


def test_fetch_manifest_checks_size_digest_and_type(network: FakeNetwork, registry: FakeRegistry,
                                                    clock: FakeClock) -> None:
    desc, config, _ = registry.add_image()
    with make_client(network, clock) as client:
        with pytest.raises(DataLoss, match="bytes"):
            client.fetch_manifest(REF, Descriptor(desc.media_type, desc.digest, desc.size + 1))
        with pytest.raises(InvalidArgument, match="media type"):
            client.fetch_manifest(REF, config)
        with pytest.raises(ResourceExhausted):
            client.fetch_manifest(REF, Descriptor(desc.media_type, desc.digest, MAX_MANIFEST_BYTES + 1))
        registry.manifests[("team/app", desc.digest)] = (b"x" * desc.size, media.OCI_MANIFEST)
        with pytest.raises(DataLoss, match="digest"):
            client.fetch_manifest(REF, desc)


def test_connection_refused_is_unavailable_with_hints(network: FakeNetwork, clock: FakeClock) -> None:
    with make_client(network, clock) as client, pytest.raises(Unavailable) as info:
        client.resolve(parse_reference("127.0.0.1:5999/team/app:v1"))
    assert "127.0.0.1:5999" in str(info.value)
    assert info.value.hint and "--plain-http" in info.value.hint and "running" in info.value.hint
    assert clock.sleeps == []  # a refused connection is not retried


def test_tls_errors_get_hints(network: FakeNetwork, clock: FakeClock) -> None:
    def wrong_version(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:992)")

    def untrusted(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed")

    network.add("plain.test", wrong_version)
    network.add("selfsigned.test", untrusted)
    with make_client(network, clock) as client:
        with pytest.raises(Unavailable) as info:
            client.resolve(parse_reference("plain.test/a:b"))
        assert "--plain-http" in (info.value.hint or "")
        with pytest.raises(Unavailable) as info:
            client.resolve(parse_reference("selfsigned.test/a:b"))
        assert "hosts.toml" in (info.value.hint or "") and "selfsigned.test" in str(info.value)


# --- retries --------------------------------------------------------------------


def failing(registry: FakeRegistry, *responses: httpx.Response) -> list[httpx.Response]:
    queue = list(responses)
    registry.hooks.append(lambda r: queue.pop(0) if queue else None)
    return queue


def test_5xx_retried_with_exponential_backoff(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.add_image()
    failing(registry, httpx.Response(503), httpx.Response(502), httpx.Response(500))
    with make_client(network, clock) as client:
        client.resolve(REF)
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_retry_after_is_honoured(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.add_image()
    failing(registry, httpx.Response(429, headers={"Retry-After": "7"}),
            httpx.Response(503, headers={"Retry-After": "60"}))
    with make_client(network, clock) as client:
        client.resolve(REF)
    assert clock.sleeps == [7.0, 60.0]  # up to MAX_RETRY_AFTER; beyond it: test_registry_stalls_and_retries.py


def test_retries_are_bounded(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.add_image()
    registry.hooks.append(lambda r: httpx.Response(500, content=b'{"errors":[{"code":"UNKNOWN","message":"boom"}]}'))
    with make_client(network, clock, max_retries=3) as client, pytest.raises(Unavailable, match=r"500.*boom"):
        client.resolve(REF)
    assert len(registry.requests) == 4
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_connection_reset_is_retried(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.add_image()
    calls = [0]

    def reset_once(request: httpx.Request) -> httpx.Response | None:
        calls[0] += 1
        if calls[0] == 1:
            raise httpx.ReadError("[Errno 104] Connection reset by peer")
        return None

    registry.hooks.append(reset_once)
    with make_client(network, clock) as client:
        client.resolve(REF)
    assert clock.sleeps == [0.5]


def test_deadline_stops_retrying(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.hooks.append(lambda r: httpx.Response(503))
    with make_client(network, clock, deadline=2.0) as client, pytest.raises(DeadlineExceeded, match="deadline"):
        client.resolve(REF)
    assert sum(clock.sleeps) < 2.0


# --- blobs ---------------------------------------------------------------------------


LAYER = bytes(range(256)) * 40  # 10240 bytes


def test_blob_stream_in_chunks(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    with make_client(network, clock, chunk_size=4096) as client, client.fetch_blob(REF, desc) as stream:
        chunks = list(stream)
    assert b"".join(chunks) == LAYER
    assert [len(c) for c in chunks] == [4096, 4096, 2048]
    assert blob_gets(registry)[0].headers["accept-encoding"] == "identity"


def test_blob_from_offset(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    with make_client(network, clock) as client:
        with client.fetch_blob(REF, desc, offset=1000) as stream:
            assert b"".join(stream) == LAYER[1000:]
        assert blob_gets(registry)[0].headers["range"] == "bytes=1000-"
        with client.fetch_blob(REF, desc, offset=len(LAYER)) as stream:
            assert list(stream) == []
        assert len(blob_gets(registry)) == 1  # nothing left to ask for
        with pytest.raises(InvalidArgument):
            client.fetch_blob(REF, desc, offset=len(LAYER) + 1)


def test_blob_not_found(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = Descriptor(media.OCI_LAYER_GZIP, Digest.of(b"missing"), 7)
    with make_client(network, clock) as client, pytest.raises(NotFound, match="BLOB_UNKNOWN"):
        client.fetch_blob(REF, desc)


def drop_after(registry: FakeRegistry, cut: int, error: Exception | None, times: int = 1) -> None:
    """The next ``times`` blob GETs send ``cut`` bytes of what they would send, then ``error``."""
    left = [times]

    def hook(request: httpx.Request) -> httpx.Response | None:
        if left[0] == 0 or "/blobs/" not in request.url.path or request.method != "GET":
            return None
        left[0] -= 1
        real = registry.route(request)
        body = real.read()
        headers = {k: v for k, v in real.headers.items() if k.lower() != "content-length"}
        return httpx.Response(real.status_code, headers=headers, stream=ScriptedStream([body[:cut]], error))

    registry.hooks.append(hook)


@pytest.mark.parametrize("error", [
    httpx.RemoteProtocolError("peer closed connection without sending complete message body"),
    httpx.ReadError("[Errno 104] Connection reset by peer"),
    None,  # a clean but short body
])
def test_blob_resumes_after_drop(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock,
                                 error: Exception | None) -> None:
    desc = registry.add_blob(LAYER)
    drop_after(registry, 3000, error)
    with make_client(network, clock) as client, client.fetch_blob(REF, desc) as stream:
        data = b"".join(stream)
        assert stream.resumes == 1
    assert data == LAYER
    gets = blob_gets(registry)
    assert len(gets) == 2 and gets[1].headers["range"] == "bytes=3000-"
    assert clock.sleeps == []  # progress was made: resume at once


def test_blob_resumes_from_a_resume(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    drop_after(registry, 2000, httpx.ReadError("reset"), times=3)
    with make_client(network, clock) as client, client.fetch_blob(REF, desc, offset=100) as stream:
        assert b"".join(stream) == LAYER[100:]
    assert [g.headers["range"] for g in blob_gets(registry)] == [
        "bytes=100-", "bytes=2100-", "bytes=4100-", "bytes=6100-"]


def test_server_ignoring_range_is_handled(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    drop_after(registry, 5000, httpx.ReadError("reset"))
    # After the drop the server answers 200 with the whole blob.
    registry.hooks.insert(0, lambda r: httpx.Response(200, content=LAYER) if "range" in r.headers else None)
    with make_client(network, clock, chunk_size=3000) as client, client.fetch_blob(REF, desc) as stream:
        assert b"".join(stream) == LAYER


def test_repeated_drops_without_progress_back_off_then_fail(network: FakeNetwork, registry: FakeRegistry,
                                                            clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    drop_after(registry, 1000, httpx.ReadError("reset"), times=1)
    drop_after(registry, 0, httpx.ReadError("reset"), times=100)
    with make_client(network, clock, max_retries=4) as client, client.fetch_blob(REF, desc) as stream, \
            pytest.raises(Unavailable, match="kept dropping at byte 1000"):
        b"".join(stream)
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_stall_is_deadline_exceeded(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    drop_after(registry, 100, httpx.ReadTimeout("timed out"))
    with make_client(network, clock, stall_timeout=7) as client, client.fetch_blob(REF, desc) as stream, \
            pytest.raises(DeadlineExceeded, match="stall") as info:
        b"".join(stream)
    assert "7s" in str(info.value) and "registry.test" in str(info.value)


def test_overall_deadline_differs_from_stall(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)

    def slow(request: httpx.Request) -> httpx.Response | None:
        if "/blobs/" not in request.url.path:
            return None

        class Slow(httpx.SyncByteStream):
            def __iter__(self) -> Iterator[bytes]:
                for i in range(0, len(LAYER), 1024):
                    clock.advance(1.0)  # steady progress, never a stall
                    yield LAYER[i:i + 1024]

        return httpx.Response(200, stream=Slow())

    registry.hooks.append(slow)
    with make_client(network, clock, deadline=5, chunk_size=1024) as client, \
            client.fetch_blob(REF, desc) as stream, pytest.raises(DeadlineExceeded, match="5s deadline"):
        b"".join(stream)


def test_more_bytes_than_descriptor_is_data_loss(network: FakeNetwork, registry: FakeRegistry,
                                                 clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    registry.blobs[desc.digest] = LAYER + b"extra"

    def chunked(request: httpx.Request) -> httpx.Response | None:
        if "/blobs/" in request.url.path:
            return httpx.Response(200, stream=ScriptedStream([LAYER, b"extra"]))  # no Content-Length
        return None

    with make_client(network, clock) as client:
        with pytest.raises(DataLoss, match=r"registry has"):
            client.fetch_blob(REF, desc)  # Content-Length says so up front
        registry.hooks.append(chunked)
        with client.fetch_blob(REF, desc) as stream, pytest.raises(DataLoss, match="more than"):
            for _ in stream:
                pass


def test_partial_content_with_wrong_total_is_data_loss(network: FakeNetwork, registry: FakeRegistry,
                                                       clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    registry.hooks.append(lambda r: httpx.Response(206, content=LAYER[10:], headers={
        "Content-Range": f"bytes 10-{len(LAYER) - 1}/{len(LAYER) + 1}"}))
    with make_client(network, clock) as client, pytest.raises(DataLoss):
        client.fetch_blob(REF, desc, offset=10)


def test_shorter_blob_is_data_loss(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    registry.blobs[desc.digest] = LAYER[:100]
    with make_client(network, clock) as client, pytest.raises(DataLoss):
        client.fetch_blob(REF, desc)


def test_fetch_blob_bytes_verifies(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    with make_client(network, clock) as client:
        assert client.fetch_blob_bytes(REF, desc) == LAYER
        with pytest.raises(ResourceExhausted):
            client.fetch_blob_bytes(REF, desc, limit=100)
        registry.blobs[desc.digest] = bytes(len(LAYER))
        with pytest.raises(DataLoss, match="digest"):
            client.fetch_blob_bytes(REF, desc)


def test_stream_closes_its_response(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    body = ScriptedStream([LAYER[:5000], LAYER[5000:]])
    closed = [False]
    original_close = body.close

    def close() -> None:
        closed[0] = True
        original_close()

    body.close = close  # type: ignore[method-assign]
    registry.hooks.append(lambda r: httpx.Response(200, stream=body) if "/blobs/" in r.url.path else None)
    with make_client(network, clock, chunk_size=1000) as client:
        with client.fetch_blob(REF, desc) as stream:
            next(stream)
        assert closed[0]
        assert list(stream) == []  # a closed stream is exhausted


def test_redirect_to_storage_drops_authorization(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock,
                                                 token_server: FakeTokenServer) -> None:
    registry.auth = "bearer"
    registry.token_server = token_server
    desc = registry.add_blob(LAYER)
    storage: list[httpx.Request] = []

    def redirect(request: httpx.Request) -> httpx.Response | None:
        if "/blobs/" in request.url.path and request.headers.get("authorization"):
            return httpx.Response(307, headers={"Location": f"https://storage.test/b/{desc.digest}?sig=xyz"})
        return None

    def serve_storage(request: httpx.Request) -> httpx.Response:
        storage.append(request)
        if request.url.params.get("sig") != "xyz":
            return httpx.Response(403)
        return httpx.Response(200, content=LAYER)

    registry.hooks.append(redirect)
    network.add("storage.test", serve_storage)
    with make_client(network, clock) as client:
        assert client.fetch_blob_bytes(REF, desc) == LAYER
    assert len(storage) == 1
    assert "authorization" not in storage[0].headers
    assert any(r.headers.get("authorization", "").startswith("Bearer ") for r in registry.requests)


def test_same_host_relative_redirect_keeps_authorization(network: FakeNetwork, registry: FakeRegistry,
                                                         clock: FakeClock) -> None:
    registry.auth = "basic"
    registry.users = {"u": "p"}
    desc = registry.add_blob(LAYER)

    def hop(request: httpx.Request) -> httpx.Response | None:
        if "/blobs/" in request.url.path and "authorization" in request.headers and "hop" not in request.url.params:
            return httpx.Response(302, headers={"Location": f"{request.url.path}?hop=1"})
        return None

    registry.hooks.append(hop)
    with make_client(network, clock, credentials=lambda h: Credentials("u", "p")) as client:
        assert client.fetch_blob_bytes(REF, desc) == LAYER
    last = blob_gets(registry)[-1]
    assert last.url.params["hop"] == "1" and last.headers["authorization"].startswith("Basic ")


def test_retry_after_as_http_date(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    import email.utils
    import time

    registry.add_image()
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    failing(registry, httpx.Response(503, headers={"Retry-After": when}))
    with make_client(network, clock) as client:
        client.resolve(REF)
    assert len(clock.sleeps) == 1 and 25 <= clock.sleeps[0] <= 31


@pytest.mark.parametrize("option", [{"stall_timeout": 0}, {"deadline": -1}, {"max_retries": -1},
                                    {"chunk_size": 0}, {"connect_timeout": -5}])
def test_bad_options_are_invalid_argument(option: dict[str, float]) -> None:
    from hawser.registry import RegistryOptions

    with pytest.raises(InvalidArgument):
        RegistryOptions(**option)  # type: ignore[arg-type]
