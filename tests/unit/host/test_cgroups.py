"""Cgroup layout detection and stats parsing against fake trees in tmp_path.

File contents are copied from a Debian 12 host with hybrid cgroups (kernel
6.x) and from the kernel's cgroup-v2 documentation formats.  No root needed:
kill tests signal real child processes listed in fake cgroup.procs files.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.errors import FailedPrecondition, InvalidArgument, NotFound
from hawser.host import (
    CgroupLayout,
    CgroupStats,
    cgroup_exists,
    cgroup_pids,
    kill_cgroup,
    oom_kills,
    read_stats,
    remove_cgroup,
)
from hawser.host._cgroups import _Reader

# /proc/self/mountinfo of the Debian 12 test host (hybrid: v1 controllers plus cgroup2 "unified").
HYBRID_MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw,discard,resv_strict,resuid=65534,resgid=65534
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

# A Debian 12 / systemd host with the default unified layout.
UNIFIED_MOUNTINFO = """\
22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 28 0:22 / /proc rw,nosuid,nodev,noexec,relatime shared:13 - proc proc rw
28 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
29 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
"""

# An Ubuntu 18.04-style legacy host: co-mounted controllers, systemd's named hierarchy with options.
LEGACY_MOUNTINFO = """\
25 20 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup cgroup rw,xattr,name=systemd
30 25 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,cpu,cpuacct
31 25 0:29 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
32 25 0:30 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:16 - cgroup cgroup rw,memory
33 25 0:31 / /sys/fs/cgroup/pids rw,nosuid,nodev,noexec,relatime shared:17 - cgroup cgroup rw,pids
34 25 0:32 / /sys/fs/cgroup/freezer rw,nosuid,nodev,noexec,relatime shared:18 - cgroup cgroup rw,freezer
35 25 0:33 / /sys/fs/cgroup/blkio rw,nosuid,nodev,noexec,relatime shared:19 - cgroup cgroup rw,blkio,release_agent=/x
"""

# v1 files of a container cgroup, in the kernel's formats (values from a real busybox container).
V1_MEMORY_STAT = """\
cache 606208
rss 1650688
rss_huge 0
shmem 0
mapped_file 0
dirty 81920
writeback 0
workingset_refault_anon 0
workingset_refault_file 137
swap 0
swapcached 0
pgpgin 10644
pgpgout 10089
pgfault 25866
pgmajfault 5
inactive_anon 1454080
active_anon 12288
inactive_file 139264
active_file 466944
unevictable 0
hierarchical_memory_limit 20971520
hierarchical_memsw_limit 9223372036854771712
total_cache 706208
total_rss 1750688
total_rss_huge 0
total_shmem 0
total_mapped_file 0
total_dirty 81920
total_writeback 0
total_workingset_refault_anon 0
total_workingset_refault_file 137
total_swap 0
total_swapcached 0
total_pgpgin 10644
total_pgpgout 10089
total_pgfault 25866
total_pgmajfault 5
total_inactive_anon 1454080
total_active_anon 12288
total_inactive_file 239264
total_active_file 466944
total_unevictable 0
"""

V1_BLKIO = """\
254:0 Read 8417280
254:0 Write 8388608
254:0 Sync 16805888
254:0 Async 0
254:0 Discard 0
254:0 Total 16805888
253:0 Read 4096
253:0 Write 1024
253:0 Sync 5120
253:0 Async 0
253:0 Discard 0
253:0 Total 5120
Total 16811008
"""

UNLIMITED = "9223372036854771712\n"

V1_FILES = {
    "cpuacct/cpuacct.usage": "361350315213\n",
    "cpuacct/cpuacct.usage_user": "247167966498\n",
    "cpuacct/cpuacct.usage_sys": "106607150307\n",
    "cpuacct/cpuacct.stat": "user 25246\nsystem 10888\n",
    "memory/memory.usage_in_bytes": "2400256\n",
    "memory/memory.limit_in_bytes": "20971520\n",
    "memory/memory.stat": V1_MEMORY_STAT,
    "memory/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
    "pids/pids.current": "4\n",
    "pids/pids.max": "max\n",
    "blkio/blkio.throttle.io_service_bytes_recursive": V1_BLKIO,
    "freezer/freezer.state": "THAWED\n",
}

V2_MEMORY_STAT = """\
anon 1048576
file 4096000
kernel 270336
kernel_stack 16384
pagetables 53248
sec_pagetables 0
percpu 0
sock 0
vmalloc 0
shmem 0
zswap 0
zswapped 0
file_mapped 0
file_dirty 0
file_writeback 0
swapcached 0
anon_thp 0
file_thp 0
shmem_thp 0
inactive_anon 1032192
active_anon 16384
inactive_file 3072000
active_file 1024000
unevictable 0
slab_reclaimable 102400
slab_unreclaimable 98304
slab 200704
pgfault 2210
pgmajfault 0
"""

V2_FILES = {
    "cgroup.procs": "",
    "cgroup.events": "populated 1\nfrozen 0\n",
    "cgroup.freeze": "0\n",
    "cpu.stat": "usage_usec 354423098\nuser_usec 247303966\nsystem_usec 107119132\nnice_usec 0\n"
                "nr_periods 0\nnr_throttled 0\nthrottled_usec 0\nnr_bursts 0\nburst_usec 0\n",
    "memory.current": "5505024\n",
    "memory.max": "max\n",
    "memory.stat": V2_MEMORY_STAT,
    "memory.events": "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n",
    "pids.current": "3\n",
    "pids.max": "1024\n",
    "io.stat": "254:0 rbytes=8417280 wbytes=8388608 rios=15 wios=16 dbytes=0 dios=0\n"
               "253:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n",
}

CG = "/hawser/abc"


def write_files(base: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = os.path.join(base, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)


@pytest.fixture
def hybrid(tmp_path: Path) -> CgroupLayout:
    """The real hybrid layout, moved under tmp_path, with the container cgroup
    present (with v1 files) in every hierarchy."""
    layout = CgroupLayout.detect(HYBRID_MOUNTINFO).rebased(str(tmp_path))
    for directory in layout.directories(CG):
        os.makedirs(directory)
    paths = layout.paths(CG)
    for rel, text in V1_FILES.items():
        controller, name = rel.split("/")
        write_files(paths[controller], {name: text})
    return layout


@pytest.fixture
def unified(tmp_path: Path) -> CgroupLayout:
    layout = CgroupLayout.detect(UNIFIED_MOUNTINFO).rebased(str(tmp_path))
    write_files(layout.paths(CG)[""], V2_FILES)
    return layout


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def spawn(procs: list[subprocess.Popen[bytes]]) -> int:
    proc = subprocess.Popen(["/bin/busybox", "sleep", "60"])
    procs.append(proc)
    return proc.pid


# --- layout --------------------------------------------------------------------


def test_detect_hybrid_host() -> None:
    layout = CgroupLayout.detect(HYBRID_MOUNTINFO)
    assert layout.version == 1
    assert layout.mounts == {
        "cpu": "/sys/fs/cgroup/cpu", "cpuacct": "/sys/fs/cgroup/cpuacct", "cpuset": "/sys/fs/cgroup/cpuset",
        "memory": "/sys/fs/cgroup/memory", "devices": "/sys/fs/cgroup/devices",
        "freezer": "/sys/fs/cgroup/freezer", "blkio": "/sys/fs/cgroup/blkio", "pids": "/sys/fs/cgroup/pids",
        "name=systemd": "/sys/fs/cgroup/systemd", "": "/sys/fs/cgroup/unified",
    }
    paths = layout.paths("/hawser/abc")
    assert paths["memory"] == "/sys/fs/cgroup/memory/hawser/abc"
    assert paths["name=systemd"] == "/sys/fs/cgroup/systemd/hawser/abc"
    assert paths[""] == "/sys/fs/cgroup/unified/hawser/abc"
    assert len(layout.directories("/hawser/abc")) == 10


def test_detect_unified_host() -> None:
    layout = CgroupLayout.detect(UNIFIED_MOUNTINFO)
    assert layout == CgroupLayout(version=2, mounts={"": "/sys/fs/cgroup"})
    assert layout.paths("/hawser/abc") == {"": "/sys/fs/cgroup/hawser/abc"}


def test_detect_legacy_host_with_comounted_controllers() -> None:
    layout = CgroupLayout.detect(LEGACY_MOUNTINFO)
    assert layout.version == 1
    assert layout.mounts["cpu"] == layout.mounts["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert layout.mounts["net_prio"] == "/sys/fs/cgroup/net_cls,net_prio"
    assert layout.mounts["name=systemd"] == "/sys/fs/cgroup/systemd"
    assert layout.mounts["blkio"] == "/sys/fs/cgroup/blkio"
    assert not any(key.startswith(("xattr", "release_agent", "rw")) for key in layout.mounts)
    # cpu and cpuacct share one directory; so do net_cls and net_prio.
    assert len(layout.directories("/a")) == len(set(layout.mounts.values()))
    assert len(layout.directories("/a")) == 8


def test_detect_prefers_the_hierarchy_root_and_unescapes() -> None:
    text = (
        "50 31 0:32 /docker/x /mnt/bind rw - cgroup cgroup rw,memory\n"
        "51 31 0:32 / /sys/fs/cgroup/mem\\040ory rw - cgroup cgroup rw,memory\n"
        "52 31 0:38 /sub /elsewhere rw - cgroup2 cgroup2 rw\n"
        "53 31 0:38 / /sys/fs/cgroup/unified rw shared:3 master:1 - cgroup2 cgroup2 rw\n"
        "garbage line\n"
    )
    layout = CgroupLayout.detect(text)
    assert layout.mounts == {"memory": "/sys/fs/cgroup/mem ory", "": "/sys/fs/cgroup/unified"}


def test_detect_named_only_v1_beside_cgroup2_is_unified() -> None:
    text = UNIFIED_MOUNTINFO + "60 29 0:40 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
    assert CgroupLayout.detect(text).version == 2


def test_detect_without_cgroups_fails() -> None:
    with pytest.raises(FailedPrecondition, match="no cgroup"):
        CgroupLayout.detect("22 27 0:21 / /proc rw,relatime - proc proc rw\n")


def test_detect_reads_this_host() -> None:
    layout = CgroupLayout.detect()
    assert layout.version in (1, 2) and layout.mounts


@pytest.mark.parametrize("path", ["", "hawser/abc", "/", "/a/../b", "/a//b", "/a/", "/./a", "/..", "/a\0b"])
def test_malformed_cgroup_paths(path: str) -> None:
    layout = CgroupLayout.detect(UNIFIED_MOUNTINFO)
    with pytest.raises(InvalidArgument, match="cgroup path"):
        layout.paths(path)
    with pytest.raises(InvalidArgument):
        cgroup_exists(layout, path)
    with pytest.raises(InvalidArgument):
        remove_cgroup(layout, path)
    with pytest.raises(InvalidArgument):
        kill_cgroup(layout, path)


def test_layout_validation_and_immutability() -> None:
    with pytest.raises(InvalidArgument):
        CgroupLayout(version=3, mounts={"": "/x"})
    with pytest.raises(InvalidArgument):
        CgroupLayout(version=2, mounts={"memory": "/x"})
    with pytest.raises(InvalidArgument):
        CgroupLayout(version=1, mounts={"memory": "relative"})
    mounts = {"": "/sys/fs/cgroup"}
    layout = CgroupLayout(version=2, mounts=mounts)
    mounts[""] = "/elsewhere"
    assert layout.mounts[""] == "/sys/fs/cgroup"
    assert hash(layout) == hash(CgroupLayout(version=2, mounts={"": "/sys/fs/cgroup"}))
    assert layout.rebased("/tmp/x").mounts == {"": "/tmp/x/sys/fs/cgroup"}


# --- stats: v1 -----------------------------------------------------------------


def test_v1_stats(hybrid: CgroupLayout) -> None:
    stats = read_stats(hybrid, CG)
    assert stats == CgroupStats(
        timestamp_ns=stats.timestamp_ns,
        cpu_usage_ns=361350315213, cpu_user_ns=247167966498, cpu_system_ns=106607150307,
        memory_usage=2400256, memory_working_set=2400256 - 239264, memory_limit=20 << 20,
        memory_rss=1750688, memory_cache=706208,
        pids_current=4, pids_limit=None,
        blkio_read_bytes=8417280 + 4096, blkio_write_bytes=8388608 + 1024,
        oom_kills=3,
    )
    assert stats.timestamp_ns > 1_600_000_000 * 10**9


def test_v1_cpu_falls_back_to_ticks(hybrid: CgroupLayout) -> None:
    cpuacct = hybrid.paths(CG)["cpuacct"]
    os.unlink(os.path.join(cpuacct, "cpuacct.usage_user"))
    os.unlink(os.path.join(cpuacct, "cpuacct.usage_sys"))
    stats = read_stats(hybrid, CG)
    tick_ns = 10**9 // os.sysconf("SC_CLK_TCK")
    assert (stats.cpu_user_ns, stats.cpu_system_ns) == (25246 * tick_ns, 10888 * tick_ns)


def test_v1_unlimited_and_limits(hybrid: CgroupLayout) -> None:
    paths = hybrid.paths(CG)
    write_files(paths["memory"], {"memory.limit_in_bytes": UNLIMITED})
    write_files(paths["pids"], {"pids.max": "100\n"})
    stats = read_stats(hybrid, CG)
    assert stats.memory_limit is None and stats.pids_limit == 100


def test_v1_missing_files_read_as_zero(hybrid: CgroupLayout) -> None:
    for directory in hybrid.directories(CG):
        for name in os.listdir(directory):
            os.unlink(os.path.join(directory, name))
    stats = read_stats(hybrid, CG)
    assert stats == CgroupStats(
        timestamp_ns=stats.timestamp_ns, cpu_usage_ns=0, cpu_user_ns=0, cpu_system_ns=0,
        memory_usage=0, memory_working_set=0, memory_limit=None, memory_rss=0, memory_cache=0,
        pids_current=0, pids_limit=None, blkio_read_bytes=0, blkio_write_bytes=0, oom_kills=0,
    )


def test_v1_empty_memory_stat_and_old_oom_control(hybrid: CgroupLayout) -> None:
    memory = hybrid.paths(CG)["memory"]
    # Kernels before 4.13 have no oom_kill line.
    write_files(memory, {"memory.stat": "", "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\n"})
    stats = read_stats(hybrid, CG)
    assert (stats.memory_usage, stats.memory_working_set, stats.memory_rss, stats.memory_cache) == (2400256, 2400256, 0, 0)
    assert stats.oom_kills == 0


def test_v1_working_set_floor_and_plain_keys(hybrid: CgroupLayout) -> None:
    memory = hybrid.paths(CG)["memory"]
    write_files(memory, {"memory.usage_in_bytes": "1000\n",
                         "memory.stat": "cache 10\nrss 20\ninactive_file 5000\n"})
    stats = read_stats(hybrid, CG)
    assert (stats.memory_working_set, stats.memory_rss, stats.memory_cache) == (0, 20, 10)


def test_v1_blkio_falls_back_when_throttle_counts_nothing(hybrid: CgroupLayout) -> None:
    blkio = hybrid.paths(CG)["blkio"]
    write_files(blkio, {
        "blkio.throttle.io_service_bytes_recursive": "Total 0\n",
        "blkio.io_service_bytes_recursive": "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n8:0 Async 0\n8:0 Total 300\nTotal 300\n",
    })
    stats = read_stats(hybrid, CG)
    assert (stats.blkio_read_bytes, stats.blkio_write_bytes) == (100, 200)


def test_v1_controller_not_mounted(tmp_path: Path) -> None:
    layout = CgroupLayout(version=1, mounts={"memory": str(tmp_path / "memory")})
    write_files(layout.paths(CG)["memory"], {"memory.usage_in_bytes": "4096\n"})
    stats = read_stats(layout, CG)
    assert stats.memory_usage == 4096 and stats.cpu_usage_ns == 0 and stats.pids_limit is None


def test_v1_oom_kills_counts_sub_cgroups(hybrid: CgroupLayout) -> None:
    memory = hybrid.paths(CG)["memory"]
    write_files(memory, {"sub/memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "sub/deeper/x": ""})
    assert oom_kills(hybrid, CG) == 5
    assert read_stats(hybrid, CG).oom_kills == 5


def test_v1_gone_cgroup_is_not_found(hybrid: CgroupLayout) -> None:
    with pytest.raises(NotFound, match="/hawser/other"):
        read_stats(hybrid, "/hawser/other")
    with pytest.raises(NotFound, match="/hawser/other"):
        oom_kills(hybrid, "/hawser/other")
    with pytest.raises(NotFound):
        cgroup_pids(hybrid, "/hawser/other")


def test_v1_partly_removed_cgroup_is_not_found(hybrid: CgroupLayout) -> None:
    memory = hybrid.paths(CG)["memory"]
    for name in os.listdir(memory):
        os.unlink(os.path.join(memory, name))
    os.rmdir(memory)
    assert cgroup_exists(hybrid, CG)
    with pytest.raises(NotFound, match="memory"):
        read_stats(hybrid, CG)
    with pytest.raises(NotFound):
        oom_kills(hybrid, CG)


def test_cgroup_removed_while_reading_is_not_found(tmp_path: Path) -> None:
    reader = _Reader(CG)
    directory = tmp_path / "gone"
    directory.mkdir()
    (directory / "memory.stat").write_text("cache 1\n")
    assert reader.text(str(directory), "memory.stat") == "cache 1\n"
    assert reader.text(str(directory), "memory.events") is None
    (directory / "memory.stat").unlink()
    directory.rmdir()
    with pytest.raises(NotFound, match=CG):
        reader.text(str(directory), "memory.stat")


# --- stats: v2 -----------------------------------------------------------------


def test_v2_stats(unified: CgroupLayout) -> None:
    stats = read_stats(unified, CG)
    assert stats == CgroupStats(
        timestamp_ns=stats.timestamp_ns,
        cpu_usage_ns=354423098000, cpu_user_ns=247303966000, cpu_system_ns=107119132000,
        memory_usage=5505024, memory_working_set=5505024 - 3072000, memory_limit=None,
        memory_rss=1048576, memory_cache=4096000,
        pids_current=3, pids_limit=1024,
        blkio_read_bytes=8417280 + 4096, blkio_write_bytes=8388608,
        oom_kills=2,
    )
    assert oom_kills(unified, CG) == 2


def test_v2_limits(unified: CgroupLayout) -> None:
    write_files(unified.paths(CG)[""], {"memory.max": "20971520\n", "pids.max": "max\n"})
    stats = read_stats(unified, CG)
    assert stats.memory_limit == 20 << 20 and stats.pids_limit is None


def test_v2_controllers_not_enabled(tmp_path: Path) -> None:
    # A cgroup whose parent enables no controllers has only the core files.
    layout = CgroupLayout(version=2, mounts={"": str(tmp_path)})
    write_files(layout.paths(CG)[""], {"cgroup.procs": "", "cpu.stat": "usage_usec 10\nuser_usec 6\nsystem_usec 4\n"})
    stats = read_stats(layout, CG)
    assert (stats.cpu_usage_ns, stats.cpu_user_ns, stats.cpu_system_ns) == (10_000, 6_000, 4_000)
    assert (stats.memory_usage, stats.memory_limit, stats.pids_current, stats.pids_limit) == (0, None, 0, None)
    assert (stats.blkio_read_bytes, stats.oom_kills) == (0, 0)
    assert oom_kills(layout, CG) == 0


def test_v2_empty_memory_stat(unified: CgroupLayout) -> None:
    write_files(unified.paths(CG)[""], {"memory.stat": "", "io.stat": ""})
    stats = read_stats(unified, CG)
    assert (stats.memory_working_set, stats.memory_rss, stats.memory_cache) == (5505024, 0, 0)
    assert (stats.blkio_read_bytes, stats.blkio_write_bytes) == (0, 0)


def test_v2_gone_cgroup_is_not_found(unified: CgroupLayout) -> None:
    with pytest.raises(NotFound, match="/hawser/nope"):
        read_stats(unified, "/hawser/nope")
    with pytest.raises(NotFound, match="/hawser/nope"):
        oom_kills(unified, "/hawser/nope")
    assert not cgroup_exists(unified, "/hawser/nope")
    assert cgroup_exists(unified, CG)
    assert cgroup_exists(unified, "/hawser")


# --- processes -----------------------------------------------------------------


def test_pids_from_every_hierarchy_and_sub_cgroup(hybrid: CgroupLayout) -> None:
    paths = hybrid.paths(CG)
    write_files(paths["memory"], {"cgroup.procs": "10\n11\n", "sub/cgroup.procs": "12\n"})
    write_files(paths["pids"], {"cgroup.procs": "11\n10\n"})  # v1 may list a pid twice; so may two hierarchies
    write_files(paths[""], {"cgroup.procs": "13\n"})
    assert cgroup_pids(hybrid, CG) == [10, 11, 12, 13]


def test_v1_kill_freezes_signals_and_thaws(hybrid: CgroupLayout, sleepers: list[subprocess.Popen[bytes]]) -> None:
    paths = hybrid.paths(CG)
    first, second = spawn(sleepers), spawn(sleepers)
    write_files(paths["memory"], {"cgroup.procs": f"{first}\n"})
    write_files(paths["pids"], {"cgroup.procs": f"{first}\n", "sub/cgroup.procs": f"{second}\n"})
    assert kill_cgroup(hybrid, CG) == 2
    assert [proc.wait(timeout=10) for proc in sleepers] == [-signal.SIGKILL, -signal.SIGKILL]
    with open(os.path.join(paths["freezer"], "freezer.state")) as f:
        assert f.read() == "THAWED"


def test_kill_with_another_signal(hybrid: CgroupLayout, sleepers: list[subprocess.Popen[bytes]]) -> None:
    pid = spawn(sleepers)
    write_files(hybrid.paths(CG)["cpu"], {"cgroup.procs": f"{pid}\n"})
    assert kill_cgroup(hybrid, CG, signal.SIGTERM) == 1
    assert sleepers[0].wait(timeout=10) == -signal.SIGTERM


def test_kill_skips_processes_that_already_exited(hybrid: CgroupLayout) -> None:
    proc = subprocess.Popen(["/bin/busybox", "true"])
    proc.wait()
    write_files(hybrid.paths(CG)["cpu"], {"cgroup.procs": f"{proc.pid}\n"})
    assert kill_cgroup(hybrid, CG) == 0


def test_kill_gone_cgroup_is_zero(hybrid: CgroupLayout, unified: CgroupLayout) -> None:
    assert kill_cgroup(hybrid, "/hawser/gone") == 0
    assert kill_cgroup(unified, "/hawser/gone") == 0


def test_kill_refuses_its_own_cgroup(unified: CgroupLayout) -> None:
    write_files(unified.paths(CG)[""], {"cgroup.procs": f"{os.getpid()}\n"})
    with pytest.raises(FailedPrecondition, match="calling process"):
        kill_cgroup(unified, CG)


def test_v2_kill_uses_cgroup_kill(unified: CgroupLayout, sleepers: list[subprocess.Popen[bytes]]) -> None:
    directory = unified.paths(CG)[""]
    pid = spawn(sleepers)
    write_files(directory, {"cgroup.kill": "", "cgroup.procs": f"{pid}\n"})
    assert kill_cgroup(unified, CG) == 1
    with open(os.path.join(directory, "cgroup.kill")) as f:
        assert f.read() == "1"
    # A fake cgroup.kill kills nothing: the kernel would have.
    assert sleepers[0].poll() is None


def test_v2_kill_without_cgroup_kill_freezes(unified: CgroupLayout, sleepers: list[subprocess.Popen[bytes]]) -> None:
    directory = unified.paths(CG)[""]
    pid = spawn(sleepers)
    # What the kernel reports once the freeze has taken hold.
    write_files(directory, {"cgroup.procs": f"{pid}\n", "cgroup.events": "populated 1\nfrozen 1\n"})
    assert kill_cgroup(unified, CG, signal.SIGKILL) == 1
    assert sleepers[0].wait(timeout=10) == -signal.SIGKILL
    with open(os.path.join(directory, "cgroup.freeze")) as f:
        assert f.read() == "0"


# --- removal -------------------------------------------------------------------


def test_remove_leaf_first_in_every_hierarchy(tmp_path: Path) -> None:
    layout = CgroupLayout.detect(LEGACY_MOUNTINFO).rebased(str(tmp_path))
    for directory in layout.directories(CG):
        os.makedirs(os.path.join(directory, "sub", "deeper"))
    os.makedirs(os.path.join(layout.paths("/hawser/sibling")["memory"]))
    assert cgroup_exists(layout, CG)
    remove_cgroup(layout, CG)
    assert not cgroup_exists(layout, CG)
    # Parents and siblings stay.
    assert cgroup_exists(layout, "/hawser") and cgroup_exists(layout, "/hawser/sibling")
    remove_cgroup(layout, CG)  # idempotent
    remove_cgroup(layout, "/never/existed")


def test_remove_partly_removed_cgroup(tmp_path: Path) -> None:
    layout = CgroupLayout.detect(HYBRID_MOUNTINFO).rebased(str(tmp_path))
    os.makedirs(layout.paths(CG)["pids"])
    remove_cgroup(layout, CG)
    assert not cgroup_exists(layout, CG)


def test_remove_busy_cgroup_times_out(tmp_path: Path) -> None:
    layout = CgroupLayout(version=2, mounts={"": str(tmp_path)})
    write_files(layout.paths(CG)[""], {"sub/cgroup.procs": "4242\n"})
    with pytest.raises(FailedPrecondition, match=r"processes 4242 remain") as info:
        remove_cgroup(layout, CG, timeout=0.05)
    assert info.value.hint is not None and "kill" in info.value.hint
