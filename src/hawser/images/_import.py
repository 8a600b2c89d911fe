"""Import images from an archive, without any registry: what ``hawser image
import`` (an OCI image layout, a directory or a tar of one) and ``hawser
load`` (any image archive, see ``_archive_load``) share.

Importing is two steps, so that a hostile or broken archive is refused before
anything is written.  A plan (``plan_layout`` here, ``plan_docker_archive``
for docker's format) reads and verifies every small document (index,
manifests, configs: each against its digest) and checks that every blob the
chosen manifests name is in the archive as a regular file of the size its
descriptor says.  ``store_images`` then sends each image's layers through the
same layer pipeline as a pull, so they are verified against their digests as
they are copied into the content store and unpacked the same way, and stores
the config, manifest and index with their GC labels.  Everything is written
under the caller's lease; the caller records the image names last.

A tar is indexed once (``_tarindex``: entry offsets) and each blob is read
straight from its offset, so layers stream in parallel without extracting
the archive.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from hawser._dataclass import dataclass
from hawser.errors import DataLoss, InvalidArgument, NotFound
from hawser.images._labels import config_labels, index_labels, manifest_labels
from hawser.images._progress import ProgressSink, PullMessage
from hawser.images._tarindex import open_archive
from hawser.images._unpack import LayerPipeline, layer_compression, store_small_blob
from hawser.oci import (
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Digest,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    media,
    parse_config,
    parse_index,
    parse_manifest,
    parse_reference,
)

if TYPE_CHECKING:
    from hawser.store import Store

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
CHUNK = 1 << 20


class Files(Protocol):
    """The files of an archive: a directory, or a tar's index (``_tarindex.TarIndex``)."""

    def describe(self) -> str:
        """The archive, for error messages."""

    def open(self, name: str, offset: int = 0) -> AbstractContextManager[Iterable[bytes]]:
        """The bytes of the regular file ``name`` from ``offset`` on, as chunks.
        NotFound if absent, InvalidArgument if a link or anything else."""

    def size_of(self, name: str) -> int:
        """The size of the regular file ``name``; NotFound, InvalidArgument as ``open``."""

    def read(self, name: str, limit: int) -> bytes:
        """The whole file; InvalidArgument over ``limit`` bytes."""


