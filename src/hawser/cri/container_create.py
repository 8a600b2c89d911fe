"""CreateContainer: "creates a new container in specified PodSandbox" (cri-api api.proto).

The pod must exist (NOT_FOUND) and be ready (FAILED_PRECONDITION); the image
must be in the store (NOT_FOUND: kubelet pulls first).  The container's name
is kubelet's and containerd's ``<name>_<pod>_<namespace>_<pod uid>_<attempt>``,
unique in the store: a second CreateContainer with the same metadata answers
ALREADY_EXISTS (containerd: "name is reserved"), so a retried request never
makes a twin.  Everything else is ``_container_options.plan_container``; on
any failure ContainerManager.create leaves nothing behind.

Image volumes (a Mount with ``image``: Kubernetes' ImageVolume) name images
kubelet has pulled; each is found as ImageStatus finds one (tag, digest
reference or ID), NOT_FOUND if it is not in the store, as containerd answers,
and the runtime mounts it (``runtime._image_volumes``).  Their failures carry
cri-api's ``ImageVolumeMountFailed`` in the message, as containerd's and
CRI-O's do.
"""

from __future__ import annotations

import os

from cri_api.v1 import api_pb2

from hawser._dataclass import replace
from hawser.cri._catalog import CatalogImage, ImageCatalog
from hawser.cri._container_options import CRI_IMAGE_REF, RealHostFiles, plan_container
from hawser.cri._containers import lookup, sandbox_id
from hawser.cri.types import CriDeps
from hawser.errors import FailedPrecondition, InvalidArgument, NotFound
from hawser.pods import Sandbox
from hawser.runtime import RUNNING, ContainerManager, ImageVolume, ImageVolumeError

# cri-api's errors.ErrImageVolumeMountFailed: what an image volume's failure says first.
IMAGE_VOLUME_MOUNT_FAILED = "ImageVolumeMountFailed"


async def create_container(deps: CriDeps,
                           request: api_pb2.CreateContainerRequest) -> api_pb2.CreateContainerResponse:
    if not request.pod_sandbox_id:
        raise InvalidArgument("CreateContainer: pod_sandbox_id is empty")
    if not request.HasField("config"):
        raise InvalidArgument("CreateContainer: config is missing")
    config = request.config
    if not config.HasField("metadata") or not config.metadata.name:
        raise InvalidArgument("CreateContainer: config.metadata.name is empty")
    if not config.image.image:
        raise InvalidArgument("CreateContainer: config.image.image is empty")
    manager = deps.require_containers()
    sandbox = await deps.blocking(deps.require_sandboxes().get, request.pod_sandbox_id)
    if not sandbox.ready:
        raise FailedPrecondition(f"pod sandbox {sandbox.id[:12]} is not ready",
                                 hint="a stopped pod takes no new containers; run a new pod sandbox")
    image = await deps.blocking(deps.catalog.find, config.image.image)
    if image is None:
        raise NotFound(f"image {config.image.image!r} not found", hint="pull it first (PullImage)")
    container_id = await deps.blocking(_create, manager, deps.catalog, sandbox, image, config)
    return api_pb2.CreateContainerResponse(container_id=container_id)


def _create(manager: ContainerManager, catalog: ImageCatalog, sandbox: Sandbox, image: CatalogImage,
            config: api_pb2.ContainerConfig) -> str:
    options = config.linux.security_context.namespace_options
    target_pid = _target_pid(manager, sandbox, options.target_id) if options.pid == api_pb2.TARGET else None
    plan = plan_container(config, sandbox, files=RealHostFiles(), target_pid=target_pid)
    wanted = plan.options
    if wanted.image_volumes:
        wanted = replace(wanted, image_volumes=tuple(_stored(catalog, v) for v in wanted.image_volumes))
    for directory in plan.host_dirs:
        # containerd and CRI-O create a missing host path of a mount as a directory.
        os.makedirs(directory, mode=0o755, exist_ok=True)
    extra = dict(plan.extra_config)
    extra[CRI_IMAGE_REF] = image.repo_digests[0] if image.repo_digests else image.id
    try:
        info = manager.create(image.names[0], wanted, name=plan.name, labels=plan.labels, log_path=plan.log_path,
                              cgroup_parent=plan.cgroup_parent or None, extra_config=extra)
    except ImageVolumeError as exc:
        raise type(exc)(f"{IMAGE_VOLUME_MOUNT_FAILED}: {exc.message}", hint=exc.hint) from exc
    return info.id


def _stored(catalog: ImageCatalog, volume: ImageVolume) -> ImageVolume:
    """The image volume with its image as the store names it."""
    found = catalog.find(volume.image)
    if found is None:
        raise NotFound(f"{IMAGE_VOLUME_MOUNT_FAILED}: image volume at {volume.destination}: image "
                       f"{volume.image!r} not found", hint="pull it first (PullImage)")
    return replace(volume, image=found.names[0])


def _target_pid(manager: ContainerManager, sandbox: Sandbox, target_id: str) -> int | None:
    """The pid whose namespace a TARGET container joins: a running container of the same pod."""
    if not target_id:
        return None
    try:
        target = lookup(manager, target_id)
    except NotFound:
        raise NotFound(f"target container {target_id} not found") from None
    if sandbox_id(target) != sandbox.id:
        raise InvalidArgument(f"target container {target_id} is in another pod sandbox")
    state = manager.status(target)
    if state.state != RUNNING or not state.pid:
        raise FailedPrecondition(f"target container {target_id} is not running ({state.state})")
    return state.pid
