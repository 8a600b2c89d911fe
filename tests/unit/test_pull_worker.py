"""hawserd's pull worker (images._pull_worker): the answers a pull process's
end becomes, and the real worker process with fake pulls
(tests/support/fake_pull_worker.py): reuse, concurrency, error kinds, a
crashing pull, cancellation, a killed worker, the idle stop and close."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from pathlib import Path

import pytest

from hawser import errors
from hawser.config import Config
from hawser.images import PullStats, PullWorker
from hawser.images._pull_process import TERM_GRACE, answer_of, outcome
from hawser.images._pull_worker import IDLE_ENV, IDLE_TIMEOUT, idle_timeout_from_env
from tests.support.aio import eventually, run
from tests.support.fake_pull_worker import FAKE_WORKER

CONFIG = Config()


def worker(idle: float = 60.0) -> PullWorker:
    return PullWorker(idle_timeout=idle, argv=[sys.executable, FAKE_WORKER])


def alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not been reaped (a zombie counts: it was not reaped)."""
    return os.path.exists(f"/proc/{pid}")


async def pid_from(path: Path) -> int:
    await eventually(lambda: path.exists() and path.read_text() != "")
    return int(path.read_text())


# --- answers ----------------------------------------------------------------------------


def test_a_clean_exit_is_its_stats() -> None:
    out = b'{"stats": {"bytes_fetched": 7, "layers_fetched": 1, "layers_present": 2, "seconds": {"fetch": 0.5}}}\n'
    stats = outcome(answer_of(0, out, b""), "r")
    assert stats == PullStats(bytes_fetched=7, layers_fetched=1, layers_present=2, seconds={"fetch": 0.5})
    # No stats, or a line that is not JSON, is no failure.
    assert outcome(answer_of(0, b"", b""), "r") is None
    assert outcome(answer_of(0, b"not json", b""), "r") is None


def test_a_failed_pull_raises_its_kind() -> None:
    out = b'{"kind": "PermissionDenied", "message": "denied", "hint": "log in"}'
    with pytest.raises(errors.PermissionDenied) as caught:
        outcome(answer_of(1, out, b""), "r")
    assert caught.value.message == "denied" and caught.value.hint == "log in"


def test_a_death_by_a_signal_is_unavailable_and_garbage_is_internal() -> None:
    with pytest.raises(errors.Unavailable, match="killed by SIGSEGV"):
        outcome(answer_of(-signal.SIGSEGV, b"", b""), "r")
    with pytest.raises(errors.Internal, match=r"exit status 1\): .*ValueError: bad"):
        outcome(answer_of(1, b"", b"Traceback (most recent call last):\n  File x\nValueError: bad\n"), "r")
    with pytest.raises(errors.Internal, match="NoSuchKind"):
        outcome({"kind": "NoSuchKind", "message": "m"}, "r")


def test_idle_timeout_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(IDLE_ENV, raising=False)
    assert idle_timeout_from_env() == IDLE_TIMEOUT
    monkeypatch.setenv(IDLE_ENV, "0.5")
    assert idle_timeout_from_env() == 0.5
    for bad in ("0", "-1", "soon", "inf", "nan"):
        monkeypatch.setenv(IDLE_ENV, bad)
        with pytest.raises(errors.InvalidArgument, match=IDLE_ENV):
            idle_timeout_from_env()


# --- the worker process -----------------------------------------------------------------


def test_pulls_reuse_one_worker_and_run_side_by_side(tmp_path: Path) -> None:
    async def body() -> None:
        pulls = worker()
        assert pulls.pid is None  # nothing starts before the first pull
        try:
            stats = await pulls.pull(CONFIG, "ok/10", namespace="k8s.io")
            assert stats is not None and stats.bytes_fetched == 10
            first = pulls.pid
            assert first is not None and alive(first)
            # Two at once, each in a process of its own: both sleep at the same time.
            started = time.monotonic()
            both = await asyncio.gather(pulls.pull(CONFIG, f"sleep/1/{tmp_path / 'a'}", namespace="k8s.io"),
                                        pulls.pull(CONFIG, f"sleep/1/{tmp_path / 'b'}", namespace="k8s.io"))
            assert both == [None, None]
            assert time.monotonic() - started < 1.9
            assert pulls.pid == first and pulls.started == 1
        finally:
            await pulls.close()
        assert not alive(first)

    run(body)


