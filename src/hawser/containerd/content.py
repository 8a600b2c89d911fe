"""containerd.services.content.v1.Content: hawser's content store, seen
through a namespace's blob records as containerd's metadata shows its own.

A namespace sees the blobs it has a record of (``store.metadata.blobs``):
Info, Update (labels, by field mask), List (containerd's filters over
``digest``, ``size`` and ``labels.*``), Delete (the namespace's record only:
the file goes at GC when nothing else needs it, as in containerd) and Read
(chunks of at most 1 MiB from ``offset``, ``size`` bytes). Status,
ListStatuses and Abort look at the content store's ingests, which are kept
by ref for the whole store (containerd keeps them per namespace).

Write (``WriteSession``) follows containerd 1.6's content server message by
message: the first request names the ref (its total and digest if known);
STAT answers the ingest's offset, WRITE appends at it (offset 0 starts over,
another offset is OUT_OF_RANGE), COMMIT verifies size and digest, records
the blob in the namespace with its labels and ends the stream. The ingest is
one of hawser's store (flocked, resumable, crash safe): a client that goes
away leaves it for the next Write of the ref, one held by a live writer
answers UNAVAILABLE ("locked"), and a mismatch at commit answers
FAILED_PRECONDITION ("unexpected commit digest"), as containerd does.

GC labels: hawser's collector follows ``hawser.io/gc.root`` and
``hawser.io/gc.ref.{content,snapshot}.*``, containerd's clients write and
read ``containerd.io/gc.*``. The service translates between the two, so a
manifest pulled by hawser lists ``containerd.io/gc.ref.content.l.0`` as one
pulled by containerd does, and a ``containerd.io/gc.root`` set through this
API pins the blob for hawser's GC.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import AsyncIterator, Callable
from typing import BinaryIO

from google.protobuf import empty_pb2

from hawser.containerd._api.services.content.v1 import content_pb2 as pb
from hawser.containerd._api.services.content.v1 import content_pb2_grpc
from hawser.containerd._convert import (
    label_update,
    parse_digest,
    timestamp,
    to_containerd_key,
    to_containerd_labels,
    to_hawser_key,
)
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import Context, namespace_of, serve
from hawser.containerd._filters import labels_adaptor, parse_filters
from hawser.containerd.events import record
from hawser.content import ContentStore, Writer
from hawser.content import Info as ContentInfo
from hawser.content import Status as IngestStatus
from hawser.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    Unavailable,
)
from hawser.metadata import RESOURCE_CONTENT, RESOURCE_INGEST, Blob, BlobRecords
from hawser.oci import Digest

# Read answers in chunks of at most this many bytes (containerd's buffer).
READ_CHUNK = 1 << 20
# Blobs up to this size are read on the event loop in hawserd (``ContainerdDeps.lookup``).
INLINE_READ = 64 << 10
# List answers in messages of this many infos, as containerd batches them.
LIST_BATCH = 100

def read_range(size: int, offset: int, length: int) -> tuple[int, int] | None:
    """The ``[start, end)`` a Read of ``length`` bytes (all when 0 or less) at
    ``offset`` (0 when negative) returns from a blob of ``size`` bytes, cut at
    its end; None when ``offset`` lies past the end (containerd: OUT_OF_RANGE)."""
    start = max(offset, 0)
    if start > size:
        return None
    end = size if length <= 0 else min(size, start + length)
    return start, end


def _info(blob: Blob) -> pb.Info:
    return pb.Info(digest=str(blob.digest), size=blob.size, created_at=timestamp(blob.created_at),
                   updated_at=timestamp(blob.updated_at), labels=to_containerd_labels(blob.labels))


def _status(status: IngestStatus) -> pb.Status:
    return pb.Status(ref=status.ref, offset=status.offset, total=status.total or 0, expected=str(status.expected),
                     started_at=timestamp(status.started_at), updated_at=timestamp(status.updated_at))


LEASE_HEADER = "containerd-lease"
# The commit of an ingest started without a digest copies its bytes in chunks of this size.
_COPY_CHUNK = 1 << 20


def placeholder_digest(ref: str) -> Digest:
    """The digest hawser's store files an ingest under while its client has not
    named one (``ctr content ingest`` without ``--expected-digest``): fixed per
    ref, so that a later Write of the same ref resumes it; no content hashes to it."""
    return Digest.from_hasher(hashlib.sha256(b"hawser: ingest of an unknown digest\0" + ref.encode()))


class WriteSession:
    """One Write stream's ingest, request by request, as containerd's content
    server runs it (``services/content/contentserver``), over hawser's store.

    Blocking: run each call off the event loop, one at a time. ``open`` takes
    the ingest's lock (never waiting: a ref another writer holds answers
    Unavailable, "locked", as containerd answers, and its client retries);
    ``close`` releases it and keeps the partial data for a later Write of the
    same ref, which resumes from its offset.

    Three ways to hold an ingest:

    - a writer of the digest the client expects (a pull: ``ctr content fetch``);
    - a writer of a placeholder digest, when the client names none (``ctr
      content ingest``): the session hashes the bytes itself, and its commit
      copies them into an ingest of the real digest (hawser's writers verify
      against the digest they were opened for);
    - none, when the blob is in the store but not in this namespace (another
      namespace has it): STAT answers it whole, COMMIT records it here, as
      containerd's shared content policy does.
    """

    def __init__(self, content: ContentStore, blobs: BlobRecords, *, namespace: str,
                 add_to_lease: Callable[[str, str], None] | None = None) -> None:
        self._content = content
        self._blobs = blobs
        self._namespace = namespace
        self._add_to_lease = add_to_lease
        self._lock = threading.Lock()
        self._ref = ""
        self._total = 0  # 0: not known yet, as on the wire
        self._expected: Digest | None = None
        self._writer: Writer | None = None
        self._hasher: hashlib._Hash | None = None  # a placeholder's bytes, hashed here
        self._shared: ContentInfo | None = None
        self._closed = False
        self.committed = False

    @property
    def offset(self) -> int:
        if self._shared is not None:
            return self._shared.size
        return 0 if self._writer is None else self._writer.offset

    def open(self, first: pb.WriteContentRequest) -> None:
        """Take the ingest the first request names (``ref``, ``total``, ``expected``).
        InvalidArgument without a ref or with a negative total; AlreadyExists when
        the namespace has the expected blob; Unavailable when another writer holds
        the ref; FailedPrecondition when ``total`` differs from the ingest's."""
        with self._lock:
            if self._closed:  # the stream ended before the open got its turn on a thread
                raise FailedPrecondition(f"ingest {first.ref}: the write stream is closed")
            if not first.ref:
                raise InvalidArgument("first message must have a reference")
            if first.total < 0:
                raise InvalidArgument(f"ingest {first.ref}: negative total {first.total}")
            self._ref, self._total = first.ref, first.total
            self._expected = parse_digest(first.expected) if first.expected else None
            if self._expected is not None:
                self._refuse_if_recorded(self._expected, f"content {self._expected}: already exists")
            previous = self._previous()
            if previous is not None and first.total and previous.total and previous.total != first.total:
                # hawser's writer would start over; the client is told instead, as a
                # resumable ingest is worth more than a silent restart.
                raise FailedPrecondition(
                    f"ingest {self._ref}: provided total {first.total} differs from status: {previous.total}",
                    hint=f"abort the ingest {self._ref!r} (the Content service's Abort) to start it over")
            if self._add_to_lease is not None:
                self._add_to_lease(RESOURCE_INGEST, self._ref)
            digest = self._expected
            if digest is None:
                # Resume whatever the ref holds: a STAT without a digest never wipes an ingest.
                digest = previous.expected if previous is not None else placeholder_digest(self._ref)
            try:
                self._writer = self._content.writer(self._ref, expected=digest, total=self._total or None, wait=False)
            except Unavailable as exc:
                raise Unavailable(f"ref {self._ref} locked: {exc.message}", hint=exc.hint) from None
            except AlreadyExists:
                self._share(digest)
                return
            if digest == placeholder_digest(self._ref):
                self._hasher = self._rehash(self._writer)

    def _previous(self) -> IngestStatus | None:
        try:
            return self._content.status(self._ref)
        except NotFound:
            return None

    def _refuse_if_recorded(self, digest: Digest, message: str) -> None:
        try:
            self._blobs.get(digest, namespace=self._namespace)
        except NotFound:
            return
        raise AlreadyExists(message)

    def _share(self, digest: Digest) -> None:
        info = self._content.info(digest)
        if self._total and self._total != info.size:
            raise FailedPrecondition(f"content {digest} is {info.size} bytes, not {self._total}")
        self._shared = info

    def _rehash(self, writer: Writer) -> hashlib._Hash:
        hasher = hashlib.sha256()
        with open(writer.data_path, "rb") as data:
            left = writer.offset
            while left > 0:
                chunk = data.read(min(_COPY_CHUNK, left))
                if not chunk:
                    raise DataLoss(f"ingest {self._ref} ended before its offset {writer.offset}")
                hasher.update(chunk)
                left -= len(chunk)
        return hasher

    def handle(self, request: pb.WriteContentRequest) -> pb.WriteContentResponse:
        """Answer one request (the first one included, after ``open``): STAT the
        ingest, WRITE ``data`` at ``offset``, COMMIT it. OutOfRange for an offset
        other than the ingest's (0 starts the ingest over); FailedPrecondition for
        a total that changes, a write past the total, or a commit whose size or
        digest does not match (containerd's "unexpected commit digest");
        AlreadyExists when the namespace already has the blob."""
        with self._lock:
            if self.committed or (self._writer is None and self._shared is None):
                raise FailedPrecondition(f"ingest {self._ref or '?'}: the writer is closed")
            if request.expected:
                expected = parse_digest(request.expected)
                # As containerd: naming a blob the namespace has ends the write, the ingest with it.
                try:
                    self._refuse_if_recorded(expected, f"blob with expected digest {expected} exists")
                except AlreadyExists:
                    self._abort()
                    raise
                self._expected = expected
            if request.total > 0:
                if self._total and request.total != self._total:
                    raise FailedPrecondition(
                        f"ingest {self._ref}: total {request.total} differs from the writer's {self._total}")
                self._total = request.total
            response = pb.WriteContentResponse(action=request.action)
            if request.action == pb.STAT:
                return self._stat(response)
            if request.action not in (pb.WRITE, pb.COMMIT):
                raise InvalidArgument(f"ingest {self._ref}: unknown write action {request.action}")
            if request.offset > 0 and request.offset != self.offset:
                raise OutOfRange(f"write @{request.offset} must occur at current offset {self.offset}")
            if request.offset == 0 and self.offset > 0:
                self._truncate()
            if request.data:
                self._write(request.data)
            if request.action == pb.COMMIT:
                digest = self._commit(dict(request.labels))
                self.committed = True
                return pb.WriteContentResponse(action=request.action, offset=self.offset if self._shared is None
                                               else self._shared.size, digest=str(digest))
            response.offset = self.offset
            if self._hasher is not None:
                response.digest = str(Digest.from_hasher(self._hasher.copy()))
            return response

    def _stat(self, response: pb.WriteContentResponse) -> pb.WriteContentResponse:
        response.offset, response.total = self.offset, self._total
        if self._shared is not None:
            response.digest = str(self._shared.digest)
            response.total = self._shared.size
            return response
        if self._hasher is not None:
            # The bytes' digest so far, as containerd answers; a pull's writer has
            # no running digest to show (the store hashes its bytes privately).
            response.digest = str(Digest.from_hasher(self._hasher.copy()))
        status = self._previous()
        if status is not None:
            response.started_at.CopyFrom(timestamp(status.started_at))
            response.updated_at.CopyFrom(timestamp(status.updated_at))
        return response

    def _truncate(self) -> None:
        if self._writer is None:
            raise FailedPrecondition(
                f"content {self._expected} is already in the store: commit it, there is nothing to rewrite")
        self._writer.truncate(0)
        if self._hasher is not None:
            self._hasher = hashlib.sha256()

    def _write(self, data: bytes) -> None:
        if self._writer is None:
            raise FailedPrecondition(
                f"content {self._expected} is already in the store: commit it, there is nothing to write")
        if self._total and self._writer.offset + len(data) > self._total:
            raise FailedPrecondition(f"ingest {self._ref}: a write of {len(data)} bytes at offset "
                                     f"{self._writer.offset} goes past its total {self._total}")
        self._writer.write(data)
        if self._hasher is not None:
            self._hasher.update(data)

    def _commit(self, labels: dict[str, str]) -> Digest:
        labels = {to_hawser_key(k): v for k, v in labels.items()}
        if self._shared is not None:
            if self._total and self._total != self._shared.size:
                raise FailedPrecondition(f"{self._ref!r} failed size validation: "
                                         f"{self._shared.size} != {self._total}")
            if self._expected is not None and self._expected != self._shared.digest:
                raise FailedPrecondition(f"{self._ref!r} unexpected digest")
            return self._record(self._shared, labels)
        writer = self._writer
        assert writer is not None
        if self._total and self._total != writer.offset:
            raise FailedPrecondition(f"unexpected commit size {writer.offset}, expected {self._total}",
                                     hint="the ingest is kept: write the rest and commit again")
        if self._hasher is not None:
            return self._commit_placeholder(writer, self._hasher, labels)
        if self._expected is not None and self._expected != writer.expected:
            raise FailedPrecondition(f"unexpected commit digest: ingest {self._ref} holds {writer.expected}, "
                                     f"the commit expects {self._expected}")
        if self._add_to_lease is not None:
            self._add_to_lease(RESOURCE_CONTENT, str(writer.expected))
        try:
            info = writer.commit(writer.offset, writer.expected)
        except DataLoss as exc:
            # hawser's writer removed the bytes that do not hash to the digest: a retry fetches again.
            raise FailedPrecondition(f"unexpected commit digest: {exc.message}", hint=exc.hint) from None
        self._writer = None
        return self._record(info, labels)

    def _commit_placeholder(self, writer: Writer, hasher: hashlib._Hash, labels: dict[str, str]) -> Digest:
        actual = Digest.from_hasher(hasher.copy())
        if self._expected is not None and self._expected != actual:
            raise FailedPrecondition(f"unexpected commit digest {actual}, expected {self._expected}")
        self._refuse_if_recorded(actual, f"content {actual}: already exists")
        if self._add_to_lease is not None:
            self._add_to_lease(RESOURCE_CONTENT, str(actual))
        size = writer.offset
        try:
            # Its own ingest, so that a crash mid-copy leaves both resumable.
            with self._content.writer(f"{self._ref}@{actual}", expected=actual, total=size) as target:
                if target.offset:
                    target.truncate(0)
                with open(writer.data_path, "rb") as data:
                    while chunk := data.read(_COPY_CHUNK):
                        target.write(chunk)
                info = target.commit(size, actual)
        except AlreadyExists:
            info = self._content.info(actual)
        self._abort()
        return self._record(info, labels)

    def _record(self, info: ContentInfo, labels: dict[str, str]) -> Digest:
        self._refuse_if_recorded(info.digest, f"content {info.digest}: already exists")
        self._blobs.record(info.digest, info.size, labels, namespace=self._namespace)
        if self._shared is None:
            self._shared = info  # what the answer's offset is
        return info.digest

    def _abort(self) -> None:
        """Drop the ingest: the writer's lock first, then its files (unless
        another writer took the ref meanwhile: then it is theirs)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        try:
            self._content.abort(self._ref, wait=False)
        except (NotFound, Unavailable):
            pass

    def close(self) -> None:
        """Release the ingest's lock, keeping its bytes for a resume. Idempotent."""
        with self._lock:
            self._closed = True
            if self._writer is not None:
                self._writer.close()
                self._writer = None


