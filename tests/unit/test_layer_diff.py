"""The layer maker (:mod:`hawser.images._diff`): two trees compared, or an
overlay upper dir read, into a layer tar that hawser's own applier turns the
lower tree into the upper one with; and which mounts Diff accepts."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import stat
import tarfile
from pathlib import Path

import pytest

from hawser.containerd._api.types import mount_pb2
from hawser.containerd.diff import diff_source
from hawser.errors import FailedPrecondition, InvalidArgument, Unimplemented
from hawser.images import DiffSource, WrittenLayer, write_layer
from hawser.images._apply import apply_layer
from hawser.snapshots import ApplyTarget

ROOT = os.geteuid() == 0
T0 = 1_600_000_000 * 10**9  # whole seconds, as a layer leaves mtimes


def snapshot(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry below root (not root itself): type, mode, owner, mtime in
    seconds, content or target, kept xattrs."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                body: object = os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                body = p.read_bytes()
            else:
                body = None
            xattrs = {} if stat.S_ISLNK(st.st_mode) else {
                k: os.getxattr(p, k) for k in os.listxattr(p) if k.startswith("user.")}
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                                             st.st_mtime_ns // 10**9 if not stat.S_ISLNK(st.st_mode) else 0,
                                             body, xattrs)
    return out


def make(source: DiffSource, compression: str = "gzip") -> tuple[bytes, WrittenLayer]:
    out = io.BytesIO()
    written = write_layer(out, source, compression=compression)  # type: ignore[arg-type]
    return out.getvalue(), written


def uncompressed(blob: bytes) -> bytes:
    return gzip.decompress(blob) if blob[:2] == b"\x1f\x8b" else blob


def members(blob: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(uncompressed(blob))) as tar:
        return {m.name: m for m in tar.getmembers()}


def apply_to_copy(blob: bytes, lower: Path, target: Path) -> None:
    shutil.copytree(lower, target, symlinks=True)
    apply_layer(io.BytesIO(uncompressed(blob)), ApplyTarget(str(target), overlay_whiteouts=False), sync=False)


def lower_tree(root: Path) -> Path:
    lower = root / "lower"
    (lower / "a").mkdir(parents=True)
    (lower / "a" / "file").write_bytes(b"one")
    (lower / "a" / "keep").write_bytes(b"kept")
    (lower / "a" / "gone").write_bytes(b"bye")
    (lower / "b" / "sub").mkdir(parents=True)
    (lower / "b" / "x").write_text("x")
    (lower / "b" / "sub" / "y").write_text("y")
    (lower / "c").mkdir()
    (lower / "c" / "inside").write_text("c")
    (lower / "d").write_text("d")
    (lower / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(lower / "run.sh", 0o644)
    os.symlink("a/file", lower / "link")
    (lower / "same").write_text("untouched")
    for dirpath, dirnames, filenames in os.walk(lower, topdown=False):
        for name in dirnames + filenames + ["."]:
            os.utime(Path(dirpath) / name, ns=(T0, T0), follow_symlinks=False)
    return lower


def changed_copy(lower: Path, upper: Path) -> None:
    shutil.copytree(lower, upper, symlinks=True)
    # Same size, same whole-second mtime: only the content tells.
    (upper / "a" / "file").write_bytes(b"two")
    os.utime(upper / "a" / "file", ns=(T0, T0))
    (upper / "a" / "gone").unlink()
    shutil.rmtree(upper / "b")
    os.chmod(upper / "run.sh", 0o755)
    os.utime(upper / "run.sh", ns=(T0, T0))
    (upper / "new" / "deep").mkdir(parents=True)
    (upper / "new" / "deep" / "file").write_bytes(b"\0" * 70000)
    os.chmod(upper / "new" / "deep", 0o750)
    (upper / "new" / "h1").write_text("linked")
    os.link(upper / "new" / "h1", upper / "new" / "h2")
    os.unlink(upper / "link")
    os.symlink("a/keep", upper / "link")
    shutil.rmtree(upper / "c")
    (upper / "c").write_text("c is a file now")
    (upper / "d").unlink()
    (upper / "d").mkdir()
    (upper / "d" / "child").write_text("d is a dir now")
    os.setxattr(upper / "a" / "keep", "user.tag", b"v")
    (upper / "a" / ("long" * 40)).write_text("a long name")


@pytest.mark.parametrize("compression", ["gzip", "none"])
def test_a_tree_difference_applied_to_the_lower_makes_the_upper(tmp_path: Path, compression: str) -> None:
    lower = lower_tree(tmp_path)
    upper = tmp_path / "upper"
    changed_copy(lower, upper)
    blob, written = make(DiffSource(upper=str(upper), lower=str(lower)), compression)
    assert written.digest == "sha256:" + hashlib.sha256(blob).hexdigest() and written.size == len(blob)
    assert written.diff_id == "sha256:" + hashlib.sha256(uncompressed(blob)).hexdigest()
    if compression == "none":
        assert written.diff_id == written.digest
    else:
        assert blob[:2] == b"\x1f\x8b"
    applied = tmp_path / "applied"
    apply_to_copy(blob, lower, applied)
    assert snapshot(applied) == snapshot(upper)
    names = members(blob)
    # Deletions are whiteouts (a deleted dir: one, not one per child); unchanged entries are absent.
    assert {"a/.wh.gone", ".wh.b"} <= set(names)
    assert not any(n.startswith("b/") for n in names)
    assert "same" not in names and "a/file" in names and "run.sh" in names
    assert names["a/.wh.gone"].size == 0 and names["a/.wh.gone"].isreg()
    # Parents before children, a changed file's unchanged dir included; dirs with a trailing slash in the tar.
    order = list(names)
    assert order.index("a") < order.index("a/file") and order.index("new/deep") < order.index("new/deep/file")
    assert names["new/deep"].isdir() and names["new/deep"].mode == 0o750
    assert names["link"].issym() and names["link"].linkname == "a/keep"
    assert names["new/h2"].islnk() and names["new/h2"].linkname == "new/h1"
    assert names["a/keep"].pax_headers.get("SCHILY.xattr.user.tag") == "v"
    assert names["a/file"].uname == "" and names["a/file"].mtime == T0 // 10**9
    # The same trees make the same blob.
    assert make(DiffSource(upper=str(upper), lower=str(lower)), compression)[1] == written


def test_identical_trees_make_an_empty_layer(tmp_path: Path) -> None:
    lower = lower_tree(tmp_path)
    upper = tmp_path / "upper"
    shutil.copytree(lower, upper, symlinks=True)
    blob, _ = make(DiffSource(upper=str(upper), lower=str(lower)))
    assert members(blob) == {}


@pytest.mark.skipif(not ROOT, reason="chown needs root")
def test_an_owner_change_is_a_change(tmp_path: Path) -> None:
    lower = lower_tree(tmp_path)
    upper = tmp_path / "upper"
    shutil.copytree(lower, upper, symlinks=True)
    os.chown(upper / "same", 1000, 2000)
    os.utime(upper / "same", ns=(T0, T0))
    blob, _ = make(DiffSource(upper=str(upper), lower=str(lower)))
    names = members(blob)
    assert set(names) == {"same"} and (names["same"].uid, names["same"].gid) == (1000, 2000)
    applied = tmp_path / "applied"
    apply_to_copy(blob, lower, applied)
    assert snapshot(applied) == snapshot(upper)


def test_without_a_lower_everything_is_new(tmp_path: Path) -> None:
    upper = lower_tree(tmp_path)
    blob, _ = make(DiffSource(upper=str(upper)))
    empty = tmp_path / "empty"
    empty.mkdir()
    applied = tmp_path / "applied"
    apply_to_copy(blob, empty, applied)
    assert snapshot(applied) == snapshot(upper)
    assert not any(".wh." in n for n in members(blob))


@pytest.mark.skipif(not ROOT, reason="whiteout devices and trusted xattrs need root")
def test_an_overlay_upper_dir_is_the_change_set(tmp_path: Path) -> None:
    lower = lower_tree(tmp_path)
    upper = tmp_path / "upper"
    (upper / "a").mkdir(parents=True)
    shutil.copystat(lower / "a", upper / "a")
    os.mknod(upper / "a" / "gone", stat.S_IFCHR | 0o600, 0)  # overlayfs's whiteout
    (upper / "a" / "added").write_text("new")
    (upper / "b").mkdir()
    os.setxattr(upper / "b", "trusted.overlay.opaque", b"y")  # everything below is hidden...
    (upper / "b" / "only").write_text("...but this")
    os.setxattr(upper, "trusted.overlay.opaque", b"y")  # ignored on the root, as overlayfs does
    blob, written = make(DiffSource(upper=str(upper), overlay=True))
    names = members(blob)
    assert list(names) == ["a", "a/added", "a/.wh.gone", "b", "b/.wh..wh..opq", "b/only"]  # tarfile drops the "/"
    assert not any("trusted" in k for m in names.values() for k in m.pax_headers)
    applied = tmp_path / "applied"
    apply_to_copy(blob, lower, applied)
    got = snapshot(applied)
    assert "a/gone" not in got and (applied / "a" / "added").read_text() == "new"
    assert sorted(p.name for p in (applied / "b").iterdir()) == ["only"]
    assert (applied / "a" / "keep").read_bytes() == b"kept" and (applied / "same").exists()
    # The same layer unpacked as an overlay upper dir again: whiteout device and opaque xattr back.
    again = tmp_path / "again"
    again.mkdir()
    apply_layer(io.BytesIO(uncompressed(blob)), ApplyTarget(str(again), overlay_whiteouts=True), sync=False)
    assert stat.S_ISCHR((again / "a" / "gone").lstat().st_mode)
    assert os.getxattr(again / "b", "trusted.overlay.opaque") == b"y"
    assert make(DiffSource(upper=str(again), overlay=True))[1].diff_id == written.diff_id


def test_bad_sources_and_compressions_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        DiffSource(upper=str(tmp_path), lower=str(tmp_path), overlay=True)
    with pytest.raises(InvalidArgument):
        write_layer(io.BytesIO(), DiffSource(upper=str(tmp_path)), compression="zstd")


# --- which mounts Diff takes (hawser.containerd.diff.diff_source) -------------------


def overlay(*, upper: str = "", lowers: list[str]) -> mount_pb2.Mount:
    options = ([f"upperdir={upper}", f"workdir={upper}-work"] if upper else []) + [f"lowerdir={':'.join(lowers)}"]
    return mount_pb2.Mount(type="overlay", source="overlay", options=options)


def bind(source: str, *, ro: bool = False) -> mount_pb2.Mount:
    return mount_pb2.Mount(type="bind", source=source, options=["rbind", "ro" if ro else "rw"])


@pytest.fixture
def snaps(tmp_path: Path) -> Path:
    root = tmp_path / "snapshots" / "overlayfs"
    for n in ("1", "2", "3", "4"):
        (root / n / "fs").mkdir(parents=True)
    return root


def fs(root: Path, n: str) -> str:
    return str(root / n / "fs")


def test_a_child_over_its_parent_reads_the_top_dir(snaps: Path) -> None:
    r = str(snaps)
    active = overlay(upper=fs(snaps, "3"), lowers=[fs(snaps, "2"), fs(snaps, "1")])
    view = overlay(lowers=[fs(snaps, "2"), fs(snaps, "1")])
    assert diff_source([view], [active], r, overlay_store=True) == DiffSource(upper=fs(snaps, "3"), overlay=True)
    # A committed snapshot's view over its parent's single-layer (bind) view.
    committed = overlay(lowers=[fs(snaps, "2"), fs(snaps, "1")])
    assert diff_source([bind(fs(snaps, "1"), ro=True)], [committed], r, overlay_store=True) == \
        DiffSource(upper=fs(snaps, "2"), overlay=True)
    # A parentless snapshot against nothing; the native snapshotter compares two trees.
    assert diff_source([], [bind(fs(snaps, "1"))], r, overlay_store=True) == \
        DiffSource(upper=fs(snaps, "1"), overlay=True)
    assert diff_source([], [bind(fs(snaps, "1"))], r, overlay_store=False) == DiffSource(upper=fs(snaps, "1"))
    assert diff_source([bind(fs(snaps, "1"), ro=True)], [bind(fs(snaps, "2"))], r, overlay_store=False) == \
        DiffSource(upper=fs(snaps, "2"), lower=fs(snaps, "1"))


def test_mounts_diff_refuses(snaps: Path, tmp_path: Path) -> None:
    r = str(snaps)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(InvalidArgument):
        diff_source([], [bind(str(outside))], r, overlay_store=True)
    with pytest.raises(InvalidArgument):
        diff_source([bind(str(outside))], [bind(fs(snaps, "1"))], r, overlay_store=False)
    with pytest.raises(InvalidArgument):
        diff_source([], [], r, overlay_store=True)
    with pytest.raises(Unimplemented):  # not parent and child: would need mounting
        diff_source([overlay(lowers=[fs(snaps, "4"), fs(snaps, "1")])],
                    [overlay(upper=fs(snaps, "3"), lowers=[fs(snaps, "2"), fs(snaps, "1")])], r, overlay_store=True)
    with pytest.raises(Unimplemented):
        diff_source([], [mount_pb2.Mount(type="tmpfs", source="tmpfs")], r, overlay_store=True)
    with pytest.raises(FailedPrecondition):
        diff_source([], [bind(str(snaps / "9" / "fs"))], r, overlay_store=True)
