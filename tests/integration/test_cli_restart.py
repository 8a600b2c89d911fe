"""Restart policies, restart, start of an exited container and healthchecks
through the CLI, with real runc and conmon (the ``ctr`` fixture: at teardown
no conmon, mount or cgroup of the test may be left; the healthcheck monitors
are checked here)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.conftest import Env
from tests.support.aio import processes_where

pytestmark = pytest.mark.integration


@pytest.fixture
def ctr(ctr: tuple[Env, str]) -> Iterator[tuple[Env, str]]:
    """The ``ctr`` of conftest, and after the test (its containers removed):
    no healthcheck monitor or exit command of its store left running."""
    env, _ = ctr
    yield ctr
    for id_ in env.cli("ps", "-a", "-q", "--no-trunc", check=False).stdout.split():
        env.cli("rm", "-f", id_, check=False)
    deadline = time.monotonic() + 10
    while (_monitors(env) or _cleanups(env)) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = {"monitors": _monitors(env), "cleanups": _cleanups(env)}
    for pid in left["monitors"] + left["cleanups"]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == {"monitors": [], "cleanups": []}, left


def _inspect(env: Env, name: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(env.cli("inspect", name).stdout)
    return data[0]


def _until(what: Callable[[], bool], timeout: float = 20.0, message: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            raise AssertionError(message or "timed out")
        time.sleep(0.1)


def _state(env: Env, name: str) -> str:
    return str(_inspect(env, name)["State"]["Status"])


def _restart_count(env: Env, name: str) -> int:
    data = _inspect(env, name)
    if "RestartCount" in data:  # docker's layout
        return int(data["RestartCount"])
    return int(data["Config"].get("restart", {}).get("count", 0))


def _monitors(env: Env) -> list[int]:
    """The healthcheck monitors of this store still running."""
    return processes_where(lambda argv: b"monitor" in argv and b"healthcheck" in argv and env.state.encode() in argv)


def _cleanups(env: Env, name: str = "") -> list[int]:
    """The exit commands (``container cleanup``) of this store running (for one container: by its name)."""
    id_ = _inspect(env, name)["Id"].encode() if name else b""
    return processes_where(lambda argv: b"cleanup" in argv and env.state.encode() in argv
                           and (not id_ or id_ in argv))


def test_on_failure_restarts_exactly_n_times(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "-d", "--name", "flaky", "--restart", "on-failure:3", ref, "sh", "-c", "echo run; exit 3")
    _until(lambda: _restart_count(env, "flaky") == 3 and _state(env, "flaky") == "exited" and not _cleanups(env),
           message="on-failure:3 did not restart three times")
    time.sleep(1.0)  # and no more
    assert _restart_count(env, "flaky") == 3
    assert _state(env, "flaky") == "exited"
    assert _inspect(env, "flaky")["State"]["ExitCode"] == 3
    assert env.cli("logs", "flaky").stdout.split() == ["run"] * 4


def test_always_restarts_after_exit_0_and_not_after_stop(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "-d", "--name", "again", "--restart", "always", ref, "sh", "-c", "echo up; sleep 0.3")
    _until(lambda: _restart_count(env, "again") >= 2, message="always did not restart after exit 0")
    _until(lambda: _state(env, "again") == "running")
    assert env.cli("stop", "-t", "1", "again").stdout.strip() == "again"
    assert _state(env, "again") == "exited"
    count = _restart_count(env, "again")
    time.sleep(1.0)
    _until(lambda: not _cleanups(env))
    assert _state(env, "again") == "exited", "a stopped always container was restarted"
    assert _restart_count(env, "again") == count
    # A user's start arms the policy again.
    env.cli("start", "again")
    _until(lambda: _restart_count(env, "again") >= 1, message="no restart after the user's start")


def test_unless_stopped_and_kill(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "-d", "--name", "us", "--restart", "unless-stopped", ref, "sh", "-c", "sleep 0.2; exit 1")
    _until(lambda: _restart_count(env, "us") >= 1, message="unless-stopped did not restart")
    env.cli("run", "-d", "--name", "killed", "--restart", "unless-stopped", ref, "sleep", "60")
    env.cli("kill", "killed")
    _until(lambda: _state(env, "killed") == "exited")
    time.sleep(0.5)
    _until(lambda: not _cleanups(env, "killed"))
    assert _state(env, "killed") == "exited"
    assert _restart_count(env, "killed") == 0


def test_restart_policy_with_rm_is_refused(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    proc = env.cli("run", "-d", "--rm", "--restart", "always", ref, "true", check=False)
    assert proc.returncode == 125 or proc.returncode != 0
    assert "conflicting options: --restart and --rm" in proc.stderr
    proc = env.cli("run", "-d", "--restart", "sometimes", ref, "true", check=False)
    assert proc.returncode != 0 and "invalid restart policy" in proc.stderr
    assert env.cli("ps", "-a", "-q").stdout.split() == []


def test_restart_keeps_the_container(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    id_ = env.cli("run", "-d", "--name", "keep", ref, "sh", "-c",
                  "echo start >> /data.txt; cat /data.txt | wc -l; sleep 60").stdout.strip()
    _until(lambda: "1" in env.cli("logs", "keep").stdout.split())
    assert env.cli("restart", "-t", "1", "keep").stdout.strip() == "keep"
    assert _state(env, "keep") == "running"
    _until(lambda: "2" in env.cli("logs", "keep").stdout.split(), message="the writable layer was not kept")
    assert _inspect(env, "keep")["Id"] == id_
    # restart of an exited one
    env.cli("stop", "-t", "0", "keep")
    assert env.cli("restart", "keep").stdout.strip() == "keep"
    _until(lambda: "3" in env.cli("logs", "keep").stdout.split())
    assert _inspect(env, "keep")["Id"] == id_
    assert env.cli("ps", "-q", "--no-trunc").stdout.split() == [id_]


def test_start_of_an_exited_container_appends_to_its_log(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "--name", "twice", ref, "sh", "-c", "echo hello; exit 4", check=False)
    first = _inspect(env, "twice")["State"]
    assert first["Status"] == "exited" and first["ExitCode"] == 4
    time.sleep(1.1)
    assert env.cli("start", "twice").stdout.strip() == "twice"
    _until(lambda: _state(env, "twice") == "exited" and env.cli("logs", "twice").stdout.count("hello") == 2,
           message="the second run's output is not in the log")
    second = _inspect(env, "twice")["State"]
    assert second["ExitCode"] == 4
    assert second["StartedAt"] > first["FinishedAt"]
    assert second["FinishedAt"] >= second["StartedAt"]
    # start -a relays the new run's output only
    proc = env.cli("start", "-a", "twice", check=False)
    assert proc.returncode == 4 and proc.stdout == "hello\n"


def test_start_again_with_a_bind_source_gone_is_one_line(ctr: tuple[Env, str], tmp_path: Any) -> None:
    env, ref = ctr
    source = tmp_path / "data"
    source.mkdir()
    env.cli("run", "--name", "bound", "--network", "none", "-v", f"{source}:/data", ref, "true")
    source.rmdir()  # the host directory goes while the container is exited
    proc = env.cli("start", "bound", check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"hawser: container bound cannot start again: the source of its mount at /data is gone ({source}) "
        "(hint: remove it and run a new one)"]
    assert _state(env, "bound") == "exited"  # nothing half-started
    source.mkdir()
    assert env.cli("start", "bound").stdout.strip() == "bound"  # back: it starts


def test_healthcheck_healthy_and_unhealthy(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "-d", "--name", "well", "--health-cmd", "test -e /tmp/ok", "--health-interval", "0.3s",
            "--health-retries", "2", ref, "sh", "-c", "touch /tmp/ok; sleep 60")
    assert "(health: starting)" in env.cli("ps").stdout
    _until(lambda: _health(env, "well").get("Status") == "healthy", message="never healthy")
    assert "(healthy)" in env.cli("ps").stdout
    env.cli("exec", "well", "rm", "/tmp/ok")
    _until(lambda: _health(env, "well").get("Status") == "unhealthy", message="never unhealthy")
    health = _health(env, "well")
    assert health["FailingStreak"] >= 2
    assert 1 <= len(health["Log"]) <= 5 and health["Log"][-1]["ExitCode"] == 1
    assert "(unhealthy)" in env.cli("ps").stdout
    assert _inspect(env, "well")["State"]["Health"]["Status"] == "unhealthy"  # docker's State.Health
    proc = env.cli("healthcheck", "run", "well", check=False)
    assert proc.returncode == 1
    env.cli("exec", "well", "touch", "/tmp/ok")
    assert env.cli("healthcheck", "run", "well").returncode == 0
    assert _health(env, "well")["Status"] == "healthy"
    assert len(_monitors(env)) == 1
    env.cli("rm", "-f", "well")
    _until(lambda: not _monitors(env), timeout=5, message="the healthcheck monitor outlived its container")


def test_no_healthcheck_and_a_restart_keeps_one_monitor(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "-d", "--name", "plain", "--no-healthcheck", ref, "sleep", "60")
    proc = env.cli("healthcheck", "run", "plain", check=False)
    assert proc.returncode != 0 and "no healthcheck" in proc.stderr
    env.cli("run", "-d", "--name", "checked", "--health-cmd", "true", "--health-interval", "0.3s", ref, "sleep", "60")
    _until(lambda: _health(env, "checked").get("Status") == "healthy")
    env.cli("restart", "-t", "0", "checked")
    _until(lambda: len(_monitors(env)) == 1, timeout=5, message="not one monitor after a restart")
    env.cli("stop", "-t", "0", "checked")
    _until(lambda: not _monitors(env), timeout=5, message="the monitor outlived the stop")


def _with_healthcheck(env: Env, ref: str, tmp: str, healthcheck: dict[str, Any]) -> str:
    """``ref`` again as ``checked:latest`` with a HEALTHCHECK in its config
    (a docker-archive saved, its config edited, loaded)."""
    import hashlib
    import tarfile

    archive = os.path.join(tmp, "image.tar")
    env.cli("save", "--format", "docker-archive", "-o", archive, ref)
    out = os.path.join(tmp, "checked.tar")
    with tarfile.open(archive) as src, tarfile.open(out, "w") as dst:
        members = {m.name: src.extractfile(m).read() if m.isfile() else None for m in src.getmembers()}
        manifest = json.loads(members["manifest.json"] or b"")
        config = json.loads(members[manifest[0]["Config"]] or b"")
        config["config"]["Healthcheck"] = healthcheck
        data = json.dumps(config).encode()
        name = hashlib.sha256(data).hexdigest() + ".json"
        del members[manifest[0]["Config"]]
        members[name] = data
        manifest[0]["Config"] = name
        manifest[0]["RepoTags"] = ["checked:latest"]
        members["manifest.json"] = json.dumps(manifest).encode()
        members.pop("repositories", None)
        for member_name, content in members.items():
            if content is None:
                continue
            info = tarfile.TarInfo(member_name)
            info.size = len(content)
            dst.addfile(info, io.BytesIO(content))
    env.cli("load", "-i", out)
    return "checked:latest"


def test_the_image_healthcheck_and_the_flags_over_it(ctr: tuple[Env, str], tmp_path: Any) -> None:
    env, ref = ctr
    image = _with_healthcheck(env, ref, str(tmp_path), {"Test": ["CMD", "test", "-e", "/tmp/ok"],
                                                       "Interval": 300_000_000, "Retries": 1})
    env.cli("run", "-d", "--name", "img", image, "sh", "-c", "touch /tmp/ok; sleep 60")
    _until(lambda: _health(env, "img").get("Status") == "healthy", message="the image's check did not run")
    # --health-cmd replaces the image's test; its interval stays.
    env.cli("run", "-d", "--name", "flag", "--health-cmd", "exit 1", image, "sleep", "60")
    _until(lambda: _health(env, "flag").get("Status") == "unhealthy", message="--health-cmd was not used")
    env.cli("run", "-d", "--name", "none", "--no-healthcheck", image, "sleep", "60")
    assert "(health" not in next(line for line in env.cli("ps").stdout.splitlines() if "none" in line)


def _health(env: Env, name: str) -> dict[str, Any]:
    path = os.path.join(env.state, "containers", _inspect(env, name)["Id"], "health.json")
    try:
        with open(path, encoding="utf-8") as f:
            data: dict[str, Any] = json.load(f)
    except FileNotFoundError:
        return {}
    return data


def _reboot(env: Env, id_: str) -> None:
    """What a reboot does to a container: its processes and conmon gone
    without an exit file, runc's state, the rootfs mount and the bundle in
    the state dir (a tmpfs) gone; the record and snapshot under the root stay."""
    bundle = os.path.join(env.state, "containers", id_)
    with open(os.path.join(bundle, "conmon.pid"), encoding="ascii") as f:
        conmon = int(f.read().strip())
    with contextlib.suppress(ProcessLookupError):
        os.kill(conmon, signal.SIGKILL)  # no exit command runs
    subprocess.run(["runc", "--root", os.path.join(env.state, "runc"), "delete", "--force", id_], check=False,
                   capture_output=True, timeout=30)
    subprocess.run(["umount", "-l", os.path.join(bundle, "rootfs")], check=False, capture_output=True, timeout=30)
    subprocess.run(["rm", "-rf", bundle, os.path.join(env.state, "exits", id_)], check=True, timeout=30)
    network = os.path.join(env.state, "networks", id_)  # its pinned namespace and files (the veth goes with it)
    if os.path.isdir(network):
        from hawser.host import remove_pin_dir

        remove_pin_dir(os.path.join(network, "ns"))
        subprocess.run(["rm", "-rf", network], check=True, timeout=30)


def test_restart_containers_after_a_reboot(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    up = env.cli("run", "-d", "--name", "boot", "--restart", "always", "--network", "bridge", ref, "sh", "-c",
                 "echo up >> /runs; sleep 60").stdout.strip()
    address = env.cli("exec", "boot", "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3]
    down = env.cli("run", "-d", "--name", "down", "--restart", "unless-stopped", ref, "sleep", "60").stdout.strip()
    # As dockerd at its start: an always container comes back even if its user stopped it.
    stopped = env.cli("run", "-d", "--name", "stopped", "--restart", "always", ref, "sleep", "60").stdout.strip()
    plain = env.cli("run", "-d", "--name", "plain", ref, "sleep", "60").stdout.strip()
    env.cli("create", "--name", "never", "--restart", "always", ref, "sleep", "60")  # never started: stays
    env.cli("stop", "-t", "0", "down", "stopped")
    for id_ in (up, down, stopped, plain):
        _reboot(env, id_)
    proc = env.cli("system", "restart-containers")
    assert sorted(proc.stdout.split()) == ["boot", "stopped"], proc.stderr
    assert _state(env, "stopped") == "running"
    assert _state(env, "never") == "created"
    assert _state(env, "boot") == "running"
    assert env.cli("exec", "boot", "cat", "/runs").stdout.split() == ["up", "up"]  # the same writable layer
    # On its network again (a new namespace, the same kind of address), its files bound in again.
    again = env.cli("exec", "boot", "ip", "-4", "-o", "addr", "show", "eth0").stdout.split()[3]
    assert again.rsplit(".", 1)[0] == address.rsplit(".", 1)[0], (address, again)
    assert "boot" in env.cli("exec", "boot", "cat", "/etc/hosts").stdout
    assert _state(env, "down") != "running"
    assert _state(env, "plain") != "running"


def test_restart_of_a_detached_rm_container_keeps_it(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    id_ = env.cli("run", "-d", "--rm", "--name", "tmp", ref, "sleep", "60").stdout.strip()
    assert env.cli("start", "tmp").stdout.strip() == "tmp"  # running already: no error, as docker
    assert env.cli("restart", "-t", "0", "tmp").stdout.strip() == "tmp"
    time.sleep(0.5)
    assert _state(env, "tmp") == "running" and _inspect(env, "tmp")["Id"] == id_
    env.cli("stop", "-t", "0", "tmp")  # --rm still holds
    _until(lambda: id_ not in env.cli("ps", "-a", "-q", "--no-trunc").stdout.split(), message="--rm did not remove")


def test_a_crash_loop_backs_off_and_shows_restarting(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    id_ = env.cli("run", "-d", "--name", "loop", "--restart", "always", ref, "sh", "-c", "exit 1").stdout.strip()
    # 0.1 s, 0.2, 0.4, 0.8, 1.6...: soon the delay is long enough for ps to see it.
    _until(lambda: "Restarting (1)" in env.cli("ps", "-a").stdout, message="ps never showed Restarting")
    _until(lambda: _restart_count(env, "loop") >= 3, message="the crash loop stopped")
    started = time.monotonic()
    _until(lambda: _restart_count(env, "loop") >= 4)
    assert time.monotonic() - started >= 0.5  # the fourth delay is 0.8 s: backed off, not spinning
    env.cli("rm", "-f", "loop")  # during the delay: the cleanup finds nothing to start
    _until(lambda: not _cleanups(env), timeout=10)
    assert not [n for n in os.listdir(os.path.join(env.state, "locks")) if id_ in n]
