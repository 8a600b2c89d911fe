"""``hawser login`` / ``logout`` against a real docker-registry (Basic auth, and
Bearer through a token server), and credential helpers feeding ``hawser pull``.

The docker config is always a test's own (DOCKER_CONFIG, REGISTRY_AUTH_FILE or
--authfile); helpers are tests/support/cred_helper.py scripts on PATH."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.registry import Credentials, RegistryClient, RegistryOptions
from tests.integration.conftest import Env, one_line
from tests.support.cred_helper import TestHelper, write_helper
from tests.support.images import build_image, push_image
from tests.support.layers import busybox_layers
from tests.support.registry_server import RegistryHandle, start_registry

pytestmark = pytest.mark.integration

USER, PASSWORD = "alice", "s3cret-pw"


@pytest.fixture(scope="module", params=["htpasswd", "token"])
def private(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[tuple[RegistryHandle, str]]:
    """A registry that lets nobody in without credentials, with an image pushed."""
    with start_registry(str(tmp_path_factory.mktemp("login-registry")), auth=request.param,
                        users={USER: PASSWORD}) as handle:
        ref = f"{handle.host}/private/busybox:latest"
        with RegistryClient(RegistryOptions(plain_http=True, docker_config=None,
                                            credentials=lambda host: Credentials(USER, PASSWORD))) as client:
            push_image(client, ref, build_image(busybox_layers()), tag="latest")
        yield handle, ref


def login(env: Env, host: str, password: str, *, extra: dict[str, str], flags: tuple[str, ...] = ()
          ) -> tuple[int, str, str]:
    cmd = env._argv(("login", "--plain-http", "-u", USER, "--password-stdin", *flags, host))
    proc = subprocess.run(cmd, input=password + "\n", capture_output=True, text=True, timeout=60,
                          env={**os.environ, **extra})
    return proc.returncode, proc.stdout, proc.stderr


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_login_pull_logout(overlay_env: Env, private: tuple[RegistryHandle, str], tmp_path: Path) -> None:
    handle, ref = private
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    config = docker_dir / "config.json"
    env = {"DOCKER_CONFIG": str(docker_dir)}

    # A wrong password with no file yet: one line, and no file made.
    code, out, err = login(overlay_env, handle.host, "wrong", extra=env)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"hawser: login to {handle.host} failed: "), err
    assert not config.exists()

    # A wrong password with a file: the file is left byte for byte.
    config.write_text(json.dumps({"auths": {}, "psFormat": "table {{.ID}}"}))
    before = config.read_bytes()
    code, _, err = login(overlay_env, handle.host, "wrong", extra=env)
    assert code == 1 and err.startswith(f"hawser: login to {handle.host} failed: "), err
    assert config.read_bytes() == before

    # The right one: written (0600, the other keys kept), and a pull needs nothing more.
    code, out, err = login(overlay_env, handle.host, PASSWORD, extra=env)
    assert (code, out, err) == (0, "Login Succeeded\n", "")
    doc = json.loads(config.read_text())
    assert doc["psFormat"] == "table {{.ID}}" and list(doc["auths"]) == [handle.host]
    assert mode_of(config) == 0o600
    overlay_env.cli("pull", "--plain-http", "-q", ref, env=env)
    assert ref in overlay_env.cli("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.splitlines()

    # Logout removes it; a second logout says there was nothing to remove.
    proc = overlay_env.cli("logout", handle.host, env=env)
    assert proc.stdout == f"Removed login credentials for {handle.host}\n"
    assert json.loads(config.read_text()) == {"auths": {}, "psFormat": "table {{.ID}}"}
    line = one_line(overlay_env.cli("logout", handle.host, env=env, check=False))
    assert line.startswith(f"hawser: not logged in to {handle.host}")


def test_password_flag_authfile_and_registry_auth_file(overlay_env: Env, private: tuple[RegistryHandle, str],
                                                       tmp_path: Path) -> None:
    """-p warns as docker does; --authfile names the file; REGISTRY_AUTH_FILE is honoured by
    login and pull alike."""
    handle, ref = private
    authfile = tmp_path / "auth" / "auth.json"
    proc = overlay_env.cli("login", "--plain-http", "-u", USER, "-p", PASSWORD, "--authfile", str(authfile),
                           handle.host)
    assert "insecure" in proc.stderr and proc.stdout == "Login Succeeded\n"
    assert mode_of(authfile) == 0o600
    env = {"REGISTRY_AUTH_FILE": str(authfile), "DOCKER_CONFIG": str(tmp_path / "elsewhere")}
    overlay_env.cli("pull", "--plain-http", "-q", ref, env=env)
    overlay_env.cli("logout", handle.host, env=env)
    assert json.loads(authfile.read_text()) == {"auths": {}}


def _helper_env(helper: TestHelper, docker_dir: Path) -> dict[str, str]:
    return {"DOCKER_CONFIG": str(docker_dir), "PATH": f"{helper.bin_dir}:{os.environ['PATH']}"}


def test_credential_helper_login_pull_logout(overlay_env: Env, private: tuple[RegistryHandle, str],
                                             tmp_path: Path) -> None:
    handle, ref = private
    helper = write_helper(tmp_path / "bin", "hawsertest")
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    config = docker_dir / "config.json"
    config.write_text(json.dumps({"credsStore": "hawsertest"}))
    env = _helper_env(helper, docker_dir)

    code, _, err = login(overlay_env, handle.host, "wrong", extra=env)
    assert code == 1 and helper.secrets() == {}, err
    assert login(overlay_env, handle.host, PASSWORD, extra=env)[0] == 0
    assert helper.secrets() == {handle.host: {"Username": USER, "Secret": PASSWORD}}
    # The file records the login and keeps no secret.
    assert json.loads(config.read_text()) == {"credsStore": "hawsertest", "auths": {handle.host: {}}}

    overlay_env.cli("pull", "--plain-http", "-q", ref, env=env)
    assert "get" in helper.calls()
    # push takes its credentials from the helper too (the registry lets nobody push without).
    pushed = f"{handle.host}/private/pushed:v1"
    calls = len(helper.calls())
    digest = overlay_env.cli("push", "--plain-http", "-q", ref, pushed, env=env).stdout.strip()
    assert digest.startswith("sha256:") and "get" in helper.calls()[calls:]

    overlay_env.cli("logout", handle.host, env=env)
    assert helper.secrets() == {} and helper.calls()[-1] == "erase"
    # Logged out: the same push is refused in one line.
    line = one_line(overlay_env.cli("push", "--plain-http", "-q", ref, pushed, env=env, check=False))
    assert line.startswith("hawser: "), line


def test_cred_helpers_beat_creds_store(overlay_env: Env, private: tuple[RegistryHandle, str],
                                       tmp_path: Path) -> None:
    handle, ref = private
    good = write_helper(tmp_path / "bin", "hawsertest")
    broken = write_helper(tmp_path / "bin", "broken", mode="fail")
    good.put(handle.host, USER, PASSWORD)
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    (docker_dir / "config.json").write_text(json.dumps(
        {"credsStore": "broken", "credHelpers": {handle.host: "hawsertest"}}))
    overlay_env.cli("pull", "--plain-http", "-q", ref, env=_helper_env(good, docker_dir))
    assert broken.calls() == []


def test_a_failing_or_hanging_helper_is_one_line(overlay_env: Env, private: tuple[RegistryHandle, str],
                                                 tmp_path: Path) -> None:
    handle, ref = private
    with open(overlay_env.config_file, "a", encoding="utf-8") as f:
        f.write("[registry]\ncredential_helper_timeout = 1.0\n")
    broken = write_helper(tmp_path / "bin", "broken", mode="fail")
    stuck = write_helper(tmp_path / "bin", "stuck", mode="hang")
    docker_dir = tmp_path / "docker"
    docker_dir.mkdir()
    config = docker_dir / "config.json"
    env = _helper_env(broken, docker_dir)

    config.write_text(json.dumps({"credHelpers": {handle.host: "broken"}}))
    line = one_line(overlay_env.cli("pull", "--plain-http", "-q", ref, env=env, check=False))
    assert "credential helper docker-credential-broken get for" in line and "keychain is locked" in line, line

    config.write_text(json.dumps({"credsStore": "stuck"}))
    started = time.monotonic()
    line = one_line(overlay_env.cli("pull", "--plain-http", "-q", ref, env=env, check=False))
    assert time.monotonic() - started < 15
    assert "credential helper docker-credential-stuck get for" in line and "did not answer within 1s" in line, line
    # A login through it fails the same way, after the check, and writes nothing.
    code, _, err = login(overlay_env, handle.host, PASSWORD, extra=env)
    assert code != 0 and len(err.strip().splitlines()) == 1 and "docker-credential-stuck store" in err, err
    assert json.loads(config.read_text()) == {"credsStore": "stuck"}
    assert overlay_env.cli("images", "-q").stdout.strip() == ""
    assert stuck.calls()  # it was asked


def _read_until(fd: int, wanted: bytes, timeout: float = 20) -> bytes:
    import select

    seen = b""
    deadline = time.monotonic() + timeout
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"no {wanted!r} within {timeout}s; got {seen!r}")
        try:
            chunk = os.read(fd, 1024)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        seen += chunk
    return seen


def test_login_asks_on_a_terminal(overlay_env: Env, private: tuple[RegistryHandle, str], tmp_path: Path) -> None:
    """Neither -p nor --password-stdin: the user name and (unechoed) password are asked on the terminal."""
    import pty

    handle, _ = private
    authfile = tmp_path / "auth.json"
    master, slave = pty.openpty()
    try:
        # A session of its own: no controlling terminal but the pty on its stdin.
        proc = subprocess.Popen(overlay_env._argv(("login", "--plain-http", "--authfile", str(authfile),
                                                   handle.host)),
                                stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        slave = -1
        try:
            _read_until(master, b"Username: ")
            os.write(master, f"{USER}\n".encode())
            _read_until(master, b"Password: ")
            os.write(master, f"{PASSWORD}\n".encode())
            rest = _read_until(master, b"Login Succeeded")
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        os.close(master)
        if slave != -1:
            os.close(slave)
    assert PASSWORD.encode() not in rest  # not echoed
    assert handle.host in json.loads(authfile.read_text())["auths"]
