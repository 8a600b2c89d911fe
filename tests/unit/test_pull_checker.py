"""hawserd's pull worker's checker (images._pull_worker): the real worker
process with a fake checker and fake pulls (tests/support/fake_pull_checker.py):
an image there already is answered by the checker with no pull process; any
other pull gets its process; a busy checker holds up no pull; a checker that
crashes or has a bug hands its pull over; a cancelled check kills the
checker; close reaps it."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import pytest

from hawser import errors
from hawser.config import Config
from hawser.images import PullWorker
from hawser.images._pull_worker import CHECKER_DEATHS
from tests.support.aio import eventually, run
from tests.support.fake_pull_checker import FAKE_CHECKER

CONFIG = Config()


def worker() -> PullWorker:
    return PullWorker(idle_timeout=60.0, argv=[sys.executable, FAKE_CHECKER])


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


async def pid_from(path: Path) -> int:
    await eventually(lambda: path.exists() and path.read_text() != "")
    return int(path.read_text())


async def pull(pulls: PullWorker, reference: str) -> int | None:
    stats = await pulls.pull(CONFIG, reference, namespace="k8s.io")
    return None if stats is None else stats.bytes_fetched


def test_present_is_answered_by_the_checker_and_absent_by_a_pull_process(tmp_path: Path) -> None:
    pidfile = tmp_path / "pull"

    async def body() -> None:
        pulls = worker()
        try:
            # Answered by the checker: the pull's process (which would write its pid) never runs.
            assert await pull(pulls, f"present/7|sleep/0/{pidfile}") == 7
            assert not pidfile.exists()
            assert await pull(pulls, f"absent|sleep/0/{pidfile}") is None
            assert pidfile.exists()
            assert await pull(pulls, "absent|ok/9") == 9
            # The check's error is the pull's: no process runs the pull.
            with pytest.raises(errors.PermissionDenied, match="fake check PermissionDenied"):
                await pull(pulls, "fail/PermissionDenied|ok/1")
            # The pull's own error kinds, as without a checker.
            with pytest.raises(errors.NotFound, match="fake NotFound"):
                await pull(pulls, "absent|fail/NotFound")
            assert await pull(pulls, "present/3|crash") == 3
            assert pulls.started == 1
        finally:
            await pulls.close()

    run(body)


def test_a_busy_checker_holds_up_no_pull(tmp_path: Path) -> None:
    async def body() -> None:
        pulls = worker()
        try:
            slow = asyncio.create_task(pull(pulls, f"sleep/2/{tmp_path / 'c'}|ok/1"))
            checker = await pid_from(tmp_path / "c")
            started = time.monotonic()
            # The checker is busy: these get a process each, at once.
            assert await asyncio.gather(pull(pulls, "present/5|ok/4"), pull(pulls, "present/5|ok/6")) == [4, 6]
            assert time.monotonic() - started < 1.5
            assert await slow is None
            # Idle again, the same checker answers.
            assert await pull(pulls, f"present/5|sleep/0/{tmp_path / 'p'}") == 5
            assert not (tmp_path / "p").exists()
            assert alive(checker)
        finally:
            await pulls.close()
        assert not alive(checker)

    run(body)


def test_a_crashing_or_buggy_checker_hands_its_pull_over(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        pulls = worker()
        try:
            assert await pull(pulls, "crash|ok/5") == 5
            assert await pull(pulls, "present/6|ok/1") == 6  # a new checker
            assert await pull(pulls, "bug|ok/7") == 7  # the checker lives on
            assert await pull(pulls, f"sleep/0/{tmp_path / 'c'}|ok/1") is None
            checker = await pid_from(tmp_path / "c")
            assert await pull(pulls, "present/8|ok/1") == 8
            assert alive(checker)
            assert pulls.started == 1
        finally:
            await pulls.close()

    with caplog.at_level(logging.WARNING, logger="hawser.images._pull_worker"):
        run(body)
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "died (killed by SIGSEGV)" in said and "RuntimeError: boom in the check: bug" in said


def test_a_checker_dying_again_and_again_is_given_up(caplog: pytest.LogCaptureFixture) -> None:
    async def body() -> None:
        pulls = worker()
        try:
            for _ in range(CHECKER_DEATHS):
                assert await pull(pulls, "crash|ok/1") == 1
            # No checker any more: a pull of an image there already gets its process.
            assert await pull(pulls, "present/6|ok/2") == 2
            assert pulls.started == 1
        finally:
            await pulls.close()

    with caplog.at_level(logging.WARNING, logger="hawser.images._pull_worker"):
        run(body)
    assert "every pull gets a process of its own from now on" in " ".join(r.getMessage() for r in caplog.records)


def test_a_cancelled_check_kills_the_checker_and_the_next_pull_forks_another(tmp_path: Path) -> None:
    async def body() -> None:
        pulls = worker()
        try:
            victim = asyncio.create_task(pull(pulls, f"sleep/60/{tmp_path / 'c'}|ok/1"))
            checker = await pid_from(tmp_path / "c")
            started = time.monotonic()
            victim.cancel()
            with pytest.raises(asyncio.CancelledError):
                await victim
            assert time.monotonic() - started < 2  # SIGKILL, no grace
            assert not alive(checker)
            assert await pull(pulls, f"sleep/0/{tmp_path / 'd'}|ok/1") is None
            assert await pid_from(tmp_path / "d") != checker
            assert pulls.started == 1
        finally:
            await pulls.close()

    run(body)


def test_close_stops_a_check_in_flight_and_reaps_the_checker(tmp_path: Path) -> None:
    async def body() -> None:
        pulls = worker()
        checking = asyncio.create_task(pull(pulls, f"sleep/60/{tmp_path / 'c'}|ok/1"))
        checker = await pid_from(tmp_path / "c")
        first = pulls.pid
        assert first is not None
        started = time.monotonic()
        await pulls.close()
        assert time.monotonic() - started < 3
        assert not alive(first) and not alive(checker)
        with pytest.raises(errors.Unavailable, match="hawserd is shutting down"):
            await checking

    run(body)


def test_close_reaps_an_idle_checker(tmp_path: Path) -> None:
    async def body() -> None:
        pulls = worker()
        assert await pull(pulls, f"sleep/0/{tmp_path / 'c'}|ok/1") is None
        checker = await pid_from(tmp_path / "c")
        first = pulls.pid
        assert first is not None
        started = time.monotonic()
        await pulls.close()
        assert time.monotonic() - started < 3
        assert not alive(first) and not alive(checker)

    run(body)