class DirFiles:
    """The files of an OCI layout directory. Links are not followed, as in an archive."""

    def __init__(self, path: str) -> None:
        self._path = path

    def describe(self) -> str:
        return self._path

    def _fd(self, name: str) -> int:
        full = os.path.join(self._path, name)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except FileNotFoundError:
            raise NotFound(f"{self._path}: {name} is missing") from None
        except OSError as exc:
            if os.path.islink(full):
                raise InvalidArgument(f"{self._path}: {name} is a symlink, not a file",
                                      hint="an image layout holds its blobs as regular files") from None
            raise InvalidArgument(f"{self._path}: cannot open {name}: {exc.strerror}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise InvalidArgument(f"{self._path}: {name} is not a regular file")
        return fd

    def size_of(self, name: str) -> int:
        fd = self._fd(name)
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    @contextmanager
    def open(self, name: str, offset: int = 0) -> Iterator[Iterable[bytes]]:
        with open(self._fd(name), "rb") as f:
            f.seek(offset)
            yield iter(lambda: f.read(CHUNK), b"")

    def read(self, name: str, limit: int) -> bytes:
        with open(self._fd(name), "rb") as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise InvalidArgument(f"{self._path}: {name} is over the {limit} byte limit")
        return data


def layout_path(digest: Digest) -> str:
    """Where an OCI image layout keeps a blob."""
    return f"blobs/{digest.algorithm}/{digest.encoded}"


class ArchiveSource:
    """The blobs of an archive (a ``BlobSource`` for the layer pipeline): in an
    OCI layout's ``blobs/ALG/HEX``, or where ``paths`` says (docker's format)."""

    def __init__(self, files: Files, paths: Mapping[Digest, str] | None = None) -> None:
        self.files = files
        self._paths = paths

    def describe(self) -> str:
        return self.files.describe()

    def path(self, digest: Digest) -> str:
        if self._paths is None:
            return layout_path(digest)
        try:
            return self._paths[digest]
        except KeyError:
            raise NotFound(f"{self.describe()}: blob {digest} is missing from the archive") from None

    def has_blob(self, desc: Descriptor) -> bool:
        try:
            self.files.size_of(self.path(desc.digest))
            return True
        except NotFound:
            return False

    def check_blob(self, desc: Descriptor) -> None:
        """The blob is in the archive, a regular file of the descriptor's size
        (NotFound, InvalidArgument, DataLoss); its digest is checked as it is copied."""
        name = self.path(desc.digest)
        try:
            size = self.files.size_of(name)
        except NotFound:
            raise NotFound(f"{self.describe()}: blob {desc.digest} is missing from the archive",
                           hint="the archive is incomplete: save or copy it again") from None
        if size != desc.size:
            raise DataLoss(f"{self.describe()}: blob {desc.digest} is {size} bytes, but its descriptor says "
                           f"{desc.size}", hint="the archive is corrupt or was tampered with")

    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> AbstractContextManager[Iterable[bytes]]:
        return self.files.open(self.path(desc.digest), offset)

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        try:
            data = self.files.read(self.path(desc.digest), limit)
        except NotFound:
            raise NotFound(f"{self.describe()}: blob {desc.digest} is missing from the archive",
                           hint="the archive is incomplete: save or copy it again") from None
        if len(data) != desc.size or Digest.of(data, desc.digest.algorithm) != desc.digest:
            raise DataLoss(f"{self.describe()}: blob {desc.digest} does not match its digest or size",
                           hint="the archive is corrupt or was tampered with")
        return data


@dataclass(frozen=True, slots=True)
class ImagePlan:
    """One image to import, its small documents read and verified: ``root`` is
    what its record points at (``root_data`` its bytes when it is an index, and
    then ``manifest_desc`` the chosen child; else ``root`` is the manifest)."""

    name: str
    root: Descriptor
    root_data: bytes
    manifest_desc: Descriptor
    manifest_data: bytes
    manifest: Manifest
    config_data: bytes
    config: ImageConfig


def check_image(source: ArchiveSource, manifest: Manifest, config: ImageConfig) -> None:
    """Before anything is written: the layers are layers, as many as the config's
    diff_ids, and each is in the archive with its size."""
    if len(manifest.layers) != len(config.diff_ids):
        raise InvalidArgument(f"{source.describe()}: an image has {len(manifest.layers)} layers but its config "
                              f"lists {len(config.diff_ids)} diff_ids")
    for desc in manifest.layers:
        layer_compression(desc)
        source.check_blob(desc)


def _image_name(desc: Descriptor, given: str | None, count: int, path: str) -> str:
    if given:
        if count > 1:
            raise InvalidArgument(f"{path} holds {count} images; --name only fits an archive with one")
        return str(parse_reference(given))
    full = desc.annotations.get(CONTAINERD_NAME) or desc.annotations.get(REF_NAME, "")
    if full and ("/" in full or ":" in full or "@" in full):
        return str(parse_reference(full))
    raise InvalidArgument(f"{path}: image {desc.digest} has no full reference name in its annotations",
                          hint="name it with --name REF")


def plan_layout(source: ArchiveSource, *, name: str | None, platform: Platform) -> list[ImagePlan]:
    """The images of an OCI image layout (every entry of its index.json); see the module docstring."""
    path = source.describe()
    layout: dict[str, Any] = {}
    try:
        layout = json.loads(source.files.read("oci-layout", 4096))
    except (NotFound, ValueError):
        pass
    if not isinstance(layout, dict) or (layout and layout.get("imageLayoutVersion") != "1.0.0"):
        version = layout.get("imageLayoutVersion") if isinstance(layout, dict) else layout
        raise InvalidArgument(f"{path}: unsupported imageLayoutVersion {version!r}")
    try:
        top = parse_index(source.files.read("index.json", MAX_MANIFEST_BYTES), media.OCI_INDEX)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: index.json: {exc.message}") from None
    if not top.manifests:
        raise InvalidArgument(f"{path}: index.json lists no images")
    plans = []
    for root in top.manifests:
        image_name = _image_name(root, name, len(top.manifests), path)
        plans.append(_plan_root(source, image_name, root, platform))
    return plans


def _plan_root(source: ArchiveSource, name: str, root: Descriptor, platform: Platform) -> ImagePlan:
    from hawser.registry import select_platform

    root_data = source.read_blob(root, MAX_MANIFEST_BYTES)
    manifest_desc, manifest_data = root, root_data
    if root.media_type in media.INDEXES:
        index = parse_index(root_data, root.media_type)
        # Only the platforms the archive holds (``save`` writes an index with the children stored).
        present = tuple(d for d in index.manifests if source.has_blob(d))
        manifest_desc = select_platform(Index(index.media_type, present), platform)
        manifest_data = source.read_blob(manifest_desc, MAX_MANIFEST_BYTES)
    elif root.media_type in media.MANIFESTS:
        root_data = b""
    else:
        raise InvalidArgument(f"{source.describe()}: unsupported media type {root.media_type!r}")
    manifest = parse_manifest(manifest_data, manifest_desc.media_type)
    config_data = source.read_blob(manifest.config, MAX_CONFIG_BYTES)
    config = parse_config(config_data)
    check_image(source, manifest, config)
    return ImagePlan(name=name, root=_bare(root), root_data=root_data, manifest_desc=_bare(manifest_desc),
                     manifest_data=manifest_data, manifest=manifest, config_data=config_data, config=config)


def _bare(desc: Descriptor) -> Descriptor:
    """The descriptor an image record keeps: no layout-only annotations."""
    return Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size)


