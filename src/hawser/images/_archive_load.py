"""``hawser load``: images from an archive, in whichever format wrote it.

* An OCI image layout in a tar (``index.json``, ``blobs/ALG/HEX``): what
  ``hawser save``, ``podman save --format oci-archive``, ``skopeo copy ...
  oci-archive:`` and ``docker save`` since Docker 25 write.  Imported as
  ``hawser image import`` does (``_import``), digests unchanged.
* Docker's format (``manifest.json``: ``Config``, ``RepoTags``, ``Layers``):
  what ``docker save``, ``podman save`` (its default) and ``skopeo copy ...
  docker-archive:`` write.  The config is kept as it is (the image ID does
  not change) and each layer blob as it is: an uncompressed layer (the usual
  case) is stored under its diff_id, which it must hash to.  The archive has
  no manifest, so one is made: Docker's schema 2, as containers/image makes
  it for such an archive.

When an archive has both (Docker 25 writes both), the OCI layout is read: it
keeps the manifests' digests.  Either way a plan reads and checks everything
before anything is stored (see ``_import``), the layers go through the pull's
pipeline, and the caller records the names last, under its lease: a refused
archive leaves no image, and what it stored goes with the next collection.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from hawser.errors import DataLoss, InvalidArgument
from hawser.images._import import ArchiveSource, ImagePlan, check_image, plan_layout, store_images
from hawser.images._tarindex import Entry, TarIndex, open_archive
from hawser.oci import (
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Digest,
    Platform,
    media,
    parse_config,
    parse_manifest,
    parse_reference,
)

if TYPE_CHECKING:
    from hawser.images._progress import ProgressSink
    from hawser.store import Store

DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
MAX_IMAGES = 1000
# A blob named by its digest: Docker 25's "blobs/sha256/HEX", podman's "HEX.tar" and "HEX.json".
_NAMED = re.compile(r"^(?:blobs/sha256/)?([a-f0-9]{64})(?:\.tar|\.json)?$")


def load_archive(store: Store, path: str, *, name: str | None, platform: Platform, progress: ProgressSink,
                 lease: str) -> list[tuple[str, Descriptor]]:
    """Store and unpack the images of the archive at ``path`` ("-": standard
    input); the (name, record target) of each, for the caller to record."""
    with open_archive(path, spool_dir=store.config.root) as index:
        if index.get("index.json") is not None:
            source = ArchiveSource(index)
            plans = plan_layout(source, name=name, platform=platform)
        elif index.get("manifest.json") is not None:
            source, plans = plan_docker_archive(index, name=name)
        else:
            raise InvalidArgument(f"{index.what} is not an image archive: it has neither an index.json "
                                  "(an OCI layout) nor a manifest.json (docker's format)")
        return store_images(store, source, plans, progress=progress, lease=lease)


def plan_docker_archive(index: TarIndex, *, name: str | None) -> tuple[ArchiveSource, list[ImagePlan]]:
    """The images of an archive in docker's format, checked; the source of their blobs."""
    what = index.what
    try:
        entries = json.loads(index.read("manifest.json", MAX_MANIFEST_BYTES))
    except ValueError as exc:
        raise InvalidArgument(f"{what}: manifest.json is not JSON: {exc}") from None
    if not isinstance(entries, list) or not entries:
        raise InvalidArgument(f"{what}: manifest.json lists no images")
    if len(entries) > MAX_IMAGES:
        raise InvalidArgument(f"{what}: manifest.json lists {len(entries)} images (limit {MAX_IMAGES})")
    paths: dict[Digest, str] = {}
    source = ArchiveSource(index, paths)
    plans: list[ImagePlan] = []
    for i, entry in enumerate(entries):
        config_path, tags, layer_paths = _entry(entry, f"{what}: manifest.json entry {i}")
        config_path = _clean(config_path, what)
        config_data = index.read(config_path, MAX_CONFIG_BYTES)
        config_desc = Descriptor(media_type=media.DOCKER_CONFIG, digest=Digest.of(config_data), size=len(config_data))
        _check_name(config_path, config_desc.digest, what)
        config = parse_config(config_data)
        if len(layer_paths) != len(config.diff_ids):
            raise InvalidArgument(f"{what}: image {config_desc.digest} lists {len(layer_paths)} layers but its "
                                  f"config has {len(config.diff_ids)} diff_ids")
        layers = [_layer(index, p, diff_id, paths) for p, diff_id in zip(layer_paths, config.diff_ids, strict=True)]
        manifest_data = _schema2(config_desc, layers)
        manifest_desc = Descriptor(media_type=media.DOCKER_MANIFEST, digest=Digest.of(manifest_data),
                                   size=len(manifest_data))
        manifest = parse_manifest(manifest_data, media.DOCKER_MANIFEST)
        check_image(source, manifest, config)
        names = _names(tags, name, len(entries), what, config_desc.digest)
        plans += [ImagePlan(name=n, root=manifest_desc, root_data=b"", manifest_desc=manifest_desc,
                            manifest_data=manifest_data, manifest=manifest, config_data=config_data, config=config)
                  for n in names]
    return source, plans


