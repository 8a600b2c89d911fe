"""Snapshots nothing uses: what an interrupted pull leaves (its extract-*
snapshots, the layers it committed) once its lease is dead or expired, which
garbage collection removes and the check reports (issue 12)."""

from __future__ import annotations

import os
import shutil
import time

from hawser.check import IMAGE_INCOMPLETE, SNAPSHOT_UNREFERENCED, check_store
from hawser.errors import NotFound
from hawser.host import FileLock
from hawser.metadata import LABEL_GC_ROOT, collect, snapshot_ref_label
from hawser.oci import Digest
from hawser.snapshots import NativeSnapshotter
from tests.unit.check.conftest import OWNER, Node, kinds

KIND = "snapshot/native"


def _exists(node: Node, key: str) -> bool:
    try:
        node.store.snapshotter.stat(key)
        return True
    except NotFound:
        return False


def _extract(node: Node, layer: str, parent: str = "", *, pid: int = 4242) -> str:
    """An active snapshot as the layer pipeline makes one, with a file unpacked into it."""
    key = f"extract-{pid}-{os.urandom(6).hex()}-{_chain(layer).encoded[:16]}"
    snapshotter = node.store.snapshotter
    snapshotter.prepare(key, parent)
    with open(os.path.join(snapshotter.apply_target(key).path, f"{layer}.txt"), "wb") as f:
        f.write(b"x" * 10000)
    return key


def _chain(layer: str) -> Digest:
    return Digest.of(layer.encode())


def _interrupted_pull(node: Node, owner: str) -> tuple[str, list[str]]:
    """What a pull killed while unpacking leaves, under its lease: a committed first
    layer no image names yet, an extract-* snapshot on it, a parentless one beside."""
    lease = node.md.leases.create(ttl=3600, labels={OWNER: owner})
    first = _extract(node, f"first-{owner}")
    committed = str(_chain(f"first-{owner}"))
    node.md.leases.add_resource(lease, KIND, first)
    node.md.leases.add_resource(lease, KIND, committed)
    node.store.snapshotter.commit(committed, first)
    keys = [committed, _extract(node, f"second-{owner}", committed), _extract(node, f"third-{owner}")]
    for key in keys[1:]:
        node.md.leases.add_resource(lease, KIND, key)
    return lease, keys


def _would_collect(node: Node) -> set[str]:
    report = collect(node.md, node.store.content, {"native": node.store.snapshotter}, dry_run=True,
                     grace_period=0, lease_alive=node.host.lease_owner_alive)
    return {r.key for r in report.snapshots}


def test_a_dead_pulls_snapshots_are_what_gc_would_remove(node: Node) -> None:
    image = node.add_image(layers=2)
    container = node.add_container(image)
    _, left = _interrupted_pull(node, "1:1")
    node.host.dead_owners.add("1:1")

    report = node.check()
    assert kinds(report) == sorted((SNAPSHOT_UNREFERENCED, key) for key in left)
    assert report.exit_code == 1 and _would_collect(node) == set(left)
    details = {f.subject: f.detail for f in report.findings}
    assert "interrupted pull" in details[left[1]] and "committed layer" in details[left[0]]
    assert all(" bytes" in d and "garbage collection" in d for d in details.values())
    assert all(_exists(node, key) for key in left)  # a check alone changes nothing

    repaired = node.check(repair=True)
    assert repaired.exit_code == 0 and all(f.repaired and f.error is None for f in repaired.findings)
    assert [f.subject for f in repaired.findings][-1] == left[0]  # children first
    assert not any(_exists(node, key) for key in left)
    assert node.check().findings == () and _would_collect(node) == set()
    assert _exists(node, container.snapshot_key) and all(_exists(node, str(c)) for c in image.chains)


def test_snapshots_a_live_lease_holds_are_not_reported(node: Node) -> None:
    _, alive = _interrupted_pull(node, "2:2")
    _, dead = _interrupted_pull(node, "3:3")
    node.host.dead_owners.add("3:3")
    report = node.check(repair=True)
    assert kinds(report) == sorted((SNAPSHOT_UNREFERENCED, key) for key in dead)
    assert all(_exists(node, key) for key in alive) and not any(_exists(node, key) for key in dead)
    # Its owner gone, the lease protects nothing.
    node.host.dead_owners.add("2:2")
    assert kinds(node.check()) == sorted((SNAPSHOT_UNREFERENCED, key) for key in alive)


def test_an_expired_lease_protects_nothing(node: Node) -> None:
    lease = node.md.leases.create(ttl=0.01)
    key = _extract(node, "expired")
    node.md.leases.add_resource(lease, KIND, key)
    time.sleep(0.05)
    assert kinds(node.check()) == [(SNAPSHOT_UNREFERENCED, key)]


def test_a_pull_still_unpacking_keeps_its_snapshot_past_its_lease(node: Node) -> None:
    # Its lease expired (a pull slower than the lease's ttl), but it still holds its layer's lock.
    key = _extract(node, "slow")
    os.makedirs(node.store.locks_dir, exist_ok=True)
    lock = FileLock(os.path.join(node.store.locks_dir, f"unpack-{_chain('slow').encoded}.lock"))
    lock.acquire()
    try:
        assert node.check(repair=True).findings == () and _exists(node, key)
    finally:
        lock.release()
    assert kinds(node.check(repair=True)) == [(SNAPSHOT_UNREFERENCED, key)] and not _exists(node, key)


def test_young_pinned_or_named_snapshots_are_not_reported(node: Node) -> None:
    young = _extract(node, "young")
    # Younger than the grace period (a minute here) is never garbage yet.
    assert check_store(node.store, host=node.host, now=time.time() - 60).findings == ()
    assert kinds(node.check()) == [(SNAPSHOT_UNREFERENCED, young)]
    node.store.snapshotter.remove(young)

    pinned = _extract(node, "pinned")
    node.store.snapshotter.update_labels(pinned, {LABEL_GC_ROOT: "yes"})
    # Named by a blob record's label, and its parent with it.
    parent = str(_chain("parent"))
    node.store.snapshotter.commit(parent, _extract(node, "parent"))
    named = _extract(node, "named", parent)
    node.store.snapshotter.commit(str(_chain("named")), named)
    blob = node.write_blob(b"a blob naming a snapshot")
    node.md.blobs.record(blob, 24, {snapshot_ref_label("native"): str(_chain("named"))})
    assert node.check().findings == ()


def test_a_broken_snapshot_nothing_uses_is_reported_once(node: Node) -> None:
    key = _extract(node, "broken")
    snapshotter = node.store.snapshotter
    assert isinstance(snapshotter, NativeSnapshotter)
    shutil.rmtree(snapshotter.directory(key))
    report = node.check(repair=True)
    assert [f.subject for f in report.findings] == [key] and report.findings[0].kind != SNAPSHOT_UNREFERENCED
    assert report.findings[0].repaired and node.check().findings == ()


def test_the_chain_of_an_image_whose_config_lost_its_label_stays(node: Node) -> None:
    image = node.add_image(layers=2)
    config = image.built.config_desc.digest
    node.md.blobs.update_labels(config, {snapshot_ref_label("native"): ""}, merge=True)
    # GC would remove the chain; the check keeps what the image's config describes.
    assert _would_collect(node) == {str(c) for c in image.chains}
    assert kinds(node.check(repair=True)) == [(IMAGE_INCOMPLETE, image.name)]
    assert all(_exists(node, str(c)) for c in image.chains)
