"""What login and logout write: the docker config file (atomically, 0600, other
keys kept) or its credential helper; and which file both sides use."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from tests.support.cred_helper import write_helper

from hawser.errors import FailedPrecondition, InvalidArgument
from hawser.registry import (
    Credentials,
    docker_config_path,
    erase_credentials,
    load_docker_config,
    logged_in_hosts,
    store_credentials,
)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_which_file() -> None:
    home = os.path.expanduser("~")
    assert docker_config_path(environ={}) == Path(home, ".docker/config.json")
    assert docker_config_path(environ={"DOCKER_CONFIG": "/d"}) == Path("/d/config.json")
    both = {"DOCKER_CONFIG": "/d", "REGISTRY_AUTH_FILE": "/r/auth.json"}
    assert docker_config_path(environ=both) == Path("/r/auth.json")
    # A configured file beats the environment; --authfile beats everything.
    assert docker_config_path("/etc/hawser/auth.json", environ=both) == Path("/etc/hawser/auth.json")
    assert docker_config_path("/etc/x.json", authfile="/tmp/a.json", environ=both) == Path("/tmp/a.json")


def test_login_writes_0600_and_keeps_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"other.test": {"auth": b64("o:p")}}, "psFormat": "{{.ID}}",
                                "proxies": {"default": {"httpProxy": "http://127.0.0.1:3128"}}}))
    path.chmod(0o644)
    assert store_credentials(path, "127.0.0.1:5000", Credentials("alice", "s3:cret")) == str(path)
    doc = json.loads(path.read_text())
    assert doc["psFormat"] == "{{.ID}}" and doc["proxies"]["default"]["httpProxy"] == "http://127.0.0.1:3128"
    assert doc["auths"] == {"other.test": {"auth": b64("o:p")}, "127.0.0.1:5000": {"auth": b64("alice:s3:cret")}}
    assert mode_of(path) == 0o600
    assert load_docker_config(path).lookup("127.0.0.1:5000") == Credentials("alice", "s3:cret")
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]  # no temporary file left


def test_login_makes_the_file_and_its_directory(tmp_path: Path) -> None:
    path = tmp_path / "fresh" / ".docker" / "config.json"
    store_credentials(path, "https://127.0.0.1:5000/v2/", Credentials("alice", "pw"))
    assert json.loads(path.read_text()) == {"auths": {"127.0.0.1:5000": {"auth": b64("alice:pw")}}}
    assert mode_of(path) == 0o600 and mode_of(path.parent) == 0o700


def test_login_replaces_every_spelling_of_the_host(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"docker.io": {"auth": b64("old:1")},
                                          "https://index.docker.io/v1/": {"auth": b64("old:2")}}}))
    store_credentials(path, "registry-1.docker.io", Credentials("new", "3"))
    assert json.loads(path.read_text())["auths"] == {"https://index.docker.io/v1/": {"auth": b64("new:3")}}


def test_a_symlinked_file_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "docker.json"
    real.parent.mkdir()
    real.write_text("{}")
    link = tmp_path / "config.json"
    link.symlink_to(real)
    store_credentials(link, "127.0.0.1:5000", Credentials("a", "b"))
    assert link.is_symlink() and "127.0.0.1:5000" in json.loads(real.read_text())["auths"]


def test_a_malformed_file_is_not_clobbered(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        store_credentials(path, "127.0.0.1:5000", Credentials("a", "b"))
    assert path.read_text() == "{not json"


def test_logout(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"127.0.0.1:5000": {"auth": b64("a:b")}, "k.test": {"auth": b64("c:d")}},
                                "detachKeys": "ctrl-q"}))
    assert erase_credentials(path, "127.0.0.1:5000") is True
    assert json.loads(path.read_text()) == {"auths": {"k.test": {"auth": b64("c:d")}}, "detachKeys": "ctrl-q"}
    before = path.stat().st_mtime_ns, path.read_bytes()
    assert erase_credentials(path, "127.0.0.1:5000") is False
    assert (path.stat().st_mtime_ns, path.read_bytes()) == before  # nothing to forget: nothing written
    assert erase_credentials(tmp_path / "missing.json", "k.test") is False
    assert not (tmp_path / "missing.json").exists()
    assert logged_in_hosts(path) == ["k.test"]


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{path}:/usr/bin:/bin")
    return path


def test_login_and_logout_through_the_helper(tmp_path: Path, bin_dir: Path) -> None:
    helper = write_helper(bin_dir, "hawsertest")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "hawsertest", "auths": {"127.0.0.1:5000": {"auth": b64("old:pw")}}}))
    where = store_credentials(path, "127.0.0.1:5000", Credentials("alice", "s3cret"))
    assert where == "credential helper docker-credential-hawsertest"
    assert helper.secrets() == {"127.0.0.1:5000": {"Username": "alice", "Secret": "s3cret"}}
    # The file records the login, as docker's does, and keeps no secret.
    assert json.loads(path.read_text()) == {"credsStore": "hawsertest", "auths": {"127.0.0.1:5000": {}}}
    assert load_docker_config(path).lookup("127.0.0.1:5000") == Credentials("alice", "s3cret")
    assert erase_credentials(path, "127.0.0.1:5000") is True
    assert helper.secrets() == {}
    assert json.loads(path.read_text()) == {"credsStore": "hawsertest", "auths": {}}
    assert erase_credentials(path, "127.0.0.1:5000") is False


def test_cred_helpers_pick_the_helper_login_stores_with(tmp_path: Path, bin_dir: Path) -> None:
    per_host = write_helper(bin_dir, "perhost")
    every = write_helper(bin_dir, "every")
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "every", "credHelpers": {"127.0.0.1:5000": "perhost"}}))
    store_credentials(path, "127.0.0.1:5000", Credentials("a", "1"))
    store_credentials(path, "127.0.0.1:6000", Credentials("b", "2"))
    assert list(per_host.secrets()) == ["127.0.0.1:5000"] and list(every.secrets()) == ["127.0.0.1:6000"]


def test_a_helper_that_is_not_installed_stops_a_login(tmp_path: Path, bin_dir: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "desktop"}))
    with pytest.raises(FailedPrecondition, match="docker-credential-desktop"):
        store_credentials(path, "127.0.0.1:5000", Credentials("a", "b"))
    assert json.loads(path.read_text()) == {"credsStore": "desktop"}
