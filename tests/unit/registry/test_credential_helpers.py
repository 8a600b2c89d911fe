"""docker-credential-NAME helpers: the protocol, and which helper the docker config picks for a host.

The helper is a real program (tests/support/cred_helper.py writes it), found on PATH.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from tests.support.cred_helper import TestHelper, write_helper

from hawser.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable
from hawser.registry import CredentialHelper, Credentials, load_docker_config


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    monkeypatch.setenv("PATH", f"{path}:/usr/bin:/bin")
    return path


@pytest.fixture
def helper(bin_dir: Path) -> TestHelper:
    return write_helper(bin_dir, "hawsertest")


def config(tmp_path: Path, doc: dict[str, object]) -> Path:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return path


def test_store_get_list_erase(helper: TestHelper) -> None:
    h = CredentialHelper("hawsertest", timeout=10)
    assert h.get("127.0.0.1:5000") is None  # "credentials not found in native keychain"
    h.store("127.0.0.1:5000", Credentials("alice", "s3cret"))
    assert helper.secrets() == {"127.0.0.1:5000": {"Username": "alice", "Secret": "s3cret"}}
    assert h.get("127.0.0.1:5000") == Credentials("alice", "s3cret")
    assert h.list() == {"127.0.0.1:5000": "alice"}
    assert h.erase("127.0.0.1:5000") is True
    assert h.erase("127.0.0.1:5000") is False
    assert helper.calls() == ["get", "store", "get", "list", "erase", "erase"]


def test_token_user_name_is_an_identity_token(helper: TestHelper) -> None:
    helper.put("quay.test", "<token>", "refresh-me")
    creds = CredentialHelper("hawsertest").get("quay.test")
    assert creds is not None and creds.identity_token == "refresh-me" and not creds.has_basic
    CredentialHelper("hawsertest").store("other.test", creds)
    assert helper.secrets()["other.test"] == {"Username": "<token>", "Secret": "refresh-me"}


def test_a_failing_helper_is_one_line(bin_dir: Path) -> None:
    write_helper(bin_dir, "broken", mode="fail")
    with pytest.raises(Unavailable) as info:
        CredentialHelper("broken").get("127.0.0.1:5000")
    message = str(info.value)
    assert "\n" not in message
    assert "docker-credential-broken get for 127.0.0.1:5000 failed (exit status 3)" in message
    assert "keychain is locked" in message


def test_a_hanging_helper_is_stopped_at_its_timeout(bin_dir: Path) -> None:
    stuck = write_helper(bin_dir, "stuck", mode="hang")
    started = time.monotonic()
    with pytest.raises(DeadlineExceeded) as info:
        CredentialHelper("stuck", timeout=0.5).get("127.0.0.1:5000")
    assert time.monotonic() - started < 5
    assert "docker-credential-stuck get for 127.0.0.1:5000 did not answer within 0.5s" in str(info.value)
    assert stuck.calls() == ["get"]


def test_a_missing_helper_and_a_bad_name(bin_dir: Path) -> None:
    with pytest.raises(FailedPrecondition, match=r"docker-credential-nope .*not installed"):
        CredentialHelper("nope").get("127.0.0.1:5000")
    for name in ("", "../../bin/sh", "a/b"):
        with pytest.raises(InvalidArgument):
            CredentialHelper(name)


def test_cred_helpers_beat_creds_store_beats_auths(tmp_path: Path, bin_dir: Path) -> None:
    per_host = write_helper(bin_dir, "perhost")
    every = write_helper(bin_dir, "every")
    per_host.put("127.0.0.1:5000", "from-per-host", "a")
    every.put("127.0.0.1:5000", "from-store", "b")
    every.put("127.0.0.1:6000", "from-store", "c")
    cfg = load_docker_config(config(tmp_path, {
        "credsStore": "every", "credHelpers": {"127.0.0.1:5000": "perhost"},
        "auths": {"127.0.0.1:5000": {"username": "from-auths", "password": "x"},
                  "127.0.0.1:7000": {"username": "from-auths", "password": "y"}}}))
    assert cfg.lookup("127.0.0.1:5000") == Credentials("from-per-host", "a")
    assert cfg.lookup("127.0.0.1:6000") == Credentials("from-store", "c")
    # The store holds nothing for it: the auths entry answers.
    assert cfg.lookup("127.0.0.1:7000") == Credentials("from-auths", "y")
    assert cfg.lookup("127.0.0.1:8000") is None


def test_helper_answers_are_reused(tmp_path: Path, helper: TestHelper) -> None:
    helper.put("127.0.0.1:5000", "alice", "pw")
    cfg = load_docker_config(config(tmp_path, {"credsStore": "hawsertest"}))
    for _ in range(5):
        assert cfg.lookup("127.0.0.1:5000") == Credentials("alice", "pw")
        assert cfg.lookup("127.0.0.1:6000") is None
    assert helper.calls() == ["get", "get"]


def test_a_helper_that_is_not_installed_leaves_the_auths(tmp_path: Path, bin_dir: Path) -> None:
    cfg = load_docker_config(config(tmp_path, {
        "credsStore": "desktop", "auths": {"127.0.0.1:5000": {"username": "u", "password": "p"}}}))
    assert cfg.lookup("127.0.0.1:5000") == Credentials("u", "p")
    assert cfg.lookup("127.0.0.1:6000") is None


def test_a_failing_helper_fails_the_lookup(tmp_path: Path, bin_dir: Path) -> None:
    write_helper(bin_dir, "broken", mode="fail")
    cfg = load_docker_config(config(tmp_path, {"credHelpers": {"127.0.0.1:5000": "broken"}}))
    with pytest.raises(Unavailable, match="docker-credential-broken"):
        cfg.lookup("127.0.0.1:5000")
    assert cfg.lookup("127.0.0.1:6000") is None  # another host: no helper named


@pytest.mark.parametrize("doc", [{"credsStore": 3}, {"credHelpers": ["x"]}, {"credHelpers": {"h": 1}}])
def test_malformed_helper_settings(tmp_path: Path, doc: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument, match=r"credsStore|credHelpers"):
        load_docker_config(config(tmp_path, doc))


def test_docker_hub_is_asked_by_its_v1_url(tmp_path: Path, helper: TestHelper) -> None:
    helper.put("https://index.docker.io/v1/", "hub", "pw")
    cfg = load_docker_config(config(tmp_path, {"credHelpers": {"docker.io": "hawsertest"}}))
    assert cfg.lookup("registry-1.docker.io") == Credentials("hub", "pw")
