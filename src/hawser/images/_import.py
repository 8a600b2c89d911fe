"""Import an OCI image layout (a directory, or a tar of one) without any registry.

Blobs go through the same layer pipeline as a pull, so they are verified
against their digests and unpacked the same way.  A tar is indexed once
(member offsets) and each blob is then read straight from its offset, so
layers stream in parallel without extracting the archive.
"""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hawser.errors import DataLoss, InvalidArgument, NotFound
from hawser.images._labels import config_labels, index_labels, manifest_labels
from hawser.images._progress import ProgressSink, PullMessage
from hawser.images._unpack import LayerPipeline, store_small_blob
from hawser.oci import (
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Digest,
    Platform,
    media,
    parse_config,
    parse_descriptor,
    parse_index,
    parse_manifest,
    parse_reference,
)

if TYPE_CHECKING:
    from hawser.store import Store

REF_NAME = "org.opencontainers.image.ref.name"
CONTAINERD_NAME = "io.containerd.image.name"
CHUNK = 1 << 20


class LayoutSource:
    """Blobs of an OCI layout, from a directory or from an uncompressed tar."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._members: dict[str, tuple[int, int]] | None = None
        if os.path.isdir(path):
            if not os.path.exists(os.path.join(path, "index.json")):
                raise InvalidArgument(f"{path} is not an OCI image layout: no index.json")
        elif os.path.isfile(path):
            self._members = self._index_tar(path)
        else:
            raise NotFound(f"{path}: no such file or directory")

    @staticmethod
    def _index_tar(path: str) -> dict[str, tuple[int, int]]:
        members: dict[str, tuple[int, int]] = {}
        try:
            with tarfile.open(path, "r:") as tar:
                for m in tar:
                    if m.isreg():
                        members[os.path.normpath(m.name.lstrip("/"))] = (m.offset_data, m.size)
        except tarfile.ReadError as exc:
            raise InvalidArgument(f"{path} is not an uncompressed tar of an OCI layout: {exc}") from None
        if "index.json" not in members:
            raise InvalidArgument(f"{path} is not an OCI image layout: no index.json in the archive")
        return members

    def describe(self) -> str:
        return self._path

    @contextmanager
    def _open(self, name: str, offset: int = 0) -> Iterator[Iterable[bytes]]:
        if self._members is None:
            try:
                f = open(os.path.join(self._path, name), "rb")  # noqa: SIM115 - closed by the with below
            except FileNotFoundError:
                raise NotFound(f"{self._path}: {name} is missing") from None
            with f:
                f.seek(offset)
                yield iter(lambda: f.read(CHUNK), b"")
            return
        entry = self._members.get(name)
        if entry is None:
            raise NotFound(f"{self._path}: {name} is missing from the archive")
        start, size = entry
        with open(self._path, "rb") as f:
            f.seek(start + offset)
            remaining = max(size - offset, 0)

            def chunks() -> Iterator[bytes]:
                nonlocal remaining
                while remaining:
                    data = f.read(min(CHUNK, remaining))
                    if not data:
                        raise DataLoss(f"{self._path}: {name} is truncated")
                    remaining -= len(data)
                    yield data

            yield chunks()

    def read(self, name: str, limit: int) -> bytes:
        out = bytearray()
        with self._open(name) as chunks:
            for chunk in chunks:
                out += chunk
                if len(out) > limit:
                    raise InvalidArgument(f"{self._path}: {name} is over the {limit} byte limit")
        return bytes(out)

    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> Any:
        return self._open(f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}", offset)

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        data = self.read(f"blobs/{desc.digest.algorithm}/{desc.digest.encoded}", limit)
        if len(data) != desc.size or Digest.of(data, desc.digest.algorithm) != desc.digest:
            raise DataLoss(f"{self._path}: blob {desc.digest} does not match its digest or size")
        return data


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


def import_layout(store: Store, path: str, *, name: str | None, platform: Platform, progress: ProgressSink,
                  lease: str) -> list[tuple[str, Descriptor]]:
    source = LayoutSource(path)
    layout: dict[str, Any] = {}
    try:
        layout = json.loads(source.read("oci-layout", 4096))
    except (NotFound, ValueError):
        pass
    if layout and layout.get("imageLayoutVersion") != "1.0.0":
        raise InvalidArgument(f"{path}: unsupported imageLayoutVersion {layout.get('imageLayoutVersion')!r}")
    top = parse_index(source.read("index.json", MAX_MANIFEST_BYTES), media.OCI_INDEX)
    if not top.manifests:
        raise InvalidArgument(f"{path}: index.json lists no images")
    imported: list[tuple[str, Descriptor]] = []
    for root in top.manifests:
        image_name = _image_name(root, name, len(top.manifests), path)
        progress(PullMessage(f"importing {image_name} ({root.digest})"))
        _import_one(store, source, root, platform, progress, lease)
        imported.append((image_name, _bare(root)))
    return imported


def _bare(desc: Descriptor) -> Descriptor:
    """The descriptor an image record keeps: no layout-only annotations."""
    return Descriptor(media_type=desc.media_type, digest=desc.digest, size=desc.size)


def _import_one(store: Store, source: LayoutSource, root: Descriptor, platform: Platform,
                progress: ProgressSink, lease: str) -> None:
    from hawser.registry import select_platform

    root_data = source.read_blob(root, MAX_MANIFEST_BYTES)
    manifest_desc, manifest_data = root, root_data
    if root.media_type in media.INDEXES:
        manifest_desc = select_platform(parse_index(root_data, root.media_type), platform)
        manifest_data = source.read_blob(manifest_desc, MAX_MANIFEST_BYTES)
    elif root.media_type not in media.MANIFESTS:
        raise InvalidArgument(f"{source.describe()}: unsupported media type {root.media_type!r}")
    manifest = parse_manifest(manifest_data, manifest_desc.media_type)
    config_data = source.read_blob(manifest.config, MAX_CONFIG_BYTES)
    config = parse_config(config_data)
    pipeline = LayerPipeline(
        content=store.content, metadata=store.metadata, snapshotter=store.snapshotter, source=source, lease=lease,
        locks_dir=store.locks_dir, namespace=store.namespace,
        max_concurrent=store.config.registry.max_concurrent_downloads, progress=progress,
    )
    top_chain = pipeline.run(manifest, config)
    store_small_blob(store.content, store.metadata, lease, manifest.config, config_data,
                     config_labels(store.snapshotter.name, top_chain), store.namespace)
    store_small_blob(store.content, store.metadata, lease, manifest_desc, manifest_data, manifest_labels(manifest),
                     store.namespace)
    if manifest_desc is not root:
        store_small_blob(store.content, store.metadata, lease, _bare(root), root_data,
                         index_labels([manifest_desc]), store.namespace)


__all__ = ["LayoutSource", "import_layout", "parse_descriptor"]
