"""containerd.services.content.v1.Content: hawser's content store, seen
through a namespace's blob records as containerd's metadata shows its own.

A namespace sees the blobs it has a record of (``store.metadata.blobs``):
Info, Update (labels, by field mask), List (containerd's filters over
``digest``, ``size`` and ``labels.*``), Delete (the namespace's record only:
the file goes at GC when nothing else needs it, as in containerd) and Read
(chunks of at most 1 MiB from ``offset``, ``size`` bytes). Status,
ListStatuses and Abort look at the content store's ingests, which are kept
by ref for the whole store (containerd keeps them per namespace). Write is
not served yet: UNIMPLEMENTED.

GC labels: hawser's collector follows ``hawser.io/gc.root`` and
``hawser.io/gc.ref.{content,snapshot}.*``, containerd's clients write and
read ``containerd.io/gc.*``. The service translates between the two, so a
manifest pulled by hawser lists ``containerd.io/gc.ref.content.l.0`` as one
pulled by containerd does, and a ``containerd.io/gc.root`` set through this
API pins the blob for hawser's GC.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import grpc
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
from hawser.containerd._edge import Context, log, namespace_of, serve
from hawser.containerd._filters import labels_adaptor, parse_filters
from hawser.content import ContentStore
from hawser.content import Status as IngestStatus
from hawser.errors import DataLoss, Unimplemented
from hawser.metadata import Blob, BlobRecords

# Read answers in chunks of at most this many bytes (containerd's buffer).
READ_CHUNK = 1 << 20
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
            return pb.InfoResponse(info=_info(await self._deps.blocking(self._blobs.get, digest,
                                                                        namespace=namespace)))

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
            return empty_pb2.Empty()

        return await serve(context, "Delete", work())

    async def Read(self, request: pb.ReadContentRequest, context: Context) -> None:
        async def work() -> str | None:
            namespace = namespace_of(context)
            digest = parse_digest(request.digest)
            await self._deps.blocking(self._blobs.get, digest, namespace=namespace)  # NotFound: not this namespace's
            blob = await self._deps.blocking(self._content.open, digest)
            try:
                fd = blob.fileno()
                size = os.fstat(fd).st_size
                bounds = read_range(size, request.offset, request.size)
                if bounds is None:
                    return f"read past object length {size} bytes"
                offset, end = bounds
                while offset < end:
                    data = await self._deps.blocking(os.pread, fd, min(READ_CHUNK, end - offset), offset)
                    if not data:  # a committed blob never shrinks
                        raise DataLoss(f"content {digest} ended at {offset} bytes, not {size}")
                    # The offset of the data in the blob, as the API documents it.
                    await context.write(pb.ReadContentResponse(offset=offset, data=data))
                    offset += len(data)
            finally:
                blob.close()
            return None

        beyond = await serve(context, "Read", work())
        if beyond is not None:
            # No hawser error kind means "out of range": containerd's code, answered here.
            log.info("request failed", extra=dict(method="Read", code="OUT_OF_RANGE", error=beyond))
            await context.abort(grpc.StatusCode.OUT_OF_RANGE, beyond)

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
            raise Unimplemented(
                "content Write is not implemented by hawserd yet",
                hint="pull images with `hawser pull` or the CRI's PullImage; ctr's pull, import and "
                     "content ingest/fetch need Write")

        await serve(context, "Write", work())


__all__ = ["LIST_BATCH", "READ_CHUNK", "Content", "label_update", "parse_digest", "read_range", "to_containerd_key",
           "to_containerd_labels", "to_hawser_key"]
