"""Authentication: anonymous and basic, bearer tokens, their cache and refresh."""

from __future__ import annotations

import base64
import threading

import httpx
import pytest
from registry_fakes import FakeClock, FakeNetwork, FakeRegistry, FakeTokenServer, make_client

from hawser.errors import PermissionDenied
from hawser.oci import parse_reference
from hawser.registry import Credentials
from hawser.registry._auth import AuthCache, Token, parse_token_response, scope_for

REF = parse_reference("registry.test/team/app:v1")


@pytest.fixture
def bearer(registry: FakeRegistry, token_server: FakeTokenServer) -> FakeRegistry:
    registry.auth = "bearer"
    registry.token_server = token_server
    registry.add_image()
    return registry


def auth_headers(registry: FakeRegistry) -> list[str | None]:
    return [r.headers.get("authorization") for r in registry.requests]


def test_anonymous_registry_sends_no_authorization(network: FakeNetwork, registry: FakeRegistry,
                                                   clock: FakeClock) -> None:
    registry.add_image()
    with make_client(network, clock, credentials=lambda h: Credentials("u", "p")) as client:
        client.resolve(REF)
    assert auth_headers(registry) == [None]


def test_bearer_challenge_fetches_token_with_scope_and_service(network: FakeNetwork, bearer: FakeRegistry,
                                                               token_server: FakeTokenServer,
                                                               clock: FakeClock) -> None:
    with make_client(network, clock) as client:
        client.resolve(REF)
    assert auth_headers(bearer) == [None, "Bearer tok-1"]
    (req,) = token_server.requests
    assert req.url.params.get_list("scope") == ["repository:team/app:pull"]
    assert req.url.params["service"] == "registry.test"
    assert "authorization" not in req.headers  # anonymous


def test_token_is_reused_until_expiry_then_refreshed(network: FakeNetwork, bearer: FakeRegistry,
                                                     token_server: FakeTokenServer, clock: FakeClock) -> None:
    token_server.lifetime = 120
    _, config, _ = bearer.add_image()
    with make_client(network, clock) as client:
        client.resolve(REF)
        clock.advance(60)
        client.fetch_blob_bytes(REF, config)
        client.resolve(REF)
        assert len(token_server.issued) == 1
        # Up front, without another 401: the challenge is remembered.
        assert auth_headers(bearer)[1:] == ["Bearer tok-1"] * 3
        clock.advance(55)  # 115s: inside the early-refresh margin of a 120s token
        client.resolve(REF)
    assert len(token_server.issued) == 2
    assert auth_headers(bearer)[-1] == "Bearer tok-2"


def test_missing_expires_in_means_sixty_seconds(network: FakeNetwork, bearer: FakeRegistry,
                                                token_server: FakeTokenServer, clock: FakeClock) -> None:
    token_server.lifetime = None
    with make_client(network, clock) as client:
        client.resolve(REF)
        clock.advance(40)
        client.resolve(REF)
        assert len(token_server.issued) == 1
        clock.advance(20)
        client.resolve(REF)
    assert len(token_server.issued) == 2


def test_token_rejected_by_registry_is_replaced_once(network: FakeNetwork, bearer: FakeRegistry,
                                                     token_server: FakeTokenServer, clock: FakeClock) -> None:
    with make_client(network, clock) as client:
        client.resolve(REF)
        bearer.revoked.add("tok-1")  # e.g. the registry restarted with a new key
        client.resolve(REF)
    assert auth_headers(bearer)[-2:] == ["Bearer tok-1", "Bearer tok-2"]


def test_token_cache_is_per_host_and_scope(network: FakeNetwork, bearer: FakeRegistry,
                                           token_server: FakeTokenServer, clock: FakeClock) -> None:
    other = FakeRegistry(host="other.test", auth="bearer", token_server=token_server)
    network.add("other.test", other.handle)
    other.add_image()
    bearer.add_image(repo="team/second")
    with make_client(network, clock) as client:
        client.resolve(REF)
        client.resolve(parse_reference("registry.test/team/second:v1"))
        client.resolve(parse_reference("other.test/team/app:v1"))
        client.resolve(REF)
    assert [i[2] for i in token_server.issued] == [
        ("repository:team/app:pull",), ("repository:team/second:pull",), ("repository:team/app:pull",)]


def test_push_token_serves_pulls(network: FakeNetwork, bearer: FakeRegistry, token_server: FakeTokenServer,
                                 clock: FakeClock) -> None:
    token_server.users = {"u": "p"}
    with make_client(network, clock, credentials=lambda h: Credentials("u", "p")) as client:
        client.push_manifest(REF, bearer.manifests[("team/app", "v1")][0], "application/vnd.oci.image.manifest.v1+json",
                             tag="v2")
        client.resolve(REF)
    assert len(token_server.issued) == 1
    assert token_server.issued[0][2] == ("repository:team/app:pull,push",)


def test_bearer_with_credentials_sends_basic_to_token_server(network: FakeNetwork, bearer: FakeRegistry,
                                                             token_server: FakeTokenServer, clock: FakeClock) -> None:
    token_server.users = {"alice": "s3cret"}
    token_server.allow_anonymous = False
    with make_client(network, clock, credentials=lambda h: Credentials("alice", "s3cret")) as client:
        client.resolve(REF)
    req = token_server.requests[0]
    assert req.headers["authorization"] == "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert req.url.params["account"] == "alice"


