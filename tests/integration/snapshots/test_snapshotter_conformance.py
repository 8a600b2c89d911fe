"""The snapshotter conformance suite, run against every snapshotter (after
containerd's snapshots/testsuite): lifecycle, errors, parent chains, real
mounts of what layers were applied, usage, labels, two instances on one
root, and cleanup after a crash."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from hawser.host import FileLock, is_mountpoint, lock_fd, parse_options
from hawser.images._apply import apply_layer
from hawser.images._lowers import check_implicit_dirs
from hawser.snapshots import (
    Kind,
    Mount,
    SnapshotterBase,
    Usage,
    mount_all,
    new_snapshotter,
    overlay_supported,
    unmount_all,
)
from tests.support.layers import LayerBuilder, busybox_layers

pytestmark = pytest.mark.integration


@pytest.fixture(params=["overlayfs", "native"])
def name(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "overlayfs" and not overlay_supported(str(tmp_path / "probe")):
        pytest.skip("overlayfs is not usable here")
    return str(request.param)


@pytest.fixture
def root(tmp_path: Path, name: str) -> str:
    return str(tmp_path / "snapshots" / name)


@pytest.fixture
def sn(root: str, name: str) -> Iterator[SnapshotterBase]:
    s = new_snapshotter(name, root)
    yield s
    s.close()


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    """A mount point that is unmounted (lazily, all layers) whatever happens."""
    target = tmp_path / "mnt"
    target.mkdir()
    yield target
    with contextlib.suppress(OSError):
        unmount_all(str(target), detach=True)
    assert not is_mountpoint(str(target))


@contextlib.contextmanager
def mounted(mounts: list[Mount], target: Path) -> Iterator[Path]:
    mount_all(mounts, str(target))
    try:
        yield target
    finally:
        unmount_all(str(target))


def layer(sn: SnapshotterBase, key: str, tar: bytes) -> None:
    target = sn.apply_target(key)
    result = apply_layer(io.BytesIO(tar), target, sync=False)
    check_implicit_dirs(result.implicit_dirs, target.lowers, upper=target.path)


def commit_chain(sn: SnapshotterBase, tars: list[bytes], prefix: str = "layer") -> list[str]:
    parent = ""
    names = []
    for i, tar in enumerate(tars):
        key = f"{prefix}-{i}-active"
        sn.prepare(key, parent)
        layer(sn, key, tar)
        sn.commit(f"{prefix}-{i}", key)
        parent = f"{prefix}-{i}"
        names.append(parent)
    return names


# --- lifecycle ------------------------------------------------------------------------


def test_prepare_commit_stat_walk(sn: SnapshotterBase) -> None:
    mounts = sn.prepare("a", labels={"x": "1"})
    assert mounts[0].type == "bind" and "rw" in mounts[0].options
    info = sn.stat("a")
    assert (info.key, info.kind, info.parent, dict(info.labels)) == ("a", Kind.ACTIVE, "", {"x": "1"})
    assert info.created > 0 and info.updated >= info.created
    sn.commit("A", "a")
    with pytest.raises(NotFound):
        sn.stat("a")
    committed = sn.stat("A")
    assert (committed.kind, dict(committed.labels)) == (Kind.COMMITTED, {"x": "1"})
    sn.prepare("b", "A")
    sn.view("v", "A")
    got = {i.key: (i.kind, i.parent) for i in sn.walk()}
    assert got == {"A": (Kind.COMMITTED, ""), "b": (Kind.ACTIVE, "A"), "v": (Kind.VIEW, "A")}


def test_errors(sn: SnapshotterBase) -> None:
    sn.prepare("a")
    with pytest.raises(AlreadyExists):
        sn.prepare("a")
    with pytest.raises(NotFound):
        sn.prepare("b", "missing")
    with pytest.raises(FailedPrecondition):
        sn.prepare("b", "a")  # parent not committed
    with pytest.raises(FailedPrecondition):
        sn.view("v", "a")
    with pytest.raises(InvalidArgument):
        sn.prepare("")
    with pytest.raises(NotFound):
        sn.stat("nope")
    with pytest.raises(NotFound):
        sn.mounts("nope")
    with pytest.raises(NotFound):
        sn.remove("nope")
    with pytest.raises(NotFound):
        sn.commit("X", "nope")
    sn.commit("A", "a")
    with pytest.raises(FailedPrecondition):
        sn.mounts("A")  # committed snapshots have no mounts
    with pytest.raises(FailedPrecondition):
        sn.apply_target("A")
    with pytest.raises(FailedPrecondition):
        sn.commit("B", "A")
    sn.prepare("c")
    with pytest.raises(AlreadyExists):
        sn.commit("A", "c")
    assert sn.stat("c").kind is Kind.ACTIVE  # a failed commit changes nothing
    sn.view("v", "A")
    with pytest.raises(FailedPrecondition):
        sn.commit("V", "v")
    with pytest.raises(FailedPrecondition):
        sn.apply_target("v")
    with pytest.raises(InvalidArgument):
        sn.update_labels("c", {"k": 1})  # type: ignore[dict-item]


def test_remove_refuses_parents_with_children(sn: SnapshotterBase, root: str) -> None:
    names = commit_chain(sn, [LayerBuilder().add_file("f", b"1").build()] * 2)
    sn.view("v", names[-1])
    for key in names:
        with pytest.raises(FailedPrecondition):
            sn.remove(key)
    sn.remove("v")
    sn.remove(names[1])
    sn.remove(names[0])
    assert list(sn.walk()) == []
    assert os.listdir(os.path.join(root, "snapshots")) == []


def test_labels(sn: SnapshotterBase) -> None:
    sn.prepare("a", labels={"one": "1", "two": "2"})
    info = sn.update_labels("a", {"three": "3"})
    assert dict(info.labels) == {"three": "3"}
    assert dict(sn.stat("a").labels) == {"three": "3"}
    assert sn.stat("a").updated >= sn.stat("a").created
    sn.commit("A", "a", labels={"committed": "yes"})
    assert dict(sn.stat("A").labels) == {"committed": "yes"}
    with pytest.raises(NotFound):
        sn.update_labels("a", {})


def test_apply_target_and_lower_dirs(sn: SnapshotterBase, name: str) -> None:
    names = commit_chain(sn, [LayerBuilder().add_file(f"f{i}", b"x").build() for i in range(3)])
    sn.prepare("top", names[-1])
    target = sn.apply_target("top")
    lowers = sn.lower_dirs(names[-1])
    assert len(lowers) == 3 and all(os.path.isdir(p) for p in lowers)
    assert sorted(os.listdir(lowers[0])) == (["f2"] if name == "overlayfs" else ["f0", "f1", "f2"])
    if name == "overlayfs":
        assert target.overlay_whiteouts and target.lowers == tuple(lowers)
        assert os.listdir(target.path) == []
    else:
        assert not target.overlay_whiteouts and target.lowers == ()
        assert sorted(os.listdir(target.path)) == ["f0", "f1", "f2"]  # a full copy


# --- mounts and content --------------------------------------------------------------


def test_three_layer_chain_mounted(sn: SnapshotterBase, mnt: Path) -> None:
    names = commit_chain(sn, busybox_layers())
    assert [sn.stat(n).parent for n in names] == ["", names[0], names[1]]
    sn.prepare("rw", names[-1])
    with mounted(sn.mounts("rw"), mnt) as root:
        assert not (root / "opt/app/old.txt").exists()  # whiteout
        assert sorted(os.listdir(root / "opt/app/olddir")) == ["fresh.txt"]  # opaque dir
        assert (root / "opt/app/config.txt").read_bytes() == b"colour=blue\n"
        assert os.stat(root / "opt/app/run-link.sh").st_ino == os.stat(root / "opt/app/run.sh").st_ino
        assert os.getxattr(root / "opt/app/tagged.txt", "user.hawser.test") == b"layer2"
        assert os.stat(root / "tmp").st_mode & 0o7777 == 0o1777
        assert os.stat(root / "opt/app").st_uid == 1000
        (root / "etc/written-in-container").write_text("rw")
        os.unlink(root / "etc/passwd")
    # The active snapshot's changes stay in it.
    sn.view("check-parent", names[-1])
    with mounted(sn.mounts("check-parent"), mnt) as root:
        assert (root / "etc/passwd").exists()
        assert not (root / "etc/written-in-container").exists()
    sn.commit("rw-done", "rw")
    sn.view("check-child", "rw-done")
    with mounted(sn.mounts("check-child"), mnt) as root:
        assert (root / "etc/written-in-container").read_text() == "rw"
        assert not (root / "etc/passwd").exists()


def test_views_are_read_only(sn: SnapshotterBase, mnt: Path) -> None:
    single = commit_chain(sn, [LayerBuilder().add_file("f", b"1").build()], prefix="one")
    double = commit_chain(sn, [LayerBuilder().add_file("f", b"1").build(),
                               LayerBuilder().add_file("g", b"2").build()], prefix="two")
    for parent, expected in ((single[-1], ["f"]), (double[-1], ["f", "g"]), ("", [])):
        key = f"view-of-{parent or 'nothing'}"
        mounts = sn.view(key, parent)
        assert sn.mounts(key) == mounts
        with mounted(mounts, mnt) as root:
            assert sorted(os.listdir(root)) == expected
            with pytest.raises(OSError) as raised:
                (root / "new").write_text("x")
            assert raised.value.errno == errno.EROFS


def test_mount_shapes(sn: SnapshotterBase, name: str) -> None:
    names = commit_chain(sn, [LayerBuilder().add_file(f"f{i}", b"x").build() for i in range(2)])
    sn.prepare("base")
    sn.prepare("on-one", names[0])
    sn.prepare("on-two", names[1])
    sn.view("view-one", names[0])
    sn.view("view-two", names[1])
    base = sn.mounts("base")
    assert [m.type for m in base] == ["bind"] and parse_options(base[0].options).flags & 1 == 0
    if name == "native":
        for key in ("on-one", "on-two", "view-one", "view-two"):
            (m,) = sn.mounts(key)
            assert m.type == "bind"
            assert ("ro" in m.options) == key.startswith("view")
        return
    (m,) = sn.mounts("on-two")
    opts = dict(o.split("=", 1) for o in m.options if "=" in o)
    assert m.type == "overlay"
    assert opts["lowerdir"].split(":") == sn.lower_dirs(names[1])
    assert opts["upperdir"] == sn.apply_target("on-two").path and "workdir" in opts
    (m,) = sn.mounts("view-one")
    assert (m.type, m.source, "ro" in m.options) == ("bind", sn.lower_dirs(names[0])[0], True)
    (m,) = sn.mounts("view-two")
    assert m.type == "overlay" and not any(o.startswith(("upperdir=", "workdir=")) for o in m.options)


def test_long_parent_chain_mounts(sn: SnapshotterBase, mnt: Path) -> None:
    """60 layers: overlay's lowerdir list exceeds the page mount(2) copies, so
    the host helper mounts with paths relative to their common parent."""
    names = commit_chain(sn, [LayerBuilder().add_file(f"f{i:02}", str(i).encode()).build() for i in range(60)])
    sn.prepare("top", names[-1])
    options = ",".join(sn.mounts("top")[0].options)
    if sn.name == "overlayfs":
        assert len(options) > os.sysconf("SC_PAGESIZE")
    with mounted(sn.mounts("top"), mnt) as root:
        assert sorted(os.listdir(root)) == [f"f{i:02}" for i in range(60)]
        assert (root / "f00").read_text() == "0"
        (root / "written").write_text("w")
    assert (Path(sn.apply_target("top").path) / "written").read_text() == "w"


def test_usage_counts_own_layer_and_hardlinks_once(sn: SnapshotterBase, name: str) -> None:
    names = commit_chain(sn, [LayerBuilder().add_file("big", b"x" * 100_000).build()])
    sn.prepare("a", names[0])
    path = Path(sn.apply_target("a").path)
    empty = sn.usage("a")
    (path / "f").write_bytes(b"y" * 40_000)
    os.link(path / "f", path / "g")
    (path / "d").mkdir()
    used = sn.usage("a")
    assert used.inodes == empty.inodes + 2  # f (= g) and d
    assert 40_000 <= used.size - empty.size <= 40_000 + 3 * 8192
    if name == "overlayfs":
        assert empty == Usage(size=empty.size, inodes=1)  # just the empty upper dir
    else:
        assert empty.size >= 100_000  # a native snapshot holds its full tree
    assert sn.usage(names[0]).size >= 100_000


# --- rebase, processes, crashes ----------------------------------------------------


def test_commit_onto_parent(sn: SnapshotterBase, name: str, mnt: Path) -> None:
    names = commit_chain(sn, [LayerBuilder().add_dir("tmp", mode=0o1777).add_file("tmp/base", b"b").build()])
    sn.prepare("loose")
    tar = LayerBuilder().add_file("tmp/added", b"a").build()
    target = sn.apply_target("loose")
    result = apply_layer(io.BytesIO(tar), target, parent_pending=True, sync=False)
    if not sn.supports_rebase:
        with pytest.raises(InvalidArgument):
            sn.commit("rebased", "loose", parent=names[0])
        return
    check_implicit_dirs(result.implicit_dirs, sn.lower_dirs(names[0]), upper=target.path)
    sn.commit("rebased", "loose", parent=names[0])
    assert sn.stat("rebased").parent == names[0]
    with pytest.raises(FailedPrecondition):
        sn.remove(names[0])
    sn.view("v", "rebased")
    with mounted(sn.mounts("v"), mnt) as root:
        assert sorted(os.listdir(root / "tmp")) == ["added", "base"]
        assert os.stat(root / "tmp").st_mode & 0o7777 == 0o1777


def test_two_instances_share_a_root(sn: SnapshotterBase, root: str, name: str) -> None:
    other = new_snapshotter(name, root)
    try:
        sn.prepare("a")
        assert other.stat("a").kind is Kind.ACTIVE
        other.commit("A", "a")
        assert sn.stat("A").kind is Kind.COMMITTED
        with pytest.raises(AlreadyExists):
            other.prepare("A")
        # Concurrent changes from both, as from two processes.
        errors: list[BaseException] = []

        def work(s: SnapshotterBase, tag: str) -> None:
            try:
                for i in range(8):
                    s.prepare(f"{tag}-{i}", "A")
                    if i % 2:
                        s.remove(f"{tag}-{i}")
                    else:
                        s.commit(f"{tag}-{i}-done", f"{tag}-{i}")
            except BaseException as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(s, t)) for s, t in ((sn, "x"), (other, "y"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        keys = {i.key for i in sn.walk()}
        assert keys == {"A"} | {f"{t}-{i}-done" for t in "xy" for i in range(0, 8, 2)}
        assert sn.cleanup() == []
        dirs = os.listdir(os.path.join(root, "snapshots"))
        assert len(dirs) == len(keys)
    finally:
        other.close()


def test_cleanup_after_a_crash(sn: SnapshotterBase, root: str, name: str) -> None:
    names = commit_chain(sn, [LayerBuilder().add_file("f", b"1").build()])
    snapdir = Path(root) / "snapshots"
    # A creator that died before recording: an unlocked temp dir with content.
    dead = snapdir / "new-dead"
    (dead / "fs" / "sub").mkdir(parents=True)
    (dead / "fs" / "sub" / "file").write_bytes(b"x")
    # A creator still at work: its temp dir is flocked.
    alive = snapdir / "new-alive"
    (alive / "fs").mkdir(parents=True)
    fd = os.open(alive, os.O_RDONLY | os.O_DIRECTORY)
    lock_fd(fd)
    # A crash after the rename but before the transaction committed: an id without a row.
    orphan = snapdir / "999"
    (orphan / "fs").mkdir(parents=True)
    # A removal that died before deleting the tree.
    trash = snapdir / "rm-7-abcd"
    (trash / "fs").mkdir(parents=True)
    try:
        removed = sn.cleanup()
        assert sorted(removed) == sorted(str(p) for p in (dead, orphan, trash))
        assert alive.exists() and not dead.exists() and not orphan.exists() and not trash.exists()
        assert sn.stat(names[0]).kind is Kind.COMMITTED
        assert os.path.isdir(sn.lower_dirs(names[0])[0])
    finally:
        os.close(fd)
    assert sn.cleanup() == [str(alive)]


def test_id_dir_left_by_a_crash_is_replaced(sn: SnapshotterBase, root: str) -> None:
    # The next id's directory exists without a row (the rename happened, the
    # commit did not): a new snapshot that gets that id must not inherit it.
    sn.prepare("first")
    first_dir = Path(sn.apply_target("first").path).parent
    stale = first_dir.parent / str(int(first_dir.name) + 1)
    (stale / "fs").mkdir(parents=True)
    (stale / "fs" / "stale-file").write_bytes(b"old")
    sn.prepare("second")
    assert os.listdir(sn.apply_target("second").path) == []


def test_failed_populate_leaves_nothing(tmp_path: Path) -> None:
    # Only the native snapshotter copies on prepare, so only it can fail there.
    root = str(tmp_path / "native")
    sn = new_snapshotter("native", root)
    try:
        _check_failed_populate_leaves_nothing(sn, root)
    finally:
        sn.close()


def _check_failed_populate_leaves_nothing(sn: SnapshotterBase, root: str) -> None:
    names = commit_chain(sn, [LayerBuilder().add_file("f", b"1").build()])
    parent_fs = sn.lower_dirs(names[0])[0]
    os.rename(parent_fs, parent_fs + ".away")  # the copy will fail
    try:
        with pytest.raises(Exception, match="copying snapshot"):
            sn.prepare("child", names[0])
    finally:
        os.rename(parent_fs + ".away", parent_fs)
    with pytest.raises(NotFound):
        sn.stat("child")
    assert sorted(os.listdir(Path(root) / "snapshots")) == [Path(parent_fs).parent.name]


def test_changes_hold_the_root_lock(sn: SnapshotterBase, root: str) -> None:
    lock = FileLock(os.path.join(root, "lock"))
    lock.acquire()
    done = threading.Event()

    def prepare() -> None:
        sn.prepare("waits")
        done.set()

    t = threading.Thread(target=prepare)
    t.start()
    try:
        assert not done.wait(0.3)  # blocked on the lock another process holds
    finally:
        lock.release()
    t.join(10)
    assert done.is_set() and sn.stat("waits").kind is Kind.ACTIVE


def test_unknown_snapshotter(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        new_snapshotter("zfs", str(tmp_path))