def store_images(store: Store, source: ArchiveSource, plans: Sequence[ImagePlan], *, progress: ProgressSink,
                 lease: str) -> list[tuple[str, Descriptor]]:
    """Copy the planned images into the store (verified), unpack them, store
    their documents; the (name, record target) of each, for the caller to record."""
    done: set[Digest] = set()
    for plan in plans:
        progress(PullMessage(f"importing {plan.name} ({plan.root.digest})"))
        if plan.manifest_desc.digest not in done:
            _store_one(store, source, plan, progress, lease)
            done.add(plan.manifest_desc.digest)
    return [(plan.name, plan.root) for plan in plans]


def _store_one(store: Store, source: ArchiveSource, plan: ImagePlan, progress: ProgressSink, lease: str) -> None:
    pipeline = LayerPipeline(
        content=store.content, metadata=store.metadata, snapshotter=store.snapshotter, source=source, lease=lease,
        locks_dir=store.locks_dir, namespace=store.namespace,
        max_concurrent=store.config.registry.max_concurrent_downloads, progress=progress,
    )
    try:
        top_chain = pipeline.run(plan.manifest, plan.config)
    except DataLoss as exc:  # a blob that does not hash to its digest: the archive's fault, not a download's
        raise DataLoss(f"{source.describe()}: {exc.message}", hint="the archive is corrupt or was tampered with") from None
    documents = [(plan.manifest.config, plan.config_data, config_labels(store.snapshotter.name, top_chain)),
                 (plan.manifest_desc, plan.manifest_data, manifest_labels(plan.manifest))]
    if plan.root_data:
        documents.append((plan.root, plan.root_data, index_labels([plan.manifest_desc])))
    for desc, data, labels in documents:
        store_small_blob(store.content, store.metadata, lease, desc, data, labels, store.namespace)


@contextmanager
def open_layout(path: str, *, spool_dir: str) -> Iterator[ArchiveSource]:
    """An OCI image layout: a directory, or a tar of one (compressed or not)."""
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, "index.json")):
            raise InvalidArgument(f"{path} is not an OCI image layout: no index.json")
        yield ArchiveSource(DirFiles(path))
        return
    with open_archive(path, spool_dir=spool_dir) as index:
        if index.get("index.json") is None:
            raise InvalidArgument(f"{path} is not an OCI image layout: no index.json in the archive",
                                  hint="`hawser load` reads docker's archives too")
        yield ArchiveSource(index)


def import_layout(store: Store, path: str, *, name: str | None, platform: Platform, progress: ProgressSink,
                  lease: str) -> list[tuple[str, Descriptor]]:
    with open_layout(path, spool_dir=store.config.root) as source:
        plans = plan_layout(source, name=name, platform=platform)
        return store_images(store, source, plans, progress=progress, lease=lease)


__all__ = ["ArchiveSource", "DirFiles", "Files", "ImagePlan", "check_image", "import_layout", "layout_path",
           "open_layout", "plan_layout", "store_images"]