def _entry(entry: Any, what: str) -> tuple[str, list[str], list[str]]:
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{what} is not an object")
    config, tags, layers = entry.get("Config"), entry.get("RepoTags") or [], entry.get("Layers")
    if not isinstance(config, str) or not config:
        raise InvalidArgument(f"{what} has no Config")
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise InvalidArgument(f"{what}: RepoTags must be a list of names")
    if not isinstance(layers, list) or not all(isinstance(p, str) and p for p in layers):
        raise InvalidArgument(f"{what}: Layers must be a list of paths")
    return config, tags, layers


def _clean(path: str, what: str) -> str:
    """A path manifest.json names, as the archive's index keeps names; InvalidArgument if it leaves the archive."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if path.startswith("/") or ".." in parts:
        raise InvalidArgument(f"{what}: manifest.json names {path!r}, a path outside the archive")
    return "/".join(parts)


def _check_name(path: str, digest: Digest, what: str) -> None:
    """A file named by its digest (podman's, Docker 25's) must have it."""
    match = _NAMED.match(path)
    if match and match.group(1) != digest.encoded:
        raise DataLoss(f"{what}: {path} does not match the digest in its name (it is {digest})",
                       hint="the archive is corrupt or was tampered with")


def _layer(index: TarIndex, path: str, diff_id: Digest, paths: dict[Digest, str]) -> Descriptor:
    """The descriptor of a layer file: its digest from its name when the name
    is a blob's, else its diff_id when it is an uncompressed tar (the file
    must hash to it), else (a compressed file under another name) its hash."""
    path = _clean(path, index.what)
    entry = index.file(path)
    compression = _sniff(index.head(entry, 4))
    if path.startswith("blobs/sha256/"):
        digest = Digest(f"sha256:{path.rsplit('/', 1)[1]}")
    elif compression == "none":
        digest = diff_id
    else:
        digest = _hash(index, entry)
    media_type = {"none": DOCKER_LAYER, "gzip": media.DOCKER_LAYER_GZIP, "zstd": media.OCI_LAYER_ZSTD}[compression]
    known = paths.setdefault(digest, path)
    if known != path and index.file(known).size != entry.size:
        raise DataLoss(f"{index.what}: {known} and {path} claim the same digest {digest} with different sizes")
    return Descriptor(media_type=media_type, digest=digest, size=entry.size)


def _sniff(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return "none"


def _hash(index: TarIndex, entry: Entry) -> Digest:
    import hashlib

    hasher = hashlib.sha256()
    for chunk in index.chunks(entry):
        hasher.update(chunk)
    return Digest.from_hasher(hasher)


def _schema2(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """A Docker schema 2 manifest, serialised as containers/image does (Go's field order, no spaces)."""
    def desc(d: Descriptor) -> dict[str, Any]:
        return {"mediaType": d.media_type, "size": d.size, "digest": str(d.digest)}

    return json.dumps({"schemaVersion": 2, "mediaType": media.DOCKER_MANIFEST, "config": desc(config),
                       "layers": [desc(d) for d in layers]}, separators=(",", ":")).encode()


def _names(tags: list[str], given: str | None, count: int, what: str, image: Digest) -> list[str]:
    if given:
        if count > 1:
            raise InvalidArgument(f"{what} holds {count} images; --name only fits an archive with one")
        return [str(parse_reference(given))]
    if not tags:
        raise InvalidArgument(f"{what}: image {image} has no name (RepoTags is empty)", hint="name it with --name REF")
    names = []
    for tag in tags:
        try:
            names.append(str(parse_reference(tag)))
        except InvalidArgument as exc:
            raise InvalidArgument(f"{what}: image {image} has an invalid name: {exc.message}") from None
    return list(dict.fromkeys(names))


__all__ = ["load_archive", "plan_docker_archive"]
