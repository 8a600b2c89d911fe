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
    assert [ns.name for ns in md.namespaces.list()] == ["default"]
    assert md.root == str(tmp_path / "root")
    raw = sqlite3.connect(md.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_foreign_keys_are_enforced(md: Metadata) -> None:
    md.images.create("img", T1, namespace="other")
    with pytest.raises(FailedPrecondition, match="namespace other must be empty, but it still has images"):
        md.namespaces.delete("other")
    md.images.delete("img", namespace="other")
    md.namespaces.delete("other")


def test_reopen_keeps_records(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    with Metadata(path) as md:
        md.images.create("img", T1)
    with Metadata(path) as md:
        assert md.images.get("img").target == T1


def test_closed_database_refuses_work(md: Metadata) -> None:
    md.close()
    md.close()
    with pytest.raises(FailedPrecondition, match="closed"):
        md.images.get("x")


# --- namespaces ------------------------------------------------------------------------


def test_a_thread_reading_here_does_not_wait_for_another_threads_transaction(md: Metadata) -> None:
    md.blobs.record(D1, 3)
    md.db.read_here()
    assert md.db.reads_here()
    in_transaction, done = threading.Event(), threading.Event()
    seen: list[bool] = []

    def writer() -> None:  # holds the shared connection's lock, in a write transaction
        with md.db.transaction(write=True) as c:
            c.execute("DELETE FROM blobs WHERE digest = ?", (str(D1),))
            seen.append(md.db.reads_here())
            in_transaction.set()
            done.wait(10)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert in_transaction.wait(10)
        # Answered at once, from what was committed: the delete is not yet.
        assert md.blobs.get(D1).size == 3
    finally:
        done.set()
        thread.join()
    assert seen == [False]  # the other thread reads and writes on the shared connection
    with pytest.raises(NotFound):
        md.blobs.get(D1)
    # Writes from the reading thread still go through the shared connection.
    md.blobs.record(D2, 3)
    assert md.blobs.get(D2).size == 3


def test_the_reading_connection_is_read_only_and_closed_with_the_database(tmp_path: Path) -> None:
    md = Metadata(tmp_path / "metadata.db")
    md.db.read_here()
    with pytest.raises(FailedPrecondition, match="readonly"), md.db.transaction(write=False) as c:
        c.execute("DELETE FROM blobs")
    md.close()
    with pytest.raises(FailedPrecondition, match="closed"):
        md.blobs.record(D1, 3)
    assert md.db._reader is None


def test_namespaces(md: Metadata, clock: Clock) -> None:
    ns = md.namespaces.create("k8s.io", labels={"a": "b"})
    assert (ns.name, dict(ns.labels), ns.created_at) == ("k8s.io", {"a": "b"}, clock.now)
    with pytest.raises(AlreadyExists):
        md.namespaces.create("k8s.io")
    assert md.namespaces.get("k8s.io") == ns
    assert [n.name for n in md.namespaces.list()] == ["default", "k8s.io"]
    md.namespaces.delete("k8s.io")
    with pytest.raises(NotFound):
        md.namespaces.delete("k8s.io")
    with pytest.raises(NotFound):
        md.namespaces.get("k8s.io")


@pytest.mark.parametrize("name", ["", "a b", "-x", "x-", "a..b", "a/b", "x" * 77])
def test_invalid_namespace_names(md: Metadata, name: str) -> None:
    with pytest.raises(InvalidArgument):
        md.namespaces.create(name)
    with pytest.raises(InvalidArgument):
        md.images.create("img", T1, namespace=name)


def test_writing_a_record_creates_its_namespace(md: Metadata) -> None:
    md.blobs.record(D1, 3, namespace="fresh")
    assert "fresh" in [n.name for n in md.namespaces.list()]


# --- images ------------------------------------------------------------------------------


def test_image_crud(md: Metadata, clock: Clock) -> None:
    image = md.images.create("docker.io/library/busybox:latest", T1, {"x": "1"})
    assert image.name == "docker.io/library/busybox:latest"
    assert image.target == T1
    assert dict(image.labels) == {"x": "1"}
    assert image.created_at == image.updated_at == clock.now
    assert md.images.get(image.name) == image
    with pytest.raises(AlreadyExists, match="already exists in namespace default"):
        md.images.create(image.name, T2)

    clock.now += 5
    updated = md.images.update(image.name, target=T2)
    assert updated.target == T2
    assert dict(updated.labels) == {"x": "1"}  # kept
    assert (updated.created_at, updated.updated_at) == (image.created_at, clock.now)
    relabelled = md.images.update(image.name, labels={"y": "2"})
    assert dict(relabelled.labels) == {"y": "2"} and relabelled.target == T2

    md.images.delete(image.name)
    with pytest.raises(NotFound, match="busybox"):
        md.images.get(image.name)
    with pytest.raises(NotFound):
        md.images.delete(image.name)
    with pytest.raises(NotFound):
        md.images.update(image.name, labels={})


def test_list_images_by_exact_name_and_prefix(md: Metadata) -> None:
    for name in ("r.io/a:1", "r.io/a:2", "r.io/ab:1", "q.io/a:1"):
        md.images.create(name, T1)
    md.images.create("r.io/a:1", T1, namespace="other")
    assert [i.name for i in md.images.list()] == ["q.io/a:1", "r.io/a:1", "r.io/a:2", "r.io/ab:1"]
    assert [i.name for i in md.images.list(prefix="r.io/a:")] == ["r.io/a:1", "r.io/a:2"]
    assert [i.name for i in md.images.list(name="r.io/ab:1")] == ["r.io/ab:1"]
    assert md.images.list(name="nope") == []
    assert [i.namespace for i in md.images.list(namespace="other")] == ["other"]
    assert md.images.list(prefix="r.io/a_") == []  # '_' is not a wildcard


def test_put_image_creates_then_moves_the_tag(md: Metadata, clock: Clock) -> None:
    first = md.images.put("img", T1, {"a": "1"})
    clock.now += 10
    moved = md.images.put("img", T2)
    assert moved.target == T2
    assert dict(moved.labels) == {"a": "1"}
    assert (moved.created_at, moved.updated_at) == (first.created_at, clock.now)
    assert dict(md.images.put("img", T2, labels={}).labels) == {}


def test_images_are_per_namespace(md: Metadata) -> None:
    md.images.create("img", T1)
    md.images.create("img", T2, namespace="k8s.io")
    assert md.images.get("img").target == T1
    assert md.images.get("img", namespace="k8s.io").target == T2
    with pytest.raises(NotFound):
        md.images.get("img", namespace="nowhere")


def test_invalid_images(md: Metadata) -> None:
    with pytest.raises(InvalidArgument):
        md.images.create("", T1)
    with pytest.raises(InvalidArgument):
        md.images.create("a b", T1)
    with pytest.raises(InvalidArgument):
        md.images.create("img", Descriptor(media_type="", digest=D1, size=1))
    with pytest.raises(InvalidArgument):
        md.images.create("img", T1, {"k": 1})  # type: ignore[dict-item]
    with pytest.raises(InvalidArgument):
        md.images.create("img", T1, {"k": "v" * 5000})


# --- blob records ----------------------------------------------------------------------


def test_blob_records(md: Metadata, clock: Clock) -> None:
    blob = md.blobs.record(D1, 3, {"hawser.io/gc.ref.content.l.0": D2})
    assert (blob.digest, blob.size, blob.created_at) == (D1, 3, clock.now)
    assert dict(blob.labels) == {"hawser.io/gc.ref.content.l.0": D2}
    assert md.blobs.get(D1) == blob

    clock.now += 1
    again = md.blobs.record(D1, 3)  # idempotent, labels kept
    assert again.labels == blob.labels and again.created_at == blob.created_at
    relabelled = md.blobs.record(str(D1), 3, {"other": "x"})
    assert dict(relabelled.labels) == {"other": "x"}
    with pytest.raises(InvalidArgument, match="recorded with size 3"):
        md.blobs.record(D1, 4)

    md.blobs.record(D2, 3)
    assert [b.digest for b in md.blobs.list()] == sorted([D1, D2])
    assert md.blobs.list(namespace="other") == []

    md.blobs.delete(D1)
    with pytest.raises(NotFound, match=D1):
        md.blobs.get(D1)
    with pytest.raises(NotFound):
        md.blobs.delete(D1)
    with pytest.raises(InvalidArgument):
        md.blobs.record("sha256:zzz", 1)


def test_update_blob_labels_replace_and_merge(md: Metadata) -> None:
    md.blobs.record(D1, 3, {"a": "1", "b": "2"})
    assert dict(md.blobs.update_labels(D1, {"c": "3"}).labels) == {"c": "3"}
    merged = md.blobs.update_labels(D1, {"d": "4", "c": ""}, merge=True)
    assert dict(merged.labels) == {"d": "4"}
    with pytest.raises(NotFound):
        md.blobs.update_labels(D2, {})


# --- leases ------------------------------------------------------------------------------


def test_leases(md: Metadata, clock: Clock) -> None:
    lease_id = md.leases.create(60, labels={"purpose": "pull"})
    lease = md.leases.get(lease_id)
    assert (lease.created_at, lease.expires_at) == (clock.now, clock.now + 60)
    assert dict(lease.labels) == {"purpose": "pull"}
    assert not lease.expired(clock.now + 59) and lease.expired(clock.now + 60)
    forever = md.leases.get(md.leases.create(None))
    assert forever.expires_at is None and not forever.expired(1e18)
    assert forever.id != lease.id
    assert [le.id for le in md.leases.list()] == sorted([lease.id, forever.id])

    md.leases.add_resource(lease.id, "content", D1)
    md.leases.add_resource(lease.id, "content", D1)  # idempotent
    md.leases.add_resource(lease.id, "ingest", "layer-x")
    md.leases.add_resource(lease.id, "snapshot/overlayfs", "sha256:chain")
    assert md.leases.list_resources(lease.id) == [
        LeaseResource("content", D1),
        LeaseResource("ingest", "layer-x"),
        LeaseResource("snapshot/overlayfs", "sha256:chain"),
    ]
    md.leases.remove_resource(lease.id, "ingest", "layer-x")
    md.leases.remove_resource(lease.id, "ingest", "layer-x")  # idempotent
    assert len(md.leases.list_resources(lease.id)) == 2

    md.leases.delete(lease.id)
    with pytest.raises(NotFound):
        md.leases.delete(lease.id)
    for call in (md.leases.get, md.leases.list_resources):
        with pytest.raises(NotFound):
            call(lease.id)
    with pytest.raises(NotFound):
        md.leases.add_resource(lease.id, "content", D1)
    with pytest.raises(NotFound):
        md.leases.remove_resource(lease.id, "content", D1)


def test_deleting_a_lease_drops_its_resources(md: Metadata) -> None:
    lease_id = md.leases.create(id="pull-1")
    md.leases.add_resource(lease_id, "content", D1)
    md.leases.delete(lease_id)
    md.leases.create(id="pull-1")
    assert md.leases.list_resources("pull-1") == []


def test_lease_ids_and_kinds_are_checked(md: Metadata) -> None:
    md.leases.create(id="mine")
    with pytest.raises(AlreadyExists):
        md.leases.create(id="mine")
    with pytest.raises(InvalidArgument):
        md.leases.create(id="not valid")
    with pytest.raises(InvalidArgument):
        md.leases.create(0)
    with pytest.raises(InvalidArgument, match="kind"):
        md.leases.add_resource("mine", "container", "x")
    with pytest.raises(InvalidArgument, match="kind"):
        md.leases.add_resource("mine", "snapshot/", "x")
    with pytest.raises(InvalidArgument):
        md.leases.add_resource("mine", "content", "not-a-digest")
    with pytest.raises(InvalidArgument):
        md.leases.add_resource("mine", "ingest", "")


def test_an_expired_lease_takes_no_resources(md: Metadata, clock: Clock) -> None:
    lease_id = md.leases.create(10)
    clock.now += 11
    with pytest.raises(FailedPrecondition, match="expired"):
        md.leases.add_resource(lease_id, "content", D1)
    assert md.leases.get(lease_id).expired(clock.now)  # still listed until GC


def test_leases_are_per_namespace(md: Metadata) -> None:
    md.leases.create(id="x", namespace="a")
    md.leases.create(id="x", namespace="b")
    md.leases.delete("x", namespace="a")
    assert [le.namespace for le in md.leases.list(namespace="b")] == ["b"]
    with pytest.raises(NotFound):
        md.leases.get("x")


# --- several users ---------------------------------------------------------------------------


def test_two_instances_share_the_database(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    with Metadata(path) as a, Metadata(path) as b:
        a.images.create("img", T1)
        assert b.images.get("img").target == T1
        b.images.put("img", T2)
        assert a.images.get("img").target == T2


def test_a_held_write_lock_makes_others_wait_then_give_up(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    with Metadata(path) as holder, Metadata(path, busy_timeout=0.2) as other:
        with holder.db.transaction(write=True):
            with pytest.raises(Unavailable, match="busy"):
                other.images.create("img", T1)
            # Readers are not blocked by the writer (WAL).
            assert other.images.list() == []
        other.images.create("img", T1)


def test_threads_share_one_instance(md: Metadata) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                md.images.put(f"img-{n}-{i}", T1)
                md.blobs.record(D1, 3, {f"t{n}": str(i)}, namespace=f"ns{n}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(md.images.list()) == 80


def test_processes_opening_a_new_store_at_once_all_get_it(tmp_path: Path) -> None:
    # Switching a new database to WAL takes an exclusive lock SQLite does not wait
    # for: before the retry, a few rounds in sixty failed a process ("database is locked").
    import os

    for round_ in range(60):
        path = tmp_path / f"r{round_}" / "metadata.db"
        children = []
        for _ in range(6):
            pid = os.fork()
            if pid == 0:
                try:
                    Metadata(path).close()
                    os._exit(0)
                except BaseException:
                    os._exit(1)
            children.append(pid)
        codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in children]
        assert codes == [0] * 6, (round_, codes)
