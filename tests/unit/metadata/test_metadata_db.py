"""Metadata: opening, namespaces, images, blob records, leases, concurrency."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from hawser.metadata import MIGRATIONS, LeaseResource, Metadata
from hawser.oci import Descriptor, Digest, media

D1 = Digest.of(b"one")
D2 = Digest.of(b"two")
T1 = Descriptor(media_type=media.OCI_INDEX, digest=D1, size=3)
T2 = Descriptor(media_type=media.OCI_MANIFEST, digest=D2, size=3)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def md(tmp_path: Path, clock: Clock) -> Iterator[Metadata]:
    db = Metadata(tmp_path / "root" / "metadata.db", clock=clock)
    yield db
    db.close()


# --- opening -----------------------------------------------------------------------


def test_open_creates_the_database(md: Metadata, tmp_path: Path) -> None:
    assert md.schema_version == len(MIGRATIONS)
    assert [ns.name for ns in md.list_namespaces()] == ["default"]
    assert md.root == str(tmp_path / "root")
    raw = sqlite3.connect(md.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_foreign_keys_are_enforced(md: Metadata) -> None:
    md.create_image("img", T1, namespace="other")
    with pytest.raises(FailedPrecondition, match="namespace other is not empty"):
        md.delete_namespace("other")
    md.delete_image("img", namespace="other")
    md.delete_namespace("other")


def test_reopen_keeps_records(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    with Metadata(path) as md:
        md.create_image("img", T1)
    with Metadata(path) as md:
        assert md.get_image("img").target == T1


def test_closed_database_refuses_work(md: Metadata) -> None:
    md.close()
    md.close()
    with pytest.raises(FailedPrecondition, match="closed"):
        md.get_image("x")


# --- namespaces ------------------------------------------------------------------------


def test_namespaces(md: Metadata, clock: Clock) -> None:
    ns = md.create_namespace("k8s.io", labels={"a": "b"})
    assert (ns.name, dict(ns.labels), ns.created_at) == ("k8s.io", {"a": "b"}, clock.now)
    with pytest.raises(AlreadyExists):
        md.create_namespace("k8s.io")
    assert md.get_namespace("k8s.io") == ns
    assert [n.name for n in md.list_namespaces()] == ["default", "k8s.io"]
    md.delete_namespace("k8s.io")
    with pytest.raises(NotFound):
        md.delete_namespace("k8s.io")
    with pytest.raises(NotFound):
        md.get_namespace("k8s.io")


@pytest.mark.parametrize("name", ["", "a b", "-x", "x-", "a..b", "a/b", "x" * 77])
def test_invalid_namespace_names(md: Metadata, name: str) -> None:
    with pytest.raises(InvalidArgument):
        md.create_namespace(name)
    with pytest.raises(InvalidArgument):
        md.create_image("img", T1, namespace=name)


def test_writing_a_record_creates_its_namespace(md: Metadata) -> None:
    md.record_blob(D1, 3, namespace="fresh")
    assert "fresh" in [n.name for n in md.list_namespaces()]


# --- images ------------------------------------------------------------------------------


def test_image_crud(md: Metadata, clock: Clock) -> None:
    image = md.create_image("docker.io/library/busybox:latest", T1, {"x": "1"})
    assert image.name == "docker.io/library/busybox:latest"
    assert image.target == T1
    assert dict(image.labels) == {"x": "1"}
    assert image.created_at == image.updated_at == clock.now
    assert md.get_image(image.name) == image
    with pytest.raises(AlreadyExists, match="already exists in namespace default"):
        md.create_image(image.name, T2)

    clock.now += 5
    updated = md.update_image(image.name, target=T2)
    assert updated.target == T2
    assert dict(updated.labels) == {"x": "1"}  # kept
    assert (updated.created_at, updated.updated_at) == (image.created_at, clock.now)
    relabelled = md.update_image(image.name, labels={"y": "2"})
    assert dict(relabelled.labels) == {"y": "2"} and relabelled.target == T2

    md.delete_image(image.name)
    with pytest.raises(NotFound, match="busybox"):
        md.get_image(image.name)
    with pytest.raises(NotFound):
        md.delete_image(image.name)
    with pytest.raises(NotFound):
        md.update_image(image.name, labels={})


def test_list_images_by_exact_name_and_prefix(md: Metadata) -> None:
    for name in ("r.io/a:1", "r.io/a:2", "r.io/ab:1", "q.io/a:1"):
        md.create_image(name, T1)
    md.create_image("r.io/a:1", T1, namespace="other")
    assert [i.name for i in md.list_images()] == ["q.io/a:1", "r.io/a:1", "r.io/a:2", "r.io/ab:1"]
    assert [i.name for i in md.list_images(prefix="r.io/a:")] == ["r.io/a:1", "r.io/a:2"]
    assert [i.name for i in md.list_images(name="r.io/ab:1")] == ["r.io/ab:1"]
    assert md.list_images(name="nope") == []
    assert [i.namespace for i in md.list_images(namespace="other")] == ["other"]
    assert md.list_images(prefix="r.io/a_") == []  # '_' is not a wildcard


def test_put_image_creates_then_moves_the_tag(md: Metadata, clock: Clock) -> None:
    first = md.put_image("img", T1, {"a": "1"})
    clock.now += 10
    moved = md.put_image("img", T2)
    assert moved.target == T2
    assert dict(moved.labels) == {"a": "1"}
    assert (moved.created_at, moved.updated_at) == (first.created_at, clock.now)
    assert dict(md.put_image("img", T2, labels={}).labels) == {}


def test_images_are_per_namespace(md: Metadata) -> None:
    md.create_image("img", T1)
    md.create_image("img", T2, namespace="k8s.io")
    assert md.get_image("img").target == T1
    assert md.get_image("img", namespace="k8s.io").target == T2
    with pytest.raises(NotFound):
        md.get_image("img", namespace="nowhere")


def test_invalid_images(md: Metadata) -> None:
    with pytest.raises(InvalidArgument):
        md.create_image("", T1)
    with pytest.raises(InvalidArgument):
        md.create_image("a b", T1)
    with pytest.raises(InvalidArgument):
        md.create_image("img", Descriptor(media_type="", digest=D1, size=1))
    with pytest.raises(InvalidArgument):
        md.create_image("img", T1, {"k": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument):
        md.create_image("img", T1, {"k": "v" * 5000})


# --- blob records ----------------------------------------------------------------------


def test_blob_records(md: Metadata, clock: Clock) -> None:
    blob = md.record_blob(D1, 3, {"hawser.io/gc.ref.content.l.0": D2})
    assert (blob.digest, blob.size, blob.created_at) == (D1, 3, clock.now)
    assert dict(blob.labels) == {"hawser.io/gc.ref.content.l.0": D2}
    assert md.get_blob(D1) == blob

    clock.now += 1
    again = md.record_blob(D1, 3)  # idempotent, labels kept
    assert again.labels == blob.labels and again.created_at == blob.created_at
    relabelled = md.record_blob(str(D1), 3, {"other": "x"})
    assert dict(relabelled.labels) == {"other": "x"}
    with pytest.raises(InvalidArgument, match="recorded with size 3"):
        md.record_blob(D1, 4)

    md.record_blob(D2, 3)
    assert [b.digest for b in md.list_blobs()] == sorted([D1, D2])
    assert md.list_blobs(namespace="other") == []

    md.delete_blob(D1)
    with pytest.raises(NotFound, match=D1):
        md.get_blob(D1)
    with pytest.raises(NotFound):
        md.delete_blob(D1)
    with pytest.raises(InvalidArgument):
        md.record_blob("sha256:zzz", 1)


def test_update_blob_labels_replace_and_merge(md: Metadata) -> None:
    md.record_blob(D1, 3, {"a": "1", "b": "2"})
    assert dict(md.update_blob_labels(D1, {"c": "3"}).labels) == {"c": "3"}
    merged = md.update_blob_labels(D1, {"d": "4", "c": ""}, merge=True)
    assert dict(merged.labels) == {"d": "4"}
    with pytest.raises(NotFound):
        md.update_blob_labels(D2, {})


# --- leases ------------------------------------------------------------------------------


def test_leases(md: Metadata, clock: Clock) -> None:
    lease_id = md.create_lease(60, labels={"purpose": "pull"})
    lease = md.get_lease(lease_id)
    assert (lease.created_at, lease.expires_at) == (clock.now, clock.now + 60)
    assert dict(lease.labels) == {"purpose": "pull"}
    assert not lease.expired(clock.now + 59) and lease.expired(clock.now + 60)
    forever = md.get_lease(md.create_lease(None))
    assert forever.expires_at is None and not forever.expired(1e18)
    assert forever.id != lease.id
    assert [le.id for le in md.list_leases()] == sorted([lease.id, forever.id])

    md.add_resource(lease.id, "content", D1)
    md.add_resource(lease.id, "content", D1)  # idempotent
    md.add_resource(lease.id, "ingest", "layer-x")
    md.add_lease_resource(lease.id, "snapshot/overlayfs", "sha256:chain")
    assert md.list_resources(lease.id) == [
        LeaseResource("content", D1),
        LeaseResource("ingest", "layer-x"),
        LeaseResource("snapshot/overlayfs", "sha256:chain"),
    ]
    md.remove_resource(lease.id, "ingest", "layer-x")
    md.remove_resource(lease.id, "ingest", "layer-x")  # idempotent
    assert len(md.list_resources(lease.id)) == 2

    md.delete_lease(lease.id)
    with pytest.raises(NotFound):
        md.delete_lease(lease.id)
    for call in (md.get_lease, md.list_resources):
        with pytest.raises(NotFound):
            call(lease.id)
    with pytest.raises(NotFound):
        md.add_resource(lease.id, "content", D1)
    with pytest.raises(NotFound):
        md.remove_resource(lease.id, "content", D1)


def test_deleting_a_lease_drops_its_resources(md: Metadata) -> None:
    lease_id = md.create_lease(id="pull-1")
    md.add_resource(lease_id, "content", D1)
    md.delete_lease(lease_id)
    md.create_lease(id="pull-1")
    assert md.list_resources("pull-1") == []


def test_lease_ids_and_kinds_are_checked(md: Metadata) -> None:
    md.create_lease(id="mine")
    with pytest.raises(AlreadyExists):
        md.create_lease(id="mine")
    with pytest.raises(InvalidArgument):
        md.create_lease(id="not valid")
    with pytest.raises(InvalidArgument):
        md.create_lease(0)
    with pytest.raises(InvalidArgument, match="kind"):
        md.add_resource("mine", "container", "x")
    with pytest.raises(InvalidArgument, match="kind"):
        md.add_resource("mine", "snapshot/", "x")
    with pytest.raises(InvalidArgument):
        md.add_resource("mine", "content", "not-a-digest")
    with pytest.raises(InvalidArgument):
        md.add_resource("mine", "ingest", "")


def test_an_expired_lease_takes_no_resources(md: Metadata, clock: Clock) -> None:
    lease_id = md.create_lease(10)
    clock.now += 11
    with pytest.raises(FailedPrecondition, match="expired"):
        md.add_resource(lease_id, "content", D1)
    assert md.get_lease(lease_id).expired(clock.now)  # still listed until GC


def test_leases_are_per_namespace(md: Metadata) -> None:
    md.create_lease(id="x", namespace="a")
    md.create_lease(id="x", namespace="b")
    md.delete_lease("x", namespace="a")
    assert [le.namespace for le in md.list_leases(namespace="b")] == ["b"]
    with pytest.raises(NotFound):
        md.get_lease("x")


# --- several users ---------------------------------------------------------------------------


def test_two_instances_share_the_database(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    with Metadata(path) as a, Metadata(path) as b:
        a.create_image("img", T1)
        assert b.get_image("img").target == T1
        b.put_image("img", T2)
        assert a.get_image("img").target == T2


def test_a_held_write_lock_makes_others_wait_then_give_up(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    with Metadata(path) as holder, Metadata(path, busy_timeout=0.2) as other:
        with holder._transaction(write=True):
            with pytest.raises(Unavailable, match="busy"):
                other.create_image("img", T1)
            # Readers are not blocked by the writer (WAL).
            assert other.list_images() == []
        other.create_image("img", T1)


def test_threads_share_one_instance(md: Metadata) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                md.put_image(f"img-{n}-{i}", T1)
                md.record_blob(D1, 3, {f"t{n}": str(i)}, namespace=f"ns{n}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(md.list_images()) == 80