def test_error_kinds_and_a_crashing_pull_leave_the_worker_up() -> None:
    async def body() -> None:
        pulls = worker()
        try:
            with pytest.raises(errors.NotFound, match="fake NotFound") as caught:
                await pulls.pull(CONFIG, "fail/NotFound", namespace="k8s.io")
            assert caught.value.hint == "fake hint"
            first = pulls.pid
            with pytest.raises(errors.Unavailable, match="killed by SIGSEGV"):
                await pulls.pull(CONFIG, "crash", namespace="k8s.io")
            with pytest.raises(errors.Internal, match="RuntimeError: boom"):
                await pulls.pull(CONFIG, "bug", namespace="k8s.io")
            assert await pulls.pull(CONFIG, "ok/1", namespace="k8s.io") is not None
            assert pulls.pid == first and pulls.started == 1
        finally:
            await pulls.close()

    run(body)


def test_a_cancelled_pull_is_stopped_and_the_others_go_on(tmp_path: Path) -> None:
    async def body() -> None:
        pulls = worker()
        try:
            victim = asyncio.create_task(pulls.pull(CONFIG, f"sleep/60/{tmp_path / 'v'}", namespace="k8s.io"))
            other = asyncio.create_task(pulls.pull(CONFIG, f"sleep/1.5/{tmp_path / 'o'}", namespace="k8s.io"))
            victim_pid = await pid_from(tmp_path / "v")
            worker_pid = pulls.pid
            started = time.monotonic()
            victim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await victim
            # SIGTERM unwound it (no TERM_GRACE wait, then SIGKILL), and it was reaped before the cancel returned.
            assert time.monotonic() - started < TERM_GRACE
            assert not alive(victim_pid)
            assert await other is None
            assert pulls.pid == worker_pid and alive(worker_pid)
        finally:
            await pulls.close()

    run(body)


def test_a_pull_cancelled_as_it_starts_ends_quietly(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        pulls = worker()
        try:
            # The first while the worker still imports: the pull and its cancel reach it together, and
            # the cancel lands between the fork and the pull's own SIGTERM handler.
            for i in range(3):
                pulling = asyncio.create_task(pulls.pull(CONFIG, f"sleep/60/{tmp_path / str(i)}", namespace="n"))
                await eventually(lambda: pulls.pid is not None)
                await asyncio.sleep(0.01)
                pulling.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await pulling
            assert await pulls.pull(CONFIG, "ok/1", namespace="n") is not None
            assert pulls.started == 1
        finally:
            await pulls.close()

    with caplog.at_level(logging.INFO, logger="hawser.images._pull_worker"):
        run(body)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert sum(r.getMessage() == "pull cancelled: stopped" for r in caplog.records) == 3


def test_a_killed_worker_fails_its_pulls_and_the_next_pull_starts_another(tmp_path: Path) -> None:
    async def body() -> None:
        pulls = worker()
        try:
            pulling = asyncio.create_task(pulls.pull(CONFIG, f"sleep/60/{tmp_path / 'p'}", namespace="k8s.io"))
            pull_pid = await pid_from(tmp_path / "p")
            first = pulls.pid
            assert first is not None
            os.kill(first, signal.SIGKILL)
            with pytest.raises(errors.Unavailable, match=rf"pull worker \(pid {first}\) died \(killed by SIGKILL\)"):
                await pulling
            # The pull's process does not outlive its worker (PR_SET_PDEATHSIG), nor does the worker stay a zombie.
            await eventually(lambda: not alive(pull_pid) and not alive(first))
            assert await pulls.pull(CONFIG, "ok/1", namespace="k8s.io") is not None
            assert pulls.pid not in (None, first) and pulls.started == 2
        finally:
            await pulls.close()

    run(body)


def test_an_idle_worker_stops_and_the_next_pull_starts_another() -> None:
    async def body() -> None:
        pulls = worker(idle=0.3)
        try:
            await pulls.pull(CONFIG, "ok/1", namespace="k8s.io")
            first = pulls.pid
            assert first is not None
            await eventually(lambda: pulls.pid is None and not alive(first), timeout=5)
            await pulls.pull(CONFIG, "ok/1", namespace="k8s.io")
            assert pulls.pid not in (None, first) and pulls.started == 2
        finally:
            await pulls.close()

    run(body)


def test_close_stops_the_pulls_in_flight_and_reaps_everything(tmp_path: Path) -> None:
    async def body() -> None:
        pulls = worker()
        pulling = asyncio.create_task(pulls.pull(CONFIG, f"sleep/60/{tmp_path / 'p'}", namespace="k8s.io"))
        pull_pid = await pid_from(tmp_path / "p")
        first = pulls.pid
        assert first is not None
        started = time.monotonic()
        await pulls.close()
        assert time.monotonic() - started < 3
        assert not alive(first) and not alive(pull_pid)
        with pytest.raises(errors.Unavailable, match="hawserd is shutting down"):
            await pulling
        with pytest.raises(errors.Unavailable, match="hawserd is shutting down"):
            await pulls.pull(CONFIG, "ok/1", namespace="k8s.io")
        await pulls.close()  # idempotent

    run(body)
