"""Garbage collection over a real LocalStore, a real Metadata and a fake snapshotter."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hawser._dataclass import replace
from hawser.content import LocalStore
from hawser.errors import AlreadyExists, FailedPrecondition, NotFound, Unavailable
from hawser.metadata import (
    LABEL_GC_ROOT,
    REASON_ABANDONED_LEASE,
    REASON_EXPIRED_LEASE,
    REASON_LEFTOVER,
    REASON_ORPHAN_FILE,
    REASON_STALE_INGEST,
    REASON_UNREFERENCED_BLOB,
    REASON_UNREFERENCED_SNAPSHOT,
    Container,
    GCReport,
    Metadata,
    collect,
    content_ref_label,
    snapshot_ref_label,
    snapshot_resource,
)
from hawser.oci import Descriptor, Digest, media
from hawser.snapshots import ApplyTarget, Info, Kind, Mount, Snapshotter, Usage

# --- a snapshotter in memory ----------------------------------------------------------


class FakeSnapshotter:
    """Records only: enough of the Snapshotter contract for GC, with its rules
    (no removing a parent that has children) and a few knobs for tests."""

    def __init__(self, name: str = "fake") -> None:
        self.name = name
        self.infos: dict[str, Info] = {}
        self.sizes: dict[str, int] = {}
        self.fail: set[str] = set()
        self.fail_walk = False
        self.removed: list[str] = []
        self.leftovers: list[str] = []
        self.on_usage: Callable[[str], None] | None = None

    def stat(self, key: str) -> Info:
        try:
            return self.infos[key]
        except KeyError:
            raise NotFound(f"snapshot {key}") from None

    def _create(self, key: str, parent: str, labels: Mapping[str, str] | None, kind: Kind) -> list[Mount]:
        if key in self.infos:
            raise AlreadyExists(f"snapshot {key}")
        if parent and self.stat(parent).kind is not Kind.COMMITTED:
            raise FailedPrecondition(f"parent {parent} is not committed")
        now = time.time()
        self.infos[key] = Info(key=key, kind=kind, parent=parent, labels=dict(labels or {}), created=now, updated=now)
        return self.mounts(key)

    def prepare(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(key, parent, labels, Kind.ACTIVE)

    def view(self, key: str, parent: str, labels: Mapping[str, str] | None = None) -> list[Mount]:
        return self._create(key, parent, labels, Kind.VIEW)

    def mounts(self, key: str) -> list[Mount]:
        self.stat(key)
        return [Mount(type="bind", source=f"/fake/{key}", options=("rbind",))]

    def apply_target(self, key: str) -> ApplyTarget:
        self.stat(key)
        return ApplyTarget(path=f"/fake/{key}", overlay_whiteouts=False)

    def commit(self, name: str, key: str, labels: Mapping[str, str] | None = None) -> None:
        active = self.stat(key)
        if active.kind is not Kind.ACTIVE:
            raise FailedPrecondition(f"snapshot {key} is not active")
        if name in self.infos:
            raise AlreadyExists(f"snapshot {name}")
        del self.infos[key]
        self.infos[name] = replace(
            active, key=name, kind=Kind.COMMITTED, labels=dict(labels or active.labels), updated=time.time()
        )

    def remove(self, key: str) -> None:
        self.stat(key)
        if any(info.parent == key for info in self.infos.values()):
            raise FailedPrecondition(f"snapshot {key} has children")
        if key in self.fail:
            raise OSError(errno.EIO, f"cannot remove {key}")
        del self.infos[key]
        self.removed.append(key)

    def walk(self) -> Iterator[Info]:
        if self.fail_walk:
            raise OSError(errno.EIO, "cannot list snapshots")
        return iter(list(self.infos.values()))

    def usage(self, key: str) -> Usage:
        if self.on_usage is not None:
            self.on_usage(key)
        self.stat(key)
        return Usage(size=self.sizes.get(key, 0), inodes=1)

    def update_labels(self, key: str, labels: Mapping[str, str]) -> Info:
        self.infos[key] = replace(self.stat(key), labels=dict(labels))
        return self.infos[key]

    def cleanup(self) -> list[str]:
        out, self.leftovers = self.leftovers, []
        return out

    def layer(self, key: str, parent: str = "", labels: Mapping[str, str] | None = None) -> str:
        """A committed snapshot, the way an unpack makes one."""
        self.prepare(f"extract-{key}", parent)
        self.commit(key, f"extract-{key}", labels)
        return key


class FailingDelete:
    """A content store whose delete fails for one digest (injected, not patched)."""

    def __init__(self, inner: LocalStore, bad: Digest) -> None:
        self._inner = inner
        self._bad = bad

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def delete(self, digest: Digest) -> None:
        if digest == self._bad:
            raise OSError(errno.EIO, f"cannot delete {digest}")
        self._inner.delete(digest)


# --- a world to collect in ---------------------------------------------------------------------


@dataclass
class World:
    md: Metadata
    store: LocalStore
    snap: FakeSnapshotter

    def file(self, data: bytes) -> Digest:
        digest = Digest.of(data)
        try:
            w = self.store.writer(f"ref-{digest}", expected=digest, total=len(data))
        except AlreadyExists:
            return digest  # what every caller does: stored already is done
        with w:
            w.write(data)
            w.commit()
        return digest

    def blob(self, data: bytes, labels: Mapping[str, str] | None = None, namespace: str = "default") -> Digest:
        digest = self.file(data)
        self.md.blobs.record(digest, len(data), labels, namespace=namespace)
        return digest

    def partial(self, ref: str, data: bytes) -> None:
        with self.store.writer(ref, expected=Digest.of(data), total=len(data)) as w:
            w.write(data[: len(data) // 2])

    def collect(self, **kwargs: Any) -> GCReport:
        kwargs.setdefault("grace_period", 0.0)
        store = kwargs.pop("store", self.store)
        return collect(self.md, store, {"fake": self.snap}, **kwargs)

    def digests(self) -> set[Digest]:
        return {info.digest for info in self.store.walk()}

    def records(self, namespace: str = "default") -> set[Digest]:
        return {b.digest for b in self.md.blobs.list(namespace=namespace)}

    def image(self, name: str, shared_layer: bytes | None = None, namespace: str = "default") -> dict[str, Any]:
        """index -> manifest -> config + 2 layers; config -> snapshot chain of 2."""
        chain1 = self.snap.layer(f"{name}-chain1")
        chain2 = self.snap.layer(f"{name}-chain2", chain1)
        l1 = self.blob(shared_layer or f"{name} layer 1".encode(), namespace=namespace)
        l2 = self.blob(f"{name} layer 2".encode(), namespace=namespace)
        config = self.blob(f"{name} config".encode(), {snapshot_ref_label("fake"): chain2}, namespace=namespace)
        manifest = self.blob(
            f"{name} manifest".encode(),
            {content_ref_label("config"): config, content_ref_label("l.0"): l1, content_ref_label("l.1"): l2},
            namespace=namespace,
        )
        index = self.blob(f"{name} index".encode(), {content_ref_label("m.0"): manifest}, namespace=namespace)
        self.md.images.put(name, Descriptor(media.OCI_INDEX, index, 1), namespace=namespace)
        return {
            "blobs": {index, manifest, config, l1, l2},
            "snapshots": {chain1, chain2},
        }


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    md = Metadata(tmp_path / "metadata.db")
    yield World(md=md, store=LocalStore(tmp_path / "content"), snap=FakeSnapshotter())
    md.close()


def keys(removals: Any) -> list[str]:
    return [r.key for r in removals]


# --- marking -------------------------------------------------------------------------------------


def test_marks_through_labels_and_sweeps_the_rest(world: World) -> None:
    img = world.image("img")
    garbage = world.blob(b"unreferenced")
    orphan = world.file(b"orphan, no record at all")
    world.snap.layer("junk")
    world.snap.prepare("junk-child", "junk")  # an active snapshot an interrupted pull left
    world.snap.sizes.update({"junk": 100, "junk-child": 10})

    report = world.collect()

    assert report.errors == ()
    assert not report.dry_run
    assert [(r.key, r.namespace, r.reason) for r in report.records] == [(garbage, "default", REASON_UNREFERENCED_BLOB)]
    assert {(r.key, r.reason) for r in report.blobs} == {
        (garbage, REASON_UNREFERENCED_BLOB),
        (orphan, REASON_ORPHAN_FILE),
    }
    assert [(r.key, r.snapshotter, r.reason) for r in report.snapshots] == [
        ("junk-child", "fake", REASON_UNREFERENCED_SNAPSHOT),
        ("junk", "fake", REASON_UNREFERENCED_SNAPSHOT),
    ]
    assert report.bytes_reclaimed == len(b"unreferenced") + len(b"orphan, no record at all") + 110
    assert report.removed == report.records + report.blobs + report.snapshots
    assert report.duration >= 0

    assert world.digests() == img["blobs"]
    assert world.records() == img["blobs"]
    assert set(world.snap.infos) == img["snapshots"]


def test_deleting_the_image_frees_its_whole_graph(world: World) -> None:
    img = world.image("img")
    world.md.images.delete("img")
    report = world.collect()
    assert report.errors == ()
    assert set(keys(report.blobs)) == img["blobs"]
    assert set(keys(report.records)) == img["blobs"]
    assert keys(report.snapshots) == ["img-chain2", "img-chain1"]  # child first
    assert world.digests() == set() and world.snap.infos == {}


def test_a_layer_shared_by_two_images_stays_while_one_uses_it(world: World) -> None:
    a = world.image("a", shared_layer=b"shared")
    b = world.image("b", shared_layer=b"shared")
    world.md.images.delete("a")
    world.collect()
    assert world.digests() == b["blobs"]
    assert Digest.of(b"shared") in world.digests()
    assert not (a["snapshots"] & set(world.snap.infos))


def test_images_in_every_namespace_are_roots(world: World) -> None:
    img = world.image("img", namespace="k8s.io")
    world.collect()
    assert world.digests() == img["blobs"]
    assert world.records("k8s.io") == img["blobs"]


def test_records_are_per_namespace_files_are_shared(world: World) -> None:
    digest = world.blob(b"both", namespace="a")
    world.md.blobs.record(digest, 4, {LABEL_GC_ROOT: "pinned"}, namespace="b")
    report = world.collect()
    assert [(r.key, r.namespace) for r in report.records] == [(digest, "a")]
    assert report.blobs == ()
    assert digest in world.digests()


def test_gc_root_labels_pin_blobs_and_snapshots(world: World) -> None:
    child = world.blob(b"child")
    world.blob(b"pinned", {LABEL_GC_ROOT: "x", content_ref_label("c"): child})
    base = world.snap.layer("base")
    world.snap.layer("pinned", base, labels={LABEL_GC_ROOT: "x"})
    report = world.collect()
    assert report.removed == ()
    assert world.digests() == {child, Digest.of(b"pinned")}
    assert set(world.snap.infos) == {"base", "pinned"}


def test_snapshot_ref_labels_may_carry_a_suffix(world: World) -> None:
    world.snap.layer("one")
    world.snap.layer("two")
    world.blob(b"pinned", {LABEL_GC_ROOT: "x", snapshot_ref_label("fake", "1"): "one", snapshot_ref_label("fake"): "two"})
    assert world.collect().snapshots == ()


def test_a_record_whose_file_is_missing_just_goes(world: World) -> None:
    digest = Digest.of(b"never written")
    world.md.blobs.record(digest, 13)
    report = world.collect()
    assert keys(report.records) == [digest] and report.blobs == () and report.errors == ()


# --- dry run, idempotence, grace ------------------------------------------------------------------


def test_dry_run_changes_nothing(world: World) -> None:
    world.image("img")
    world.blob(b"unreferenced")
    world.file(b"orphan")
    world.snap.layer("junk")
    world.partial("stale", b"stale ingest data")
    world.md.leases.create(1, id="old")
    before = (world.digests(), world.records(), set(world.snap.infos), world.store.list_statuses())

    report = world.collect(dry_run=True, now=time.time() + 100)

    assert report.dry_run
    assert [(r.key, r.reason) for r in report.leases] == [("old", REASON_EXPIRED_LEASE)]
    assert len(report.records) == 1 and len(report.blobs) == 2
    assert keys(report.ingests) == ["stale"]
    assert keys(report.snapshots) == ["junk"]
    assert (world.digests(), world.records(), set(world.snap.infos), world.store.list_statuses()) == before
    assert [le.id for le in world.md.leases.list()] == ["old"]

    real = world.collect(now=time.time() + 100)
    assert [(r.kind, r.key, r.reason) for r in real.removed] == [(r.kind, r.key, r.reason) for r in report.removed]


def test_a_second_run_finds_nothing(world: World) -> None:
    world.image("img")
    world.blob(b"unreferenced")
    assert world.collect().removed != ()
    assert world.collect().removed == ()


def test_the_grace_period_protects_what_is_new(world: World) -> None:
    world.blob(b"unreferenced")
    world.file(b"orphan")
    world.snap.layer("junk")
    world.partial("stale", b"stale ingest data")
    assert world.collect(grace_period=3600).removed == ()
    assert len(world.collect().removed) == 5


# --- leases --------------------------------------------------------------------------------------


def test_leases_protect_their_resources(world: World) -> None:
    lease = world.md.leases.create(3600)
    world.md.leases.add_resource(lease, "content", Digest.of(b"leased"))
    world.md.leases.add_resource(lease, "ingest", "pulling")
    world.md.leases.add_resource(lease, snapshot_resource("fake"), "extract-1")
    leased = world.blob(b"leased")
    world.partial("pulling", b"ingest being pulled")
    world.snap.layer("parent")
    world.snap.prepare("extract-1", "parent")

    assert world.collect().removed == ()

    world.md.leases.delete(lease)
    report = world.collect()
    assert keys(report.records) == [leased]
    assert keys(report.blobs) == [leased]
    assert keys(report.ingests) == ["pulling"]
    assert keys(report.snapshots) == ["extract-1", "parent"]


def test_a_leased_blob_keeps_its_references(world: World) -> None:
    layer = world.blob(b"layer")
    manifest = world.blob(b"manifest", {content_ref_label("l.0"): layer})
    lease = world.md.leases.create(None)
    world.md.leases.add_resource(lease, "content", manifest)
    assert world.collect().removed == ()


def test_expired_leases_are_reaped_with_what_they_held(world: World) -> None:
    lease = world.md.leases.create(60, namespace="k8s.io")
    digest = Digest.of(b"held")
    world.md.leases.add_resource(lease, "content", digest, namespace="k8s.io")
    world.file(b"held")
    assert world.collect().removed == ()

    report = world.collect(now=time.time() + 61)
    assert [(r.key, r.namespace, r.reason) for r in report.leases] == [(lease, "k8s.io", REASON_EXPIRED_LEASE)]
    assert [(r.key, r.reason) for r in report.blobs] == [(digest, REASON_ORPHAN_FILE)]
    assert world.md.leases.list(namespace="k8s.io") == []


def test_leases_of_dead_owners_are_reaped_early(world: World) -> None:
    alive = world.md.leases.create(3600, labels={"owner": "alive"})
    dead = world.md.leases.create(3600, labels={"owner": "dead"})
    world.md.leases.add_resource(dead, "content", Digest.of(b"abandoned"))
    world.file(b"abandoned")
    report = world.collect(lease_alive=lambda labels: labels.get("owner") != "dead")
    assert [(r.key, r.reason) for r in report.leases] == [(dead, REASON_ABANDONED_LEASE)]
    assert keys(report.blobs) == [Digest.of(b"abandoned")]
    assert [le.id for le in world.md.leases.list()] == [alive]


def test_a_lease_attached_after_the_mark_still_protects(world: World, tmp_path: Path) -> None:
    # Another process attaches a lease to "late" while GC is between its mark
    # and the removal: the re-check under the write lock must see it.
    other = Metadata(tmp_path / "metadata.db")
    lease = other.leases.create(3600)
    world.snap.layer("base")
    world.snap.layer("late", "base")
    world.snap.layer("doomed")

    def attach(key: str) -> None:
        if key == "late":
            other.leases.add_resource(lease, snapshot_resource("fake"), "late")

    world.snap.on_usage = attach
    try:
        report = world.collect()
    finally:
        other.close()
    assert report.errors == ()
    assert keys(report.snapshots) == ["doomed"]
    assert set(world.snap.infos) == {"base", "late"}


# --- ingests -----------------------------------------------------------------------------------


def test_a_locked_ingest_is_skipped(world: World) -> None:
    data = b"being written right now"
    writer = world.store.writer("live", expected=Digest.of(data), total=len(data))
    writer.write(data[:5])
    try:
        report = world.collect()
        assert report.ingests == () and report.errors == ()
        assert world.collect(dry_run=True).ingests == ()
    finally:
        writer.close()
    report = world.collect()
    assert [(r.key, r.reason, r.size) for r in report.ingests] == [("live", REASON_STALE_INGEST, 5)]
    assert world.store.list_statuses() == []


# --- failures, locking, leftovers -------------------------------------------------------------


def test_a_failing_removal_does_not_stop_the_rest(world: World) -> None:
    stuck_blob = world.blob(b"stuck")
    gone_blob = world.blob(b"gone")
    world.snap.layer("stuck-parent")
    world.snap.layer("stuck", "stuck-parent")
    world.snap.layer("gone")
    world.snap.fail.add("stuck")

    report = world.collect(store=FailingDelete(world.store, stuck_blob))

    assert sorted((e.kind, e.key) for e in report.errors) == [("blob", stuck_blob), ("snapshot", "stuck")]
    assert "cannot remove stuck" in str(report.errors[-1]) or "cannot remove stuck" in str(report.errors[0])
    assert keys(report.blobs) == [gone_blob]
    # The parent of a snapshot that failed to go is not even tried.
    assert keys(report.snapshots) == ["gone"]
    assert set(world.snap.infos) == {"stuck", "stuck-parent"}
    # Records go first: the stuck blob's record is gone, its file is an orphan now.
    assert world.records() == set()
    world.snap.fail.clear()
    again = world.collect()
    assert [(r.key, r.reason) for r in again.blobs] == [(stuck_blob, REASON_ORPHAN_FILE)]
    assert keys(again.snapshots) == ["stuck", "stuck-parent"]


def test_a_snapshotter_that_cannot_list_is_left_alone(world: World) -> None:
    world.snap.layer("junk")
    world.snap.leftovers.append("/fake/leftover")
    world.snap.fail_walk = True
    report = world.collect()
    assert [(e.kind, e.snapshotter) for e in report.errors] == [("snapshot", "fake")]
    assert report.snapshots == () and report.leftovers == ()
    assert "junk" in world.snap.infos


def test_leftovers_of_snapshotters_and_the_content_store(world: World) -> None:
    world.snap.leftovers.append("/fake/leftover")
    crashed = os.path.join(world.store.root, "ingest", "0" * 64)
    os.mkdir(crashed)
    assert world.collect(dry_run=True).leftovers == ()
    report = world.collect()
    assert [(r.key, r.snapshotter, r.reason) for r in report.leftovers] == [
        ("/fake/leftover", "fake", REASON_LEFTOVER),
        (crashed, "", REASON_LEFTOVER),
    ]
    assert not os.path.exists(crashed)


def test_one_gc_at_a_time(world: World) -> None:
    fd = os.open(os.path.join(world.md.root, "gc.lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(Unavailable, match="already running"):
            world.collect(wait=False)
    finally:
        os.close(fd)
    assert world.collect(wait=False).errors == ()


def test_the_fake_snapshotter_meets_the_contract() -> None:
    snap: Snapshotter = FakeSnapshotter()
    assert snap.name == "fake"


# --- containers ------------------------------------------------------------------------------------


def _container(world: World, id_: str, key: str, name: str | None = None) -> Container:
    return world.md.containers.create(Container(
        namespace="default", id=id_, name=name or f"name-{id_}", image="img", image_id="sha256:x",
        snapshotter="fake", snapshot_key=key, config={"args": ["sh"]}, labels={}, created_at=time.time()))


def test_a_container_pins_its_snapshot_and_the_image_chain(world: World) -> None:
    img = world.image("img")
    world.snap.prepare("container-1", "img-chain2")
    _container(world, "1", "container-1")
    world.md.images.delete("img")
    report = world.collect()
    assert report.errors == ()
    # The blobs go with the image; the container's snapshot and its parents stay.
    assert set(keys(report.blobs)) == img["blobs"]
    assert set(world.snap.infos) == {"container-1", "img-chain1", "img-chain2"}
    world.md.containers.delete("1")
    world.collect()
    assert world.snap.infos == {}


def test_container_records(world: World) -> None:
    c = _container(world, "abc", "k1", name="web")
    assert world.md.containers.get("abc") == c
    with pytest.raises(AlreadyExists, match="name 'web'"):
        _container(world, "def", "k2", name="web")
    with pytest.raises(AlreadyExists, match="id abc"):
        _container(world, "abc", "k3", name="other")
    assert [x.id for x in world.md.containers.list()] == ["abc"]
    assert world.md.containers.list(namespace="k8s.io") == []
    world.md.containers.delete("abc")
    world.md.containers.delete("abc")  # idempotent
    with pytest.raises(NotFound):
        world.md.containers.get("abc")