class Content(content_pb2_grpc.ContentServicer):
    def __init__(self, deps: ContainerdDeps) -> None:
        self._deps = deps

    @property
    def _blobs(self) -> BlobRecords:
        return self._deps.store.metadata.blobs

    @property
    def _content(self) -> ContentStore:
        return self._deps.store.content

    async def Info(self, request: pb.InfoRequest, context: Context) -> pb.InfoResponse:
        async def work() -> pb.InfoResponse:
            namespace = namespace_of(context)
            digest = parse_digest(request.digest)
            return pb.InfoResponse(info=_info(await self._deps.lookup(self._blobs.get, digest, namespace=namespace)))

        return await serve(context, "Info", work())

    async def Update(self, request: pb.UpdateRequest, context: Context) -> pb.UpdateResponse:
        async def work() -> pb.UpdateResponse:
            namespace = namespace_of(context)
            digest = parse_digest(request.info.digest)
            labels, merge = label_update(list(request.update_mask.paths), request.info.labels)
            # One transaction: two clients setting different keys keep each other's.
            blob = await self._deps.blocking(self._blobs.update_labels, digest, labels, merge=merge,
                                             namespace=namespace)
            return pb.UpdateResponse(info=_info(blob))

        return await serve(context, "Update", work())

    async def List(self, request: pb.ListContentRequest, context: Context) -> None:
        async def work() -> None:
            namespace = namespace_of(context)
            wanted = parse_filters(list(request.filters))
            batch: list[pb.Info] = []
            for blob in await self._deps.blocking(self._blobs.list, namespace=namespace):
                labels = to_containerd_labels(blob.labels)
                if wanted.matches(labels_adaptor({"digest": str(blob.digest), "size": str(blob.size)}, labels)):
                    batch.append(_info(blob))
                if len(batch) >= LIST_BATCH:
                    await context.write(pb.ListContentResponse(info=batch))
                    batch = []
            if batch:
                await context.write(pb.ListContentResponse(info=batch))

        await serve(context, "List", work())

    async def Delete(self, request: pb.DeleteContentRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace = namespace_of(context)
            digest = parse_digest(request.digest)
            # The record only: GC removes the file once no record, image or lease needs it.
            await self._deps.blocking(self._blobs.delete, digest, namespace=namespace)
            await record(self._deps, "content", "delete", namespace=namespace, id_=str(digest))
            return empty_pb2.Empty()

        return await serve(context, "Delete", work())

    async def Read(self, request: pb.ReadContentRequest, context: Context) -> None:
        async def work() -> None:
            namespace = namespace_of(context)
            digest = parse_digest(request.digest)

            def first_chunk() -> tuple[BinaryIO, int, int, bytes]:
                """The blob, the range to read and its first chunk: most blobs ctr
                reads (a manifest, a config) are one chunk."""
                blob = self._content.open(digest)
                try:
                    size = os.fstat(blob.fileno()).st_size
                    bounds = read_range(size, request.offset, request.size)
                    if bounds is None:
                        raise OutOfRange(f"read past object length {size} bytes")
                    offset, end = bounds
                    return blob, offset, end, chunk(blob, offset, end)
                except BaseException:
                    blob.close()
                    raise

            def chunk(blob: BinaryIO, offset: int, end: int) -> bytes:
                if offset >= end:
                    return b""
                data = os.pread(blob.fileno(), min(READ_CHUNK, end - offset), offset)
                if not data:  # a committed blob never shrinks
                    raise DataLoss(f"content {digest} ended at {offset} bytes, not {end}")
                return data

            found = await self._deps.lookup(self._blobs.get, digest, namespace=namespace)  # NotFound: not this namespace's
            # A small blob (a manifest, a config) is read where lookups are; a layer in a worker.
            read = self._deps.lookup if found.size <= INLINE_READ else self._deps.blocking
            blob, offset, end, data = await read(first_chunk)
            try:
                while data:
                    # The offset of the data in the blob, as the API documents it.
                    await context.write(pb.ReadContentResponse(offset=offset, data=data))
                    offset += len(data)
                    data = await self._deps.blocking(chunk, blob, offset, end) if offset < end else b""
            finally:
                blob.close()

        await serve(context, "Read", work())

    async def Status(self, request: pb.StatusRequest, context: Context) -> pb.StatusResponse:
        async def work() -> pb.StatusResponse:
            namespace_of(context)
            return pb.StatusResponse(status=_status(await self._deps.blocking(self._content.status, request.ref)))

        return await serve(context, "Status", work())

    async def ListStatuses(self, request: pb.ListStatusesRequest, context: Context) -> pb.ListStatusesResponse:
        async def work() -> pb.ListStatusesResponse:
            namespace_of(context)
            wanted = parse_filters(list(request.filters))
            every = await self._deps.blocking(self._content.list_statuses)
            return pb.ListStatusesResponse(statuses=[
                _status(s) for s in every if wanted.matches(labels_adaptor({"ref": s.ref}, {}))])

        return await serve(context, "ListStatuses", work())

    async def Abort(self, request: pb.AbortRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace_of(context)
            # Not waiting: an ingest a live writer holds (a pull) answers UNAVAILABLE,
            # as containerd answers for a locked ref, instead of blocking the call.
            await self._deps.blocking(self._content.abort, request.ref, wait=False)
            return empty_pb2.Empty()

        return await serve(context, "Abort", work())

    async def Write(self, request_iterator: AsyncIterator[pb.WriteContentRequest], context: Context) -> None:
        async def work() -> None:
            namespace = namespace_of(context)
            requests = aiter(request_iterator)
            try:
                first = await anext(requests)
            except StopAsyncIteration:
                return  # a client that hung up before saying anything
            session = WriteSession(self._content, self._blobs, namespace=namespace,
                                   add_to_lease=self._lease_adder(context, namespace))
            try:
                request: pb.WriteContentRequest | None = first
                await self._deps.blocking(session.open, first)
                while request is not None:
                    response = await self._deps.blocking(session.handle, request)
                    await context.write(response)
                    if session.committed:
                        return  # containerd ends the stream after a commit
                    request = await anext(requests, None)
            finally:
                # Synchronous, so that it runs even when the client went away (the
                # task is cancelled): the lock goes, the partial data stays for a resume.
                session.close()

        await serve(context, "Write", work())

    def _lease_adder(self, context: Context, namespace: str) -> Callable[[str, str], None] | None:
        """Attaches what a Write makes to the request's lease (``containerd-lease``), as containerd does."""
        lease = next((value for key, value in context.invocation_metadata() or ()
                      if key == LEASE_HEADER and isinstance(value, str)), "")
        if not lease:
            return None
        leases = self._deps.store.metadata.leases

        def add(kind: str, key: str) -> None:
            leases.add_resource(lease, kind, key, namespace=namespace)

        return add


__all__ = ["LIST_BATCH", "READ_CHUNK", "Content", "OutOfRange", "WriteSession", "label_update", "parse_digest",
           "placeholder_digest", "read_range", "to_containerd_key", "to_containerd_labels", "to_hawser_key"]
