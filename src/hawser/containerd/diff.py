"""containerd.services.diff.v1.Diff: Apply unpacks a stored layer onto the
mounts of an active snapshot, as a containerd client's unpack asks (``ctr
images pull`` fetches through Content.Write, then Snapshots.Prepare,
Diff.Apply, Snapshots.Commit per layer).

The mounts name a snapshot of this store: an overlay mount's upper dir (its
lower dirs are the parent chain, nearest first) or a bind mount's source.
The layer goes into that directory with hawser's layer applier and all its
checks (no escaping paths, no writing through symlinks, no device nodes but
whiteouts), in overlayfs's whiteout format when the store's snapshotter is
overlayfs.  Mounts that point outside the store's snapshots are refused:
the applier writes only where hawser keeps snapshots.  Diff (making a layer
from two mount sets) is not served yet.
"""

from __future__ import annotations

import os

from hawser.containerd._api.services.diff.v1 import diff_pb2 as pb
from hawser.containerd._api.services.diff.v1 import diff_pb2_grpc
from hawser.containerd._api.types import descriptor_pb2, mount_pb2
from hawser.containerd._convert import parse_digest
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import Context, namespace_of, serve
from hawser.errors import FailedPrecondition, InvalidArgument, Unimplemented
from hawser.snapshots import ApplyTarget

# What Apply answers: the uncompressed layer it applied.
APPLIED_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"


def apply_target(mounts: list[mount_pb2.Mount], snapshots_root: str, *, overlay_store: bool) -> ApplyTarget:
    """Where a layer for ``mounts`` goes. InvalidArgument for mounts that are
    not one writable snapshot of this store."""
    if len(mounts) != 1:
        raise InvalidArgument(f"cannot apply a layer to {len(mounts)} mounts: one snapshot's mount is expected")
    mount = mounts[0]
    options = list(mount.options)
    if mount.type == "overlay":
        values = dict(o.split("=", 1) for o in options if "=" in o)
        path = values.get("upperdir", "")
        if not path:
            raise InvalidArgument("cannot apply a layer to a read-only view (an overlay mount without upperdir)")
        lowers = tuple(values.get("lowerdir", "").split(":")) if values.get("lowerdir") else ()
    elif mount.type == "bind" or "bind" in options or "rbind" in options:
        if "ro" in options:
            raise InvalidArgument("cannot apply a layer to a read-only bind mount")
        path, lowers = mount.source, ()
    else:
        raise Unimplemented(f"cannot apply a layer to a {mount.type!r} mount", hint="overlay and bind mounts only")
    root = os.path.realpath(snapshots_root)
    for directory in (path, *lowers):
        real = os.path.realpath(directory)
        if os.path.commonpath([real, root]) != root:
            raise InvalidArgument(f"{directory} is not a snapshot of this store (under {snapshots_root})")
    if not os.path.isdir(path):
        raise FailedPrecondition(f"the snapshot directory {path} does not exist")
    return ApplyTarget(path=path, overlay_whiteouts=overlay_store, lowers=lowers)


class Diff(diff_pb2_grpc.DiffServicer):
    def __init__(self, deps: ContainerdDeps) -> None:
        self._deps = deps

    async def Apply(self, request: pb.ApplyRequest, context: Context) -> pb.ApplyResponse:
        async def work() -> pb.ApplyResponse:
            from hawser.images import unpack_blob

            namespace = namespace_of(context)
            store = self._deps.store
            digest = parse_digest(request.diff.digest)
            # The namespace must know the blob, as containerd reads content through its namespace.
            await self._deps.blocking(store.metadata.blobs.get, str(digest), namespace=namespace)
            snapshots_root = os.path.join(store.config.root, "snapshots", store.snapshotter.name)
            target = apply_target(list(request.mounts), snapshots_root,
                                  overlay_store=store.snapshotter.name == "overlayfs")
            result = await self._deps.blocking(unpack_blob, store.content, digest, request.diff.media_type, target)
            return pb.ApplyResponse(applied=descriptor_pb2.Descriptor(
                media_type=APPLIED_MEDIA_TYPE, digest=str(result.diff_id), size=result.size))

        return await serve(context, "Apply", work())

    async def Diff(self, request: pb.DiffRequest, context: Context) -> pb.DiffResponse:
        async def work() -> pb.DiffResponse:
            raise Unimplemented("Diff (a layer from two mount sets) is not served by hawserd yet")

        return await serve(context, "Diff", work())
