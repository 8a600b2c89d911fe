"""containerd.services.containers.v1.Containers: hawser's container records
(``store.metadata.containers``), per namespace, as containerd's metadata
keeps its own. A container ``ctr -n NS containers create`` makes is one
``hawser -n NS ps -a`` lists (created, with no task), and one ``hawser run``
or the CRI made is one ``ctr containers ls`` lists, with its bundle's
config.json as its spec. How a message becomes a record: ``_records``.

As containerd's metadata answers: Get and Delete NOT_FOUND for an unknown
id; Create ALREADY_EXISTS for an id taken (or the name of a container hawser
made), INVALID_ARGUMENT for an id that is not an identifier, no runtime
name, no spec, a snapshot key without a snapshotter. List and ListStream
take containerd's filters over ``id``, ``image``, ``runtime.name`` and
``labels.*``, and ``snapshotter`` (which containerd's adaptor lacks).

Update follows containerd's field mask: ``labels``, ``labels.<key>`` (an
empty value removing it), ``spec``, ``extensions``, ``extensions.<name>``,
``image`` and ``snapshotkey``; none replaces all of those, refusing a
changed snapshotter or runtime name (immutable); any other path is
INVALID_ARGUMENT.

Deviations, each where hawser has no equivalent: Create refuses an id
another namespace's container has (ALREADY_EXISTS: hawser keeps a
container's runtime state, bundle, runc state and exit file, by id alone),
and a runtime other than runc's (``_records.check_runtime``), which
containerd would refuse only at task creation; Delete refuses a container that has a task
(its bundle exists: FAILED_PRECONDITION, as containerd's client refuses it),
since hawser keeps the record and the task's runtime state together; and a
container hawser made itself keeps its spec, extensions and snapshot key
(its bundle's: FAILED_PRECONDITION for a change).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import empty_pb2

from hawser._dataclass import dataclass, replace
from hawser.containerd._api.events import container_pb2 as events_pb
from hawser.containerd._api.services.containers.v1 import containers_pb2 as pb
from hawser.containerd._api.services.containers.v1 import containers_pb2_grpc
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import Context, namespace_of, serve
from hawser.containerd._filters import Adaptor, Filter, labels_adaptor, parse_filters
from hawser.containerd._records import (
    CONFIG_KEY,
    api_config,
    check_snapshot,
    decode_spec,
    extensions_to_json,
    from_proto,
    labels_of,
    oci_spec,
    runtime_name,
    to_proto,
)
from hawser.containerd.events import journal_topic
from hawser.errors import FailedPrecondition, HawserError, InvalidArgument
from hawser.images import ImageService
from hawser.metadata import Container, ContainerRecords
from hawser.runtime import ContainerManager

# The paths a field mask may name besides ``labels.<key>`` and ``extensions.<name>``.
UPDATE_PATHS = ("labels", "spec", "extensions", "image", "snapshotkey")


def adaptor(message: pb.Container) -> Adaptor:
    """The fields containerd's container filters name (its ``adaptContainer``), and ``snapshotter``."""
    fields = {"id": message.id, "image": message.image, "runtime.name": message.runtime.name,
              "snapshotter": message.snapshotter}
    return labels_adaptor(fields, dict(message.labels))


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerChange:
    """What an Update writes: a new image or snapshot key (None keeps it),
    labels (None keeps them) replacing the record's or, with ``merge``,
    setting and removing keys; and the entries of ``config["containerd"]``
    to set (None for a container hawser made: it has no such config)."""

    image: str | None = None
    snapshot_key: str | None = None
    labels: dict[str, str] | None = None
    merge: bool = False
    containerd: dict[str, Any] | None = None


