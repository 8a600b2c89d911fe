"""hawser.host cgroup helpers against the real cgroups of this host (root).

Every test works below a fresh "/hawser-test-<random>" cgroup created in every
hierarchy; the fixture kills whatever is left in it and removes it, also when
the test fails.  Processes join a test cgroup before they exec (preexec_fn),
so everything they fork is accounted there from the start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hawser.errors import FailedPrecondition
from hawser.host import (
    CgroupLayout,
    cgroup_exists,
    cgroup_pids,
    kill_cgroup,
    oom_kills,
    read_stats,
    remove_cgroup,
)

pytestmark = pytest.mark.integration

BUSYBOX = "/bin/busybox"
MiB = 1 << 20

# Holds 50 MiB of touched memory (bytes * n writes every page), says so, then waits.
HOLD_50M = "import sys, time\nb = b'x' * (50 << 20)\nprint('ready', flush=True)\ntime.sleep(120)\n"
ALLOCATE_100M = "b = b'x' * (100 << 20)\n"


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


@dataclass
class Cgroups:
    layout: CgroupLayout
    parent: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def make(self, name: str) -> str:
        """Create ``<parent>/<name>`` in every hierarchy, the way runc does."""
        cgroup = f"{self.parent}/{name}"
        parts = cgroup.strip("/").split("/")
        for key, mount_point in self.layout.mounts.items():
            directory = mount_point
            for depth, part in enumerate(parts):
                above, directory = directory, os.path.join(directory, part)
                if os.path.isdir(directory):
                    continue
                os.mkdir(directory)
                if key == "cpuset":
                    # A new v1 cpuset is empty, and an empty cpuset takes no task.
                    for name_ in ("cpuset.cpus", "cpuset.mems"):
                        with open(os.path.join(above, name_)) as f:
                            _write(os.path.join(directory, name_), f.read())
                if key == "" and self.layout.version == 2 and depth < len(parts) - 1:
                    for controller in ("cpu", "memory", "pids", "io"):
                        with contextlib.suppress(OSError):
                            _write(os.path.join(directory, "cgroup.subtree_control"), f"+{controller}")
        return cgroup

    def start(self, cgroup: str, argv: list[str], *, stdout: int | None = None,
              stderr: int | None = None) -> subprocess.Popen[bytes]:
        """Run ``argv`` inside ``cgroup`` (joined in every hierarchy before exec)."""
        directories = self.layout.directories(cgroup)

        def join() -> None:
            for directory in directories:
                _write(os.path.join(directory, "cgroup.procs"), str(os.getpid()))

        proc = subprocess.Popen(argv, preexec_fn=join, stdout=stdout, stderr=stderr)
        self.procs.append(proc)
        return proc

    def write(self, cgroup: str, controller: str, name: str, text: str) -> None:
        _write(os.path.join(self.layout.paths(cgroup)[controller], name), text)


@pytest.fixture
def cgroups() -> Iterator[Cgroups]:
    layout = CgroupLayout.detect()
    parent = f"/hawser-test-{uuid.uuid4().hex[:10]}"
    state = Cgroups(layout=layout, parent=parent)
    try:
        yield state
    finally:
        for proc in state.procs:
            if proc.poll() is None:
                proc.kill()
        with contextlib.suppress(Exception):
            kill_cgroup(layout, parent)
        for proc in state.procs:
            proc.wait(timeout=10)
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
        remove_cgroup(layout, parent, timeout=10)
        assert not cgroup_exists(layout, parent)


def test_cpu_and_pids_follow_a_spinning_process(cgroups: Cgroups) -> None:
    cgroup = cgroups.make("spin")
    before = read_stats(cgroups.layout, cgroup)
    assert before.cpu_usage_ns == 0 and before.pids_current == 0
    spinner = cgroups.start(cgroup, [BUSYBOX, "sh", "-c", "while :; do :; done"])
    wait_until(lambda: read_stats(cgroups.layout, cgroup).cpu_usage_ns > 200_000_000, what="200ms of CPU")
    first = read_stats(cgroups.layout, cgroup)
    wait_until(lambda: read_stats(cgroups.layout, cgroup).cpu_usage_ns > first.cpu_usage_ns + 100_000_000,
               what="CPU usage to keep growing")
    stats = read_stats(cgroups.layout, cgroup)
    assert stats.timestamp_ns > first.timestamp_ns
    assert stats.cpu_user_ns > 0 and stats.cpu_user_ns + stats.cpu_system_ns <= stats.cpu_usage_ns * 1.2 + 50_000_000
    assert stats.pids_current == 1 and stats.pids_limit is None
    assert cgroup_pids(cgroups.layout, cgroup) == [spinner.pid]
    assert cgroup_pids(cgroups.layout, cgroups.parent) == [spinner.pid]


def test_memory_follows_a_process_holding_50m(cgroups: Cgroups) -> None:
    cgroup = cgroups.make("hold")
    holder = cgroups.start(cgroup, [sys.executable, "-c", HOLD_50M], stdout=subprocess.PIPE)
    assert holder.stdout is not None and holder.stdout.readline() == b"ready\n"
    stats = read_stats(cgroups.layout, cgroup)
    assert stats.memory_usage >= 50 * MiB
    assert stats.memory_rss >= 50 * MiB
    assert 50 * MiB <= stats.memory_working_set <= stats.memory_usage
    assert stats.memory_limit is None
    assert stats.oom_kills == 0 and oom_kills(cgroups.layout, cgroup) == 0


def test_oom_kill_is_counted(cgroups: Cgroups) -> None:
    cgroup = cgroups.make("oom")
    if cgroups.layout.version == 2:
        cgroups.write(cgroup, "", "memory.max", str(20 * MiB))
        cgroups.write(cgroup, "", "memory.swap.max", "0")
    else:
        cgroups.write(cgroup, "memory", "memory.limit_in_bytes", str(20 * MiB))
        with contextlib.suppress(OSError):  # without swap accounting there is no memsw file
            cgroups.write(cgroup, "memory", "memory.memsw.limit_in_bytes", str(20 * MiB))
    assert read_stats(cgroups.layout, cgroup).memory_limit == 20 * MiB
    assert oom_kills(cgroups.layout, cgroup) == 0
    victim = cgroups.start(cgroup, [sys.executable, "-c", ALLOCATE_100M])
    assert victim.wait(timeout=60) == -signal.SIGKILL
    assert oom_kills(cgroups.layout, cgroup) >= 1
    assert read_stats(cgroups.layout, cgroup).oom_kills >= 1
    # v1 counts the kill in the victim's own cgroup: the parent sums it in.
    assert oom_kills(cgroups.layout, cgroups.parent) >= 1


def test_kill_a_forking_shell_then_remove(cgroups: Cgroups) -> None:
    cgroup = cgroups.make("forks")
    shell = cgroups.start(cgroup, [BUSYBOX, "sh", "-c", f"for i in 1 2 3; do {BUSYBOX} sleep 100 & done; wait"])
    wait_until(lambda: len(cgroup_pids(cgroups.layout, cgroup)) == 4, what="the shell and its 3 children")
    assert read_stats(cgroups.layout, cgroup).pids_current == 4
    assert kill_cgroup(cgroups.layout, cgroup) == 4
    assert shell.wait(timeout=10) == -signal.SIGKILL
    remove_cgroup(cgroups.layout, cgroup)
    assert not cgroup_exists(cgroups.layout, cgroup)
    assert cgroup_pids(cgroups.layout, cgroups.parent) == []
    if cgroups.layout.version == 1:
        # The freezer was thawed: a frozen parent would hold later tasks.
        with open(os.path.join(cgroups.layout.paths(cgroups.parent)["freezer"], "freezer.state")) as f:
            assert f.read().strip() == "THAWED"
    remove_cgroup(cgroups.layout, cgroup)  # idempotent
    assert kill_cgroup(cgroups.layout, cgroup) == 0


def test_kill_reaches_sub_cgroups_and_remove_goes_leaf_first(cgroups: Cgroups) -> None:
    outer = cgroups.make("outer")
    inner = cgroups.make("outer/inner")
    a = cgroups.start(outer, [BUSYBOX, "sleep", "100"])
    b = cgroups.start(inner, [BUSYBOX, "sleep", "100"])
    assert cgroup_pids(cgroups.layout, outer) == sorted([a.pid, b.pid])
    assert kill_cgroup(cgroups.layout, outer, signal.SIGTERM) == 2
    assert (a.wait(timeout=10), b.wait(timeout=10)) == (-signal.SIGTERM, -signal.SIGTERM)
    remove_cgroup(cgroups.layout, outer)
    assert not cgroup_exists(cgroups.layout, inner) and not cgroup_exists(cgroups.layout, outer)
    assert cgroup_exists(cgroups.layout, cgroups.parent)


def test_remove_refuses_while_processes_remain(cgroups: Cgroups) -> None:
    cgroup = cgroups.make("busy")
    sleeper = cgroups.start(cgroup, [BUSYBOX, "sleep", "100"])
    started = time.monotonic()
    with pytest.raises(FailedPrecondition, match=str(sleeper.pid)):
        remove_cgroup(cgroups.layout, cgroup, timeout=0.3)
    assert time.monotonic() - started < 5
    assert cgroup_exists(cgroups.layout, cgroup)
    assert kill_cgroup(cgroups.layout, cgroup) == 1
    # No wait for the exit: remove_cgroup rides out the moment it takes.
    remove_cgroup(cgroups.layout, cgroup)
    assert not cgroup_exists(cgroups.layout, cgroup)


def test_block_io_is_counted_under_a_throttle_rule(cgroups: Cgroups, tmp_path: Path) -> None:
    if cgroups.layout.version != 1 or "blkio" not in cgroups.layout.mounts:
        pytest.skip("v1 blkio only")
    dd = shutil.which("dd")
    if dd is None:
        pytest.skip("no dd")
    dev = os.stat(tmp_path).st_dev
    cgroup = cgroups.make("io")
    # Recent kernels count v1 throttle stats only for I/O that a rule applies to.
    rule = f"{os.major(dev)}:{os.minor(dev)} {1 << 40}"
    try:
        cgroups.write(cgroup, "blkio", "blkio.throttle.write_bps_device", rule)
        cgroups.write(cgroup, "blkio", "blkio.throttle.read_bps_device", rule)
    except OSError:
        pytest.skip(f"no throttle rule possible on device {os.major(dev)}:{os.minor(dev)}")
    target = tmp_path / "io.bin"
    writer = cgroups.start(cgroup, [dd, "if=/dev/zero", f"of={target}", "bs=1M", "count=8", "oflag=direct"],
                           stderr=subprocess.DEVNULL)
    assert writer.wait(timeout=60) == 0
    reader = cgroups.start(cgroup, [dd, f"if={target}", "of=/dev/null", "bs=1M", "iflag=direct"],
                           stderr=subprocess.DEVNULL)
    assert reader.wait(timeout=60) == 0
    stats = read_stats(cgroups.layout, cgroup)
    assert stats.blkio_write_bytes >= 8 * MiB
    assert stats.blkio_read_bytes >= 8 * MiB


def test_runc_container_cgroup(cgroups: Cgroups, tmp_path: Path) -> None:
    runc_root = tmp_path / "runc"
    bundle = tmp_path / "bundle"
    (bundle / "rootfs" / "bin").mkdir(parents=True)
    shutil.copy(BUSYBOX, bundle / "rootfs" / "bin" / "busybox")
    for applet in ("sh", "sleep"):
        os.symlink("busybox", bundle / "rootfs" / "bin" / applet)
    subprocess.run(["runc", "spec"], cwd=bundle, check=True, timeout=30)
    config = json.loads((bundle / "config.json").read_text())
    container_id = f"hawser-test-{uuid.uuid4().hex[:8]}"
    cgroup = f"{cgroups.parent}/{container_id}"
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/sh", "-c", "sleep 100 & sleep 100"]
    config["linux"]["cgroupsPath"] = cgroup
    (bundle / "config.json").write_text(json.dumps(config))
    runc = ["runc", "--root", str(runc_root)]
    try:
        # The detached container inherits runc's stdio: a pipe would stay open
        # (and run would never seem to end) as long as the container lives.
        subprocess.run([*runc, "run", "-d", "--bundle", str(bundle), container_id], check=True, timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        state = json.loads(subprocess.run([*runc, "state", container_id], check=True, timeout=30,
                                          capture_output=True).stdout)
        wait_until(lambda: len(cgroup_pids(cgroups.layout, cgroup)) == 2, what="the container's two processes")
        assert state["pid"] in cgroup_pids(cgroups.layout, cgroup)
        stats = read_stats(cgroups.layout, cgroup)
        assert stats.pids_current == 2 and stats.memory_usage > 0 and stats.cpu_usage_ns > 0
        assert oom_kills(cgroups.layout, cgroup) == 0
        subprocess.run([*runc, "kill", container_id, "KILL"], check=True, timeout=30)
        subprocess.run([*runc, "delete", "-f", container_id], check=True, timeout=30)
        assert not cgroup_exists(cgroups.layout, cgroup)
        # runc leaves the parent: hawser removes it.
        assert cgroup_exists(cgroups.layout, cgroups.parent)
    finally:
        subprocess.run([*runc, "delete", "-f", container_id], timeout=30, capture_output=True)
