"""Pressure stall information (PSI) in ``read_stats``, against fake cgroup
trees in tmp_path: the cgroup2 directory's cpu/memory/io.pressure on a
unified host and on a hybrid one (the ``unified`` mount beside the v1
controllers), and None wherever the host has no such file.  Formats are the
kernel's (Documentation/accounting/psi.rst), values from this host's kernel 6.18."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from hawser.host import CgroupLayout, read_stats
from hawser.host._cgroups import Pressure, PsiData, _parse_pressure

HYBRID_MOUNTINFO = """\
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
LEGACY_MOUNTINFO = "\n".join(HYBRID_MOUNTINFO.splitlines()[:-1]) + "\n"
UNIFIED_MOUNTINFO = "29 22 0:26 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"

CG = "/hawser/abc"
CPU = "some avg10=1.50 avg60=0.75 avg300=0.20 total=2311\nfull avg10=0.00 avg60=0.01 avg300=0.00 total=220\n"
MEMORY = "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"
IO = "some avg10=12.04 avg60=3.10 avg300=0.66 total=10291\nfull avg10=11.90 avg60=3.02 avg300=0.64 total=10277\n"
PRESSURES = {"cpu.pressure": CPU, "memory.pressure": MEMORY, "io.pressure": IO}


def write(directory: str, files: dict[str, str]) -> None:
    os.makedirs(directory, exist_ok=True)
    for name, text in files.items():
        Path(directory, name).write_text(text)


def layout_of(mountinfo: str, root: Path) -> CgroupLayout:
    layout = CgroupLayout.detect(mountinfo).rebased(str(root))
    for directory in layout.directories(CG):
        os.makedirs(directory, exist_ok=True)
    return layout


def test_parse_pressure_lines() -> None:
    assert _parse_pressure(IO) == Pressure(some=PsiData(10291, 12.04, 3.10, 0.66),
                                           full=PsiData(10277, 11.90, 3.02, 0.64))
    # cpu.pressure before kernel 5.13 has no "full" line; lines it does not know are skipped.
    assert _parse_pressure("some avg10=0.10 avg60=0.20 avg300=0.30 total=7\nlater x=1\n\n") == \
        Pressure(some=PsiData(7, 0.10, 0.20, 0.30), full=None)
    assert _parse_pressure("") is None
    assert _parse_pressure("some avg10=0.10 total=7\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1\n") is None
    assert _parse_pressure("some avg10=x avg60=0 avg300=0 total=1\n") is None


def test_unified_host_reads_the_cgroups_pressure(tmp_path: Path) -> None:
    layout = layout_of(UNIFIED_MOUNTINFO, tmp_path)
    write(layout.paths(CG)[""], {"cpu.stat": "usage_usec 5\n", **PRESSURES})
    stats = read_stats(layout, CG)
    assert stats.cpu_usage_ns == 5000
    assert stats.cpu_pressure == Pressure(some=PsiData(2311, 1.5, 0.75, 0.2), full=PsiData(220, 0.0, 0.01, 0.0))
    # Zeros the kernel wrote are a fact: a pressure, not None.
    assert stats.memory_pressure == Pressure(some=PsiData(0, 0.0, 0.0, 0.0), full=PsiData(0, 0.0, 0.0, 0.0))
    assert stats.io_pressure is not None and stats.io_pressure.some.total_us == 10291


def test_hybrid_host_reads_pressure_from_the_unified_mount(tmp_path: Path) -> None:
    layout = layout_of(HYBRID_MOUNTINFO, tmp_path)
    paths = layout.paths(CG)
    write(paths["blkio"], {"blkio.throttle.io_service_bytes_recursive": "254:0 Read 4096\n254:0 Write 8388608\n"
                                                                          "254:0 Total 8392704\nTotal 8392704\n"})
    # The unified hierarchy has no controllers: no io.stat, no memory.*; only the pressure files.
    write(paths[""], {"cpu.stat": "usage_usec 1\n", **PRESSURES})
    stats = read_stats(layout, CG)
    assert (stats.blkio_read_bytes, stats.blkio_write_bytes) == (4096, 8388608)
    assert stats.io_pressure == _parse_pressure(IO)
    assert stats.cpu_pressure == _parse_pressure(CPU)


def test_no_pressure_files_is_none_not_zero(tmp_path: Path) -> None:
    # PSI off for the cgroup (cgroup.pressure 0 hides the files) or a kernel without it.
    layout = layout_of(UNIFIED_MOUNTINFO, tmp_path)
    write(layout.paths(CG)[""], {"cpu.stat": "usage_usec 1\n", "io.pressure": IO})
    stats = read_stats(layout, CG)
    assert stats.cpu_pressure is None and stats.memory_pressure is None
    assert stats.io_pressure == _parse_pressure(IO)


def test_hybrid_cgroup_missing_from_the_unified_mount_has_no_pressure(tmp_path: Path) -> None:
    layout = layout_of(HYBRID_MOUNTINFO, tmp_path)
    os.rmdir(layout.paths(CG)[""])  # a runtime that did not join the cgroup2 hierarchy
    write(layout.paths(CG)["memory"], {"memory.usage_in_bytes": "4096\n"})
    stats = read_stats(layout, CG)
    assert stats.memory_usage == 4096
    assert (stats.cpu_pressure, stats.memory_pressure, stats.io_pressure) == (None, None, None)


def test_legacy_host_has_no_pressure(tmp_path: Path) -> None:
    layout = layout_of(LEGACY_MOUNTINFO, tmp_path)
    assert "" not in layout.mounts
    stats = read_stats(layout, CG)
    assert (stats.cpu_pressure, stats.memory_pressure, stats.io_pressure) == (None, None, None)


@pytest.mark.skipif(not os.path.exists("/proc/pressure/io"), reason="the kernel has no PSI")
def test_real_pressure_file_parses() -> None:
    # /proc/pressure/* has the cgroup files' format.
    for name in ("cpu", "memory", "io"):
        parsed = _parse_pressure(Path("/proc/pressure", name).read_text())
        assert parsed is not None and parsed.some.total_us >= 0


def test_eopnotsupp_is_none(tmp_path: Path) -> None:
    # A kernel that wants psi=1 answers EOPNOTSUPP on read: a directory in
    # place of the file gives EISDIR, which must propagate; EOPNOTSUPP is what
    # _pressure turns into None (checked through the reader it uses).
    from hawser.host._cgroups import _pressure, _Reader

    class Refusing(_Reader):
        def text(self, directory: str, name: str) -> str | None:
            raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    assert _pressure(Refusing(CG), str(tmp_path), "io.pressure") is None
    os.makedirs(tmp_path / "io.pressure")
    with pytest.raises(IsADirectoryError):
        _pressure(_Reader(CG), str(tmp_path), "io.pressure")
