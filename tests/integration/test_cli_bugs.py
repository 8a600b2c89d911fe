"""The nine CLI bugs of issue 18, each pinned with real runc and conmon
through the CLI (the ``container_env`` of the integration tier: at teardown no
conmon, mount or cgroup of the test may be left)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Env, one_line
from tests.support.terminal import run_on_pty

pytestmark = pytest.mark.integration


def _no_stdin(env: Env, *args: str, timeout: float = 60, cwd: str | None = None,
              stdin: int = subprocess.DEVNULL, input_: str | None = None) -> subprocess.CompletedProcess[str]:
    """A CLI run whose stdin is not a terminal (whatever pytest's is)."""
    return subprocess.run(env._argv(args), stdin=None if input_ is not None else stdin, input=input_,
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


def _on_pty(env: Env, *args: str) -> tuple[int, str]:
    """A CLI run on a terminal: its status and what the terminal shows."""
    return run_on_pty(env._argv(args))


def _ids(env: Env) -> list[str]:
    return env.cli("ps", "-a", "-q", "--no-trunc").stdout.split()


def test_bug1_run_detached_rm_removes_the_container_when_it_exits(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    id_ = env.cli("run", "-d", "--rm", ref, "sh", "-c", "sleep 0.5; exit 3").stdout.strip()
    assert len(id_) == 64
    deadline = time.monotonic() + 30
    while id_ in _ids(env) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert id_ not in _ids(env), "run -d --rm left the container after it exited"
    assert not os.path.exists(os.path.join(env.state, "containers", id_))
    # One that is stopped goes too; one without --rm stays.
    id_ = env.cli("run", "-d", "--rm", ref, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done"
                  ).stdout.strip()
    kept = env.cli("run", "-d", ref, "true").stdout.strip()
    env.cli("stop", "-t", "5", id_)
    deadline = time.monotonic() + 30
    while id_ in _ids(env) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _ids(env) == [kept]


def test_bug2_relative_volume_source_is_refused(ctr: tuple[Env, str], tmp_path: Path) -> None:
    env, ref = ctr
    cwd = tmp_path / "cwd"
    (cwd / "data").mkdir(parents=True)
    proc = _no_stdin(env, "run", "--rm", "-v", "./data:/data", ref, "touch", "/data/written", cwd=str(cwd))
    line = one_line(proc)
    assert proc.returncode == 125  # docker's code for run's own errors
    assert "includes invalid characters for a local volume name" in line
    assert not (cwd / "data" / "written").exists()
    assert _ids(env) == []
    # A bare name is a named volume (docker's meaning): ./data is not bound either.
    proc = _no_stdin(env, "run", "--rm", "-v", "data:/data", ref, "touch", "/data/written", cwd=str(cwd))
    assert proc.returncode == 0, proc.stderr
    assert not (cwd / "data" / "written").exists()
    env.cli("volume", "rm", "data")
    # An absolute source still binds.
    proc = _no_stdin(env, "run", "--rm", "-v", f"{cwd / 'data'}:/data", ref, "touch", "/data/written")
    assert proc.returncode == 0, proc.stderr
    assert (cwd / "data" / "written").exists()


def test_bug3_rmi_of_a_name_and_a_missing_one_reports_both(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    other = "127.0.0.1:1/test/other:1"
    env.cli("tag", ref, other)
    proc = env.cli("rmi", other, "127.0.0.1:1/nosuch:1", check=False)
    assert proc.returncode == 1
    assert proc.stdout == f"Untagged: {other}\n"
    assert "nosuch" in one_line(proc)
    names = env.cli("images", "--format", "json").stdout
    assert other not in names and ref in names


def test_bug4_rmi_refuses_an_id_of_two_names_and_an_image_in_use(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    other = "127.0.0.1:1/test/other:1"
    env.cli("tag", ref, other)
    short = env.cli("images", "-q").stdout.split()[0]
    proc = env.cli("rmi", short, check=False)
    assert proc.returncode == 1 and "referenced in multiple repositories" in one_line(proc)
    names = [i["name"] for i in json.loads(env.cli("images", "--format", "json").stdout)]
    assert sorted(names) == sorted([ref, other])
    # A name of an image that has another one goes, even with a container using it (as docker).
    env.cli("create", "--name", "user", ref, "true")
    assert env.cli("rmi", other).stdout == f"Untagged: {other}\n"
    # Its last name does not while a container uses it.
    proc = env.cli("rmi", ref, check=False)
    line = one_line(proc)
    assert proc.returncode == 1 and "conflict: unable to remove repository reference" in line
    assert "is using its referenced image" in line
    assert [i["name"] for i in json.loads(env.cli("images", "--format", "json").stdout)] == [ref]
    env.cli("rm", "user")
    # -f removes every name of an image given by its ID.
    env.cli("tag", ref, other)
    proc = env.cli("rmi", "-f", short)
    assert sorted(proc.stdout.splitlines()) == sorted([f"Untagged: {ref}", f"Untagged: {other}"])
    assert json.loads(env.cli("images", "--format", "json").stdout) == []


def test_bug5_exec_errors_are_one_line_with_dockers_exit_codes(ctr: tuple[Env, str], tmp_path: Path) -> None:
    env, ref = ctr
    (tmp_path / "tools").mkdir()
    id_ = env.cli("run", "-d", "-v", f"{tmp_path / 'tools'}:/tools", ref, "sleep", "1000").stdout.strip()
    proc = _no_stdin(env, "exec", id_, "nosuch")
    assert proc.returncode == 127 and "executable file not found" in one_line(proc)
    proc = _no_stdin(env, "exec", "-w", "/nonexistent", id_, "true")
    assert proc.returncode == 126 and "/nonexistent" in one_line(proc)
    proc = _no_stdin(env, "exec", "-t", id_, "true")
    assert proc.returncode == 1 and "the input device is not a TTY" in one_line(proc)
    proc = _no_stdin(env, "exec", "-it", id_, "true")
    assert proc.returncode == 1 and "the input device is not a TTY" in one_line(proc)
    # Looked up in the container's own view: a program on one of its mounts runs.
    env.cli("exec", id_, "cp", "/bin/busybox", "/tools/echo")
    proc = _no_stdin(env, "exec", "-w", "/tools", id_, "./echo", "ok")
    assert proc.stdout == "ok\n", proc.stderr
    env.cli("rm", "-f", id_)


def test_bug6_exec_tty_sets_term(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    id_ = env.cli("run", "-d", ref, "sleep", "1000").stdout.strip()
    code, out = _on_pty(env, "exec", "-t", id_, "sh", "-c", "echo term=$TERM")
    assert code == 0 and "term=xterm" in out, out
    code, out = _on_pty(env, "exec", "-it", "-e", "TERM=vt100", id_, "sh", "-c", "echo term=$TERM")
    assert code == 0 and "term=vt100" in out, out
    assert env.cli("exec", id_, "sh", "-c", "echo term=$TERM").stdout == "term=\n"  # no terminal, no TERM
    env.cli("rm", "-f", id_)


def test_bug7_run_it_without_a_terminal_is_refused(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    proc = _no_stdin(env, "run", "--rm", "-it", ref, "cat", input_="x\n", timeout=30)
    assert proc.returncode == 1 and "the input device is not a TTY" in one_line(proc)
    assert _ids(env) == []
    # -i alone still reads the pipe; -t alone still runs.
    assert _no_stdin(env, "run", "--rm", "-i", ref, "cat", input_="x\n").stdout == "x\n"
    assert _no_stdin(env, "run", "--rm", "-t", ref, "echo", "ok").stdout.strip() == "ok"


def test_bug8_several_names_carry_on_after_an_error(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    for name in ("a", "b"):
        env.cli("run", "-d", "--name", name, ref, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    for command in (("pause",), ("unpause",), ("kill", "-s", "CONT"), ("stop", "-t", "5"), ("rm",)):
        proc = env.cli(*command, "a", "nosuch", "b", check=False)
        assert proc.returncode == 1, command
        assert proc.stdout == "a\nb\n", (command, proc.stdout)
        assert "nosuch" in one_line(proc), command
        if command == ("stop", "-t", "5"):
            proc = env.cli("inspect", "a", "nosuch", "b", check=False)
            assert proc.returncode == 1 and "nosuch" in one_line(proc)
            assert [c["Name"] for c in json.loads(proc.stdout)] == ["/a", "/b"]  # docker's layout
            assert {c["State"]["Status"] for c in json.loads(proc.stdout)} == {"exited"}
    assert _ids(env) == []


def test_bug9_ps_and_inspect_show_the_effective_command(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("create", "--name", "plain", ref)  # the image's Cmd: /bin/sh
    env.cli("create", "--name", "entry", "--entrypoint", "/bin/echo", ref, "hi", "there")
    rows = {line.split()[-1]: line for line in env.cli("ps", "-a").stdout.splitlines()[1:]}
    assert '"/bin/sh"' in rows["plain"]
    assert '"/bin/echo hi there"' in rows["entry"]
    plain, entry = json.loads(env.cli("inspect", "plain", "entry").stdout)
    assert (plain["Path"], plain["Args"]) == ("/bin/sh", [])
    assert (plain["Config"]["Entrypoint"], plain["Config"]["Cmd"]) == ([], ["/bin/sh"])
    assert (entry["Path"], entry["Args"]) == ("/bin/echo", ["hi", "there"])
    assert (entry["Config"]["Entrypoint"], entry["Config"]["Cmd"]) == (["/bin/echo"], ["hi", "there"])