def container_update(paths: Sequence[str], c: pb.Container, current: Container, *, now: float,
                     current_spec: Mapping[str, Any] | None = None) -> ContainerChange:
    """The change an Update of ``current`` with field mask ``paths`` makes, as
    containerd's metadata applies one (see the module's docstring).
    ``current_spec``: the spec of a container hawser made (its bundle's),
    which an Update may send back unchanged. InvalidArgument for a path
    containerd refuses or a value its validation refuses; FailedPrecondition
    for a change to what a container hawser made keeps in its bundle."""
    api = api_config(current)
    if not paths:
        if c.snapshotter != current.snapshotter:
            raise InvalidArgument("container.Snapshotter field is immutable",
                                  hint=f"send the container's own, {current.snapshotter!r}")
        if c.runtime.name != runtime_name(current):
            raise InvalidArgument("container.Runtime.Name field is immutable",
                                  hint=f"send the container's own, {runtime_name(current)!r}")
        paths = UPDATE_PATHS
    entries: dict[str, Any] = {}
    image: str | None = None
    snapshot_key: str | None = None
    label_keys: list[str] = []
    replace_labels = False
    extensions: dict[str, Any] | None = None
    for path in paths:
        if path.startswith("labels."):
            label_keys.append(path[len("labels."):])
        elif path.startswith("extensions."):
            name = path[len("extensions."):]
            if extensions is None:
                extensions = dict((api or {}).get("extensions") or {})
            if name in c.extensions:
                extensions.update(extensions_to_json({name: c.extensions[name]}))
            else:
                extensions.pop(name, None)
        elif path == "labels":
            replace_labels = True
        elif path == "spec":
            spec = decode_spec(c.spec)
            entries["spec"] = spec
            entries["spec_type_url"] = c.spec.type_url
        elif path == "extensions":
            extensions = extensions_to_json(c.extensions)
        elif path == "image":
            image = c.image
        elif path == "snapshotkey":
            snapshot_key = c.snapshot_key
            check_snapshot(current.snapshotter, snapshot_key)
        else:
            raise InvalidArgument(f"cannot update {path!r} field on {c.id!r}",
                                  hint="use the field mask paths 'labels', 'labels.<key>', 'spec', 'extensions', "
                                       "'extensions.<name>', 'image' or 'snapshotkey'")
    if extensions is not None:
        entries["extensions"] = extensions
    if api is None:
        # A container hawser made: its spec is its bundle's, and it has no extensions.
        if "spec" in entries and entries["spec"] != (current_spec or {}):
            raise FailedPrecondition(f"container {current.id} was made by hawser (hawser run or the CRI): "
                                     "its spec is its bundle's and cannot change through containerd's API")
        if entries.get("extensions"):
            raise FailedPrecondition(f"container {current.id} was made by hawser: it takes no extensions")
        if snapshot_key is not None and snapshot_key != current.snapshot_key:
            raise FailedPrecondition(f"container {current.id} was made by hawser: its snapshot key cannot change")
        containerd, snapshot_key = None, None
    else:
        containerd = {**entries, "updated_at": now}
    labels: dict[str, str] | None = None
    merge = False
    if replace_labels:
        labels = labels_of(c.labels)
    elif label_keys:
        labels, merge = {key: c.labels.get(key, "") for key in label_keys}, True
    return ContainerChange(image=image, snapshot_key=snapshot_key, labels=labels, merge=merge,
                           containerd=containerd)


