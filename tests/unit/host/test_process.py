"""The process runner, with real processes: output, exit status, timeout,
SIGTERM then SIGKILL, process groups, cancellation; always reaped, no fd left."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.errors import DeadlineExceeded
from hawser.host import (
    ProcessTimedOut,
    run_process,
    run_process_async,
    spawn_process,
    uncancellable,
)


def sh(script: str) -> list[str]:
    return ["sh", "-c", script]


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def wait_for_file(path: Path) -> str:
    deadline = time.monotonic() + 10
    while not path.exists() or not path.read_text().endswith("\n"):
        assert time.monotonic() < deadline, f"{path} never written"
        time.sleep(0.01)
    return path.read_text()


async def wait_for_file_async(path: Path) -> str:
    deadline = time.monotonic() + 10
    while not path.exists() or not path.read_text().endswith("\n"):
        assert time.monotonic() < deadline, f"{path} never written"
        await asyncio.sleep(0.01)
    return path.read_text()


def reaped(pid: int) -> bool:
    """Our child is gone for good: not running and not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def gone(pid: int) -> bool:
    """Not running: no /proc entry, or a zombie its new parent has not reaped yet
    (a grandchild is not ours to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 5
    while not gone(pid):
        assert time.monotonic() < deadline, f"process {pid} survived"
        time.sleep(0.02)


@pytest.fixture
def leftovers() -> Iterator[list[int]]:
    """Pids a test expects to survive (an escaped grandchild): killed at the end."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# -- sync ----------------------------------------------------------------------


def test_output_stdin_and_exit_status_are_returned() -> None:
    res = run_process(sh('echo out; cat; echo err >&2; exit 3'), input=b"fed", timeout=10)
    assert (res.returncode, res.stdout, res.stderr) == (3, b"out\nfed", b"err\n")


def test_stdin_is_dev_null_without_input_and_env_and_cwd_apply(tmp_path: Path) -> None:
    res = run_process(sh('cat; pwd; echo "$GREETING"'), timeout=10, cwd=str(tmp_path),
                      env={"PATH": os.environ["PATH"], "GREETING": "hi"})
    assert res.returncode == 0
    assert res.stdout == f"{tmp_path}\nhi\n".encode()


def test_a_missing_program_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run_process([str(tmp_path / "none")], timeout=1)


def test_input_a_program_does_not_read_is_dropped() -> None:
    data = b"x" * (1 << 20)  # more than a pipe holds
    assert run_process(["true"], input=data, timeout=10).returncode == 0
    assert asyncio.run(run_process_async(["true"], input=data, timeout=10)).returncode == 0


def test_timeout_terminates_and_reaps(tmp_path: Path) -> None:
    fds = open_fds()
    pidfile = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(ProcessTimedOut) as caught:
        run_process(sh(f'echo $$ > {pidfile}; exec sleep 60'), timeout=0.5)
    assert time.monotonic() - start < 5
    assert isinstance(caught.value, DeadlineExceeded)
    assert caught.value.message == "sh -c did not finish within 0.5s"
    assert caught.value.returncode == -signal.SIGTERM
    assert reaped(int(pidfile.read_text()))
    assert open_fds() == fds


def test_a_program_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(ProcessTimedOut) as caught:
        run_process(sh(f'trap "" TERM; echo $$ > {pidfile}; exec sleep 60'), timeout=0.5, grace=0.5)
    elapsed = time.monotonic() - start
    assert 1.0 <= elapsed < 5
    assert caught.value.returncode == -signal.SIGKILL
    assert reaped(int(pidfile.read_text()))


def test_kill_group_stops_the_grandchildren_too(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    with pytest.raises(ProcessTimedOut):
        run_process(sh(f'sleep 60 & echo $! > {pids}; exec sleep 60'), timeout=0.5, kill_group=True)
    wait_gone(int(pids.read_text()))


def test_a_grandchild_holding_the_pipes_does_not_hold_the_caller(tmp_path: Path, leftovers: list[int]) -> None:
    fds = open_fds()
    pids = tmp_path / "pids"
    start = time.monotonic()
    with pytest.raises(ProcessTimedOut):
        run_process(sh(f'sleep 60 & echo $! > {pids}; echo $$ >> {pids}; exec sleep 60'), timeout=0.5)
    assert time.monotonic() - start < 5
    grandchild, child = (int(p) for p in pids.read_text().split())
    leftovers.append(grandchild)
    assert reaped(child) and not gone(grandchild)  # only the leader was signalled
    assert open_fds() == fds


class Interrupted(BaseException):
    pass


def test_an_interruption_stops_and_reaps_then_propagates(tmp_path: Path) -> None:
    """Like a Ctrl-C (or SIGTERM turned into KeyboardInterrupt) while waiting."""
    fds = open_fds()
    pidfile = tmp_path / "pid"

    def interrupt(signum: int, frame: object) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.5)
        with pytest.raises(Interrupted):
            run_process(sh(f'echo $$ > {pidfile}; exec sleep 60'), timeout=60)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert reaped(int(pidfile.read_text()))
    assert open_fds() == fds


