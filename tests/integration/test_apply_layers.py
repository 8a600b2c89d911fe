"""The layer applier with root: owners, devices, capabilities, overlay whiteouts
and opaque dirs, merged overlay mounts, a full disk, and the unpack worker."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.errors import InvalidArgument, ResourceExhausted
from hawser.host import mount, unmount
from hawser.images._apply import ApplyResult, apply_layer
from hawser.images._decompress import open_decompressed
from hawser.images._lowers import check_implicit_dirs
from hawser.snapshots import ApplyTarget
from tests.support.layers import LayerBuilder, busybox_layers, gzip_compress, zstd_compress

pytestmark = pytest.mark.integration

WORKER = [sys.executable, "-m", "hawser.images._unpack_worker"]
# cap_net_bind_service in the permitted and effective sets (VFS_CAP_REVISION_2)
CAPS = struct.pack("<IIIII", 0x02000001, 1 << 10, 0, 0, 0)

MODES = [pytest.param(False, id="native"), pytest.param(True, id="overlay")]


def apply(tar: bytes, root: Path, *, overlay: bool = False, lowers: tuple[str, ...] = ()) -> ApplyResult:
    return apply_layer(io.BytesIO(tar), ApplyTarget(str(root), overlay_whiteouts=overlay, lowers=lowers))


@pytest.fixture
def mountpoint(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "mnt"
    target.mkdir()
    yield target
    for _ in range(4):
        unmount(str(target), detach=True)


def overlay_mount(target: Path, lowers: list[Path], upper: Path | None = None, work: Path | None = None) -> None:
    options = ["lowerdir=" + ":".join(str(p) for p in lowers)]
    if upper is not None and work is not None:
        options = [f"upperdir={upper}", f"workdir={work}", *options]
    mount("overlay", "overlay", str(target), ["index=off", *options])


@pytest.mark.parametrize("overlay", MODES)
def test_every_entry_type_and_its_metadata(tmp_path: Path, overlay: bool) -> None:
    layer = (LayerBuilder()
             .add_raw("./", type=b"5", mode=0o751, uid=0, gid=0, mtime=1_100_000_000)
             .add_dir("d", mode=0o2750, uid=1000, gid=2000, mtime=1_200_000_000, xattrs={"user.dir": b"1"})
             .add_dir("tmp", mode=0o1777)
             .add_file("d/suid", b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0, mtime=1_300_000_000)
             .add_file("d/sgid", b"x", mode=0o2711, uid=1000, gid=2000)
             .add_file("d/owned", b"data" * 5000, mode=0o640, uid=1000, gid=2000, mtime=1_400_000_000,
                       xattrs={"user.a": b"b", "trusted.evil": b"x", "trusted.overlay.opaque": b"y"})
             .add_file("d/cap", b"\x7fELF", mode=0o755, xattrs={"security.capability": CAPS})
             .add_raw("d/times", data=b"t", pax={"mtime": b"1500000000.25", "atime": b"1400000000.5"})
             .add_symlink("d/sym", "../tmp/nowhere", uid=1000, gid=2000, mtime=1_600_000_000)
             .add_hardlink("d/hard", "d/owned")
             .add_char("d/null", 1, 3, mode=0o666, uid=0, gid=5)
             .add_block("d/loop", 7, 200, mode=0o660, uid=0, gid=6)
             .add_fifo("d/fifo", mode=0o620, uid=1000, gid=1000, mtime=1_700_000_000)
             .add_file("d/" + "long" * 40, b"long name")
             .build())
    root = tmp_path / "root"
    root.mkdir()
    result = apply(layer, root, overlay=overlay)
    assert result.diff_id == "sha256:" + hashlib.sha256(layer).hexdigest()
    assert result.implicit_dirs == ()

    def st(rel: str) -> os.stat_result:
        return os.lstat(root / rel)

    assert (stat.S_IMODE(st(".").st_mode), st(".").st_mtime) == (0o751, 1_100_000_000)
    d = st("d")
    assert (stat.S_IMODE(d.st_mode), d.st_uid, d.st_gid, d.st_mtime) == (0o2750, 1000, 2000, 1_200_000_000)
    assert os.getxattr(root / "d", "user.dir") == b"1"
    assert stat.S_IMODE(st("tmp").st_mode) == 0o1777
    assert (stat.S_IMODE(st("d/suid").st_mode), st("d/suid").st_mtime) == (0o4755, 1_300_000_000)
    assert (stat.S_IMODE(st("d/sgid").st_mode), st("d/sgid").st_uid, st("d/sgid").st_gid) == (0o2711, 1000, 2000)
    owned = st("d/owned")
    assert (stat.S_IMODE(owned.st_mode), owned.st_uid, owned.st_gid, owned.st_mtime) == (0o640, 1000, 2000,
                                                                                        1_400_000_000)
    assert (root / "d/owned").read_bytes() == b"data" * 5000
    assert sorted(os.listxattr(root / "d/owned")) == ["user.a"]  # trusted.* from a layer is dropped
    assert os.getxattr(root / "d/cap", "security.capability") == CAPS
    times = st("d/times")
    assert (times.st_mtime_ns, times.st_atime_ns) == (1_500_000_000_250_000_000, 1_400_000_000_500_000_000)
    sym = st("d/sym")
    assert os.readlink(root / "d/sym") == "../tmp/nowhere"
    assert (sym.st_uid, sym.st_gid, sym.st_mtime) == (1000, 2000, 1_600_000_000)
    assert st("d/hard").st_ino == owned.st_ino and st("d/hard").st_nlink == 2
    null = st("d/null")
    assert stat.S_ISCHR(null.st_mode) and os.major(null.st_rdev) == 1 and os.minor(null.st_rdev) == 3
    assert (stat.S_IMODE(null.st_mode), null.st_gid) == (0o666, 5)
    loop = st("d/loop")
    assert stat.S_ISBLK(loop.st_mode) and (os.major(loop.st_rdev), os.minor(loop.st_rdev)) == (7, 200)
    fifo = st("d/fifo")
    assert stat.S_ISFIFO(fifo.st_mode) and stat.S_IMODE(fifo.st_mode) == 0o620 and fifo.st_mtime == 1_700_000_000
    assert (root / "d" / ("long" * 40)).read_bytes() == b"long name"


def test_overlay_whiteouts_and_opaque_dirs(tmp_path: Path, mountpoint: Path) -> None:
    lower, upper, work = tmp_path / "lower", tmp_path / "upper", tmp_path / "work"
    for p in (lower, upper, work):
        p.mkdir()
    apply(LayerBuilder()
          .add_dir("etc").add_file("etc/gone", b"1").add_file("etc/stays", b"2")
          .add_dir("opq").add_file("opq/old", b"o").add_dir("opq/sub").add_file("opq/sub/deep", b"d")
          .add_dir("redo").add_file("redo/old", b"r")
          .add_dir("mine").add_file("mine/old", b"m")
          .build(), lower, overlay=True)
    result = apply(LayerBuilder()
                   .add_whiteout("etc/gone")
                   .add_dir("opq").add_file("opq/new", b"n").add_opaque("opq")  # marker after own entries
                   .add_whiteout("redo").add_dir("redo").add_file("redo/new", b"r2")  # deleted, then recreated
                   .add_dir("mine").add_file("mine/own", b"x").add_whiteout("mine/own")  # own file: stays
                   .build(), upper, overlay=True, lowers=(str(lower),))
    assert result.implicit_dirs == ("etc",)
    gone = os.lstat(upper / "etc/gone")
    assert stat.S_ISCHR(gone.st_mode) and gone.st_rdev == 0
    assert os.getxattr(upper / "opq", "trusted.overlay.opaque") == b"y"
    assert os.getxattr(upper / "redo", "trusted.overlay.opaque") == b"y"
    with pytest.raises(OSError):
        os.getxattr(upper / "mine", "trusted.overlay.opaque")
    # The merged view is what the layers mean.
    overlay_mount(mountpoint, [lower], upper, work)
    try:
        assert sorted(os.listdir(mountpoint / "etc")) == ["stays"]
        assert sorted(os.listdir(mountpoint / "opq")) == ["new"]
        assert sorted(os.listdir(mountpoint / "redo")) == ["new"]
        assert sorted(os.listdir(mountpoint / "mine")) == ["old", "own"]
    finally:
        unmount(str(mountpoint))


def test_top_level_opaque_marker(tmp_path: Path, mountpoint: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    apply(LayerBuilder().add_file("old", b"o").build(), lower, overlay=True)
    apply(LayerBuilder().add_opaque("").add_file("new", b"n").build(), upper, overlay=True, lowers=(str(lower),))
    overlay_mount(mountpoint, [upper, lower])
    try:
        assert sorted(os.listdir(mountpoint)) == ["new"]
    finally:
        unmount(str(mountpoint))


def test_implicit_dirs_take_the_lower_metadata(tmp_path: Path) -> None:
    lower, upper, parallel = tmp_path / "lower", tmp_path / "upper", tmp_path / "parallel"
    for p in (lower, upper, parallel):
        p.mkdir()
    apply(LayerBuilder().add_dir("tmp", mode=0o1777, mtime=1_000_000_000)
          .add_dir("home", mode=0o755).add_dir("home/app", mode=0o700, uid=1000, gid=1000,
                                                 xattrs={"user.note": b"lower"})
          .build(), lower, overlay=True)
    layer = LayerBuilder().add_file("tmp/x", b"x").add_file("home/app/.profile", b"p", uid=1000, gid=1000).build()
    # Lowers known while unpacking: copied at once.
    result = apply(layer, upper, overlay=True, lowers=(str(lower),))
    assert result.implicit_dirs == ("home", "home/app", "tmp")
    for root in (upper,):
        assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
        assert (root / "tmp").stat().st_mtime == 1_000_000_000
        app = (root / "home/app").stat()
        assert (stat.S_IMODE(app.st_mode), app.st_uid, app.st_gid) == (0o700, 1000, 1000)
        assert os.getxattr(root / "home/app", "user.note") == b"lower"
    # Parallel path: unpacked without lowers, fixed by check_implicit_dirs(upper=...).
    result = apply(layer, parallel, overlay=True)
    assert stat.S_IMODE((parallel / "tmp").stat().st_mode) == 0o755
    check_implicit_dirs(result.implicit_dirs, [str(lower)], upper=str(parallel))
    assert stat.S_IMODE((parallel / "tmp").stat().st_mode) == 0o1777
    assert (parallel / "home/app").stat().st_uid == 1000


def test_full_disk_is_resource_exhausted(tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    mount("tmpfs", "tmpfs", str(small), ["size=256k"])
    try:
        layer = LayerBuilder().add_file("big", os.urandom(1 << 20)).build()
        with pytest.raises(ResourceExhausted, match="no space left on device"):
            apply(layer, small)
        proc = subprocess.run([*WORKER, "--path", str(small), "--compression", "gzip"],
                              input=gzip_compress(layer), capture_output=True, timeout=60)
        reply = json.loads(proc.stdout)
        assert proc.returncode == 1 and reply["error"] == "ResourceExhausted", proc
        assert "no space left on device" in reply["message"]
    finally:
        unmount(str(small))


def test_busybox_layers_apply_in_both_modes(tmp_path: Path, mountpoint: Path) -> None:
    layers = busybox_layers()
    full = tmp_path / "full"
    full.mkdir()
    uppers: list[Path] = []
    for i, layer in enumerate(layers):
        apply(layer, full)
        upper = tmp_path / f"upper{i}"
        upper.mkdir()
        apply(layer, upper, overlay=True, lowers=tuple(str(p) for p in reversed(uppers)))
        uppers.append(upper)
    overlay_mount(mountpoint, list(reversed(uppers)))
    try:
        for root in (full, mountpoint):
            assert not (root / "opt/app/old.txt").exists()
            assert sorted(os.listdir(root / "opt/app/olddir")) == ["fresh.txt"]
            assert os.readlink(root / "bin/sh") == "busybox"
            assert os.stat(root / "opt/app/run-link.sh").st_ino == os.stat(root / "opt/app/run.sh").st_ino
            assert os.getxattr(root / "opt/app/tagged.txt", "user.hawser.test") == b"layer2"
            assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
        out = subprocess.run(["chroot", str(mountpoint), "/bin/sh", "-c", "cat /etc/layer3; id -u app"],
                             capture_output=True, text=True, timeout=30)
        assert out.stdout.split() == ["3", "1000"], out
    finally:
        unmount(str(mountpoint))


# --- the worker ---------------------------------------------------------------------


def run_worker(blob: bytes, *args: str, chunk: int = 65536) -> tuple[int, dict[str, object]]:
    proc = subprocess.Popen([*WORKER, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            bufsize=0)
    assert proc.stdin is not None
    try:
        for i in range(0, len(blob), chunk):
            proc.stdin.write(blob[i : i + chunk])
    except BrokenPipeError:
        pass  # the worker stopped early on an error, as it should
    finally:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.wait(timeout=60)
    proc.stdout.close()
    proc.stderr.close()
    lines = out.decode().splitlines()
    assert len(lines) == 1, (out, err)
    return proc.returncode, json.loads(lines[0])


@pytest.mark.parametrize(("compression", "compress"), [("gzip", gzip_compress), ("zstd", zstd_compress),
                                                        ("none", lambda d: d)])
def test_worker_applies_a_layer(tmp_path: Path, compression: str, compress: object) -> None:
    layer = busybox_layers()[1]
    status, reply = run_worker(compress(layer), "--path", str(tmp_path), "--compression", compression,  # type: ignore[operator]
                               "--overlay", chunk=1000)
    assert status == 0, reply
    assert reply["diff_id"] == "sha256:" + hashlib.sha256(layer).hexdigest()
    assert reply["size"] == len(layer)
    assert reply["implicit_dirs"] == []
    assert (tmp_path / "opt/app/config.txt").read_bytes() == b"colour=blue\n"


def test_worker_reports_a_hostile_layer(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    # a large tail after the bad entry: the worker must stop without reading it all
    layer = LayerBuilder().add_file("../escape", b"x").add_file("pad", os.urandom(8 << 20)).build()
    status, reply = run_worker(gzip_compress(layer), "--path", str(root), "--compression", "gzip")
    assert status == 1
    assert reply["error"] == "InvalidArgument"
    assert "../escape" in str(reply["message"])
    assert not (tmp_path / "escape").exists()


def test_worker_lower_needed_and_lowers(tmp_path: Path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    lower.mkdir()
    upper.mkdir()
    apply(LayerBuilder().add_dir("bin").add_file("bin/tool", b"T", mode=0o755).build(), lower, overlay=True)
    layer = gzip_compress(LayerBuilder().add_hardlink("bin/alias", "bin/tool").build())
    status, reply = run_worker(layer, "--path", str(upper), "--compression", "gzip", "--overlay",
                               "--allow-lower-needed")
    assert (status, reply["error"]) == (1, "LowerNeeded")
    status, reply = run_worker(layer, "--path", str(upper), "--compression", "gzip", "--overlay")
    assert (status, reply["error"]) == (1, "InvalidArgument")
    status, reply = run_worker(layer, "--path", str(upper), "--compression", "gzip", "--overlay",
                               "--lower", str(lower))
    assert status == 0, reply
    assert os.stat(upper / "bin/alias").st_ino == os.stat(upper / "bin/tool").st_ino


def test_worker_corrupt_stream_and_bad_arguments(tmp_path: Path) -> None:
    status, reply = run_worker(b"\x1f\x8b" + os.urandom(5000), "--path", str(tmp_path), "--compression", "gzip")
    assert (status, reply["error"]) == (1, "InvalidArgument")
    status, reply = run_worker(b"", "--path", str(tmp_path), "--compression", "lzma")
    assert (status, reply["error"]) == (1, "InvalidArgument")


def test_worker_imports_little() -> None:
    code = ("import sys, hawser.images._unpack_worker as w, hawser.images._apply;"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('click', 'rich', 'httpx', 'sqlite3', 'subprocess', 'hawser')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    loaded = set(eval(out))  # a list literal printed by the child
    assert not loaded & {"click", "rich", "httpx", "sqlite3", "subprocess"}
    assert not any(m.startswith(("hawser.registry", "hawser.cli", "hawser.content", "hawser.metadata")) for m in loaded)


def test_open_decompressed_feeds_apply_for_multi_member_gzip(tmp_path: Path) -> None:
    layer = busybox_layers()[0]
    result = apply_layer(open_decompressed(io.BytesIO(gzip_compress(layer, members=9)), "gzip"),
                         ApplyTarget(str(tmp_path), overlay_whiteouts=True))
    assert result.diff_id == "sha256:" + hashlib.sha256(layer).hexdigest()
    assert (tmp_path / "bin/busybox").stat().st_size == os.stat("/usr/bin/busybox").st_size


def test_invalid_xattr_value_is_invalid_argument(tmp_path: Path) -> None:
    layer = LayerBuilder().add_file("f", b"x", xattrs={"security.capability": b"\x01\x02"}).build()
    with pytest.raises(InvalidArgument, match="xattr"):
        apply(layer, tmp_path)
