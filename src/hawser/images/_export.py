"""A container's filesystem as a tar (``hawser export``), and such a tar as a
one-layer image (``hawser import``), as docker and podman have them.

Export reads the container's snapshot as the container sees it: a native
snapshot is a plain directory, read in place; an overlay one is mounted
read-only (its upper directory as the top lower layer, so what the container
deleted stays deleted, and a running container keeps writing to its own
mount undisturbed) on a directory of the state's ``exports/``, unmounted
whatever happens.  The tar is the layer writer's (``_diff``): PAX, numeric
owners, xattrs, hardlinks as links, entries in path order.

Import gzips the tar into an unnamed spool file in the store's root while
hashing both streams (the blob's digest and the diff_id), writes a config
(this host's platform, the diff_id, a history entry) and an OCI manifest, and
stores and unpacks the layer through the same pipeline as ``load``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from hawser.errors import InvalidArgument, NotFound
from hawser.images._archive_save import open_output
from hawser.images._diff import DiffSource, write_layer
from hawser.images._import import ArchiveSource, ImagePlan, check_image, store_images
from hawser.images._tarindex import CHUNK
from hawser.oci import Descriptor, Digest, Platform, media, parse_config, parse_manifest, parse_reference
from hawser.snapshots import Mount, mount_all, unmount_all

if TYPE_CHECKING:
    from hawser.images._progress import ProgressSink
    from hawser.store import Store

_LAYER = "layer.tar.gz"


def export_snapshot(store: Store, key: str, output: str) -> None:
    """Write the filesystem of the active snapshot ``key`` (a container's) as a
    tar to ``output`` ("-": standard output, never a terminal). NotFound for an
    unknown snapshot; OSError when it cannot be mounted or read."""
    with _tree(store, store.snapshotter.mounts(key)) as root, open_output(output) as fd, \
            open(fd, "wb", buffering=CHUNK, closefd=False) as out:
        write_layer(out, DiffSource(upper=root), compression="none")


@contextmanager
def _tree(store: Store, mounts: list[Mount]) -> Iterator[str]:
    if len(mounts) == 1 and mounts[0].type == "bind":
        yield mounts[0].source
        return
    if len(mounts) != 1 or mounts[0].type != "overlay":
        raise InvalidArgument(f"cannot export a snapshot mounted as {[m.type for m in mounts]}")
    from hawser.host import overlay_mount_options

    options = dict(o.split("=", 1) for o in mounts[0].options if "=" in o)
    layers = [options["upperdir"], *options["lowerdir"].split(":")] if "upperdir" in options else \
        options["lowerdir"].split(":")
    view = Mount(type="overlay", source="overlay", options=(*overlay_mount_options(layers), "ro"))
    parent = os.path.join(store.config.state, "exports")
    os.makedirs(parent, exist_ok=True)
    target = tempfile.mkdtemp(prefix="export-", dir=parent)
    try:
        mount_all([view], target)
        try:
            yield target
        finally:
            unmount_all(target, detach=True)
    finally:
        os.rmdir(target)


class _Spool:
    """The ``Files`` of an import: one gzipped layer in an unnamed file."""

    def __init__(self, f: BinaryIO, what: str) -> None:
        self._f = f
        self._what = what

    def describe(self) -> str:
        return self._what

    def size_of(self, name: str) -> int:
        if name != _LAYER:
            raise NotFound(f"{self._what}: no {name}")
        return os.fstat(self._f.fileno()).st_size

    @contextmanager
    def open(self, name: str, offset: int = 0) -> Iterator[Iterable[bytes]]:
        size, fd = self.size_of(name), self._f.fileno()

        def chunks() -> Iterator[bytes]:
            pos = offset
            while pos < size:
                data = os.pread(fd, min(CHUNK, size - pos), pos)
                if not data:
                    return
                pos += len(data)
                yield data

        yield chunks()

    def read(self, name: str, limit: int) -> bytes:
        raise NotFound(f"{self._what}: no {name}")


def import_rootfs(store: Store, path: str, *, name: str | None, platform: Platform, progress: ProgressSink,
                  lease: str) -> list[tuple[str, Descriptor]]:
    """The tar at ``path`` ("-": standard input) as a one-layer image named
    ``name`` (default ``localhost/import:ID``); see the module docstring."""
    import hashlib

    from isal import isal_zlib

    ref = str(parse_reference(name)) if name else None
    src_fd = 0 if path == "-" else _open(path)
    what = "standard input" if path == "-" else path
    if path == "-" and os.isatty(0):
        raise InvalidArgument("no tar on standard input: it is a terminal", hint="give a FILE, or pipe one in")
    try:
        with tempfile.TemporaryFile(dir=store.config.root) as spool:
            diff, blob, size = hashlib.sha256(), hashlib.sha256(), 0
            gz = isal_zlib.compressobj(2, isal_zlib.DEFLATED, 31)  # gzip, no name, no time: reproducible
            # Whole chunks whatever the source hands out (a pipe: 64 KiB): the same tar makes the same blob.
            src = open(src_fd, "rb", buffering=CHUNK, closefd=False)  # noqa: SIM115 - closed with src_fd
            while data := src.read(CHUNK):
                if not size and len(data) >= 262 and data[257:262] != b"ustar":
                    raise InvalidArgument(f"{what} is not an uncompressed tar archive",
                                          hint="hawser import takes a tar of a filesystem, as hawser export writes")
                diff.update(data)
                size += len(data)
                out = gz.compress(data)
                blob.update(out)
                spool.write(out)
            if size == 0:
                raise InvalidArgument(f"{what} is empty")
            out = gz.flush()
            blob.update(out)
            spool.write(out)
            spool.flush()
            layer = Descriptor(media_type=media.OCI_LAYER_GZIP, digest=Digest.from_hasher(blob),
                               size=spool.tell())
            plan = _plan(ref, layer, Digest.from_hasher(diff), platform)
            source = ArchiveSource(_Spool(spool, what), {layer.digest: _LAYER})
            check_image(source, plan.manifest, plan.config)
            return store_images(store, source, [plan], progress=progress, lease=lease)
    finally:
        if src_fd:
            os.close(src_fd)


def _open(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"{path}: no such file or directory") from None


def _plan(ref: str | None, layer: Descriptor, diff_id: Digest, platform: Platform) -> ImagePlan:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    config_doc = {
        "created": now, "architecture": platform.architecture, "os": platform.os,
        **({"variant": platform.variant} if platform.variant else {}),
        "config": {}, "rootfs": {"type": "layers", "diff_ids": [str(diff_id)]},
        "history": [{"created": now, "created_by": "hawser import", "comment": "imported from a tarball"}],
    }
    config_data = json.dumps(config_doc, separators=(",", ":")).encode()
    config = Descriptor(media_type=media.OCI_CONFIG, digest=Digest.of(config_data), size=len(config_data))
    manifest_data = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST, "config": config.to_json(),
                                "layers": [layer.to_json()]}, separators=(",", ":")).encode()
    manifest = Descriptor(media_type=media.OCI_MANIFEST, digest=Digest.of(manifest_data), size=len(manifest_data))
    name = ref or f"localhost/import:{config.digest.encoded[:12]}"
    return ImagePlan(name=name, root=manifest, root_data=b"", manifest_desc=manifest, manifest_data=manifest_data,
                     manifest=parse_manifest(manifest_data, media.OCI_MANIFEST), config_data=config_data,
                     config=parse_config(config_data))


__all__ = ["export_snapshot", "import_rootfs"]
