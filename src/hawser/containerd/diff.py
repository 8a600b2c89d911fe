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
the applier writes only where hawser keeps snapshots.

Diff makes a layer from two mount sets, as containerd's walking differ does
for ``ctr snapshots diff``: ``left`` the lower tree (none: nothing), ``right``
the changed one, both mounts of this store's snapshots.  Where ``right``'s
layers are ``left``'s with one more on top (an active overlay snapshot over
its parent's view, or a committed one's view), that top directory is the
change set, read as overlayfs wrote it; two bind mounts (the native
snapshotter) are compared tree against tree.  Nothing is mounted: other
pairs of overlay mounts answer UNIMPLEMENTED.  The layer (gzip or
uncompressed, :mod:`hawser.images._diff`) is written to an unnamed temp
file, then into the content store under the request's ``ref`` (a unique one
when empty), committed with its digest and recorded in the namespace with
the request's labels and, compressed, ``containerd.io/uncompressed`` (its
diff ID), attached to the request's lease first, as containerd does.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from typing import TYPE_CHECKING

from hawser.containerd._api.services.diff.v1 import diff_pb2 as pb
from hawser.containerd._api.services.diff.v1 import diff_pb2_grpc
from hawser.containerd._api.types import descriptor_pb2, mount_pb2
from hawser.containerd._convert import parse_digest, to_hawser_key
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import Context, namespace_of, serve
from hawser.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unimplemented
from hawser.snapshots import ApplyTarget

if TYPE_CHECKING:
    from hawser.images import DiffSource, WrittenLayer
    from hawser.store import Store

# What Apply answers: the uncompressed layer it applied.
APPLIED_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar"
# What Diff writes: containerd's walking differ's two media types, gzip by default.
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DIFF_COMPRESSIONS = {LAYER_GZIP: "gzip", APPLIED_MEDIA_TYPE: "none"}
UNCOMPRESSED_LABEL = "containerd.io/uncompressed"
_COPY_CHUNK = 1 << 20


def _check_in_store(directories: tuple[str, ...], snapshots_root: str) -> None:
    root = os.path.realpath(snapshots_root)
    for directory in directories:
        real = os.path.realpath(directory)
        if os.path.commonpath([real, root]) != root:
            raise InvalidArgument(f"{directory} is not a snapshot of this store (under {snapshots_root})")


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
    _check_in_store((path, *lowers), snapshots_root)
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
            namespace = namespace_of(context)
            media_type = request.media_type or LAYER_GZIP
            compression = DIFF_COMPRESSIONS.get(media_type)
            if compression is None:
                raise Unimplemented(f"unsupported diff media type: {media_type}: not implemented",
                                    hint=f"use {LAYER_GZIP} or {APPLIED_MEDIA_TYPE}")
            store = self._deps.store
            snapshots_root = os.path.join(store.config.root, "snapshots", store.snapshotter.name)
            source = diff_source(list(request.left), list(request.right), snapshots_root,
                                 overlay_store=store.snapshotter.name == "overlayfs")
            labels = {to_hawser_key(k): v for k, v in request.labels.items()}
            layer = DiffLayer(store, namespace=namespace, lease=_lease_of(context))
            written = await self._deps.blocking(layer.make, source, compression=compression,
                                                ref=request.ref or unique_ref(), labels=labels)
            return pb.DiffResponse(diff=descriptor_pb2.Descriptor(
                media_type=media_type, digest=str(written.digest), size=written.size))

        return await serve(context, "Diff", work())


def _lease_of(context: Context) -> str:
    from hawser.containerd.snapshots import lease_of

    return lease_of(context)


def unique_ref() -> str:
    """An ingest ref for a Diff that names none, unique as containerd's ``uniqueRef``."""
    return f"diff-{time.time_ns()}-{secrets.token_hex(6)}"


