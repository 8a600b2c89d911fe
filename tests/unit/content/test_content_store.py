"""LocalStore: ingest, commit, verify, resume, locking, reads and management."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from hawser.content import Cleaner, LocalStore, PathProvider, Store, Verifier
from hawser.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
    Unimplemented,
)
from hawser.oci import Digest

DATA = b"hello, hawser\n" * 1000
DIGEST = Digest.of(DATA)


@pytest.fixture
def store(tmp_path: Path) -> LocalStore:
    return LocalStore(tmp_path / "content")


def ingest_dirs(store: LocalStore) -> list[str]:
    return os.listdir(os.path.join(store.root, "ingest"))


def put(store: LocalStore, data: bytes, ref: str = "ref") -> Digest:
    digest = Digest.of(data)
    with store.writer(ref, expected=digest, total=len(data)) as w:
        w.write(data)
        w.commit()
    return digest


def test_satisfies_the_protocols(store: LocalStore) -> None:
    s: Store = store
    assert isinstance(s, Verifier)
    assert isinstance(s, PathProvider)
    assert isinstance(s, Cleaner)


# --- write and commit ----------------------------------------------------------


def test_write_commit_read(store: LocalStore) -> None:
    w = store.writer("layer-1", expected=DIGEST, total=len(DATA))
    assert w.offset == 0
    assert w.ref == "layer-1"
    assert w.expected == DIGEST
    assert w.write(DATA[:100]) == 100
    w.write(DATA[100:])
    assert w.offset == len(DATA)
    info = w.commit()
    assert (info.digest, info.size) == (DIGEST, len(DATA))
    assert info.created > 0

    assert store.info(DIGEST) == info
    with store.open(DIGEST) as f:
        assert f.read() == DATA
    assert store.read_all(DIGEST) == DATA
    path = store.path(DIGEST)
    assert path == os.path.join(store.root, "blobs", "sha256", DIGEST.encoded)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o444
    assert store.verify(DIGEST)
    # The ingest is gone, and so is its lock.
    assert ingest_dirs(store) == []
    assert store.list_statuses() == []


def test_commit_with_unknown_total(store: LocalStore) -> None:
    with store.writer("r", expected=DIGEST, total=None) as w:
        w.write(DATA)
        assert w.commit(len(DATA), DIGEST).size == len(DATA)


def test_commit_without_any_size_checks_only_the_digest(store: LocalStore) -> None:
    with store.writer("r", expected=DIGEST, total=None) as w:
        w.write(DATA)
        assert w.commit().digest == DIGEST


def test_empty_blob(store: LocalStore) -> None:
    empty = Digest.of(b"")
    with store.writer("empty", expected=empty, total=0) as w:
        assert w.commit().size == 0
    assert store.read_all(empty) == b""


def test_sha512_is_stored_under_its_algorithm(store: LocalStore) -> None:
    digest = Digest.of(DATA, "sha512")
    with store.writer("r", expected=digest, total=len(DATA)) as w:
        w.write(DATA)
        w.commit()
    assert store.path(digest) == os.path.join(store.root, "blobs", "sha512", digest.encoded)
    assert store.verify(digest)
    assert [i.digest for i in store.walk()] == [digest]


def test_digest_mismatch_is_data_loss_and_leaves_nothing(store: LocalStore) -> None:
    wrong = Digest.of(b"something else")
    w = store.writer("bad", expected=wrong, total=len(DATA))
    w.write(DATA)
    with pytest.raises(DataLoss) as caught:
        w.commit()
    message = str(caught.value)
    assert "bad" in message and wrong in message and DIGEST in message
    assert ingest_dirs(store) == []
    assert list(store.walk()) == []
    with pytest.raises(NotFound):
        store.status("bad")
    # The writer is closed; a retry starts from zero.
    with pytest.raises(FailedPrecondition):
        w.write(b"x")
    assert store.writer("bad", expected=wrong, total=None).offset == 0


def test_short_write_is_data_loss(store: LocalStore) -> None:
    w = store.writer("short", expected=DIGEST, total=len(DATA))
    w.write(DATA[:-1])
    with pytest.raises(DataLoss, match=rf"expected {len(DATA)} bytes, got {len(DATA) - 1}"):
        w.commit()
    assert ingest_dirs(store) == []


def test_commit_size_argument_is_checked(store: LocalStore) -> None:
    w = store.writer("r", expected=DIGEST, total=None)
    w.write(DATA)
    with pytest.raises(DataLoss, match="size mismatch"):
        w.commit(size=len(DATA) + 1)
    assert ingest_dirs(store) == []


def test_writing_past_the_total_is_data_loss(store: LocalStore) -> None:
    w = store.writer("long", expected=DIGEST, total=10)
    w.write(DATA[:10])
    with pytest.raises(DataLoss, match="more than its size 10"):
        w.write(b"x")
    assert ingest_dirs(store) == []


def test_commit_with_another_expected_digest_is_refused(store: LocalStore) -> None:
    with store.writer("r", expected=DIGEST, total=len(DATA)) as w:
        w.write(DATA)
        with pytest.raises(InvalidArgument):
            w.commit(expected=Digest.of(b"other"))
        # The writer is still usable.
        assert w.commit(expected=DIGEST).digest == DIGEST


def test_writer_is_closed_after_commit(store: LocalStore) -> None:
    w = store.writer("r", expected=DIGEST, total=len(DATA))
    w.write(DATA)
    w.commit()
    with pytest.raises(FailedPrecondition):
        w.write(b"more")
    with pytest.raises(FailedPrecondition):
        w.commit()
    w.close()  # idempotent


def test_already_exists_once_committed(store: LocalStore) -> None:
    put(store, DATA)
    with pytest.raises(AlreadyExists, match=DIGEST):
        store.writer("other-ref", expected=DIGEST, total=len(DATA))
    assert ingest_dirs(store) == []


def test_commit_when_another_writer_committed_meanwhile(store: LocalStore) -> None:
    a = store.writer("a", expected=DIGEST, total=len(DATA))
    b = store.writer("b", expected=DIGEST, total=len(DATA))
    a.write(DATA)
    b.write(DATA)
    first = a.commit()
    second = b.commit()
    assert second.digest == first.digest and second.size == first.size
    assert ingest_dirs(store) == []
    assert store.read_all(DIGEST) == DATA


def test_unknown_algorithms_are_rejected(store: LocalStore) -> None:
    with pytest.raises(Unimplemented, match="md5"):
        store.writer("r", expected=Digest("md5:" + "0" * 32), total=None)
    with pytest.raises(Unimplemented):
        store.info("sha1:" + "0" * 40)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        store.open("sha256:nothex")  # type: ignore[arg-type]


def test_invalid_refs_and_totals(store: LocalStore) -> None:
    with pytest.raises(InvalidArgument):
        store.writer("", expected=DIGEST, total=None)
    with pytest.raises(InvalidArgument):
        store.writer("r", expected=DIGEST, total=-1)


# --- resume ----------------------------------------------------------------------


def test_resume_after_close_keeps_data_and_restores_the_hash(store: LocalStore) -> None:
    with store.writer("resume", expected=DIGEST, total=len(DATA)) as w:
        w.write(DATA[:4000])
    status = store.status("resume")
    assert (status.ref, status.offset, status.total, status.expected) == ("resume", 4000, len(DATA), DIGEST)
    assert status.started_at > 0 and status.updated_at >= status.started_at - 1

    w = store.writer("resume", expected=DIGEST, total=len(DATA))
    assert w.offset == 4000
    w.write(DATA[4000:])
    assert w.commit().digest == DIGEST  # only right if the first 4000 bytes were hashed again
    assert store.read_all(DIGEST) == DATA


def test_resume_with_unknown_total_takes_the_recorded_one(store: LocalStore) -> None:
    with store.writer("r", expected=DIGEST, total=len(DATA)) as w:
        w.write(DATA[:10])
    with store.writer("r", expected=DIGEST, total=None) as w:
        assert w.offset == 10
        w.write(DATA[10:])
        with pytest.raises(DataLoss):
            w.write(b"!")  # the recorded total still applies


def test_resume_keeps_started_at(store: LocalStore) -> None:
    with store.writer("r", expected=DIGEST, total=None) as w:
        w.write(DATA[:10])
    started = store.status("r").started_at
    time.sleep(0.01)
    with store.writer("r", expected=DIGEST, total=None) as w:
        w.write(DATA[10:20])
    assert store.status("r").started_at == started
    assert store.status("r").offset == 20


def test_restart_when_the_expected_digest_differs(store: LocalStore) -> None:
    with store.writer("r", expected=Digest.of(b"old"), total=None) as w:
        w.write(b"old bytes")
    with store.writer("r", expected=DIGEST, total=len(DATA)) as w:
        assert w.offset == 0
        w.write(DATA)
        assert w.commit().digest == DIGEST


def test_restart_when_the_partial_data_is_longer_than_total(store: LocalStore) -> None:
    with store.writer("r", expected=DIGEST, total=None) as w:
        w.write(DATA[:100])
    with store.writer("r", expected=DIGEST, total=50) as w:
        assert w.offset == 0
    assert store.status("r").total == 50


def test_writer_dropped_without_close_releases_its_lock(store: LocalStore) -> None:
    w = store.writer("r", expected=DIGEST, total=None)
    w.write(DATA[:5])
    del w
    with store.writer("r", expected=DIGEST, total=None, wait=False) as again:
        assert again.offset == 5


# --- two writers on one ref ---------------------------------------------------------


def test_second_writer_without_wait_is_unavailable(store: LocalStore) -> None:
    first = store.writer("shared", expected=DIGEST, total=len(DATA))
    with pytest.raises(Unavailable, match="ingest shared is in use by another process"):
        store.writer("shared", expected=DIGEST, total=len(DATA), wait=False)
    assert store.in_use("shared")
    first.close()
    assert not store.in_use("shared")
    with store.writer("shared", expected=DIGEST, total=len(DATA), wait=False) as second:
        assert second.offset == 0


def test_second_writer_waits_then_sees_the_commit(store: LocalStore) -> None:
    first = store.writer("shared", expected=DIGEST, total=len(DATA))
    first.write(DATA[:10])
    outcome: list[object] = []
    started = threading.Event()

    def second() -> None:
        started.set()
        try:
            outcome.append(store.writer("shared", expected=DIGEST, total=len(DATA)))
        except Exception as exc:
            outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    started.wait()
    time.sleep(0.2)
    assert outcome == []  # still waiting for the lock
    first.write(DATA[10:])
    first.commit()
    thread.join(5)
    assert len(outcome) == 1 and isinstance(outcome[0], AlreadyExists)
    assert ingest_dirs(store) == []


def test_second_writer_waits_then_resumes_after_close(store: LocalStore) -> None:
    first = store.writer("shared", expected=DIGEST, total=len(DATA))
    first.write(DATA[:10])
    result: list[int] = []

    def second() -> None:
        with store.writer("shared", expected=DIGEST, total=len(DATA)) as w:
            result.append(w.offset)

    thread = threading.Thread(target=second)
    thread.start()
    time.sleep(0.2)
    assert result == []
    first.close()
    thread.join(5)
    assert result == [10]


def test_waiter_survives_the_ingest_being_removed_under_it(store: LocalStore) -> None:
    # The waiter blocks on the lock file of an ingest that its holder then
    # removes (a failed commit): it must notice and start a fresh ingest rather
    # than write into the removed directory.
    first = store.writer("r", expected=DIGEST, total=len(DATA))
    first.write(b"x" * len(DATA))
    result: list[int] = []

    def waiter() -> None:
        with store.writer("r", expected=DIGEST, total=len(DATA)) as w:
            result.append(w.offset)
            w.write(DATA)
            w.commit()

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    with pytest.raises(DataLoss):
        first.commit()
    thread.join(5)
    assert result == [0]
    assert store.verify(DIGEST)
    assert ingest_dirs(store) == []


# --- ingest management -------------------------------------------------------------


def test_list_statuses_and_abort(store: LocalStore) -> None:
    for ref in ("b", "a"):
        with store.writer(ref, expected=DIGEST, total=len(DATA)) as w:
            w.write(DATA[:3])
    assert [s.ref for s in store.list_statuses()] == ["a", "b"]
    store.abort("a")
    assert [s.ref for s in store.list_statuses()] == ["b"]
    with pytest.raises(NotFound, match="ingest a"):
        store.abort("a")
    with pytest.raises(NotFound):
        store.status("a")
    assert not store.in_use("a")


def test_abort_without_wait_refuses_a_live_writer(store: LocalStore) -> None:
    w = store.writer("r", expected=DIGEST, total=None)
    with pytest.raises(Unavailable):
        store.abort("r", wait=False)
    w.close()
    store.abort("r", wait=False)
    assert ingest_dirs(store) == []


def test_abort_waits_for_the_writer(store: LocalStore) -> None:
    w = store.writer("r", expected=DIGEST, total=None)
    w.write(b"abc")
    done = threading.Event()

    def abort() -> None:
        store.abort("r")
        done.set()

    thread = threading.Thread(target=abort)
    thread.start()
    time.sleep(0.2)
    assert not done.is_set()
    w.close()
    thread.join(5)
    assert done.is_set() and ingest_dirs(store) == []


def test_cleanup_removes_ingest_dirs_without_a_ref(store: LocalStore) -> None:
    with store.writer("kept", expected=DIGEST, total=None) as w:
        w.write(b"abc")
    crashed = os.path.join(store.root, "ingest", "f" * 64)
    os.mkdir(crashed)
    Path(crashed, "data").write_bytes(b"junk")
    assert store.cleanup() == [crashed]
    assert not os.path.exists(crashed)
    assert [s.ref for s in store.list_statuses()] == ["kept"]
    assert store.cleanup() == []


# --- reads and management -------------------------------------------------------------


def test_missing_blobs_are_not_found(store: LocalStore) -> None:
    for call in (store.info, store.open, store.read_all, store.path, store.delete, store.verify):
        with pytest.raises(NotFound, match=DIGEST):
            call(DIGEST)


def test_read_all_limit(store: LocalStore) -> None:
    put(store, DATA)
    with pytest.raises(ResourceExhausted, match="over the limit of 10"):
        store.read_all(DIGEST, limit=10)
    assert store.read_all(DIGEST, limit=len(DATA)) == DATA


def test_corruption_is_detected(store: LocalStore) -> None:
    put(store, DATA)
    path = store.path(DIGEST)
    os.chmod(path, 0o644)
    Path(path).write_bytes(b"tampered")
    assert not store.verify(DIGEST)
    with pytest.raises(DataLoss, match="corrupt"):
        store.read_all(DIGEST)


def test_walk_delete_usage(store: LocalStore) -> None:
    blobs = [b"one", b"two" * 10, b"three" * 100]
    digests = [put(store, b, ref=f"r{i}") for i, b in enumerate(blobs)]
    assert sorted(i.digest for i in store.walk()) == sorted(digests)
    assert {i.digest: i.size for i in store.walk()} == {d: len(b) for d, b in zip(digests, blobs, strict=True)}
    assert store.usage() == sum(len(b) for b in blobs)

    # A stray file in the blobs directory is neither listed nor counted as a blob.
    Path(store.root, "blobs", "sha256", "README").write_text("not a blob")
    assert len(list(store.walk())) == 3

    with store.writer("partial", expected=DIGEST, total=None) as w:
        w.write(b"x" * 1000)
    assert store.usage() >= sum(len(b) for b in blobs) + 1000

    store.delete(digests[0])
    with pytest.raises(NotFound):
        store.delete(digests[0])
    assert sorted(i.digest for i in store.walk()) == sorted(digests[1:])


def test_layout_of_an_ingest(store: LocalStore) -> None:
    with store.writer("layer-sha256:abc", expected=DIGEST, total=len(DATA)) as w:
        w.write(DATA[:7])
    path = os.path.join(store.root, "ingest", hashlib.sha256(b"layer-sha256:abc").hexdigest())
    assert sorted(os.listdir(path)) == ["data", "expected", "lock", "ref", "startedat", "total"]
    assert Path(path, "ref").read_text() == "layer-sha256:abc"
    assert Path(path, "expected").read_text() == DIGEST
    assert Path(path, "total").read_text() == str(len(DATA))
    assert Path(path, "data").read_bytes() == DATA[:7]


def test_truncate_restarts_the_hash(store: LocalStore) -> None:
    with store.writer("r", expected=DIGEST, total=len(DATA)) as w:
        w.write(b"garbage that is not the blob")
        w.truncate()
        assert w.offset == 0
        w.write(DATA[:100])
        w.write(b"more garbage")
        w.truncate(100)
        assert w.offset == 100
        with pytest.raises(InvalidArgument):
            w.truncate(101)
        w.write(DATA[100:])
        assert w.commit().digest == DIGEST


def test_data_path_replays_the_partial_bytes(store: LocalStore) -> None:
    with store.writer("r", expected=DIGEST, total=len(DATA)) as w:
        w.write(DATA[:123])
    with store.writer("r", expected=DIGEST, total=len(DATA)) as w:
        assert Path(w.data_path).read_bytes() == DATA[: w.offset]
