"""containerd's content service over a real content store and metadata
database in a temporary directory, called with a fake gRPC context: label
updates by field mask, GC label names, read ranges and chunks, namespaces,
and the codes containerd answers."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import grpc
import pytest

from hawser.containerd._api.services.content.v1 import content_pb2 as pb
from hawser.containerd._convert import label_update, parse_digest, to_containerd_key, to_hawser_key
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd.content import READ_CHUNK, Content, read_range
from hawser.content import LocalStore
from hawser.errors import InvalidArgument
from hawser.metadata import LABEL_GC_ROOT, Metadata, content_ref_label
from hawser.oci import Digest
from tests.support.containerd_fakes import Aborted, FakeContext, blocking, call, code_of

T = TypeVar("T")

# --- pure logic ---------------------------------------------------------------------


@pytest.mark.parametrize(("containerd", "hawser"), [
    ("containerd.io/gc.root", LABEL_GC_ROOT),
    ("containerd.io/gc.ref.content.l.0", content_ref_label("l.0")),
    ("containerd.io/gc.ref.content.config", "hawser.io/gc.ref.content.config"),
    ("containerd.io/gc.ref.snapshot.overlayfs", "hawser.io/gc.ref.snapshot.overlayfs"),
    ("containerd.io/gc.ref.snapshot.overlayfs/1", "hawser.io/gc.ref.snapshot.overlayfs/1"),
    # Not GC references hawser follows, or not GC labels at all: kept as they are.
    ("containerd.io/gc.expire", "containerd.io/gc.expire"),
    ("containerd.io/gc.rootless", "containerd.io/gc.rootless"),
    ("containerd.io/distribution.source.docker.io", "containerd.io/distribution.source.docker.io"),
    ("app", "app"),
])
def test_gc_labels_take_hawsers_names_and_back(containerd: str, hawser: str) -> None:
    assert to_hawser_key(containerd) == hawser
    assert to_containerd_key(hawser) == containerd


def test_no_mask_or_labels_replaces_every_label() -> None:
    want = {"a": "1", "empty": "", "containerd.io/gc.root": "x"}
    assert label_update([], want) == ({"a": "1", LABEL_GC_ROOT: "x"}, False)
    assert label_update(["labels"], want) == ({"a": "1", LABEL_GC_ROOT: "x"}, False)
    assert label_update(["labels", "labels.a"], want) == ({"a": "1", LABEL_GC_ROOT: "x"}, False)


def test_labels_key_paths_merge_and_an_empty_value_removes() -> None:
    # ctr content label DIGEST k=v gone= sends labels.k and labels.gone, with no value for gone.
    changes, merge = label_update(["labels.k", "labels.gone", "labels.containerd.io/gc.root"],
                                  {"k": "v", "containerd.io/gc.root": "1"})
    assert merge and changes == {"k": "v", "gone": "", LABEL_GC_ROOT: "1"}


@pytest.mark.parametrize("path", ["size", "digest", "created_at", "labels.", "labelsx"])
def test_only_labels_change(path: str) -> None:
    with pytest.raises(InvalidArgument, match="cannot update"):
        label_update(["labels.a", path], {"a": "1"})
    with pytest.raises(InvalidArgument, match="cannot update"):
        label_update(["labels", path], {"a": "1"})


@pytest.mark.parametrize(("size", "offset", "length", "want"), [
    (10, 0, 0, (0, 10)), (10, -5, 0, (0, 10)), (10, 3, 4, (3, 7)), (10, 3, 100, (3, 10)),
    (10, 10, 0, (10, 10)), (10, 11, 0, None), (0, 0, 0, (0, 0)), (10, 0, -1, (0, 10)),
])
def test_read_range(size: int, offset: int, length: int, want: tuple[int, int] | None) -> None:
    assert read_range(size, offset, length) == want


@pytest.mark.parametrize("text", ["", "sha256", "sha256:abc", "md5:" + "0" * 32, "sha256:" + "G" * 64,
                                  "sha384:" + "0" * 96])
def test_malformed_or_unstored_digests_are_invalid_arguments(text: str) -> None:
    with pytest.raises(InvalidArgument, match="failed validation"):
        parse_digest(text)


# --- the service, with a fake context -------------------------------------------------


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[SimpleNamespace]:
    metadata = Metadata(tmp_path / "metadata.db")
    store = SimpleNamespace(metadata=metadata, content=LocalStore(tmp_path / "content"))
    try:
        yield SimpleNamespace(store=store, service=Content(ContainerdDeps(store=store, blocking=blocking)))  # type: ignore[arg-type]
    finally:
        metadata.close()


def commit(parts: SimpleNamespace, data: bytes, *, namespace: str = "default",
           labels: dict[str, str] | None = None) -> Digest:
    digest = Digest.of(data)
    with parts.store.content.writer(f"test-{digest}", expected=digest, total=len(data)) as w:
        w.write(data)
        w.commit()
    parts.store.metadata.blobs.record(digest, len(data), labels or {}, namespace=namespace)
    return digest




def test_info_and_list_show_the_namespaces_records_only(parts: SimpleNamespace) -> None:
    mine = commit(parts, b"mine", labels={content_ref_label("config"): str(Digest.of(b"x")), "app": "web"})
    theirs = commit(parts, b"theirs", namespace="other")
    info = call(parts.service.Info(pb.InfoRequest(digest=mine), FakeContext())).info
    assert (info.digest, info.size) == (mine, 4)
    assert dict(info.labels) == {"containerd.io/gc.ref.content.config": str(Digest.of(b"x")), "app": "web"}
    assert info.created_at.seconds > 0 and info.updated_at.ToNanoseconds() >= info.created_at.ToNanoseconds()
    assert code_of(parts.service.Info(pb.InfoRequest(digest=theirs), FakeContext())) == grpc.StatusCode.NOT_FOUND

    context = FakeContext()
    call(parts.service.List(pb.ListContentRequest(), context))
    assert [i.digest for m in context.written for i in m.info] == [mine]


@pytest.mark.parametrize(("filters", "found"), [
    ([], True), (["labels.app==web"], True), (["labels.app==db"], False),
    (['labels."containerd.io/gc.ref.content.config"'], True), (["labels.hawser.io/gc.ref.content.config"], False),
    (["size==4"], True), (["size==5"], False), (["labels.app==db", "size==4"], True),
])
def test_list_filters(parts: SimpleNamespace, filters: list[str], found: bool) -> None:
    digest = commit(parts, b"mine", labels={content_ref_label("config"): str(Digest.of(b"x")), "app": "web"})
    other = commit(parts, b"other")

    def listed(*filters: str) -> list[str]:
        context = FakeContext()
        call(parts.service.List(pb.ListContentRequest(filters=filters), context))
        return [i.digest for m in context.written for i in m.info]

    assert [d for d in listed(*filters) if d == digest] == ([digest] if found else [])
    assert listed(f"digest=={digest}") == [digest] and listed(f"digest!={digest}") == [other]


def test_list_answers_in_batches_of_100(parts: SimpleNamespace) -> None:
    digests = sorted(commit(parts, b"blob %d" % i) for i in range(230))
    context = FakeContext()
    call(parts.service.List(pb.ListContentRequest(), context))
    assert [len(m.info) for m in context.written] == [100, 100, 30]
    assert [i.digest for m in context.written for i in m.info] == digests


def test_update_by_field_mask_keeps_gc_labels_for_hawsers_gc(parts: SimpleNamespace) -> None:
    digest = commit(parts, b"blob", labels={"keep": "1", "drop": "2"})
    request = pb.UpdateRequest(info=pb.Info(digest=digest, labels={"new": "3", "containerd.io/gc.root": "now"}))
    request.update_mask.paths.extend(["labels.new", "labels.drop", "labels.containerd.io/gc.root"])
    info = call(parts.service.Update(request, FakeContext())).info
    assert dict(info.labels) == {"keep": "1", "new": "3", "containerd.io/gc.root": "now"}
    # Stored under the name hawser's collector follows.
    assert dict(parts.store.metadata.blobs.get(digest).labels) == {"keep": "1", "new": "3", LABEL_GC_ROOT: "now"}
    replaced = call(parts.service.Update(pb.UpdateRequest(info=pb.Info(digest=digest, labels={"only": "x"})),
                                         FakeContext())).info
    assert dict(replaced.labels) == {"only": "x"}
    bad = pb.UpdateRequest(info=pb.Info(digest=digest, size=1))
    bad.update_mask.paths.append("size")
    assert code_of(parts.service.Update(bad, FakeContext())) == grpc.StatusCode.INVALID_ARGUMENT
    missing = pb.UpdateRequest(info=pb.Info(digest=str(Digest.of(b"nothing"))))
    assert code_of(parts.service.Update(missing, FakeContext())) == grpc.StatusCode.NOT_FOUND


def test_delete_removes_the_record_not_the_blob(parts: SimpleNamespace) -> None:
    digest = commit(parts, b"blob")
    call(parts.service.Delete(pb.DeleteContentRequest(digest=digest), FakeContext()))
    assert parts.store.metadata.blobs.list() == []
    assert parts.store.content.info(digest).size == 4  # GC's to remove
    assert code_of(parts.service.Delete(pb.DeleteContentRequest(digest=digest), FakeContext())) \
        == grpc.StatusCode.NOT_FOUND


def test_read_streams_chunks_of_at_most_a_mebibyte(parts: SimpleNamespace) -> None:
    data = hashlib.sha256(b"seed").digest() * (READ_CHUNK // 16 + 5)  # 2 MiB and a bit
    digest = commit(parts, data)

    def read(offset: int = 0, size: int = 0) -> list[pb.ReadContentResponse]:
        context = FakeContext()
        call(parts.service.Read(pb.ReadContentRequest(digest=digest, offset=offset, size=size), context))
        return context.written

    whole = read()
    assert [len(m.data) for m in whole] == [READ_CHUNK, READ_CHUNK, len(data) - 2 * READ_CHUNK]
    assert [m.offset for m in whole] == [0, READ_CHUNK, 2 * READ_CHUNK]
    assert b"".join(m.data for m in whole) == data
    part = read(offset=READ_CHUNK - 10, size=30)
    assert [(m.offset, m.data) for m in part] == [(READ_CHUNK - 10, data[READ_CHUNK - 10:READ_CHUNK + 20])]
    assert b"".join(m.data for m in read(offset=len(data) - 7, size=100)) == data[-7:]
    assert read(offset=len(data)) == []
    with pytest.raises(Aborted) as past:
        read(offset=len(data) + 1)
    assert past.value.code == grpc.StatusCode.OUT_OF_RANGE and f"{len(data)} bytes" in past.value.details


def test_read_needs_the_namespaces_record(parts: SimpleNamespace) -> None:
    digest = commit(parts, b"theirs", namespace="other")
    request = pb.ReadContentRequest(digest=digest)
    assert code_of(parts.service.Read(request, FakeContext())) == grpc.StatusCode.NOT_FOUND
    context = FakeContext("other")
    call(parts.service.Read(request, context))
    assert b"".join(m.data for m in context.written) == b"theirs"


def test_ingests_status_list_and_abort(parts: SimpleNamespace) -> None:
    expected = Digest.of(b"0123456789")
    with parts.store.content.writer("fetch-1", expected=expected, total=10) as w:
        w.write(b"0123")  # closed, not committed: an interrupted ingest
    status = call(parts.service.Status(pb.StatusRequest(ref="fetch-1"), FakeContext())).status
    assert (status.ref, status.offset, status.total, status.expected) == ("fetch-1", 4, 10, expected)
    assert status.started_at.seconds > 0
    listed = call(parts.service.ListStatuses(pb.ListStatusesRequest(), FakeContext())).statuses
    assert [s.ref for s in listed] == ["fetch-1"]
    assert call(parts.service.ListStatuses(pb.ListStatusesRequest(filters=["ref~=^other"]), FakeContext())
                ).statuses == []
    assert [s.ref for s in call(parts.service.ListStatuses(pb.ListStatusesRequest(filters=[""]),
                                                           FakeContext())).statuses] == ["fetch-1"]
    # A live writer's ingest is not torn from under it.
    with parts.store.content.writer("fetch-1", expected=expected, total=10):
        assert code_of(parts.service.Abort(pb.AbortRequest(ref="fetch-1"), FakeContext())) \
            == grpc.StatusCode.UNAVAILABLE
    call(parts.service.Abort(pb.AbortRequest(ref="fetch-1"), FakeContext()))
    assert parts.store.content.list_statuses() == []
    for coro in (parts.service.Status(pb.StatusRequest(ref="fetch-1"), FakeContext()),
                 parts.service.Abort(pb.AbortRequest(ref="fetch-1"), FakeContext())):
        assert code_of(coro) == grpc.StatusCode.NOT_FOUND


def test_codes_for_bad_requests(parts: SimpleNamespace) -> None:
    service, bad = parts.service, "sha256:nothex"
    for coro in (service.Info(pb.InfoRequest(digest=bad), FakeContext()),
                 service.Delete(pb.DeleteContentRequest(digest=bad), FakeContext()),
                 service.Read(pb.ReadContentRequest(digest=bad), FakeContext()),
                 service.List(pb.ListContentRequest(filters=["labels.x~=("]), FakeContext())):
        assert code_of(coro) == grpc.StatusCode.INVALID_ARGUMENT
    digest = commit(parts, b"blob")
    for coro in (service.Info(pb.InfoRequest(digest=digest), FakeContext(None)),
                 service.List(pb.ListContentRequest(), FakeContext(None)),
                 service.Read(pb.ReadContentRequest(digest=digest), FakeContext(None)),
                 service.ListStatuses(pb.ListStatusesRequest(), FakeContext(None))):
        assert code_of(coro) == grpc.StatusCode.FAILED_PRECONDITION
    async def nothing() -> AsyncIterator[pb.WriteContentRequest]:
        return
        yield

    assert code_of(service.Write(nothing(), FakeContext(None))) == grpc.StatusCode.FAILED_PRECONDITION
