"""Image volumes: a stored image mounted read-only into a container (the
CRI's ``Mount.image`` and ``image_sub_path``, Kubernetes' ImageVolume).

For the n-th volume of a container, ``mount_image_volumes`` makes:

- a label on the container's own snapshot, ``hawser.io/gc.ref.snapshot.
  <snapshotter>/image-volume.<n>``, naming the view below.  The container's
  snapshot is a root for GC and ``system check`` while its record exists, so
  they keep the view and, through its parent chain, the image's layers, even
  once the image itself is removed: RemoveImage removes the name, as
  containerd's does, and the container keeps reading its volume.  When the
  container goes, nothing names the view any more, so a removal a crash cut
  short leaves nothing GC does not collect.  The label is set before the view
  exists, so no GC run can see the view unreferenced;
- a view snapshot ``image-volume-<container id>-<n>`` of the image's top
  layer (read-only by nature: overlay with lower dirs only, or a read-only
  bind of a single layer), as containerd's CRI plugin makes one per image
  volume;
- its mount at ``<bundle>/image-volumes/<n>`` (ro, nosuid, nodev, noexec),
  under the bundle, where ``system check`` knows a mount as the container's;
- the bind of ``sub_path`` inside it into the container: read-only,
  nosuid, nodev and noexec, as Kubernetes specifies image volumes and CRI-O
  mounts them.

``sub_path`` is resolved as containerd resolves it (Go's ``os.OpenInRoot``,
openat2's RESOLVE_BENEATH): symlinks are followed, but neither ``..`` nor a
symlink may leave the image, and an absolute symlink is refused (inside the
container it would name the container's root, not the volume's).  It must
exist and be a directory (a single file is a non-goal of the KEP; containerd
refuses it too).  The view is read-only and its layers immutable, so the path
resolved here is the one runc binds.

``release_image_volumes`` undoes all of it when the container is removed,
idempotently: what a killed create or removal left, or what a hawserd restart
lost track of, goes with the next removal (it reads the volumes from the
container's record).

Failures raise the usual kinds as ``ImageVolumeError``s, so that a front end
can say which mount failed (the CRI marks them ImageVolumeMountFailed, as
containerd and CRI-O do).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Sequence

from hawser._logging import get_logger
from hawser.errors import FailedPrecondition, HawserError, InvalidArgument, NotFound
from hawser.metadata import Container, snapshot_ref_label
from hawser.runtime._options import BindMount, ImageVolume, UserNamespace
from hawser.snapshots import Mount, mount_all, unmount_all

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from hawser.runtime._types import ImageResolver
    from hawser.snapshots import Snapshotter

log = get_logger(__name__)

VOLUMES_DIR = "image-volumes"  # under a container's bundle
# The flags of the view's mount and of the bind into the container.
VOLUME_FLAGS = ("nosuid", "nodev", "noexec")
# On a view snapshot: the container it was made for (for a person reading `snapshots ls`).
LABEL_CONTAINER = "hawser.io/image-volume.container"
_MAX_SYMLINKS = 40  # the kernel's MAXSYMLINKS


class ImageVolumeError(HawserError):
    """A container's image volume could not be mounted (a mix-in of the kinds below)."""


class ImageVolumeInvalid(ImageVolumeError, InvalidArgument):
    """A bad sub path: missing, not a directory, or leaving the image."""


class ImageVolumeNotFound(ImageVolumeError, NotFound):
    """The image is not in the store."""


class ImageVolumeUnusable(ImageVolumeError, FailedPrecondition):
    """The image cannot be mounted: not unpacked, or the mount failed."""


def view_key(container_id: str, index: int) -> str:
    """The key of the view snapshot of a container's ``index``-th image volume."""
    return f"image-volume-{container_id}-{index}"


def volume_dir(bundle: str, index: int) -> str:
    """Where the ``index``-th image volume of the container at ``bundle`` is mounted on the host."""
    return os.path.join(bundle, VOLUMES_DIR, str(index))


def mount_image_volumes(volumes: Sequence[ImageVolume], *, container_id: str, container_snapshot: str,
                        bundle: str, snapshotter: Snapshotter, images: ImageResolver,
                        undo: Callable[[Callable[[], object]], None],
                        userns: UserNamespace | None = None) -> tuple[BindMount, ...]:
    """Mount ``volumes`` for the container ``container_id`` (whose snapshot
    ``container_snapshot`` exists and whose bundle is ``bundle``); the binds
    its spec needs, in order.  Each step pushes its undo onto ``undo``.
    ``userns``: the container's user namespace, whose map the volumes' layers
    are idmapped with (an overlay cannot be idmapped once mounted).

    Raises ImageVolumeNotFound for an image not in the store,
    ImageVolumeInvalid for a bad sub path, ImageVolumeUnusable for an image
    that is not unpacked or a mount that fails."""
    binds: list[BindMount] = []
    for index, volume in enumerate(volumes):
        where = f"image volume at {volume.destination}"
        try:
            binds.append(_mount_one(index, volume, container_id=container_id,
                                    container_snapshot=container_snapshot, bundle=bundle,
                                    snapshotter=snapshotter, images=images, undo=undo, userns=userns))
        except ImageVolumeError:
            raise
        except NotFound as exc:
            raise ImageVolumeNotFound(f"{where}: {exc.message}", hint=exc.hint) from exc
        except InvalidArgument as exc:
            raise ImageVolumeInvalid(f"{where}: {exc.message}", hint=exc.hint) from exc
        except FailedPrecondition as exc:
            raise ImageVolumeUnusable(f"{where}: {exc.message}", hint=exc.hint) from exc
        except OSError as exc:
            raise ImageVolumeUnusable(f"{where}: cannot mount image {volume.image}: "
                                      f"{exc.strerror or exc}") from exc
    return tuple(binds)


