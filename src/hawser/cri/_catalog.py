"""The CRI's view of the image store: images keyed by ID, found by name, digest or ID.

The store keeps *names* (``127.0.0.1:5000/app:v1``) pointing at a manifest or
an index.  The CRI, like containerd's CRI plugin, speaks of *images*: one per
image ID (the config digest), known by every tag (``repo_tags``) and every
``repo@digest`` (``repo_digests``) that points at it.  An ImageSpec may name an
image by tag, by digest reference, by full image ID or by a unique prefix of one.

Blocking (SQLite, content reads, directory walks): called from worker threads,
or, for ``images`` and ``find``, on hawserd's event loop (``CriDeps.lookup``: the
records through the loop's own connection, what they resolve to mostly cached).
The CLI shares the store, so nothing here is cached but what cannot change:
the parsed manifest and config behind a content digest, and the disk usage of
a committed snapshot.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

from hawser._dataclass import dataclass
from hawser.errors import InvalidArgument, NotFound
from hawser.oci import parse_reference
from hawser.snapshots import Kind, Usage

if TYPE_CHECKING:
    from hawser.images import ImageService
    from hawser.metadata import Image as ImageRecord

log = logging.getLogger(__name__)

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]+")
# Shortest image ID prefix accepted (the CLI's minimum too).
MIN_ID_PREFIX = 4


@dataclass(frozen=True, slots=True)
class _Resolved:
    """What a stored name's target resolves to on this host's platform."""

    config_digest: str
    manifest_digest: str
    size: int
    user: str
    chain_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CatalogImage:
    """One image as the CRI sees it."""

    id: str  # the config digest, "sha256:..."
    names: tuple[str, ...]  # the store's names pointing at it
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    size: int
    user: str
    manifest_digest: str
    chain_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FsUsage:
    mountpoint: str
    used_bytes: int
    inodes_used: int
    timestamp_ns: int


@dataclass(frozen=True, slots=True)
class FsInfo:
    images: FsUsage
    containers: FsUsage


class ImageCatalog:
    def __init__(self, images: ImageService) -> None:
        self._images = images
        self._lock = threading.Lock()
        self._resolved: dict[str, _Resolved] = {}
        self._snapshot_usage: dict[tuple[str, float], Usage] = {}

    # --- queries ----------------------------------------------------------------

    def images(self) -> list[CatalogImage]:
        """Every image of the store, sorted by ID."""
        records = self._images.images.list()
        groups: dict[str, list[tuple[ImageRecord, _Resolved]]] = defaultdict(list)
        seen: set[str] = set()
        for record in records:
            # A re-pull (of another platform of an index, say) rewrites the record: a new key.
            key = f"{record.target.digest}@{record.updated_at}"
            seen.add(key)
            resolved = self._resolve(record, key)
            if resolved is not None:
                groups[resolved.config_digest].append((record, resolved))
        with self._lock:
            for gone in set(self._resolved) - seen:
                del self._resolved[gone]
        return [_catalog_image(image_id, members) for image_id, members in sorted(groups.items())]

    def find(self, spec: str) -> CatalogImage | None:
        """The image ``spec`` names: a stored name, a reference (by tag or by
        digest), an image ID or a unique prefix of one.  None if there is none;
        InvalidArgument if ``spec`` is neither a reference nor an ID, or an
        ambiguous prefix."""
        if not spec:
            raise InvalidArgument("no image given: the image spec is empty")
        images = self.images()
        for image in images:
            if spec in image.names:
                return image
        hex_part = spec.removeprefix("sha256:")
        if _HEX64.fullmatch(hex_part):
            return next((i for i in images if i.id == f"sha256:{hex_part}"), None)
        parse_error: InvalidArgument | None = None
        try:
            ref = parse_reference(spec)
        except InvalidArgument as exc:
            parse_error = exc
        else:
            if ref.digest is not None:
                wanted = f"{ref.name}@{ref.digest}"
                found = next((i for i in images if wanted in i.repo_digests), None)
            else:
                wanted = f"{ref.name}:{ref.tag}"
                found = next((i for i in images if wanted in i.repo_tags), None)
            if found is not None:
                return found
        if len(hex_part) >= MIN_ID_PREFIX and _HEX.fullmatch(hex_part):
            matches = [i for i in images if i.id.removeprefix("sha256:").startswith(hex_part)]
            if len(matches) > 1:
                raise InvalidArgument(f"image ID prefix {spec!r} is ambiguous: {len(matches)} images match",
                                      hint="give more characters of the ID")
            if matches:
                return matches[0]
            return None
        if parse_error is not None:
            raise InvalidArgument(f"invalid image {spec!r}: not an image reference nor an image ID "
                                  f"({parse_error.message})") from None
        return None

    def config_json(self, image: CatalogImage) -> Any:
        """The image's OCI config, as JSON.  NotFound if its blob is gone."""
        from hawser.oci import Digest

        return json.loads(self._images.content.read_all(Digest(image.id)))

    # --- changes ----------------------------------------------------------------

    def remove(self, image: CatalogImage) -> list[str]:
        """Forget every name of ``image`` and collect what no longer has a name.

        A name removed meanwhile (by the CLI) is not an error.  Returns the names
        removed by this call."""
        removed = []
        for name in image.names:
            try:
                self._images.untag(name)
            except NotFound:
                continue
            removed.append(name)
        if removed:
            self._images.prune()
        return removed

    # --- usage -------------------------------------------------------------------

    def fs_info(self) -> FsInfo:
        """Disk used by images (content store and committed layers) and by
        containers' writable layers."""
        from hawser.snapshots import disk_usage

        store = self._images.store
        now = time.time_ns()
        content = disk_usage(os.path.join(store.config.root, "content"))
        image_bytes, image_inodes = content.size, content.inodes
        container_keys = {c.snapshot_key for c in store.metadata.containers.list()
                          if c.snapshotter == store.snapshotter.name}
        container_bytes = container_inodes = 0
        seen: set[tuple[str, float]] = set()
        for info in store.snapshotter.walk():
            if info.kind is Kind.COMMITTED:
                key = (info.key, info.created)
                seen.add(key)
                usage = self._committed_usage(key)
                if usage is not None:
                    image_bytes += usage.size
                    image_inodes += usage.inodes
            elif info.key in container_keys:
                try:
                    usage = store.snapshotter.usage(info.key)
                except NotFound:
                    continue
                container_bytes += usage.size
                container_inodes += usage.inodes
        with self._lock:
            for gone in set(self._snapshot_usage) - seen:
                del self._snapshot_usage[gone]
        snapshots_dir = os.path.join(store.config.root, "snapshots", store.snapshotter.name)
        return FsInfo(
            images=FsUsage(store.config.root, image_bytes, image_inodes, now),
            containers=FsUsage(snapshots_dir, container_bytes, container_inodes, now),
        )

    def _committed_usage(self, key: tuple[str, float]) -> Usage | None:
        # A committed snapshot never changes: measure it once.
        with self._lock:
            usage = self._snapshot_usage.get(key)
        if usage is None:
            try:
                usage = self._images.snapshotter.usage(key[0])
            except NotFound:
                return None
            with self._lock:
                self._snapshot_usage[key] = usage
        return usage

    # --- helpers -----------------------------------------------------------------

    def _resolve(self, record: ImageRecord, key: str) -> _Resolved | None:
        with self._lock:
            cached = self._resolved.get(key)
        if cached is not None:
            return cached
        try:
            detail = self._images.inspect(record.name)
        except (NotFound, InvalidArgument) as exc:
            # Content of a name whose pull is not finished, or was damaged: not an image yet.
            log.debug("image skipped", extra={"image": record.name, "error": str(exc)})
            return None
        resolved = _Resolved(
            config_digest=str(detail.config_digest), manifest_digest=str(detail.manifest_digest),
            size=detail.size, user=detail.config.user, chain_ids=tuple(str(c) for c in detail.chain_ids))
        with self._lock:
            self._resolved[key] = resolved
        return resolved


def _catalog_image(image_id: str, members: list[tuple[ImageRecord, _Resolved]]) -> CatalogImage:
    tags: list[str] = []
    digests: list[str] = []
    for record, _ in members:
        try:
            ref = parse_reference(record.name)
        except InvalidArgument:
            tags.append(record.name)  # a name an import gave; shown as it is
            continue
        if ref.digest is not None:
            digests.append(f"{ref.name}@{ref.digest}")
        else:
            tags.append(f"{ref.name}:{ref.tag}")
            digests.append(f"{ref.name}@{record.target.digest}")
    first = members[0][1]
    return CatalogImage(
        id=image_id, names=tuple(sorted(r.name for r, _ in members)),
        repo_tags=tuple(sorted(set(tags))), repo_digests=tuple(sorted(set(digests))),
        size=max(res.size for _, res in members), user=first.user, manifest_digest=first.manifest_digest,
        chain_ids=first.chain_ids)
