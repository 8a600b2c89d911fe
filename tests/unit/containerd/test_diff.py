"""Where Diff.Apply may write: one writable snapshot mount of this store."""

from __future__ import annotations

from pathlib import Path

import pytest

from hawser.containerd._api.types import mount_pb2
from hawser.containerd.diff import apply_target
from hawser.errors import FailedPrecondition, InvalidArgument, Unimplemented


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("1/fs", "2/fs", "3/fs"):
        (tmp_path / "snapshots" / name).mkdir(parents=True)
    return tmp_path / "snapshots"


def test_an_overlay_mount_applies_to_its_upper_dir_over_its_lowers(root: Path) -> None:
    mount = mount_pb2.Mount(type="overlay", source="overlay", options=[
        f"workdir={root}/3/work", f"upperdir={root}/3/fs", f"lowerdir={root}/2/fs:{root}/1/fs"])
    target = apply_target([mount], str(root), overlay_store=True)
    assert (target.path, target.lowers, target.overlay_whiteouts) == \
        (f"{root}/3/fs", (f"{root}/2/fs", f"{root}/1/fs"), True)


def test_a_bind_mount_applies_to_its_source(root: Path) -> None:
    target = apply_target([mount_pb2.Mount(type="bind", source=f"{root}/1/fs", options=["rbind", "rw"])],
                          str(root), overlay_store=False)
    assert (target.path, target.lowers, target.overlay_whiteouts) == (f"{root}/1/fs", (), False)


@pytest.mark.parametrize("mounts", [
    [],
    [mount_pb2.Mount(type="bind", source="/etc", options=["rbind", "rw"])],
    [mount_pb2.Mount(type="bind", source="{root}/1/fs/../../..", options=["rbind", "rw"])],
    [mount_pb2.Mount(type="bind", source="{root}/1/fs", options=["rbind", "ro"])],
    [mount_pb2.Mount(type="overlay", source="overlay", options=["lowerdir={root}/1/fs"])],
    [mount_pb2.Mount(type="overlay", source="overlay", options=["upperdir={root}/1/fs", "lowerdir=/usr"])],
])
def test_mounts_that_are_not_a_writable_snapshot_here_are_refused(root: Path, mounts: list[mount_pb2.Mount]) -> None:
    for m in mounts:
        m.source = m.source.replace("{root}", str(root))
        m.options[:] = [o.replace("{root}", str(root)) for o in m.options]
    with pytest.raises(InvalidArgument):
        apply_target(mounts, str(root), overlay_store=True)


def test_other_mount_types_and_missing_dirs(root: Path) -> None:
    with pytest.raises(Unimplemented):
        apply_target([mount_pb2.Mount(type="tmpfs", source="tmpfs")], str(root), overlay_store=True)
    with pytest.raises(FailedPrecondition):
        apply_target([mount_pb2.Mount(type="bind", source=f"{root}/9/fs", options=["rbind"])], str(root),
                     overlay_store=True)
