"""docker config.json credentials and the injected credentials callback."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from registry_fakes import FakeClock, FakeNetwork, FakeRegistry, make_client

from hawser.errors import InvalidArgument, PermissionDenied
from hawser.oci import parse_reference
from hawser.registry import Credentials
from hawser.registry._credentials import load_docker_config, normalize_host


def write_config(tmp_path: Path, auths: object) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths, "credsStore": "desktop"}))
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auth_field_is_base64_user_colon_password(tmp_path: Path) -> None:
    cfg = load_docker_config(write_config(tmp_path, {"registry.example.com": {"auth": b64("alice:pa:ss")}}))
    assert cfg.lookup("registry.example.com") == Credentials("alice", "pa:ss")


def test_username_and_password_fields(tmp_path: Path) -> None:
    cfg = load_docker_config(write_config(tmp_path, {"127.0.0.1:5000": {"username": "bob", "password": "pw"}}))
    assert cfg.lookup("127.0.0.1:5000") == Credentials("bob", "pw")
    assert cfg.lookup("127.0.0.1") is None  # the port is part of the key


def test_identity_token(tmp_path: Path) -> None:
    cfg = load_docker_config(write_config(tmp_path, {"quay.test": {"auth": b64("<token>:"), "identitytoken": "idt"}}))
    creds = cfg.lookup("quay.test")
    assert creds is not None and creds.identity_token == "idt" and not creds.has_basic


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "index.docker.io", "docker.io",
                                 "https://registry-1.docker.io", "registry-1.docker.io"])
def test_docker_hub_spellings(tmp_path: Path, key: str) -> None:
    cfg = load_docker_config(write_config(tmp_path, {key: {"auth": b64("hub:pw")}}))
    for host in ("docker.io", "registry-1.docker.io", "index.docker.io"):
        assert cfg.lookup(host) == Credentials("hub", "pw")


def test_scheme_and_path_in_keys_are_ignored(tmp_path: Path) -> None:
    cfg = load_docker_config(write_config(tmp_path, {"https://Registry.Example.com:8443/v2/": {"auth": b64("a:b")}}))
    assert cfg.lookup("registry.example.com:8443") == Credentials("a", "b")


def test_exact_key_wins_over_alias(tmp_path: Path) -> None:
    cfg = load_docker_config(write_config(tmp_path, {
        "docker.io": {"auth": b64("exact:1")}, "https://index.docker.io/v1/": {"auth": b64("alias:2")}}))
    assert cfg.lookup("docker.io") == Credentials("exact", "1")


def test_missing_file_means_anonymous(tmp_path: Path) -> None:
    assert load_docker_config(tmp_path / "nope.json").lookup("docker.io") is None


def test_entry_without_secrets_is_anonymous(tmp_path: Path) -> None:
    cfg = load_docker_config(write_config(tmp_path, {"reg.test": {}}))
    assert cfg.lookup("reg.test") is None


@pytest.mark.parametrize("content", ["{not json", "[]", '{"auths": []}'])
def test_broken_file_is_invalid_argument_naming_it(tmp_path: Path, content: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(InvalidArgument, match=r"config\.json"):
        load_docker_config(path)


@pytest.mark.parametrize("entry", [{"auth": "!!!not base64"}, {"auth": b64("no-colon")}, {"auth": 7},
                                   {"username": 1}, "a string"])
def test_broken_entry_fails_only_when_used(tmp_path: Path, entry: object) -> None:
    cfg = load_docker_config(write_config(tmp_path, {"bad.test": entry, "good.test": {"auth": b64("g:p")}}))
    assert cfg.lookup("good.test") == Credentials("g", "p")
    with pytest.raises(InvalidArgument, match=r"bad\.test"):
        cfg.lookup("bad.test")


def test_secrets_stay_out_of_repr() -> None:
    text = repr(Credentials("user", "hunter2", "idtoken-secret"))
    assert "hunter2" not in text and "idtoken-secret" not in text and "user" in text


def test_normalize_host() -> None:
    assert normalize_host("HTTPS://Index.Docker.IO/v1/") == "docker.io"
    assert normalize_host("localhost:5000/some/path") == "localhost:5000"


def test_callback_takes_precedence_over_docker_config(tmp_path: Path, network: FakeNetwork,
                                                      registry: FakeRegistry, clock: FakeClock) -> None:
    registry.auth = "basic"
    registry.users = {"from-callback": "pw1", "from-file": "pw2"}
    registry.add_image()
    config = write_config(tmp_path, {"registry.test": {"auth": b64("from-file:pw2")}})
    asked: list[str] = []

    def callback(host: str) -> Credentials | None:
        asked.append(host)
        return Credentials("from-callback", "pw1")

    with make_client(network, clock, credentials=callback, docker_config=config) as client:
        client.resolve(parse_reference("registry.test/team/app:v1"))
    assert asked and set(asked) == {"registry.test"}
    used = {r.headers.get("authorization") for r in registry.requests} - {None}
    assert used == {"Basic " + b64("from-callback:pw1")}


def test_callback_returning_none_falls_back_to_docker_config(tmp_path: Path, network: FakeNetwork,
                                                             registry: FakeRegistry, clock: FakeClock) -> None:
    registry.auth = "basic"
    registry.users = {"from-file": "pw2"}
    registry.add_image()
    config = write_config(tmp_path, {"https://registry.test": {"auth": b64("from-file:pw2")}})
    with make_client(network, clock, credentials=lambda host: None, docker_config=config) as client:
        client.resolve(parse_reference("registry.test/team/app:v1"))


def test_docker_config_changes_are_seen(tmp_path: Path, network: FakeNetwork, registry: FakeRegistry,
                                        clock: FakeClock) -> None:
    registry.auth = "basic"
    registry.users = {"new": "pw"}
    registry.add_image()
    config = write_config(tmp_path, {"registry.test": {"auth": b64("old:pw")}})
    with make_client(network, clock, docker_config=config) as client:
        with pytest.raises(PermissionDenied):
            client.resolve(parse_reference("registry.test/team/app:v1"))
        # A `login` while the client lives: the file is read again.
        write_config(tmp_path, {"registry.test": {"auth": b64("new:pw"), "note": "a longer file than before"}})
        client.resolve(parse_reference("registry.test/team/app:v1"))