class Containers(containers_pb2_grpc.ContainersServicer):
    def __init__(self, deps: ContainerdDeps) -> None:
        self._deps = deps
        self._manager: ContainerManager | None = None

    @property
    def _records(self) -> ContainerRecords:
        return self._deps.store.metadata.containers

    def _bundle(self, id_: str) -> str:
        # Where hawser keeps a container's task: a hawser-made container's spec is its config.json there.
        if self._manager is None:
            self._manager = ContainerManager.of(self._deps.store, ImageService(self._deps.store))
        return self._manager.bundle(id_)

    def _message(self, record: Container) -> pb.Container:
        return to_proto(record, bundle=None if api_config(record) is not None else self._bundle(record.id))

    def _image_id(self, namespace: str, image: str) -> str:
        """The image's config digest when it is stored (containerd does not
        require it to be): what ``hawser ps`` shows as the image id."""
        if not image:
            return ""
        try:
            return str(ImageService(self._deps.store.in_namespace(namespace)).inspect(image).config_digest)
        except (HawserError, OSError):
            return ""

    def _listed(self, namespace: str, wanted: Filter) -> list[pb.Container]:
        messages = (self._message(r) for r in self._records.list(namespace=namespace))
        return [m for m in messages if wanted.matches(adaptor(m))]

    async def Get(self, request: pb.GetContainerRequest, context: Context) -> pb.GetContainerResponse:
        async def work() -> pb.GetContainerResponse:
            namespace = namespace_of(context)
            record = await self._deps.lookup(self._records.get, request.id, namespace=namespace)
            if api_config(record) is not None:  # all in the record
                return pb.GetContainerResponse(container=self._message(record))
            # One hawser made: its spec is its bundle's file.
            return pb.GetContainerResponse(container=await self._deps.blocking(self._message, record))

        return await serve(context, "Get", work())

    async def List(self, request: pb.ListContainersRequest, context: Context) -> pb.ListContainersResponse:
        async def work() -> pb.ListContainersResponse:
            namespace = namespace_of(context)
            wanted = parse_filters(list(request.filters))
            return pb.ListContainersResponse(containers=await self._deps.blocking(self._listed, namespace, wanted))

        return await serve(context, "List", work())

    async def ListStream(self, request: pb.ListContainersRequest, context: Context) -> None:
        async def work() -> None:
            namespace = namespace_of(context)
            wanted = parse_filters(list(request.filters))
            for message in await self._deps.blocking(self._listed, namespace, wanted):
                await context.write(pb.ListContainerMessage(container=message))

        await serve(context, "ListStream", work())

    async def Create(self, request: pb.CreateContainerRequest, context: Context) -> pb.CreateContainerResponse:
        async def work() -> pb.CreateContainerResponse:
            namespace = namespace_of(context)
            record = from_proto(namespace, request.container, time.time())

            def create() -> Container:
                made = self._records.create(replace(record, image_id=self._image_id(namespace, record.image)))
                message = to_proto(made)
                runtime = events_pb.ContainerCreate.Runtime(name=message.runtime.name)
                if message.runtime.HasField("options"):
                    runtime.options.CopyFrom(message.runtime.options)
                journal_topic(self._deps.journal, namespace, "/containers/create",
                              events_pb.ContainerCreate(id=made.id, image=made.image, runtime=runtime))
                return made

            made = await self._deps.blocking(create)
            return pb.CreateContainerResponse(container=to_proto(made))

        return await serve(context, "Create", work())

    async def Update(self, request: pb.UpdateContainerRequest, context: Context) -> pb.UpdateContainerResponse:
        async def work() -> pb.UpdateContainerResponse:
            namespace = namespace_of(context)
            c = request.container
            if not c.id:
                raise InvalidArgument("Container.ID required")

            def update() -> Container:
                current = self._records.get(c.id, namespace=namespace)
                spec = None if api_config(current) is not None else oci_spec(current, bundle=self._bundle(c.id))
                change = container_update(list(request.update_mask.paths), c, current, now=time.time(),
                                          current_spec=spec)
                image_id = None
                if change.image is not None and change.image != current.image:
                    image_id = self._image_id(namespace, change.image)
                # One transaction: two clients setting different labels keep each other's.
                updated = self._records.update(
                    c.id, namespace=namespace, image=change.image, image_id=image_id,
                    snapshot_key=change.snapshot_key, labels=change.labels, merge=change.merge,
                    config=None if change.containerd is None else {CONFIG_KEY: change.containerd})
                journal_topic(self._deps.journal, namespace, "/containers/update",
                              events_pb.ContainerUpdate(id=updated.id, image=updated.image, labels=dict(updated.labels),
                                                        snapshot_key=updated.snapshot_key))
                return updated

            updated = await self._deps.blocking(update)
            return pb.UpdateContainerResponse(container=await self._deps.blocking(self._message, updated))

        return await serve(context, "Update", work())

    async def Delete(self, request: pb.DeleteContainerRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace = namespace_of(context)

            def delete() -> None:
                record = self._records.get(request.id, namespace=namespace)
                if os.path.isdir(self._bundle(record.id)):
                    raise FailedPrecondition(f"cannot delete container {record.id}: it has a task",
                                             hint="delete its task first (ctr task delete), "
                                                  f"or remove it with hawser -n {namespace} rm -f")
                # The record only: its snapshot is the client's to remove (ctr rm does), or goes at GC.
                self._records.delete(record.id, namespace=namespace)
                journal_topic(self._deps.journal, namespace, "/containers/delete",
                              events_pb.ContainerDelete(id=record.id))

            await self._deps.blocking(delete)
            return empty_pb2.Empty()

        return await serve(context, "Delete", work())


__all__ = ["UPDATE_PATHS", "ContainerChange", "Containers", "adaptor", "container_update"]
