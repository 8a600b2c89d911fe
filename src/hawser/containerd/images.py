"""containerd.services.images.v1.Images: hawser's image records
(``store.metadata.images``), per namespace, as containerd's metadata keeps
its own. An image pulled by ``hawser -n NS pull`` is one ``ctr -n NS images
ls`` lists, and one ``ctr images tag`` makes is one ``hawser images`` lists
and ``hawser run`` runs (it names the same manifest, so the same snapshots).

Get and Delete answer NOT_FOUND for an unknown name; Delete with ``sync``
collects garbage before answering, as ``hawser system prune`` does (the store's
GC, every namespace). List takes containerd's filters over ``name``,
``target.digest``, ``target.mediatype``, ``labels.*`` and ``annotations.*``.
Create answers ALREADY_EXISTS for a name taken and validates the target as
containerd does (a digest, a media type, a size above zero). Update follows
containerd's field mask: none replaces labels and target, ``labels`` the
labels, ``labels.<key>`` one label (an empty value removing it), ``target``
the target, any other path INVALID_ARGUMENT.

Target annotations are kept with the record (``ctr images import`` names
the image in ``io.containerd.image.name``); ``annotations`` and
``annotations.<key>`` update them as containerd's metadata does.

GC labels on images are translated as on content: ``containerd.io/gc.*``
on the wire, ``hawser.io/gc.*`` in the record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf import empty_pb2

from hawser._dataclass import dataclass, replace
from hawser.containerd._api.services.images.v1 import images_pb2 as pb
from hawser.containerd._api.services.images.v1 import images_pb2_grpc
from hawser.containerd._api.types import descriptor_pb2
from hawser.containerd._convert import label_update, parse_digest, timestamp, to_containerd_labels, to_hawser_key
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import Context, log, namespace_of, serve
from hawser.containerd._filters import Adaptor, labels_adaptor, parse_filters
from hawser.containerd.events import record
from hawser.errors import InvalidArgument
from hawser.images import ImageService
from hawser.metadata import Image, ImageRecords
from hawser.oci import Descriptor


def to_descriptor(message: descriptor_pb2.Descriptor) -> Descriptor:
    """An image target from the wire, checked as containerd's metadata checks
    one (its ``validateTarget``): InvalidArgument for a malformed digest, a
    size not above zero or no media type."""
    try:
        digest = parse_digest(message.digest)
    except InvalidArgument as exc:
        raise InvalidArgument(f"Target.Digest {message.digest!r} invalid: {exc.message}",
                              hint=exc.hint) from None
    if message.size <= 0:
        raise InvalidArgument(f"Target.Size must be greater than zero, not {message.size}")
    if not message.media_type:
        raise InvalidArgument("Target.MediaType must be set",
                              hint="e.g. application/vnd.oci.image.manifest.v1+json")
    return Descriptor(media_type=message.media_type, digest=digest, size=message.size,
                      annotations={k: v for k, v in message.annotations.items() if v})


def to_message(image: Image) -> pb.Image:
    """An image record as containerd's Image message."""
    target = descriptor_pb2.Descriptor(media_type=image.target.media_type, digest=str(image.target.digest),
                                       size=image.target.size, annotations=dict(image.target.annotations))
    return pb.Image(name=image.name, labels=to_containerd_labels(image.labels), target=target,
                    created_at=timestamp(image.created_at), updated_at=timestamp(image.updated_at))


def adaptor(message: pb.Image) -> Adaptor:
    """The fields containerd's image filters name (its ``adaptImage``);
    ``annotations.*`` are the target's."""
    fields = {"name": message.name, "target.digest": message.target.digest,
              "target.mediatype": message.target.media_type}
    labels = labels_adaptor(fields, dict(message.labels))
    annotations = dict(message.target.annotations)

    def field(path: Sequence[str]) -> str | None:
        if path and path[0] == "annotations":
            return annotations.get(".".join(path[1:])) if len(path) > 1 else None
        return labels(path)

    return field


def _check_name(name: str) -> str:
    if not name:
        raise InvalidArgument("Image.Name required", hint="name the image, e.g. docker.io/library/busybox:latest")
    return name


def _labels(labels: Mapping[str, str]) -> dict[str, str]:
    # As containerd writes labels: an empty value is no label.
    return {to_hawser_key(k): v for k, v in labels.items() if v}


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageChange:
    """What an Update writes: a new target (None keeps it), labels (None keeps
    them) that replace the record's or, with ``merge``, set and remove keys."""

    target: Descriptor | None = None
    labels: dict[str, str] | None = None
    merge: bool = False


