"""Registry faults at the client's level: slow drips, a Retry-After too long to
wait, manifest bodies that break off, a token revoked in the middle of a blob.
The whole-pull versions run against a real registry in
tests/integration/registry/test_registry_faults.py."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from registry_fakes import FakeClock, FakeNetwork, FakeRegistry, FakeTokenServer, ScriptedStream, make_client

from hawser.errors import DeadlineExceeded, InvalidArgument, Unavailable
from hawser.oci import parse_reference
from hawser.registry._transport import MAX_RETRY_AFTER, DripWatch

REF = parse_reference("registry.test/team/app:v1")
LAYER = bytes(range(256)) * 40  # 10240 bytes


def dripping(clock: FakeClock, data: bytes, *, piece: int, every: float) -> httpx.SyncByteStream:
    """A body of ``piece`` bytes at a time, each ``every`` seconds after the last."""

    class Drip(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for i in range(0, len(data), piece):
                clock.advance(every)
                yield data[i:i + piece]

    return Drip()


def drip_hook(registry: FakeRegistry, clock: FakeClock, path_part: str, *, piece: int, every: float) -> None:
    def hook(request: httpx.Request) -> httpx.Response | None:
        if path_part not in request.url.path or request.method != "GET":
            return None
        real = registry.route(request)
        body = real.read()
        headers = {k: v for k, v in real.headers.items() if k.lower() != "content-length"}
        return httpx.Response(real.status_code, headers=headers,
                              stream=dripping(clock, body, piece=piece, every=every))

    registry.hooks.append(hook)


# --- slow drips ----------------------------------------------------------------


def test_blob_dripping_below_the_stall_rate_is_a_stall(network: FakeNetwork, registry: FakeRegistry,
                                                       clock: FakeClock) -> None:
    """10 bytes every 0.5s never goes quiet for the 2s stall timeout, but
    brings 40 bytes per 2s, under the 1 KiB the window asks for."""
    desc = registry.add_blob(LAYER)
    drip_hook(registry, clock, "/blobs/", piece=10, every=0.5)
    got = bytearray()
    with make_client(network, clock, stall_timeout=2) as client, client.fetch_blob(REF, desc) as stream, \
            pytest.raises(DeadlineExceeded, match=r"stall timeout") as info:
        for chunk in stream:
            got += chunk
    assert "sent only 40 bytes in 2.0s" in str(info.value), info.value
    assert "fewer than 1024 bytes in 2s" in str(info.value)
    # What arrived before the window ran out was handed out (a pull keeps it for a resume).
    assert bytes(got) == LAYER[:len(got)] and len(got) == 30 and stream.position == 30


def test_slow_but_steady_blob_is_not_a_stall(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)
    drip_hook(registry, clock, "/blobs/", piece=1024, every=0.9)  # 1024 bytes per 0.9s: enough per 2s window
    with make_client(network, clock, stall_timeout=2) as client, client.fetch_blob(REF, desc) as stream:
        assert b"".join(stream) == LAYER


def test_drip_check_can_be_turned_off(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER[:500])
    drip_hook(registry, clock, "/blobs/", piece=10, every=0.5)
    with make_client(network, clock, stall_timeout=2, stall_bytes=0) as client, \
            client.fetch_blob(REF, desc) as stream:
        assert b"".join(stream) == LAYER[:500]


def test_time_spent_by_the_consumer_is_not_a_stall(network: FakeNetwork, registry: FakeRegistry,
                                                   clock: FakeClock) -> None:
    """Slow unpacking or a slow disk between reads does not count as waiting."""
    desc = registry.add_blob(LAYER)
    drip_hook(registry, clock, "/blobs/", piece=100, every=0.0)
    with make_client(network, clock, stall_timeout=2, chunk_size=100) as client, \
            client.fetch_blob(REF, desc) as stream:
        got = bytearray()
        for chunk in stream:
            got += chunk
            clock.advance(5.0)
    assert bytes(got) == LAYER


def test_manifest_dripping_is_a_stall(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.add_image()
    drip_hook(registry, clock, "/manifests/", piece=5, every=0.5)
    with make_client(network, clock, stall_timeout=2) as client, \
            pytest.raises(DeadlineExceeded, match=r"resolving .* sent only 20 bytes in 2.0s"):
        client.resolve(REF)


def test_silence_after_some_bytes_hands_them_out_first(network: FakeNetwork, registry: FakeRegistry,
                                                       clock: FakeClock) -> None:
    desc = registry.add_blob(LAYER)

    def hook(request: httpx.Request) -> httpx.Response | None:
        if "/blobs/" not in request.url.path:
            return None
        return httpx.Response(200, stream=ScriptedStream([LAYER[:700]], httpx.ReadTimeout("timed out")))

    registry.hooks.append(hook)
    with make_client(network, clock, stall_timeout=3) as client, client.fetch_blob(REF, desc) as stream:
        assert next(stream) == LAYER[:700]
        with pytest.raises(DeadlineExceeded, match="sent nothing for 3s"):
            next(stream)
        assert stream.position == 700
        assert list(stream) == []  # closed by the error


def test_drip_watch_unit() -> None:
    clock = FakeClock()
    watch = DripWatch(clock, window=10.0, min_bytes=100)
    since = clock()
    clock.advance(6)
    assert not watch.arrived(since, 60)
    since = clock()
    clock.advance(5)
    assert not watch.arrived(since, 60)  # 120 bytes in 11s: enough, a new window starts
    since = clock()
    clock.advance(10)
    assert watch.arrived(since, 99)
    assert not DripWatch(clock, window=10.0, min_bytes=0).arrived(since, 0)


def test_negative_stall_bytes_is_invalid() -> None:
    from hawser.registry import RegistryOptions

    with pytest.raises(InvalidArgument, match="stall_bytes"):
        RegistryOptions(stall_bytes=-1)


# --- Retry-After -----------------------------------------------------------------


def failing(registry: FakeRegistry, *responses: httpx.Response) -> None:
    queue = list(responses)
    registry.hooks.append(lambda r: queue.pop(0) if queue else None)


@pytest.mark.parametrize("value", [str(int(MAX_RETRY_AFTER) + 1), "86400",
                                   email.utils.formatdate(time.time() + 3600, usegmt=True)])
def test_retry_after_beyond_the_cap_fails_at_once(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock,
                                                  value: str) -> None:
    registry.add_image()
    failing(registry, httpx.Response(429, headers={"Retry-After": value}))
    with make_client(network, clock) as client, pytest.raises(Unavailable) as info:
        client.resolve(REF)
    assert clock.sleeps == []
    assert len(registry.requests) == 1
    message = str(info.value)
    assert "answered 429" in message and "asks to retry after" in message and "longer than hawser waits" in message


@pytest.mark.parametrize("value", ["0", "Thu, 01 Jan 1970 00:00:00 GMT", "soon", ""])
def test_retry_after_zero_past_or_garbage_means_the_backoff(network: FakeNetwork, registry: FakeRegistry,
                                                            clock: FakeClock, value: str) -> None:
    registry.add_image()
    failing(registry, httpx.Response(429, headers={"Retry-After": value}))
    with make_client(network, clock) as client:
        client.resolve(REF)
    assert clock.sleeps == [0.5]


def test_mirror_asking_for_a_long_wait_is_skipped(tmp_path: Path, network: FakeNetwork, registry: FakeRegistry,
                                                  clock: FakeClock) -> None:
    busy = FakeRegistry(host="busy.test")
    busy.hooks.append(lambda r: httpx.Response(429, headers={"Retry-After": "3600"}))
    network.add("busy.test", busy.handle)
    desc, _, _ = registry.add_image()
    (tmp_path / "registry.test").mkdir()
    (tmp_path / "registry.test" / "hosts.toml").write_text('[host."https://busy.test"]\n')
    with make_client(network, clock, config_dir=tmp_path) as client:
        assert client.resolve(REF).descriptor == desc
    assert len(busy.requests) == 1 and clock.sleeps == []


def test_retry_after_on_a_blob_resume(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    """A drop, then the resume is told to wait 3s: it waits, then carries on."""
    desc = registry.add_blob(LAYER)
    state = {"gets": 0}

    def hook(request: httpx.Request) -> httpx.Response | None:
        if "/blobs/" not in request.url.path:
            return None
        state["gets"] += 1
        if state["gets"] == 1:
            return httpx.Response(200, stream=ScriptedStream([LAYER[:4000]], httpx.ReadError("reset")))
        if state["gets"] == 2:
            return httpx.Response(429, headers={"Retry-After": "3"})
        return None

    registry.hooks.append(hook)
    with make_client(network, clock) as client, client.fetch_blob(REF, desc) as stream:
        assert b"".join(stream) == LAYER
        assert stream.resumes == 1
    assert clock.sleeps == [3.0]
    assert registry.requests[-1].headers["range"] == "bytes=4000-"


# --- manifest bodies that break off ---------------------------------------------


def test_manifest_body_cut_short_is_fetched_again(network: FakeNetwork, registry: FakeRegistry,
                                                  clock: FakeClock) -> None:
    desc, _, _ = registry.add_image()
    cuts = [2]

    def hook(request: httpx.Request) -> httpx.Response | None:
        if "/manifests/" not in request.url.path or not cuts[0]:
            return None
        cuts[0] -= 1
        body = registry.route(request).read()
        return httpx.Response(200, headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                              stream=ScriptedStream([body[:50]], httpx.RemoteProtocolError(
                                  "peer closed connection without sending complete message body")))

    registry.hooks.append(hook)
    with make_client(network, clock) as client:
        assert client.resolve(REF).descriptor.digest == desc.digest
    assert clock.sleeps == [0.5, 1.0]


def test_manifest_body_that_keeps_breaking_off_is_unavailable(network: FakeNetwork, registry: FakeRegistry,
                                                              clock: FakeClock) -> None:
    registry.add_image()
    registry.hooks.append(lambda r: httpx.Response(200, stream=ScriptedStream(
        [b"{"], httpx.ReadError("[Errno 104] Connection reset by peer"))))
    with make_client(network, clock, max_retries=2) as client, \
            pytest.raises(Unavailable, match="reset by peer"):
        client.resolve(REF)
    assert len(registry.requests) == 3


# --- a token revoked mid-blob --------------------------------------------------------


def test_token_revoked_before_a_blob_resume_is_refreshed_once(network: FakeNetwork, registry: FakeRegistry,
                                                              token_server: FakeTokenServer,
                                                              clock: FakeClock) -> None:
    registry.auth = "bearer"
    registry.token_server = token_server
    desc = registry.add_blob(LAYER)
    state = {"gets": 0}

    def hook(request: httpx.Request) -> httpx.Response | None:
        if "/blobs/" not in request.url.path or "authorization" not in request.headers:
            return None
        state["gets"] += 1
        if state["gets"] == 1:
            real = registry.route(request)
            registry.revoked.add(request.headers["authorization"][len("Bearer "):])
            return httpx.Response(200, stream=ScriptedStream([real.read()[:3000]], httpx.ReadError("reset")))
        return None

    registry.hooks.append(hook)
    with make_client(network, clock) as client, client.fetch_blob(REF, desc) as stream:
        assert b"".join(stream) == LAYER
    assert [t for t, _, _ in token_server.issued] == ["tok-1", "tok-2"]
    assert [r.headers.get("authorization") for r in registry.requests] == [
        None, "Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]


def test_invalid_token_error_keeps_the_tokens_of_other_scopes(network: FakeNetwork, registry: FakeRegistry,
                                                              token_server: FakeTokenServer,
                                                              clock: FakeClock) -> None:
    """A 401 with error="invalid_token" (RFC 6750) for one repository's token is
    the same challenge as before: the other repository's token stays cached."""
    registry.auth = "bearer"
    registry.token_server = token_server
    registry.add_image(repo="team/app")
    registry.add_image(repo="team/other")
    other = parse_reference("registry.test/team/other:v1")

    def invalid_token(request: httpx.Request) -> httpx.Response | None:
        auth = request.headers.get("authorization", "")
        if auth[len("Bearer "):] in registry.revoked:
            return httpx.Response(401, headers={"WWW-Authenticate": (
                f'Bearer realm="{registry.realm}",service="{registry.host}",'
                'scope="repository:team/app:pull",error="invalid_token"')})
        return None

    registry.hooks.append(invalid_token)
    with make_client(network, clock) as client:
        client.resolve(REF)
        client.resolve(other)
        registry.revoked.add("tok-1")  # team/app's token
        client.resolve(REF)
        client.resolve(other)
    assert [t for t, _, _ in token_server.issued] == ["tok-1", "tok-2", "tok-3"]
    assert [r.headers.get("authorization") for r in registry.requests][-3:] == [
        "Bearer tok-1", "Bearer tok-3", "Bearer tok-2"]