def _layers(mount: mount_pb2.Mount, side: str) -> tuple[str, ...]:
    """The directories a mount stacks, topmost first (an overlay's upper dir, then its lowers)."""
    options = list(mount.options)
    if mount.type == "overlay":
        values = dict(o.split("=", 1) for o in options if "=" in o)
        upper = (values["upperdir"],) if values.get("upperdir") else ()
        lowers = tuple(values["lowerdir"].split(":")) if values.get("lowerdir") else ()
        if not upper and not lowers:
            raise InvalidArgument(f"the {side} overlay mount names no directories")
        return upper + lowers
    if mount.type == "bind" or "bind" in options or "rbind" in options:
        if not mount.source:
            raise InvalidArgument(f"the {side} bind mount has no source")
        return (mount.source,)
    raise Unimplemented(f"cannot diff a {mount.type!r} mount", hint="overlay and bind mounts only")


def diff_source(left: list[mount_pb2.Mount], right: list[mount_pb2.Mount], snapshots_root: str, *,
                overlay_store: bool) -> DiffSource:
    """What a layer for ``right`` over ``left`` is made from (see the module
    docstring).  InvalidArgument for mounts that are not this store's
    snapshots, Unimplemented for a pair that needs mounting."""
    from hawser.images import DiffSource

    if len(right) != 1:
        raise InvalidArgument(f"cannot diff {len(right)} right mounts: one snapshot's mount is expected")
    if len(left) > 1:
        raise InvalidArgument(f"cannot diff against {len(left)} left mounts: one snapshot's mount or none")
    upper = _layers(right[0], "right")
    lower = _layers(left[0], "left") if left else ()
    _check_in_store(upper + lower, snapshots_root)
    for directory in upper + lower:
        if not os.path.isdir(directory):
            raise FailedPrecondition(f"the snapshot directory {directory} does not exist")
    if upper[1:] == lower:
        # right is left plus its top directory: that directory is the change set.
        if overlay_store:
            return DiffSource(upper=upper[0], overlay=True)
        return DiffSource(upper=upper[0], lower=None)
    if len(upper) == 1 and len(lower) == 1:
        return DiffSource(upper=upper[0], lower=lower[0])
    raise Unimplemented("cannot diff these overlay mounts without mounting them: the right snapshot must be "
                        "the left one's child", hint="diff a snapshot against its parent (ctr snapshots diff KEY)")


class DiffLayer:
    """Writes a Diff's layer into the content store, in a namespace, under a lease."""

    def __init__(self, store: Store, *, namespace: str, lease: str) -> None:
        self._store = store
        self._namespace = namespace
        self._lease = lease

    def make(self, source: DiffSource, *, compression: str, ref: str, labels: dict[str, str]) -> WrittenLayer:
        """Write, commit and record the layer; blocking."""
        from hawser.images import write_layer
        from hawser.metadata import RESOURCE_CONTENT

        content = self._store.content
        # Unnamed (O_TMPFILE where supported): nothing is left behind by a crash.
        with tempfile.TemporaryFile(dir=self._store.config.root) as spool:
            written = write_layer(spool, source, compression=compression)  # type: ignore[arg-type]
            if compression != "none":
                labels = {**labels, UNCOMPRESSED_LABEL: str(written.diff_id)}
            if self._lease:
                self._store.metadata.leases.add_resource(self._lease, RESOURCE_CONTENT, str(written.digest),
                                                         namespace=self._namespace)
            spool.seek(0)
            try:
                # Never waiting: a ref another writer holds answers UNAVAILABLE ("locked"), as a Write would.
                with content.writer(ref, expected=written.digest, total=written.size, wait=False) as writer:
                    if writer.offset:
                        writer.truncate(0)
                    while chunk := spool.read(_COPY_CHUNK):
                        writer.write(chunk)
                    writer.commit(written.size, written.digest)
            except AlreadyExists:
                pass  # the same changes were written before: the blob is the same
        self._record(written, labels)
        return written

    def _record(self, written: WrittenLayer, labels: dict[str, str]) -> None:
        blobs = self._store.metadata.blobs
        try:
            known = blobs.get(str(written.digest), namespace=self._namespace)
        except NotFound:
            blobs.record(str(written.digest), written.size, labels, namespace=self._namespace)
            return
        # containerd keeps an existing record's labels, adding only a missing uncompressed label.
        if UNCOMPRESSED_LABEL in labels and UNCOMPRESSED_LABEL not in known.labels:
            blobs.update_labels(str(written.digest), {UNCOMPRESSED_LABEL: labels[UNCOMPRESSED_LABEL]}, merge=True,
                                namespace=self._namespace)