def test_token_server_refusing_is_permission_denied(network: FakeNetwork, bearer: FakeRegistry,
                                                    token_server: FakeTokenServer, clock: FakeClock) -> None:
    token_server.users = {"alice": "right"}
    with make_client(network, clock, credentials=lambda h: Credentials("alice", "wrong")) as client, \
            pytest.raises(PermissionDenied) as info:
        client.resolve(REF)
    text = str(info.value)
    assert "auth.test" in text and "registry.test" in text and "alice" in text and "wrong" not in text


def test_anonymous_refused_hints_at_login(network: FakeNetwork, bearer: FakeRegistry,
                                          token_server: FakeTokenServer, clock: FakeClock) -> None:
    token_server.allow_anonymous = False
    with make_client(network, clock) as client, pytest.raises(PermissionDenied) as info:
        client.resolve(REF)
    assert info.value.hint and "log in" in info.value.hint


def test_identity_token_uses_oauth2_refresh_grant(network: FakeNetwork, bearer: FakeRegistry,
                                                  token_server: FakeTokenServer, clock: FakeClock) -> None:
    creds = Credentials(username="<token>", identity_token="identity-123")
    with make_client(network, clock, credentials=lambda h: creds) as client:
        client.resolve(REF)
    req = token_server.requests[0]
    assert req.method == "POST"
    form = dict(x.split("=", 1) for x in req.content.decode().split("&"))
    assert form["grant_type"] == "refresh_token" and form["refresh_token"] == "identity-123"
    assert form["service"] == "registry.test"


def test_basic_auth(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.auth = "basic"
    registry.users = {"bob": "pw"}
    registry.add_image()
    with make_client(network, clock, credentials=lambda h: Credentials("bob", "pw")) as client:
        client.resolve(REF)
        client.resolve(REF)
    assert auth_headers(registry) == [None] + ["Basic " + base64.b64encode(b"bob:pw").decode()] * 2


def test_basic_auth_wrong_password(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.auth = "basic"
    registry.users = {"bob": "pw"}
    registry.add_image()
    with make_client(network, clock, credentials=lambda h: Credentials("bob", "nope")) as client, \
            pytest.raises(PermissionDenied) as info:
        client.resolve(REF)
    assert "registry.test" in str(info.value) and "team/app" in str(info.value)
    assert "credentials" in (info.value.hint or "")
    assert len(registry.requests) == 2  # one anonymous, one with the credentials: no loop


def test_basic_auth_without_credentials(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.auth = "basic"
    registry.add_image()
    with make_client(network, clock) as client, pytest.raises(PermissionDenied) as info:
        client.resolve(REF)
    assert "log in" in (info.value.hint or "")


def test_forbidden_is_permission_denied(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.hooks.append(lambda r: httpx.Response(403, json={"errors": [{"code": "DENIED", "message": "nope"}]}))
    with make_client(network, clock) as client, pytest.raises(PermissionDenied, match="DENIED"):
        client.resolve(REF)


@pytest.mark.parametrize("realm", ["ftp://auth.test/token", "/relative/token", ""])
def test_unusable_realm(network: FakeNetwork, bearer: FakeRegistry, clock: FakeClock, realm: str) -> None:
    bearer.realm = realm
    with make_client(network, clock) as client, pytest.raises(PermissionDenied):
        client.resolve(REF)


def test_parallel_threads_share_one_token(network: FakeNetwork, bearer: FakeRegistry,
                                          token_server: FakeTokenServer, clock: FakeClock) -> None:
    blobs = [bearer.add_blob(bytes([i]) * 5000) for i in range(16)]
    gate = threading.Barrier(8)
    errors: list[BaseException] = []
    with make_client(network, clock) as client:
        client.resolve(REF)  # learn the challenge

        def worker(n: int) -> None:
            try:
                gate.wait()
                for desc in blobs[n::8]:
                    assert client.fetch_blob_bytes(REF, desc) == bearer.blobs[desc.digest]
            except BaseException as exc:  # collected for the main thread
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert len(token_server.issued) == 1


def test_auth_cache_unit() -> None:
    clock = FakeClock()
    cache = AuthCache(clock)
    cache.store("h", scope_for("r"), Token("a", expires_at=clock() + 10))
    assert cache.token("h", "repository:r:pull") == Token("a", clock() + 10)
    assert cache.token("other", "repository:r:pull") is None
    cache.invalidate("h", "repository:r:pull", "not-a")
    assert cache.token("h", "repository:r:pull") is not None
    clock.advance(10)
    assert cache.token("h", "repository:r:pull") is None


def test_parse_token_response() -> None:
    tok = parse_token_response(b'{"access_token": "x", "expires_in": 300}', now=0, where="t")
    assert tok.value == "x" and 280 <= tok.expires_at < 300
    tok = parse_token_response(b'{"token": "y", "expires_in": 4}', now=0, where="t")
    assert 0 < tok.expires_at < 4
    assert parse_token_response(b'{"token": "z", "expires_in": "soon"}', now=0, where="t").expires_at == 50
    for bad in (b"nope", b"[]", b'{"token": ""}', b'{"token": 5}'):
        with pytest.raises(Exception, match="token server"):
            parse_token_response(bad, now=0, where="t")
