"""A container in a user namespace of its pod's: its rootfs and bind mounts
made idmapped, so the image's and the volumes' files keep the owners they
have on disk as the container sees them, without chowned copies.

* The rootfs: an overlay is mounted over idmapped clones of its lower
  layers (overlayfs itself cannot be idmapped); the clones are detached once
  the overlay holds them.  The container's own upper dir is not idmapped
  (overlayfs needs to write its work dir as the mounter); its root is owned
  by the container's root, and what the container writes there is stored
  under the host ids it runs as, as containerd does.  A rootfs that is a bind
  mount (a snapshot with no parent, the native snapshotter) is idmapped
  whole.
* Bind mounts (volumes, the pod's files): each source gets an idmapped copy
  under the bundle, which runc binds in; a bind of an idmapped mount keeps
  its map.  A file the container's root creates in a volume is owned by
  uid 0 on disk, as it would be without a user namespace.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Sequence

from hawser._dataclass import replace
from hawser.errors import FailedPrecondition, InvalidArgument
from hawser.host import detach, idmapped_mount
from hawser.runtime._options import BindMount, ContainerOptions, UserNamespace, map_id
from hawser.snapshots import Mount, mount_all


def mount_rootfs(mounts: Sequence[Mount], rootfs: str, userns: UserNamespace, scratch: str) -> None:
    """Mount a snapshot's ``mounts`` on ``rootfs`` through ``userns``'s id map.
    ``scratch`` (made and removed here) holds the layer clones meanwhile.
    OSError from the kernel; nothing is left mounted then."""
    if len(mounts) != 1 or mounts[0].type not in ("overlay", "bind"):
        raise InvalidArgument(f"cannot idmap a rootfs of mounts {[m.type for m in mounts]}")
    mount = mounts[0]
    if mount.type == "bind":
        idmapped_mount(mount.source, rootfs, userns.path, readonly="ro" in mount.options)
        return
    os.makedirs(scratch, mode=0o700, exist_ok=True)
    clones: list[str] = []
    try:
        options: list[str] = []
        for option in mount.options:
            key, _, value = option.partition("=")
            if key == "lowerdir":
                lowers = []
                for layer in value.split(":"):
                    clone = os.path.join(scratch, str(len(clones)))
                    idmapped_mount(layer, clone, userns.path, recursive=False)
                    clones.append(clone)
                    lowers.append(clone)
                option = "lowerdir=" + ":".join(lowers)
            elif key == "upperdir":
                _own_root(value, userns)
            options.append(option)
        mount_all([replace(mount, options=tuple(options))], rootfs)
    finally:
        # rmdir, never rmtree: a clone that failed to detach is a live image layer.
        for path in (*clones, scratch):
            with contextlib.suppress(OSError):
                detach(path)
                os.rmdir(path)


def prepare_bundle(bundle: str, userns: UserNamespace) -> None:
    """Let the container's root reach its rootfs: runc mounts it from inside
    the user namespace, where host root's 0700 directories are closed to it.
    The bundle stays 0700 but becomes the mapped root's (as containerd
    does); every directory above it must let others search it.
    FailedPrecondition naming the first that does not."""
    uid, gid = map_id(userns.uid_map, 0), map_id(userns.gid_map, 0)
    if uid is None or gid is None:
        raise InvalidArgument("a user namespace without container id 0 in its maps cannot run containers")
    parent = os.path.dirname(os.path.abspath(bundle))
    while True:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            raise FailedPrecondition(f"{parent} is closed to other users (no o+x): a container in a user "
                                     "namespace could not reach its rootfs under it",
                                     hint=f"chmod o+x {parent}, or run with a state directory others may search")
        if parent == "/":
            break
        parent = os.path.dirname(parent)
    os.chown(bundle, uid, gid)


def _own_root(upper: str, userns: UserNamespace) -> None:
    """Give the container's root the root of its upper dir (a new snapshot's
    is root's), so it can create files in / as it could without a user
    namespace.  An upper dir already given (a restart) is left alone."""
    uid, gid = map_id(userns.uid_map, 0), map_id(userns.gid_map, 0)
    st = os.stat(upper)
    if uid is not None and gid is not None and (st.st_uid, st.st_gid) == (0, 0):
        os.chown(upper, uid, gid)


def idmap_binds(options: ContainerOptions, directory: str) -> ContainerOptions:
    """``options`` with each bind mount's source replaced by an idmapped copy
    of it under ``directory`` (one per mount, numbered).  InvalidArgument for
    a mount that asks for propagation (a copy is cut off from the host's
    peer group, so nothing would propagate); OSError from the kernel (a
    filesystem that cannot be idmapped).  ``unmount_binds`` undoes it."""
    assert options.userns is not None
    binds: list[BindMount] = []
    for index, bind in enumerate(options.mounts):
        if bind.idmapped:
            binds.append(bind)
            continue
        if bind.propagation not in ("rprivate", "private"):
            raise InvalidArgument(f"mount {bind.destination}: {bind.propagation} propagation is not supported "
                                  "in a pod with its own user namespace (its volumes are idmapped copies)",
                                  hint="use private propagation, or hostUsers: true")
        os.makedirs(directory, mode=0o711, exist_ok=True)  # runc binds from it inside the user namespace
        copy = os.path.join(directory, str(index))
        idmapped_mount(bind.source, copy, options.userns.path)
        binds.append(replace(bind, source=copy))
    return replace(options, mounts=tuple(binds))


def unmount_binds(directory: str) -> None:
    """Detach and remove the idmapped copies ``idmap_binds`` made; idempotent."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return
    for name in names:
        path = os.path.join(directory, name)
        detach(path)
        with contextlib.suppress(FileNotFoundError):
            if os.path.isdir(path) and not os.path.islink(path):
                os.rmdir(path)
            else:
                os.unlink(path)
    with contextlib.suppress(FileNotFoundError):
        os.rmdir(directory)
