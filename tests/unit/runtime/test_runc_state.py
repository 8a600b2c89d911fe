"""Runc.state read from runc's state directory, as ``runc state`` decides."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hawser.runtime._runc import Runc


def own_start_time() -> int:
    stat = Path("/proc/self/stat").read_bytes()
    return int(stat[stat.rfind(b")") + 2:].split()[19])


def write_state(root: Path, id_: str, *, pid: int, start: int, freezer: str = "") -> Path:
    directory = root / id_
    directory.mkdir(parents=True, exist_ok=True)
    state = {"id": id_, "init_process_pid": pid, "init_process_start": start,
             "config": {"labels": ["bundle=/run/hawser/containers/" + id_]},
             "cgroup_paths": {"freezer": freezer} if freezer else {}}
    (directory / "state.json").write_text(json.dumps(state))
    return directory


def test_states_from_the_state_directory(tmp_path: Path) -> None:
    runc = Runc(str(tmp_path / "runc"), binary="/nonexistent/runc")  # never run: every answer is read
    assert runc.state("missing") is None

    directory = write_state(tmp_path / "runc", "c1", pid=os.getpid(), start=own_start_time())
    (directory / "exec.fifo").write_text("")
    created = runc.state("c1")
    assert created is not None and (created.status, created.pid) == ("created", os.getpid())
    assert created.bundle == "/run/hawser/containers/c1"

    (directory / "exec.fifo").unlink()
    assert runc.state("c1").status == "running"  # type: ignore[union-attr]

    freezer = tmp_path / "freezer"
    freezer.mkdir()
    (freezer / "freezer.state").write_text("FROZEN\n")
    write_state(tmp_path / "runc", "c1", pid=os.getpid(), start=own_start_time(), freezer=str(freezer))
    assert runc.state("c1").status == "paused"  # type: ignore[union-attr]
    (freezer / "freezer.state").write_text("THAWED\n")
    assert runc.state("c1").status == "running"  # type: ignore[union-attr]

    # Another process now has that pid (a different start time): the container's init is gone.
    write_state(tmp_path / "runc", "c1", pid=os.getpid(), start=own_start_time() - 1)
    stopped = runc.state("c1")
    assert stopped is not None and (stopped.status, stopped.pid) == ("stopped", 0)


def test_anything_unexpected_asks_runc(tmp_path: Path) -> None:
    fake = tmp_path / "fake-runc"
    fake.write_text('#!/bin/sh\necho \'{"id": "c2", "pid": 7, "status": "creating", "bundle": "/b"}\'\n')
    fake.chmod(0o755)
    runc = Runc(str(tmp_path / "runc"), binary=str(fake))
    (tmp_path / "runc" / "c2").mkdir(parents=True)  # no state.json yet: being created
    state = runc.state("c2")
    assert state is not None and (state.status, state.pid) == ("creating", 7)
    (tmp_path / "runc" / "c2" / "state.json").write_text("{not json")
    assert runc.state("c2").status == "creating"  # type: ignore[union-attr]