def test_spawn_then_communicate_or_terminate(tmp_path: Path) -> None:
    process = spawn_process(sh('read line; echo "got $line"'), stdin=True)
    assert process.argv == ("sh", "-c", 'read line; echo "got $line"')
    assert process.communicate(b"x\n", timeout=10).stdout == b"got x\n"

    pidfile = tmp_path / "pid"
    process = spawn_process(sh(f'echo $$ > {pidfile}; exec sleep 60'))
    assert int(wait_for_file(pidfile)) == process.pid
    process.terminate()
    process.terminate()  # idempotent
    assert reaped(process.pid)


# -- async ---------------------------------------------------------------------


def test_async_output_stdin_and_exit_status_are_returned() -> None:
    res = asyncio.run(run_process_async(sh('echo out; cat; echo err >&2; exit 3'), input=b"fed", timeout=10))
    assert (res.returncode, res.stdout, res.stderr) == (3, b"out\nfed", b"err\n")
    res = asyncio.run(run_process_async(sh("cat; echo done"), timeout=10))  # stdin: /dev/null
    assert (res.returncode, res.stdout) == (0, b"done\n")


def test_async_large_input_and_output_flow() -> None:
    data = os.urandom(1 << 20)
    res = asyncio.run(run_process_async(["cat"], input=data, timeout=30))
    assert res.returncode == 0 and res.stdout == data


def test_async_a_missing_program_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        asyncio.run(run_process_async([str(tmp_path / "none")], timeout=1))


def test_async_timeout_terminates_and_reaps(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        fds = open_fds()
        with pytest.raises(ProcessTimedOut) as caught:
            await run_process_async(sh(f'echo $$ > {pidfile}; exec sleep 60'), timeout=0.5)
        assert caught.value.returncode == -signal.SIGTERM
        assert caught.value.message == "sh -c did not finish within 0.5s"
        assert open_fds() == fds

    start = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - start < 5
    assert reaped(int(pidfile.read_text()))


def test_async_a_program_ignoring_sigterm_is_killed_after_the_grace_period(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    start = time.monotonic()
    with pytest.raises(ProcessTimedOut) as caught:
        asyncio.run(run_process_async(sh(f'trap "" TERM; echo $$ > {pidfile}; exec sleep 60'),
                                      timeout=0.5, grace=0.5))
    assert 1.0 <= time.monotonic() - start < 5
    assert caught.value.returncode == -signal.SIGKILL
    assert reaped(int(pidfile.read_text()))


def test_async_kill_group_stops_the_grandchildren_too(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    with pytest.raises(ProcessTimedOut):
        asyncio.run(run_process_async(sh(f'sleep 60 & echo $! > {pids}; exec sleep 60'), timeout=0.5,
                                      kill_group=True))
    wait_gone(int(pids.read_text()))


def test_async_a_grandchild_holding_the_pipes_does_not_hold_the_caller(tmp_path: Path,
                                                                        leftovers: list[int]) -> None:
    pids = tmp_path / "pids"

    async def main() -> None:
        fds = open_fds()
        with pytest.raises(ProcessTimedOut):
            await run_process_async(sh(f'sleep 60 & echo $! > {pids}; echo $$ >> {pids}; exec sleep 60'),
                                    timeout=0.5)
        assert open_fds() == fds

    start = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - start < 5
    grandchild, child = (int(p) for p in pids.read_text().split())
    leftovers.append(grandchild)
    assert reaped(child)


def test_async_cancellation_stops_and_reaps_then_propagates(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        fds = open_fds()
        task = asyncio.create_task(run_process_async(sh(f'echo $$ > {pidfile}; exec sleep 60'), timeout=60))
        await wait_for_file_async(pidfile)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert reaped(int(pidfile.read_text()))
        assert open_fds() == fds

    asyncio.run(main())


def test_async_a_second_cancellation_does_not_cut_the_stop_short(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"

    async def main() -> None:
        task = asyncio.create_task(run_process_async(
            sh(f'trap "" TERM; echo $$ > {pidfile}; exec sleep 60'), timeout=60, grace=0.5))
        await wait_for_file_async(pidfile)
        task.cancel()
        await asyncio.sleep(0.1)
        task.cancel()  # during the grace period
        with pytest.raises(asyncio.CancelledError):
            await task
        assert reaped(int(pidfile.read_text()))

    asyncio.run(main())


def test_uncancellable_completes_despite_cancellation() -> None:
    done: list[str] = []

    async def cleanup() -> str:
        await asyncio.sleep(0.2)
        done.append("cleaned")
        return "ok"

    async def main() -> None:
        task = asyncio.create_task(uncancellable(cleanup()))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert done == ["cleaned"]
        assert await uncancellable(cleanup()) == "ok"

    asyncio.run(main())