def _mount_one(index: int, volume: ImageVolume, *, container_id: str, container_snapshot: str, bundle: str,
               snapshotter: Snapshotter, images: ImageResolver,
               undo: Callable[[Callable[[], object]], None], userns: UserNamespace | None) -> BindMount:
    image = images.runnable(volume.image)
    key = view_key(container_id, index)
    # The reference first (see the module docstring); the container's snapshot goes on an undo anyway.
    snapshotter.update_labels(container_snapshot, {snapshot_ref_label(snapshotter.name, f"image-volume.{index}"): key},
                              merge=True)
    mounts = snapshotter.view(key, image.top_snapshot, labels={LABEL_CONTAINER: container_id})
    undo(lambda: snapshotter.remove(key))
    target = volume_dir(bundle, index)
    os.makedirs(target, mode=0o700)
    undo(lambda: os.rmdir(target))
    flagged = [Mount(type=m.type, source=m.source, options=(*m.options, "ro", *VOLUME_FLAGS)) for m in mounts]
    if userns is None:
        mount_all(flagged, target)
    else:
        from hawser.runtime._userns import mount_rootfs

        mount_rootfs(flagged, target, userns, f"{target}.layers")
    undo(lambda: unmount_all(target, detach=True))
    source = resolve_beneath(target, volume.sub_path, image=image.name) if volume.sub_path else target
    return BindMount(source=source, destination=volume.destination, readonly=True, propagation="rprivate",
                     options=VOLUME_FLAGS, idmapped=userns is not None)


def resolve_beneath(root: str, sub_path: str, *, image: str) -> str:
    """The host path of the directory ``sub_path`` names inside ``root``.

    InvalidArgument when it is absolute, missing, not a directory, or leaves
    ``root`` (through ``..``, a symlink climbing out, or any absolute symlink)."""
    if sub_path.startswith("/"):
        raise InvalidArgument(f"sub path {sub_path!r} must be relative to the image's root")
    done: list[str] = []  # resolved components: directories, none a symlink
    todo = [c for c in sub_path.split("/") if c not in ("", ".")]
    todo.reverse()  # a stack: the next component last
    links = 0
    while todo:
        part = todo.pop()
        if part == "..":
            if not done:
                raise InvalidArgument(f"sub path {sub_path!r} leaves image {image}")
            done.pop()
            continue
        path = os.path.join(root, *done, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            raise InvalidArgument(f"sub path {sub_path!r} does not exist in image {image}") from None
        except OSError as exc:
            raise InvalidArgument(f"sub path {sub_path!r} in image {image}: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise InvalidArgument(f"sub path {sub_path!r} in image {image}: "
                                      f"{os.strerror(errno.ELOOP).lower()}")
            target = os.readlink(path)
            if target.startswith("/"):
                raise InvalidArgument(f"sub path {sub_path!r} leaves image {image}: "
                                      f"{'/'.join([*done, part])} is an absolute symlink (to {target})")
            todo.extend(reversed([c for c in target.split("/") if c not in ("", ".")]))
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"sub path {sub_path!r} in image {image} is not a directory",
                                  hint="an image volume mounts a directory")
        done.append(part)
    return os.path.join(root, *done)


def release_image_volumes(record: Container, bundle: str, snapshotter: Snapshotter) -> None:
    """Unmount and remove the image volumes of the container ``record`` (its
    bundle at ``bundle``): their mounts, directories and view snapshots.
    Idempotent; never raises for what is gone already, and only logs what it
    cannot remove (a view left behind is GC's once the container's record and
    snapshot are gone)."""
    volumes = record.config.get("image_volumes") or ()
    count = len(volumes) if isinstance(volumes, (list, tuple)) else 0
    top = os.path.join(bundle, VOLUMES_DIR)
    try:
        mounted = [name for name in os.listdir(top) if name.isdigit()]
    except OSError:
        mounted = []
    for index in sorted({*range(count), *(int(name) for name in mounted)}):
        target = volume_dir(bundle, index)
        if os.path.isdir(target):
            try:
                unmount_all(target, detach=True)
                os.rmdir(target)
            except OSError as exc:
                log.warning("image volume not unmounted", extra={"path": target, "error": str(exc)})
        try:
            snapshotter.remove(view_key(record.id, index))
        except NotFound:
            pass
        except HawserError as exc:
            log.warning("image volume snapshot not removed", extra={"key": view_key(record.id, index),
                                                                   "error": str(exc)})
    with contextlib.suppress(OSError):
        os.rmdir(top)


__all__ = ["LABEL_CONTAINER", "VOLUMES_DIR", "ImageVolumeError", "ImageVolumeInvalid", "ImageVolumeNotFound",
           "ImageVolumeUnusable", "mount_image_volumes", "release_image_volumes", "resolve_beneath", "view_key",
           "volume_dir"]