def image_update(paths: Sequence[str], image: pb.Image, current: Image) -> ImageChange:
    """The change an Update with field mask ``paths`` makes to ``current``, as
    containerd's metadata applies one: no paths replace labels and target
    (annotations included); ``labels`` and ``labels.<key>`` as on content;
    ``target`` the whole target; ``annotations`` the target's annotations,
    ``annotations.<key>`` one (an empty value removing it). InvalidArgument
    for any other path or a bad target."""
    if not paths:
        return ImageChange(target=to_descriptor(image.target), labels=_labels(image.labels))
    label_paths: list[str] = []
    target: Descriptor | None = None
    annotations: dict[str, str] | None = None
    for path in paths:
        if path == "labels" or path.startswith("labels."):
            label_paths.append(path)
        elif path == "target":
            target = to_descriptor(image.target)
        elif path == "annotations":
            annotations = {k: v for k, v in image.target.annotations.items() if v}
        elif path.startswith("annotations."):
            key = path[len("annotations."):]
            annotations = dict(current.target.annotations if annotations is None else annotations)
            if image.target.annotations.get(key):
                annotations[key] = image.target.annotations[key]
            else:
                annotations.pop(key, None)
        else:
            raise InvalidArgument(f"cannot update {path!r} field on image {image.name!r}",
                                  hint="use the field mask paths 'labels', 'labels.<key>', 'target' or 'annotations'")
    if annotations is not None:
        target = replace(target or current.target, annotations=annotations)
    if not label_paths:
        return ImageChange(target=target)
    labels, merge = label_update(label_paths, image.labels)
    return ImageChange(target=target, labels=labels, merge=merge)


class Images(images_pb2_grpc.ImagesServicer):
    def __init__(self, deps: ContainerdDeps) -> None:
        self._deps = deps

    @property
    def _images(self) -> ImageRecords:
        return self._deps.store.metadata.images

    async def _admit(self, name: str, target: Descriptor) -> None:
        """The signature policy (``registry.policy``), as a pull meets it: a
        client that pulls through Content (``ctr pull``) names its image here."""
        if self._deps.store.config.registry.policy:
            from hawser.images import enforce_on_record

            await self._deps.blocking(enforce_on_record, self._deps.store.config, name, target)

    def _collect(self) -> None:
        # The store's GC, as `hawser system prune` runs it: it spans every namespace.
        service = ImageService(self._deps.store)
        if self._deps.journal is not None:
            from hawser.events import image_observer

            service.observers.append(image_observer(self._deps.journal))  # the run, and what it removed
        report = service.prune()
        for error in report.errors:
            log.warning("garbage collection after an image's removal: %s", error)

    async def Get(self, request: pb.GetImageRequest, context: Context) -> pb.GetImageResponse:
        async def work() -> pb.GetImageResponse:
            namespace = namespace_of(context)
            image = await self._deps.lookup(self._images.get, request.name, namespace=namespace)
            return pb.GetImageResponse(image=to_message(image))

        return await serve(context, "Get", work())

    async def List(self, request: pb.ListImagesRequest, context: Context) -> pb.ListImagesResponse:
        async def work() -> pb.ListImagesResponse:
            namespace = namespace_of(context)
            wanted = parse_filters(list(request.filters))
            every = await self._deps.blocking(self._images.list, namespace=namespace)
            messages = (to_message(image) for image in every)
            return pb.ListImagesResponse(images=[m for m in messages if wanted.matches(adaptor(m))])

        return await serve(context, "List", work())

    async def Create(self, request: pb.CreateImageRequest, context: Context) -> pb.CreateImageResponse:
        async def work() -> pb.CreateImageResponse:
            namespace = namespace_of(context)
            name = _check_name(request.image.name)
            target = to_descriptor(request.image.target)
            await self._admit(name, target)
            made = await self._deps.blocking(self._images.create, name, target, _labels(request.image.labels),
                                             namespace=namespace)
            message = to_message(made)
            await record(self._deps, "image", "create", namespace=namespace, id_=message.target.digest, name=name,
                         labels=message.labels)
            return pb.CreateImageResponse(image=message)

        return await serve(context, "Create", work())

    async def Update(self, request: pb.UpdateImageRequest, context: Context) -> pb.UpdateImageResponse:
        async def work() -> pb.UpdateImageResponse:
            namespace = namespace_of(context)
            name = _check_name(request.image.name)
            current = await self._deps.blocking(self._images.get, name, namespace=namespace)
            change = image_update(list(request.update_mask.paths), request.image, current)
            if change.target is not None and change.target.digest != current.target.digest:
                await self._admit(name, change.target)
            # One transaction: two clients setting different labels keep each other's.
            updated = await self._deps.blocking(self._images.update, name, target=change.target,
                                                labels=change.labels, merge=change.merge, namespace=namespace)
            message = to_message(updated)
            await record(self._deps, "image", "update", namespace=namespace, id_=message.target.digest, name=name,
                         labels=message.labels)
            return pb.UpdateImageResponse(image=message)

        return await serve(context, "Update", work())

    async def Delete(self, request: pb.DeleteImageRequest, context: Context) -> empty_pb2.Empty:
        async def work() -> empty_pb2.Empty:
            namespace = namespace_of(context)
            # The record only: its blobs and snapshots go at GC once nothing else needs them.
            await self._deps.blocking(self._images.delete, request.name, namespace=namespace)
            await record(self._deps, "image", "remove", namespace=namespace, name=request.name)
            if request.sync:
                # What the image alone held goes before the answer, as with containerd's ScheduleAndWait.
                await self._deps.blocking(self._collect)
            return empty_pb2.Empty()

        return await serve(context, "Delete", work())


__all__ = ["ImageChange", "Images", "adaptor", "image_update", "to_descriptor", "to_message"]
