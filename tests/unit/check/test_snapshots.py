"""Snapshots: broken parent chains, missing directories, directories without records."""

from __future__ import annotations

import fcntl
import os
import shutil

from hawser.check import (
    IMAGE_INCOMPLETE,
    SNAPSHOT_DIR_MISSING,
    SNAPSHOT_ORPHAN_DIR,
    SNAPSHOT_PARENT_MISSING,
    SNAPSHOT_REF_MISSING,
)
from hawser.errors import NotFound
from hawser.snapshots import NativeSnapshotter
from tests.unit.check.conftest import Node, kinds


def _snapshotter(node: Node) -> NativeSnapshotter:
    snapshotter = node.store.snapshotter
    assert isinstance(snapshotter, NativeSnapshotter)
    return snapshotter


def _gone(node: Node, key: str) -> bool:
    try:
        node.store.snapshotter.stat(key)
        return False
    except NotFound:
        return True


def test_a_deleted_snapshot_directory_takes_its_chain_and_the_image_label(node: Node) -> None:
    image = node.add_image(layers=3)
    bottom = str(image.chains[0])
    shutil.rmtree(_snapshotter(node).directory(bottom))
    report = node.check()
    # One finding for the broken snapshot; what is built on it, and the image, are named in it.
    assert kinds(report) == [(SNAPSHOT_DIR_MISSING, bottom)]
    assert "2 snapshot(s) built on it" in report.findings[0].detail and image.name in report.findings[0].detail

    repaired = node.check(repair=True)
    by_kind = {f.kind: f for f in repaired.findings}
    assert by_kind[SNAPSHOT_DIR_MISSING].repaired
    assert by_kind[SNAPSHOT_REF_MISSING].repaired  # the config no longer names the removed top
    assert not by_kind[IMAGE_INCOMPLETE].repaired and "unpacked layers" in by_kind[IMAGE_INCOMPLETE].detail
    assert all(_gone(node, str(c)) for c in image.chains)
    config = node.md.blobs.get(image.built.config_desc.digest)
    assert not any(k.startswith("hawser.io/gc.ref.snapshot") for k in config.labels)
    assert kinds(node.check()) == [(IMAGE_INCOMPLETE, image.name)]


def test_a_snapshot_whose_parent_record_is_gone(node: Node) -> None:
    image = node.add_image(layers=2)
    snapshotter = _snapshotter(node)
    middle, top = str(image.chains[0]), str(image.chains[1])
    # Only what a crash or a hand could do: drop the parent's row, keep the child's.
    snapshotter._db.execute("DELETE FROM snapshots WHERE key = ?", (middle,))
    report = node.check()
    assert (SNAPSHOT_PARENT_MISSING, top) in kinds(report)
    # The parent's directory is now owned by no record.
    assert any(f.kind == SNAPSHOT_ORPHAN_DIR for f in report.findings)
    repaired = node.check(repair=True)
    assert all(f.repaired for f in repaired.findings if f.kind != IMAGE_INCOMPLETE)
    assert _gone(node, top)
    assert kinds(node.check()) == [(IMAGE_INCOMPLETE, image.name)]


def test_a_container_on_a_broken_chain_keeps_it(node: Node) -> None:
    image = node.add_image(layers=2)
    container = node.add_container(image)
    shutil.rmtree(_snapshotter(node).directory(str(image.chains[1])))
    report = node.check(repair=True)
    finding = next(f for f in report.findings if f.kind == SNAPSHOT_DIR_MISSING)
    assert not finding.repaired and container.id[:12] in (finding.error or "")
    assert not _gone(node, container.snapshot_key) and not _gone(node, str(image.chains[1]))
    assert report.exit_code == 1


def test_a_leased_snapshot_is_not_removed(node: Node) -> None:
    image = node.add_image(layers=1)
    node.leased("snapshot/native", image.top)
    shutil.rmtree(_snapshotter(node).directory(image.top))
    finding = next(f for f in node.check(repair=True).findings if f.kind == SNAPSHOT_DIR_MISSING)
    assert not finding.repaired and "lease" in (finding.error or "")


def test_directories_no_record_owns(node: Node) -> None:
    node.add_image(layers=1)
    snapdir = os.path.join(_snapshotter(node).root, "snapshots")
    for name in ("99", "rm-3-abcd", "new-abandoned", "new-busy", "not-ours"):
        os.makedirs(os.path.join(snapdir, name, "fs"))
    busy = os.open(os.path.join(snapdir, "new-busy"), os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(busy, fcntl.LOCK_EX)  # its creator is still at work
    try:
        report = node.check()
        assert sorted(os.path.basename(f.subject) for f in report.findings) == ["99", "new-abandoned", "rm-3-abcd"]
        assert {f.kind for f in report.findings} == {SNAPSHOT_ORPHAN_DIR}
        assert all(f.repaired for f in node.check(repair=True).findings)
        assert sorted(os.listdir(snapdir)) == ["1", "new-busy", "not-ours"]
    finally:
        os.close(busy)
