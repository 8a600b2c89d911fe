"""Against a real docker-registry: htpasswd basic auth and bearer tokens."""

from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path

import pytest
from live_images import USERS, push_image
from tests.support.registry_server import RegistryHandle, start_registry

from hawser.errors import PermissionDenied
from hawser.oci import parse_reference
from hawser.registry import Credentials, RegistryClient, RegistryOptions

pytestmark = pytest.mark.integration


class OffsetClock:
    """time.monotonic, plus however far a test wants to jump ahead."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def as_user(user: str | None, password: str | None = None, **options: object) -> RegistryClient:
    def creds(host: str) -> Credentials | None:
        return None if user is None else Credentials(user, USERS.get(user, "") if password is None else password)

    return RegistryClient(RegistryOptions(plain_http=True, docker_config=None, credentials=creds,
                                          **options))  # type: ignore[arg-type]


# --- htpasswd -------------------------------------------------------------------


def test_basic_auth_push_and_pull(htpasswd_registry: RegistryHandle) -> None:
    ref = parse_reference(f"{htpasswd_registry.host}/hawser/private:v1")
    with as_user("alice") as client:
        image = push_image(client, ref)
        assert client.resolve(ref).data == image.manifest_bytes
    with as_user("bob") as client:
        assert client.fetch_blob_bytes(ref, image.config) == image.config_bytes


def test_basic_auth_wrong_password(htpasswd_registry: RegistryHandle) -> None:
    ref = parse_reference(f"{htpasswd_registry.host}/hawser/private:v1")
    with as_user("alice", "wrong") as client, pytest.raises(PermissionDenied) as info:
        client.resolve(ref)
    assert htpasswd_registry.host in str(info.value) and "hawser/private" in str(info.value)
    assert "credentials" in (info.value.hint or "")


def test_basic_auth_anonymous(htpasswd_registry: RegistryHandle) -> None:
    ref = parse_reference(f"{htpasswd_registry.host}/hawser/private:v1")
    with as_user(None) as client, pytest.raises(PermissionDenied) as info:
        client.resolve(ref)
    assert "log in" in (info.value.hint or "")


def test_credentials_from_docker_config(htpasswd_registry: RegistryHandle, tmp_path: Path) -> None:
    config = tmp_path / "config.json"
    auth = base64.b64encode(f"bob:{USERS['bob']}".encode()).decode()
    config.write_text(json.dumps({"auths": {f"http://{htpasswd_registry.host}": {"auth": auth}}}))
    ref = parse_reference(f"{htpasswd_registry.host}/hawser/from-config:v1")
    with RegistryClient(RegistryOptions(plain_http=True, docker_config=config)) as client:
        image = push_image(client, ref, layer_sizes=(10,))
        assert client.resolve(ref).descriptor == image.manifest


# --- bearer tokens ----------------------------------------------------------------------


def test_token_flow_reuses_tokens(token_registry: RegistryHandle) -> None:
    ts = token_registry.token_server
    assert ts is not None
    ref = parse_reference(f"{token_registry.host}/hawser/tokens:v1")
    with as_user("alice") as client:
        image = push_image(client, ref)
        pushes = len(ts.issued)
        assert pushes == 1  # one pull,push token for the whole push
        root = client.resolve(ref)
        for desc, data in image.layers:
            with client.fetch_blob(ref, desc) as stream:
                assert b"".join(stream) == data
        assert root.data == image.manifest_bytes
    assert len(ts.issued) == 1  # the push token served the pulls too
    assert ts.issued[0].subject == "alice"
    assert ts.issued[0].scopes[0] == "repository:hawser/tokens:pull,push"


def test_token_refreshed_after_expiry(token_registry: RegistryHandle) -> None:
    ts = token_registry.token_server
    assert ts is not None
    ref = parse_reference(f"{token_registry.host}/hawser/refresh:v1")
    clock = OffsetClock()
    with as_user("alice", clock=clock) as client:
        image = push_image(client, ref, layer_sizes=(10,))
        client.resolve(ref)
        assert len(ts.issued) == 1
        clock.offset += ts.lifetime + 1  # the client's view: the token has expired
        assert client.resolve(ref).descriptor == image.manifest
        assert len(ts.issued) == 2
        assert client.fetch_blob_bytes(ref, image.config) == image.config_bytes
        assert len(ts.issued) == 2


def test_short_lived_tokens_with_real_time(tmp_path: Path) -> None:
    with start_registry(tmp_path, auth="token", users=USERS, token_lifetime=1) as reg:
        ts = reg.token_server
        assert ts is not None
        ref = parse_reference(f"{reg.host}/hawser/short:v1")
        with as_user("bob") as client:
            push_image(client, ref, layer_sizes=(10,))
            client.resolve(ref)
            before = len(ts.issued)
            time.sleep(1.1)
            client.resolve(ref)
            assert len(ts.issued) == before + 1


def test_token_wrong_password(token_registry: RegistryHandle) -> None:
    ts = token_registry.token_server
    assert ts is not None
    ref = parse_reference(f"{token_registry.host}/hawser/tokens:v1")
    with as_user("alice", "nope") as client, pytest.raises(PermissionDenied) as info:
        client.resolve(ref)
    assert "token server" in str(info.value) and token_registry.host in str(info.value)
    assert ts.refused == 1 and ts.issued == []


def test_anonymous_pull_but_no_anonymous_push(tmp_path: Path) -> None:
    with start_registry(tmp_path, auth="token", users=USERS, allow_anonymous_pull=True) as reg:
        ref = parse_reference(f"{reg.host}/hawser/public:v1")
        with as_user("alice") as client:
            image = push_image(client, ref, layer_sizes=(10,))
        with as_user(None) as client:
            assert client.resolve(ref).descriptor == image.manifest
            with pytest.raises(PermissionDenied):
                push_image(client, parse_reference(f"{reg.host}/hawser/public:v2"), layer_sizes=(11,))


def test_identity_token(token_registry: RegistryHandle) -> None:
    ref = parse_reference(f"{token_registry.host}/hawser/identity:v1")
    creds = Credentials(username="<token>", identity_token="identity-abc")
    with RegistryClient(RegistryOptions(plain_http=True, docker_config=None, credentials=lambda h: creds)) as client:
        image = push_image(client, ref, layer_sizes=(10,))
        assert client.resolve(ref).descriptor == image.manifest
    ts = token_registry.token_server
    assert ts is not None and ts.issued[0].subject == "alice"


def test_parallel_layer_fetches_share_a_token(token_registry: RegistryHandle) -> None:
    ts = token_registry.token_server
    assert ts is not None
    ref = parse_reference(f"{token_registry.host}/hawser/parallel:v1")
    with as_user("alice") as client:
        image = push_image(client, ref, layer_sizes=tuple(20_000 + i for i in range(8)))
    with as_user("bob") as client:
        client.resolve(ref)
        errors: list[BaseException] = []

        def fetch(desc_data: tuple[object, bytes]) -> None:
            desc, data = desc_data
            try:
                assert client.fetch_blob_bytes(ref, desc) == data  # type: ignore[arg-type]
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=(layer,)) for layer in image.layers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
    bob_tokens = [i for i in ts.issued if i.subject == "bob"]
    assert len(bob_tokens) == 1
