"""containerd.services.leases.v1.Leases: the leases of hawser's store, the
ones its own pulls take and its GC honours. Create (an id of the client's or
one made like containerd's; labels, ``containerd.io/gc.expire`` as the
lease's expiry), Delete (``sync``: collect garbage before answering, as
``hawser system prune`` does), List (filters on ``id`` and ``labels.*``),
AddResource, DeleteResource and ListResources.

containerd and hawser name resources apart: a lease's ``content`` is the same
in both, containerd's ``ingests`` is hawser's ``ingest``, and its
``snapshots/<snapshotter>`` hawser's ``snapshot/<snapshotter>``. Each
request's names are mapped here, both ways.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta, timezone

from google.protobuf import empty_pb2, timestamp_pb2

from hawser._logging import get_logger
from hawser.containerd._api.services.leases.v1 import leases_pb2 as pb
from hawser.containerd._api.services.leases.v1 import leases_pb2_grpc
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import Context, namespace_of, serve
from hawser.containerd._filters import labels_adaptor, parse_filters
from hawser.errors import InvalidArgument, Unimplemented
from hawser.images import ImageService
from hawser.metadata import (
    RESOURCE_CONTENT,
    RESOURCE_INGEST,
    RESOURCE_SNAPSHOT_PREFIX,
    Lease,
    LeaseManager,
    LeaseResource,
    snapshot_resource,
)

log = get_logger(__name__)

# containerd's lease label for its expiry (RFC 3339), as ``ctr leases create --expires`` sets it.
LABEL_GC_EXPIRE = "containerd.io/gc.expire"

# containerd's resource types (its metadata buckets).
TYPE_CONTENT = "content"
TYPE_INGESTS = "ingests"
TYPE_SNAPSHOTS = "snapshots"

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))")


def parse_expire(text: str) -> float:
    """The POSIX time of an RFC 3339 timestamp, as Go's ``time.RFC3339`` reads
    one (fractional seconds allowed, an offset or ``Z`` required).
    InvalidArgument for anything else."""
    m = _RFC3339.fullmatch(text)
    try:
        if m is None:
            raise ValueError("not an RFC 3339 time")
        year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
        offset = timedelta(0)
        if m.group(9):
            hours, minutes = int(m.group(10)), int(m.group(11))
            if hours > 23 or minutes > 59:
                raise ValueError("offset out of range")
            offset = timedelta(hours=hours, minutes=minutes) * (-1 if m.group(9) == "-" else 1)
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone(offset))
    except ValueError as exc:
        raise InvalidArgument(f"invalid lease label {LABEL_GC_EXPIRE}={text!r}: {exc}",
                              hint="give an RFC 3339 time such as 2030-01-02T15:04:05Z") from None
    return moment.timestamp() + float(f"0.{m.group(7) or 0}")


def format_expire(when: float) -> str:
    """``when`` as containerd writes its expiry label (RFC 3339, whole seconds, UTC)."""
    return datetime.fromtimestamp(int(when), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_lease_id(*, now_ns: Callable[[], int] = time.time_ns, random: Callable[[int], bytes] = os.urandom) -> str:
    """A lease id made as containerd's ``leases.WithRandomID`` makes one: the
    clock's nanoseconds within the second, a dash, three random bytes in
    URL-safe base64."""
    return f"{now_ns() % 1_000_000_000}-{base64.urlsafe_b64encode(random(3)).decode()}"


def to_kind(resource_type: str) -> str:
    """hawser's lease resource kind for containerd's resource type. InvalidArgument
    for a malformed type, Unimplemented for one containerd does not lease
    either (its codes)."""
    parts = resource_type.split("/")
    if parts[0] in (TYPE_CONTENT, TYPE_INGESTS):
        if len(parts) != 1:
            raise InvalidArgument(f"invalid resource type {resource_type!r}")
        return RESOURCE_CONTENT if parts[0] == TYPE_CONTENT else RESOURCE_INGEST
    if parts[0] == TYPE_SNAPSHOTS:
        if len(parts) != 2 or not parts[1]:
            raise InvalidArgument(f"invalid snapshot resource type {resource_type!r}",
                                  hint="name the snapshotter: snapshots/<snapshotter>")
        return snapshot_resource(parts[1])
    raise Unimplemented(f"resource type {resource_type!r} not supported yet",
                        hint=f"lease {TYPE_CONTENT!r}, {TYPE_INGESTS!r} or '{TYPE_SNAPSHOTS}/<snapshotter>'")


def to_type(kind: str) -> str:
    """containerd's resource type for hawser's lease resource kind."""
    if kind == RESOURCE_INGEST:
        return TYPE_INGESTS
    if kind.startswith(RESOURCE_SNAPSHOT_PREFIX):
        return f"{TYPE_SNAPSHOTS}/{kind[len(RESOURCE_SNAPSHOT_PREFIX):]}"
    return kind  # content: the same in both


def wire_labels(lease: Lease) -> dict[str, str]:
    """A lease's labels as containerd's clients see them: its expiry as
    containerd's label when it has one and no label says it (hawser's own
    leases, made with a ttl)."""
    labels = dict(lease.labels)
    if lease.expires_at is not None and LABEL_GC_EXPIRE not in labels:
        labels[LABEL_GC_EXPIRE] = format_expire(lease.expires_at)
    return labels


def _timestamp(when: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(round(when * 1e9))
    return stamp


def _message(lease: Lease) -> pb.Lease:
    return pb.Lease(id=lease.id, created_at=_timestamp(lease.created_at), labels=wire_labels(lease))


def _resource(resource: LeaseResource) -> pb.Resource:
    return pb.Resource(id=resource.key, type=to_type(resource.kind))


class Leases(leases_pb2_grpc.LeasesServicer):
    def __init__(self, deps: ContainerdDeps) -> None:
        self._deps = deps

    @property
    def _leases(self) -> LeaseManager:
        return self._deps.store.metadata.leases

    def _create(self, namespace: str, lease_id: str, labels: Mapping[str, str]) -> Lease:
        expire = labels.get(LABEL_GC_EXPIRE)
        expires_at = None if expire is None else parse_expire(expire)
        made = self._leases.create(id=lease_id or new_lease_id(), labels=labels, expires_at=expires_at,
                                   namespace=namespace)
        return self._leases.get(made, namespace=namespace)

    def _collect(self) -> None:
        # The store's GC, as `hawser system prune` runs it: it spans every namespace.
        report = ImageService(self._deps.store).prune()
        for error in report.errors:
            log.warning("garbage collection after a lease's removal: %s", error)

    async def Create(self, request: pb.CreateRequest, context: Context) -> pb.CreateResponse:
        async def work() -> pb.CreateResponse:
            made = await self._deps.blocking(self._create, namespace_of(context), request.id, dict(request.labels))
            return pb.CreateResponse(lease=_message(made))

        return await serve(context, "Create", work())

    async def Delete(self, request: pb.DeleteRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace = namespace_of(context)
            await self._deps.blocking(self._leases.delete, request.id, namespace=namespace)
            if request.sync:
                # What the lease alone held goes before the answer, as with containerd's ScheduleAndWait.
                await self._deps.blocking(self._collect)
            return empty_pb2.Empty()

        return await serve(context, "Delete", work())

    async def List(self, request: pb.ListRequest, context: Context) -> pb.ListResponse:
        async def work() -> pb.ListResponse:
            namespace = namespace_of(context)
            wanted = parse_filters(list(request.filters))
            every = await self._deps.blocking(self._leases.list, namespace=namespace)
            messages = (_message(lease) for lease in every)
            return pb.ListResponse(leases=[
                m for m in messages if wanted.matches(labels_adaptor({"id": m.id}, dict(m.labels)))])

        return await serve(context, "List", work())

    async def AddResource(self, request: pb.AddResourceRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace = namespace_of(context)
            kind = to_kind(request.resource.type)
            await self._deps.blocking(self._leases.add_resource, request.id, kind, request.resource.id,
                                      namespace=namespace)
            return empty_pb2.Empty()

        return await serve(context, "AddResource", work())

    async def DeleteResource(self, request: pb.DeleteResourceRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace = namespace_of(context)
            kind = to_kind(request.resource.type)
            await self._deps.blocking(self._leases.remove_resource, request.id, kind, request.resource.id,
                                      namespace=namespace)
            return empty_pb2.Empty()

        return await serve(context, "DeleteResource", work())

    async def ListResources(self, request: pb.ListResourcesRequest, context: Context) -> pb.ListResourcesResponse:
        async def work() -> pb.ListResourcesResponse:
            found = await self._deps.blocking(self._leases.list_resources, request.id, namespace=namespace_of(context))
            return pb.ListResourcesResponse(resources=[_resource(r) for r in found])

        return await serve(context, "ListResources", work())
