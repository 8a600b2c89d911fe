"""proc_stat reads /proc/<pid>/stat: comm (spaces and parentheses included), state, start time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time

from hawser.host import proc_stat


def test_own_process() -> None:
    stat = proc_stat(os.getpid())
    assert stat is not None and stat.alive and stat.start_time > 0
    assert stat == proc_stat(os.getpid())  # the start time names the process for good


def test_a_comm_with_spaces_and_parentheses() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        odd = os.path.join(tmp, "a b) (c")
        shutil.copy(shutil.which("sleep") or "/bin/sleep", odd)
        proc = subprocess.Popen([odd, "10"])
        try:
            time.sleep(0.05)
            stat = proc_stat(proc.pid)
            assert stat is not None and stat.comm == "a b) (c" and stat.alive
        finally:
            proc.kill()
            proc.wait()


def test_a_zombie_is_not_alive_and_a_reaped_process_is_gone() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while (stat := proc_stat(proc.pid)) is not None and stat.alive and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stat is not None and stat.state == "Z" and not stat.alive  # exited, not yet waited for
    proc.wait()
    assert proc_stat(proc.pid) is None
