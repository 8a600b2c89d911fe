"""Pull: resolve a reference, choose the platform's manifest, fetch and unpack.

Order matters for crash safety.  A lease is taken first, so GC leaves alone
everything the pull writes while it runs.  Blobs are recorded after they are
on disk; the manifest (carrying GC references to config and layers) after the
layers; the image record last, once everything it points at exists.  Only
then is the lease dropped.

A pull measures itself as it goes (``PullMeter``, ``_meter.py``): bytes and
layers fetched, and the seconds of its stages, for the ``PullStats`` its
service tells its observers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from hawser._dataclass import dataclass
from hawser._failpoints import failpoint
from hawser.errors import InvalidArgument
from hawser.images._labels import config_labels, index_labels, manifest_labels
from hawser.images._meter import COMMIT, RESOLVE, PullMeter
from hawser.images._progress import ProgressSink, PullMessage
from hawser.images._unpack import LayerPipeline, store_small_blob
from hawser.oci import (
    Descriptor,
    Platform,
    Reference,
    media,
    parse_config,
    parse_index,
    parse_manifest,
)
from hawser.registry import RegistryClient, select_platform
from hawser.store import Store


@dataclass(frozen=True, slots=True)
class PullOptions:
    platform: Platform | None = None
    plain_http: bool = False
    policy: str = ""  # a signature policy file (images._policy); "": none


class RegistrySource:
    """A BlobSource reading one repository of a registry."""

    def __init__(self, client: RegistryClient, ref: Reference) -> None:
        self._client = client
        self._ref = ref

    def describe(self) -> str:
        return self._ref.name

    @contextmanager
    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> Iterator[Iterable[bytes]]:
        with self._client.fetch_blob(self._ref, desc, offset=offset) as stream:
            yield stream


def stored_whole(store: Store, ref: Reference, root: Descriptor, platform: Platform) -> int | None:
    """The number of layers of the image ``ref`` names in ``store`` if a pull of
    ``ref``, resolved to ``root`` just now, would find everything it writes in
    place already; None when anything differs or is missing (a moved tag, a
    removed snapshot, a lost blob, other GC labels): then the pull must run.

    In place means: the image record points at ``root``; the index (if any) is
    stored, ``platform``'s manifest chosen from it as a pull chooses and named
    by its GC labels; the manifest, its config and every layer stored and
    recorded, the manifest's and config's GC labels those a pull writes, and
    the top layer's snapshot committed.  Reads only (no lease, no write), as
    containerd's CRI leaves a present image's record as it is."""
    from hawser.errors import HawserError
    from hawser.images._chain import chain_ids
    from hawser.oci import MAX_CONFIG_BYTES, MAX_MANIFEST_BYTES
    from hawser.snapshots import Kind

    try:
        record = store.metadata.images.get(str(ref), namespace=store.namespace)
        target = record.target
        if (target.digest, target.media_type, target.size) != (root.digest, root.media_type, root.size):
            return None
        blobs, content, namespace = store.metadata.blobs, store.content, store.namespace
        if root.media_type in media.INDEXES:
            index_data = content.read_all(root.digest, limit=MAX_MANIFEST_BYTES)
            manifest_desc = select_platform(parse_index(index_data, root.media_type), platform)
            if not _labelled(blobs.get(str(root.digest), namespace=namespace).labels,
                             index_labels([manifest_desc])):
                return None
        elif root.media_type in media.MANIFESTS:
            manifest_desc = root
        else:
            return None
        manifest = parse_manifest(content.read_all(manifest_desc.digest, limit=MAX_MANIFEST_BYTES),
                                  manifest_desc.media_type)
        if not _labelled(blobs.get(str(manifest_desc.digest), namespace=namespace).labels,
                         manifest_labels(manifest)):
            return None
        if manifest.config.media_type not in media.CONFIGS:
            return None
        config = parse_config(content.read_all(manifest.config.digest, limit=MAX_CONFIG_BYTES))
        if len(config.diff_ids) != len(manifest.layers):
            return None
        top = chain_ids(config.diff_ids)[-1] if config.diff_ids else None
        if not _labelled(blobs.get(str(manifest.config.digest), namespace=namespace).labels,
                         config_labels(store.snapshotter.name, top)):
            return None
        for layer in manifest.layers:
            content.info(layer.digest)
            blobs.get(str(layer.digest), namespace=namespace)
        if top is not None and store.snapshotter.stat(str(top)).kind is not Kind.COMMITTED:
            return None
    except (HawserError, OSError):
        return None  # missing (NotFound), unreadable or corrupt (DataLoss): the pull sorts it out
    return len(manifest.layers)


def _labelled(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in wanted.items())


def pull_into(store: Store, client: RegistryClient, ref: Reference, options: PullOptions,
              progress: ProgressSink, lease: str) -> tuple[Descriptor, PullMeter]:
    """Fetch ``ref`` into the store under ``lease``; returns the image's root
    descriptor and what the pull measured, its ``commit`` stage still open:
    the caller's image record and lease release belong to it, until
    ``meter.stats()``."""
    meter = PullMeter()
    meter.begin(RESOLVE)
    resolved = client.resolve(ref)
    root = resolved.descriptor
    progress(PullMessage(f"resolved {ref} to {root.digest}"))
    if options.policy:
        from hawser.images._policy import enforce_policy

        # Before anything is fetched or stored: a refused image leaves nothing behind.
        enforce_policy(options.policy, client, ref, root)
    wanted = options.platform or Platform.host()
    index_desc: Descriptor | None = None
    index_data = b""
    if root.media_type in media.INDEXES:
        index_desc, index_data = root, resolved.data
        manifest_desc = select_platform(parse_index(index_data, root.media_type), wanted)
        manifest_data = client.fetch_manifest(ref, manifest_desc)
        progress(PullMessage(f"platform {wanted}: manifest {manifest_desc.digest}"))
    elif root.media_type in media.MANIFESTS:
        manifest_desc, manifest_data = root, resolved.data
    else:
        raise InvalidArgument(f"{ref}: unsupported manifest media type {root.media_type!r}")
    manifest = parse_manifest(manifest_data, manifest_desc.media_type)
    if manifest.config.media_type not in media.CONFIGS:
        raise InvalidArgument(f"{ref}: config media type {manifest.config.media_type!r} is not an image config",
                              hint="this is an artifact, not a container image")
    config_data = client.fetch_blob_bytes(ref, manifest.config)
    meter.add_bytes(len(index_data) + len(manifest_data) + len(config_data))
    meter.end(RESOLVE)
    config = parse_config(config_data)
    if index_desc is None and options.platform is not None and not options.platform.matches(config.platform):
        raise InvalidArgument(f"{ref} is for {config.platform}, not {options.platform}")
    failpoint("pull.after-manifest")

    pipeline = LayerPipeline(
        content=store.content, metadata=store.metadata, snapshotter=store.snapshotter,
        source=RegistrySource(client, ref), lease=lease, locks_dir=store.locks_dir, namespace=store.namespace,
        max_concurrent=store.config.registry.max_concurrent_downloads, progress=progress, meter=meter,
    )
    top = pipeline.run(manifest, config)
    failpoint("pull.after-layers")
    meter.begin(COMMIT)
    store_small_blob(store.content, store.metadata, lease, manifest.config, config_data,
                     config_labels(store.snapshotter.name, top), store.namespace)
    store_small_blob(store.content, store.metadata, lease, manifest_desc, manifest_data,
                     manifest_labels(manifest), store.namespace)
    if index_desc is not None:
        store_small_blob(store.content, store.metadata, lease, index_desc, index_data,
                         index_labels([manifest_desc]), store.namespace)
    return root, meter

