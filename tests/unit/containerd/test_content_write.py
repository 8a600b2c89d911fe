"""containerd's Content.Write over a real content store and metadata
database in a temporary directory: the session message by message (STAT,
WRITE, COMMIT, resume, truncate, the codes containerd answers), and the
stream through the service with a fake gRPC context."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest

from hawser.containerd._api.services.content.v1 import content_pb2 as pb
from hawser.containerd.content import OutOfRange, WriteSession, placeholder_digest
from hawser.content import LocalStore
from hawser.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from hawser.metadata import LABEL_GC_ROOT, Metadata
from hawser.oci import Digest
from tests.unit.containerd.test_content import Aborted, FakeContext, call, commit, parts

__all__ = ["parts"]  # the fixture, shared with test_content

DATA = b"hello, content write " * 1000
DIGEST = Digest.of(DATA)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SimpleNamespace]:
    metadata = Metadata(tmp_path / "metadata.db")
    try:
        yield SimpleNamespace(content=LocalStore(tmp_path / "content"), metadata=metadata)
    finally:
        metadata.close()


def session(store: SimpleNamespace, namespace: str = "default") -> WriteSession:
    return WriteSession(store.content, store.metadata.blobs, namespace=namespace)


def opened(store: SimpleNamespace, first: pb.WriteContentRequest, namespace: str = "default"
           ) -> tuple[WriteSession, pb.WriteContentResponse]:
    s = session(store, namespace)
    s.open(first)
    return s, s.handle(first)


def stat(ref: str = "r", *, total: int = len(DATA), expected: str = str(DIGEST)) -> pb.WriteContentRequest:
    return pb.WriteContentRequest(action=pb.STAT, ref=ref, total=total, expected=expected)


def write(offset: int, data: bytes) -> pb.WriteContentRequest:
    return pb.WriteContentRequest(action=pb.WRITE, offset=offset, data=data)


def commit_req(offset: int, *, total: int = len(DATA), expected: str = str(DIGEST),
               labels: dict[str, str] | None = None) -> pb.WriteContentRequest:
    return pb.WriteContentRequest(action=pb.COMMIT, offset=offset, total=total, expected=expected,
                                  labels=labels or {})


def test_stat_write_commit_records_the_blob_with_hawsers_gc_labels(store: SimpleNamespace) -> None:
    s, first = opened(store, stat())
    assert (first.action, first.offset, first.total) == (pb.STAT, 0, len(DATA))
    assert s.handle(write(0, DATA[:100])).offset == 100
    assert s.handle(write(100, DATA[100:])).offset == len(DATA)
    done = s.handle(commit_req(len(DATA), labels={"containerd.io/gc.root": "x", "app": "a"}))
    assert (done.action, done.offset, done.digest) == (pb.COMMIT, len(DATA), str(DIGEST))
    s.close()
    assert store.content.read_all(DIGEST) == DATA
    blob = store.metadata.blobs.get(DIGEST, namespace="default")
    assert blob.labels == {LABEL_GC_ROOT: "x", "app": "a"}
    assert store.content.list_statuses() == []


def test_a_closed_session_leaves_the_ingest_and_the_next_resumes(store: SimpleNamespace) -> None:
    s, _ = opened(store, stat())
    s.handle(write(0, DATA[:500]))
    s.close()
    assert store.content.status("r").offset == 500
    s2, first = opened(store, stat())
    assert first.offset == 500
    s2.handle(write(500, DATA[500:]))
    assert s2.handle(commit_req(len(DATA))).digest == str(DIGEST)
    s2.close()


def test_a_second_writer_of_a_held_ref_is_refused_as_locked(store: SimpleNamespace) -> None:
    s, _ = opened(store, stat())
    with pytest.raises(Unavailable, match="ref r locked"):
        session(store).open(stat())
    s.close()
    session(store).open(stat())


def test_offsets_out_of_place_are_out_of_range_and_zero_starts_over(store: SimpleNamespace) -> None:
    s, _ = opened(store, stat())
    s.handle(write(0, DATA[:10]))
    with pytest.raises(OutOfRange, match="write @5 must occur at current offset 10"):
        s.handle(write(5, b"x"))
    assert s.handle(write(0, DATA[:3])).offset == 3  # offset 0: truncated, then written
    s.handle(write(3, DATA[3:]))
    assert s.handle(commit_req(len(DATA))).digest == str(DIGEST)


def test_total_mismatches_and_overruns_are_refused(store: SimpleNamespace) -> None:
    s, _ = opened(store, stat())
    with pytest.raises(FailedPrecondition, match="total"):
        s.handle(pb.WriteContentRequest(action=pb.STAT, total=len(DATA) + 1))
    with pytest.raises(FailedPrecondition, match="goes past its total"):
        s.handle(write(0, DATA + b"x"))
    s.handle(write(0, DATA[:7]))
    s.close()
    with pytest.raises(FailedPrecondition, match="differs from status"):
        session(store).open(stat(total=len(DATA) * 2))
    assert store.content.status("r").offset == 7  # kept for the client that resumes it


def test_a_short_commit_is_refused_and_the_ingest_kept(store: SimpleNamespace) -> None:
    s, _ = opened(store, stat())
    s.handle(write(0, DATA[:10]))
    with pytest.raises(FailedPrecondition, match="unexpected commit size 10"):
        s.handle(commit_req(10))
    s.close()
    assert store.content.status("r").offset == 10


def test_digest_mismatch_on_commit_is_a_failed_precondition(store: SimpleNamespace) -> None:
    s, _ = opened(store, stat())
    s.handle(write(0, b"y" * len(DATA)))
    with pytest.raises(FailedPrecondition, match="unexpected commit digest"):
        s.handle(commit_req(len(DATA)))
    s.close()
    with pytest.raises(NotFound):
        store.content.info(DIGEST)


def test_committing_what_the_namespace_has_is_already_exists(store: SimpleNamespace) -> None:
    s, _ = opened(store, stat())
    s.handle(write(0, DATA))
    s.handle(commit_req(len(DATA)))
    with pytest.raises(AlreadyExists):
        session(store).open(stat(ref="again"))


def test_a_blob_of_another_namespace_is_shared_without_bytes(store: SimpleNamespace) -> None:
    s, _ = opened(store, stat(), namespace="other")
    s.handle(write(0, DATA))
    s.handle(commit_req(len(DATA)))
    s2, first = opened(store, stat(ref="mine"))
    assert (first.offset, first.digest) == (len(DATA), str(DIGEST))
    done = s2.handle(commit_req(len(DATA)))
    assert (done.offset, done.digest) == (len(DATA), str(DIGEST))
    assert store.metadata.blobs.get(DIGEST, namespace="default").size == len(DATA)


def test_an_ingest_without_a_digest_hashes_resumes_and_commits(store: SimpleNamespace) -> None:
    s, first = opened(store, stat(total=0, expected=""))
    assert first.offset == 0
    assert s.handle(write(0, DATA[:50])).digest == str(Digest.of(DATA[:50]))
    s.close()
    status = store.content.status("r")
    assert (status.offset, status.expected) == (50, placeholder_digest("r"))
    s2, first = opened(store, stat(total=0, expected=""))
    assert (first.offset, first.digest) == (50, str(Digest.of(DATA[:50])))
    s2.handle(write(50, DATA[50:]))
    done = s2.handle(pb.WriteContentRequest(action=pb.COMMIT, offset=len(DATA)))
    assert (done.offset, done.digest) == (len(DATA), str(DIGEST))
    s2.close()
    assert store.content.read_all(DIGEST) == DATA
    assert store.content.list_statuses() == []
    assert store.metadata.blobs.get(DIGEST, namespace="default").size == len(DATA)


def test_an_ingest_without_a_digest_checks_the_commits(store: SimpleNamespace) -> None:
    s, _ = opened(store, stat(total=0, expected=""))
    s.handle(write(0, DATA))
    with pytest.raises(FailedPrecondition, match="unexpected commit digest"):
        s.handle(commit_req(len(DATA), expected=str(Digest.of(b"other"))))


def test_a_stat_without_a_digest_resumes_a_pulls_ingest(store: SimpleNamespace) -> None:
    s, _ = opened(store, stat())
    s.handle(write(0, DATA[:10]))
    s.close()
    s2, first = opened(store, stat(total=0, expected=""))
    assert first.offset == 10
    s2.close()
    assert store.content.status("r").expected == DIGEST


def test_the_first_message_needs_a_ref(store: SimpleNamespace) -> None:
    with pytest.raises(InvalidArgument, match="first message must have a reference"):
        session(store).open(stat(ref=""))


# --- the stream through the service --------------------------------------------------


async def stream(*requests: pb.WriteContentRequest) -> AsyncIterator[pb.WriteContentRequest]:
    for request in requests:
        yield request


def test_write_streams_answers_and_ends_after_commit(parts: SimpleNamespace) -> None:
    context = FakeContext()
    call(parts.service.Write(stream(stat(), write(0, DATA), commit_req(len(DATA))), context))
    assert [m.action for m in context.written] == [pb.STAT, pb.WRITE, pb.COMMIT]
    assert context.written[-1].digest == str(DIGEST)
    assert parts.store.metadata.blobs.get(DIGEST, namespace="default").size == len(DATA)


@pytest.mark.parametrize(("requests", "code"), [
    ((stat(), write(3, b"x")), grpc.StatusCode.OUT_OF_RANGE),
    ((stat(), write(0, b"z" * len(DATA)), commit_req(len(DATA))), grpc.StatusCode.FAILED_PRECONDITION),
    ((stat(ref=""),), grpc.StatusCode.INVALID_ARGUMENT),
])
def test_write_answers_containerds_codes(parts: SimpleNamespace, requests: tuple[pb.WriteContentRequest, ...],
                                         code: grpc.StatusCode) -> None:
    with pytest.raises(Aborted) as aborted:
        call(parts.service.Write(stream(*requests), FakeContext()))
    assert aborted.value.code == code


def test_write_of_a_recorded_blob_is_already_exists_and_a_closed_stream_keeps_the_ingest(
        parts: SimpleNamespace) -> None:
    digest = commit(parts, b"there")
    with pytest.raises(Aborted) as aborted:
        call(parts.service.Write(stream(stat(expected=str(digest), total=5)), FakeContext()))
    assert aborted.value.code == grpc.StatusCode.ALREADY_EXISTS
    call(parts.service.Write(stream(stat(), write(0, DATA[:9])), FakeContext()))
    assert parts.store.content.status("r").offset == 9
    assert not parts.store.content.in_use("r")


def test_a_session_closed_before_it_opened_takes_no_lock(store: SimpleNamespace) -> None:
    s = session(store)
    s.close()
    with pytest.raises(FailedPrecondition, match="closed"):
        s.open(stat())
    assert not store.content.in_use("r")
