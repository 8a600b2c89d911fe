"""containerd.services.snapshots.v1.Snapshots: the store's snapshotter, under
containerd's name for it (``overlayfs`` or ``native``; a request naming
another snapshotter, or none, is INVALID_ARGUMENT as containerd answers
"snapshotter not loaded").

Prepare, View and Mounts answer the snapshotter's mounts as ``types.Mount``
(type, source, options) a client mounts itself; Commit (the request's labels
become the committed snapshot's, as in containerd), Remove
(FAILED_PRECONDITION for a snapshot with children), Stat, Update (labels by
field mask), List (containerd's filters over ``name``, ``parent``, ``kind``
and ``labels.*``), Usage (size and inodes of the snapshot's own layer) and
Cleanup (the snapshotter's leftover directories a crash left).

Keys are the store's, shared by every namespace (a deviation from
containerd, whose metadata gives each namespace its own keys over the
backend's): hawser's snapshotter is store-wide, so a layer committed here
under its chain id is the one ``hawser run`` stacks a container on, and one
committed by ``hawser pull`` is listed here in any namespace. The
``containerd-namespace`` header is still required, as by containerd.

Labels: containerd's ``containerd.io/gc.*`` are hawser's ``hawser.io/gc.*``
(``_convert``), so ctr's ``containerd.io/gc.root`` on a prepared snapshot
pins it for hawser's GC; other labels are kept as given. A request carrying
a ``containerd-lease`` header attaches the snapshots it makes to that lease,
as containerd's metadata does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf import empty_pb2

from hawser._logging import get_logger
from hawser.containerd._api.services.snapshots.v1 import snapshots_pb2 as pb
from hawser.containerd._api.services.snapshots.v1 import snapshots_pb2_grpc
from hawser.containerd._api.types import mount_pb2
from hawser.containerd._convert import label_update, timestamp, to_containerd_labels, to_hawser_key
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import Context, namespace_of, serve
from hawser.containerd._filters import Filter, labels_adaptor, parse_filters
from hawser.containerd.events import record_now
from hawser.errors import InvalidArgument
from hawser.metadata import snapshot_resource
from hawser.snapshots import Info, Kind, Mount, Snapshotter

log = get_logger(__name__)

# The gRPC header naming the lease a request works under (containerd's leases.GRPCHeader).
LEASE_HEADER = "containerd-lease"
# List answers in messages of this many infos, as containerd batches them.
LIST_BATCH = 100

_KINDS = {Kind.VIEW: pb.VIEW, Kind.ACTIVE: pb.ACTIVE, Kind.COMMITTED: pb.COMMITTED}


def to_kind(kind: Kind) -> pb.Kind:
    """containerd's kind for a hawser snapshot's."""
    return _KINDS[kind]


def to_mount(mount: Mount) -> mount_pb2.Mount:
    """A hawser mount as containerd's ``types.Mount`` (no target: the client
    names where it mounts)."""
    return mount_pb2.Mount(type=mount.type, source=mount.source, options=list(mount.options))


def to_info(info: Info) -> pb.Info:
    """A hawser snapshot's info as containerd's, its GC labels under containerd's names."""
    return pb.Info(name=info.key, parent=info.parent, kind=to_kind(info.kind), created_at=timestamp(info.created),
                   updated_at=timestamp(info.updated), labels=to_containerd_labels(info.labels))


def to_hawser_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """A request's labels as hawser keeps them (containerd's GC labels under hawser's names)."""
    return {to_hawser_key(key): value for key, value in labels.items()}


def check_update_paths(paths: Sequence[str], name: str) -> None:
    """InvalidArgument for a field mask path other than ``labels`` or
    ``labels.<key>``, in containerd's words: only labels change."""
    for path in paths:
        if path != "labels" and not (path.startswith("labels.") and len(path) > len("labels.")):
            raise InvalidArgument(f"cannot update {path!r} field on snapshot {name!r}: only labels change",
                                  hint="use the field mask paths 'labels' or 'labels.<key>'")


