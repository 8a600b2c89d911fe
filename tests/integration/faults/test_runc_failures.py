"""Every rollback path around runc, with a runc that fails on demand
(tests/support/failpoints/runc as ``runtime.runc``): the command reports
runc's error in one line, leaves nothing behind (or a container a retry
finishes), and the retry succeeds once runc works again."""

from __future__ import annotations

import pytest

from tests.integration.faults.conftest import FaultEnv
from tests.support.failpoints.check import store_findings

pytestmark = pytest.mark.integration


def _clean(env: FaultEnv) -> None:
    assert not any(env.leaks().values()), env.leaks()
    found = store_findings(env.root)
    assert (found.corrupt, found.garbage) == ([], []), found


def test_wrapper_passes_through(runc_env: FaultEnv) -> None:
    env = runc_env
    assert env.images is not None and env.faults is not None
    assert env.run("run", "--rm", env.images.busybox, "echo", "hi").stdout == "hi\n"
    called = {line.split()[1] for line in env.faults.calls()}
    assert {"create", "start"} <= called, env.faults.calls()  # conmon's create went through it too
    # An exited container's runc state is removed without runc (Runc.delete_stopped).
    assert "delete" not in called, env.faults.calls()
    env.settle()


def test_create_fails(runc_env: FaultEnv) -> None:
    env = runc_env
    assert env.images is not None and env.faults is not None
    env.faults.fail("runc.create")
    proc = env.run("run", "-d", "--name", "victim", env.images.busybox, "sleep", "1000", check=False)
    assert proc.returncode == 125, proc.stderr  # docker's code for run's own errors
    assert proc.stderr.startswith("hawser: runc: injected failure of runc create"), proc.stderr
    assert env.ids() == []
    _clean(env)
    env.faults.heal()
    env.run("run", "-d", "--name", "victim", env.images.busybox, "sleep", "1000")
    env.settle()


def test_start_fails(runc_env: FaultEnv) -> None:
    env = runc_env
    assert env.images is not None and env.faults is not None
    victim = env.run("create", env.images.busybox, "sleep", "1000").stdout.strip()
    env.faults.fail("runc.start")
    proc = env.run("start", victim, check=False)
    assert proc.returncode == 1 and "injected failure of runc start" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert env.state_of(victim) == "created"  # as it was: start it again
    env.faults.heal()
    env.run("start", victim)
    assert env.state_of(victim) == "running"
    env.settle()


def test_start_fails_in_run_rm(runc_env: FaultEnv) -> None:
    # run --rm whose container cannot start: nothing stays behind (docker removes it too).
    env = runc_env
    assert env.images is not None and env.faults is not None
    env.faults.fail("runc.start")
    proc = env.run("run", "--rm", env.images.busybox, "true", check=False)
    assert proc.returncode == 125 and "injected failure of runc start" in proc.stderr, proc.stderr
    assert env.ids() == []
    _clean(env)
    env.faults.heal()
    env.settle()


def test_delete_fails_once(runc_env: FaultEnv) -> None:
    env = runc_env
    assert env.images is not None and env.faults is not None
    # Created, never started: runc's to delete (an exited container's state hawser removes itself).
    victim = env.run("create", env.images.busybox, "sleep", "1000").stdout.strip()
    env.faults.fail("runc.delete", times=1)
    proc = env.run("rm", "-f", victim, check=False)
    assert proc.returncode == 1 and "injected failure of runc delete" in proc.stderr, proc.stderr
    # Kept, so that the retry can finish what runc did not.
    assert env.ids() == [victim]
    env.run("rm", "-f", victim)
    assert env.faults.calls().count(f"runc delete {victim} FAILED") == 1
    env.settle()


def test_kill_fails(runc_env: FaultEnv) -> None:
    env = runc_env
    assert env.images is not None and env.faults is not None
    victim = env.run("run", "-d", env.images.busybox, "sleep", "1000").stdout.strip()
    env.faults.fail("runc.kill")
    proc = env.run("stop", "-t", "1", victim, check=False)
    assert proc.returncode == 1 and "injected failure of runc kill" in proc.stderr, proc.stderr
    assert env.state_of(victim) == "running"
    env.faults.heal()
    env.run("stop", "-t", "1", victim)
    assert env.state_of(victim) == "exited"
    env.settle()


def test_exec_fails(runc_env: FaultEnv) -> None:
    env = runc_env
    assert env.images is not None and env.faults is not None
    victim = env.run("run", "-d", env.images.busybox, "sleep", "1000").stdout.strip()
    env.faults.fail("runc.exec")
    proc = env.run("exec", victim, "true", check=False)
    assert proc.returncode != 0 and "injected failure of runc exec" in proc.stderr, proc.stderr
    env.faults.heal()
    assert env.run("exec", victim, "echo", "ok").stdout == "ok\n"
    env.settle()