def matches(wanted: Filter, info: Info) -> bool:
    """Whether a snapshot matches a List request's filters, as containerd
    adapts one: ``name``, ``parent``, ``kind`` (active, view, committed) and
    ``labels.<key>`` (containerd's names)."""
    fields = {"name": info.key, "parent": info.parent, "kind": info.kind.value}
    return wanted.matches(labels_adaptor(fields, to_containerd_labels(info.labels)))


def lease_of(context: Context) -> str:
    """The lease the request names (its ``containerd-lease`` header), or ''."""
    for key, value in context.invocation_metadata() or ():
        if key == LEASE_HEADER and isinstance(value, str):
            return value
    return ""


class Snapshots(snapshots_pb2_grpc.SnapshotsServicer):
    def __init__(self, deps: ContainerdDeps) -> None:
        self._deps = deps

    def _snapshotter(self, name: str) -> Snapshotter:
        snapshotter = self._deps.store.snapshotter
        if not name:
            raise InvalidArgument("snapshotter argument missing", hint=f"name hawserd's: {snapshotter.name}")
        if name != snapshotter.name:
            raise InvalidArgument(f"snapshotter not loaded: {name}",
                                  hint=f"hawserd serves one snapshotter, {snapshotter.name!r} "
                                       f"(ctr --snapshotter {snapshotter.name})")
        return snapshotter

    def _lease(self, context: Context, namespace: str, snapshotter: Snapshotter, key: str) -> None:
        """Blocking. Before the snapshot exists, as hawser's GC wants it: a new snapshot is never unprotected."""
        lease = lease_of(context)
        if lease:
            self._deps.store.metadata.leases.add_resource(lease, snapshot_resource(snapshotter.name), key,
                                                          namespace=namespace)

    async def Prepare(self, request: pb.PrepareSnapshotRequest, context: Context) -> pb.PrepareSnapshotResponse:
        async def work() -> pb.PrepareSnapshotResponse:
            namespace = namespace_of(context)
            snapshotter = self._snapshotter(request.snapshotter)

            def prepare() -> list[Mount]:
                self._lease(context, namespace, snapshotter, request.key)
                mounts = snapshotter.prepare(request.key, request.parent, to_hawser_labels(request.labels))
                record_now(self._deps, "snapshot", "prepare", namespace=namespace, id_=request.key,
                           parent=request.parent)
                return mounts

            mounts = await self._deps.blocking(prepare)
            return pb.PrepareSnapshotResponse(mounts=[to_mount(m) for m in mounts])

        return await serve(context, "Prepare", work())

    async def View(self, request: pb.ViewSnapshotRequest, context: Context) -> pb.ViewSnapshotResponse:
        async def work() -> pb.ViewSnapshotResponse:
            namespace = namespace_of(context)
            snapshotter = self._snapshotter(request.snapshotter)

            def view() -> list[Mount]:
                self._lease(context, namespace, snapshotter, request.key)
                return snapshotter.view(request.key, request.parent, to_hawser_labels(request.labels))

            mounts = await self._deps.blocking(view)
            return pb.ViewSnapshotResponse(mounts=[to_mount(m) for m in mounts])

        return await serve(context, "View", work())

    async def Mounts(self, request: pb.MountsRequest, context: Context) -> pb.MountsResponse:
        async def work() -> pb.MountsResponse:
            namespace_of(context)
            snapshotter = self._snapshotter(request.snapshotter)
            mounts = await self._deps.blocking(snapshotter.mounts, request.key)
            return pb.MountsResponse(mounts=[to_mount(m) for m in mounts])

        return await serve(context, "Mounts", work())

    async def Commit(self, request: pb.CommitSnapshotRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace = namespace_of(context)
            snapshotter = self._snapshotter(request.snapshotter)

            def commit() -> None:
                self._lease(context, namespace, snapshotter, request.name)
                # The request's labels, and only those, as containerd's metadata commits.
                snapshotter.commit(request.name, request.key, to_hawser_labels(request.labels))
                record_now(self._deps, "snapshot", "commit", namespace=namespace, id_=request.name,
                           key=request.key)

            await self._deps.blocking(commit)
            return empty_pb2.Empty()

        return await serve(context, "Commit", work())

    async def Remove(self, request: pb.RemoveSnapshotRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace = namespace_of(context)
            snapshotter = self._snapshotter(request.snapshotter)

            def remove() -> None:
                # FailedPrecondition for a snapshot with children, NotFound for none: containerd's codes.
                snapshotter.remove(request.key)
                record_now(self._deps, "snapshot", "remove", namespace=namespace, id_=request.key)

            await self._deps.blocking(remove)
            return empty_pb2.Empty()

        return await serve(context, "Remove", work())

    async def Stat(self, request: pb.StatSnapshotRequest, context: Context) -> pb.StatSnapshotResponse:
        async def work() -> pb.StatSnapshotResponse:
            namespace_of(context)
            snapshotter = self._snapshotter(request.snapshotter)
            return pb.StatSnapshotResponse(info=to_info(await self._deps.blocking(snapshotter.stat, request.key)))

        return await serve(context, "Stat", work())

    async def Update(self, request: pb.UpdateSnapshotRequest, context: Context) -> pb.UpdateSnapshotResponse:
        async def work() -> pb.UpdateSnapshotResponse:
            namespace_of(context)
            snapshotter = self._snapshotter(request.snapshotter)
            name = request.info.name
            if not name:
                raise InvalidArgument("snapshot name is required to update a snapshot")
            paths = list(request.update_mask.paths)
            check_update_paths(paths, name)
            labels, merge = label_update(paths, request.info.labels)
            # One transaction: two clients setting different keys keep each other's.
            info = await self._deps.blocking(snapshotter.update_labels, name, labels, merge=merge)
            return pb.UpdateSnapshotResponse(info=to_info(info))

        return await serve(context, "Update", work())

    async def List(self, request: pb.ListSnapshotsRequest, context: Context) -> None:
        async def work() -> None:
            namespace_of(context)
            snapshotter = self._snapshotter(request.snapshotter)
            wanted = parse_filters(list(request.filters))
            every = await self._deps.blocking(lambda: sorted(snapshotter.walk(), key=lambda i: i.key))
            batch: list[pb.Info] = []
            for info in every:
                if matches(wanted, info):
                    batch.append(to_info(info))
                if len(batch) >= LIST_BATCH:
                    await context.write(pb.ListSnapshotsResponse(info=batch))
                    batch = []
            if batch:
                await context.write(pb.ListSnapshotsResponse(info=batch))

        await serve(context, "List", work())

    async def Usage(self, request: pb.UsageRequest, context: Context) -> pb.UsageResponse:
        async def work() -> pb.UsageResponse:
            namespace_of(context)
            snapshotter = self._snapshotter(request.snapshotter)
            usage = await self._deps.blocking(snapshotter.usage, request.key)
            return pb.UsageResponse(size=usage.size, inodes=usage.inodes)

        return await serve(context, "Usage", work())

    async def Cleanup(self, request: pb.CleanupRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace_of(context)
            snapshotter = self._snapshotter(request.snapshotter)
            # What a crash left: directories no record owns. Safe beside other users of the root.
            for path in await self._deps.blocking(snapshotter.cleanup):
                log.info("snapshot cleanup removed %s", path)
            return empty_pb2.Empty()

        return await serve(context, "Cleanup", work())


__all__ = ["LEASE_HEADER", "LIST_BATCH", "Snapshots", "check_update_paths", "lease_of", "matches", "to_hawser_labels",
           "to_info", "to_kind", "to_mount"]
