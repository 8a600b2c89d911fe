"""Push: an image of the store to a registry, as the distribution spec has it.

1. The plan, from the store alone: the image's manifests (an index and its
   children, or one manifest), children before parents, and every blob they
   name (configs and layers), each checked to be in the store before a byte
   is sent.  ``platform`` pushes one manifest of an index (a new image
   without the index); an index with children the store lacks (a pull keeps
   only its platform's) is refused with that hint.
2. Blobs, several at once, biggest first: each one the repository lacks
   (HEAD) is mounted from another repository of the same registry known to
   hold it, else uploaded (``RegistryClient.push_blob``: monolithic or
   chunked, resumed after a drop).
3. Manifests, children before parents, each one the repository lacks
   (HEAD); the root last, under the destination's tag (which is thus moved
   last of all), or by digest.

Where a blob may be mounted from: containerd's ``distribution.source``
labels on its record (written by containerd's clients, and by this push for
the destination afterwards), and the repositories of the image's own name
and of every image naming the same target (a pull records an image under the
reference it came from), when on the destination's registry.

A lease holds every blob of the image for the length of the push, so a
``rmi`` and GC meanwhile cannot take them away.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait

from hawser._dataclass import dataclass
from hawser.errors import FailedPrecondition, HawserError, InvalidArgument, NotFound
from hawser.images._progress import LayerProgress, ProgressSink, PullMessage, Stage
from hawser.metadata import RESOURCE_CONTENT
from hawser.oci import (
    MAX_MANIFEST_BYTES,
    Descriptor,
    Digest,
    Platform,
    Reference,
    media,
    parse_index,
    parse_manifest,
    parse_reference,
)
from hawser.registry import BlobPushed, RegistryClient, UploadOptions
from hawser.store import Store

_log = logging.getLogger("hawser.images")

# containerd's label on a blob's record: the repositories of a registry that hold it
# (``containerd.io/distribution.source.<registry>=<repo>,<repo>``).
LABEL_DISTRIBUTION_SOURCE = "containerd.io/distribution.source."
PUSH = "push"  # the ImageEvent action
# Blobs sent at once (containerd pushes 3 at a time, containers/image 6).
DEFAULT_WORKERS = 4
_MAX_SOURCES = 3  # mount attempts per blob: each costs a request when it fails
_MAX_LABEL = 4000  # bytes of one distribution.source label kept (the metadata's limit is 4096)
_NON_DISTRIBUTABLE = frozenset({
    media.DOCKER_LAYER_FOREIGN_GZIP, media.OCI_LAYER_NONDIST, media.OCI_LAYER_NONDIST_GZIP,
    media.OCI_LAYER_NONDIST_ZSTD,
})


@dataclass(frozen=True, slots=True, kw_only=True)
class PushOptions:
    """``platform``: push that manifest of an index alone.  ``upload``: how
    blobs are sent (chunk size).  ``workers``: blobs sent at once."""

    platform: Platform | None = None
    upload: UploadOptions | None = None
    workers: int = DEFAULT_WORKERS


@dataclass(frozen=True, slots=True, kw_only=True)
class PushResult:
    """What a push did: the image pushed (``name``), where (``reference``:
    the destination with its tag), the root descriptor there, each blob's
    outcome, and how many manifests were put (``manifests_pushed``) or were
    there already (``manifests_present``)."""

    name: str
    reference: str
    descriptor: Descriptor
    blobs: tuple[BlobPushed, ...]
    manifests_pushed: int
    manifests_present: int
    seconds: float

    def count(self, how: str) -> int:
        """Blobs whose outcome was ``how`` ("exists", "mounted", "uploaded")."""
        return sum(1 for b in self.blobs if b.how == how)

    @property
    def bytes_sent(self) -> int:
        return sum(b.sent for b in self.blobs)

    @property
    def resumes(self) -> int:
        return sum(b.resumes for b in self.blobs)

    def summary(self) -> str:
        """One line for people: what went up and what was there already."""
        blobs = (f"blobs: {self.count('uploaded')} uploaded ({_size(self.bytes_sent)}), {self.count('mounted')} "
                 f"mounted, {self.count('exists')} present")
        if self.resumes:
            blobs += f", {self.resumes} uploads resumed"
        manifests = f"manifests: {self.manifests_pushed} pushed, {self.manifests_present} present"
        return f"{self.reference}: {self.descriptor.digest} ({blobs}; {manifests}; {self.seconds:.2f}s)"

    def to_json(self) -> dict[str, object]:
        return {
            "Name": self.name, "Reference": self.reference, "Digest": str(self.descriptor.digest),
            "MediaType": self.descriptor.media_type, "Size": self.descriptor.size,
            "Blobs": [{"Digest": str(b.digest), "Size": b.size, "How": b.how, "MountedFrom": b.mounted_from,
                       "Sent": b.sent, "Chunks": b.chunks, "Resumes": b.resumes, "Restarts": b.restarts}
                      for b in self.blobs],
            "ManifestsPushed": self.manifests_pushed, "ManifestsPresent": self.manifests_present,
            "Seconds": round(self.seconds, 3),
        }


@dataclass(frozen=True, slots=True)
class _Plan:
    root: Descriptor
    manifests: tuple[tuple[Descriptor, bytes], ...]  # children first, the root last
    blobs: tuple[Descriptor, ...]


class _Aborted(Exception):
    """Another blob failed; this one stops early."""


def destination_of(name: str, destination: str | None) -> Reference:
    """The reference to push image ``name`` to: ``destination`` if given,
    else the image's own name.  InvalidArgument when that is not a registry
    reference."""
    text = destination or name
    try:
        return parse_reference(text)
    except InvalidArgument as exc:
        if destination:
            raise
        raise InvalidArgument(f"image name {name!r} is not a registry reference: {exc.message}",
                              hint="give a destination: hawser push IMAGE REGISTRY/REPOSITORY[:TAG]") from None


def push_image(store: Store, client: RegistryClient, name: str, dest: Reference, options: PushOptions,
               progress: ProgressSink) -> PushResult:
    """Push the stored image ``name`` to ``dest`` (see the module's docstring).

    Raises NotFound (no such image), FailedPrecondition (a manifest or blob
    of it missing from the store), InvalidArgument (a digest destination that
    is not the image's), and what ``RegistryClient.push_blob`` and
    ``push_manifest`` raise."""
    started = time.monotonic()
    record = store.metadata.images.get(name, namespace=store.namespace)
    with store.lease() as lease:
        plan = _plan(store, name, record.target, options.platform, lease)
        if dest.digest is not None and dest.digest != plan.root.digest:
            raise InvalidArgument(f"destination {dest} names digest {dest.digest}, but image {name} is "
                                  f"{plan.root.digest}", hint="push by tag, or name the image's own digest")
        progress(PullMessage(f"pushing {name} ({plan.root.digest}) to {dest}"))
        sources = _image_sources(store, name, record.target.digest, dest)
        blobs = _push_blobs(store, client, dest, plan.blobs, sources, options, progress)
        pushed, present = _push_manifests(client, dest, plan, progress)
    _remember(store, dest, [b.digest for b in blobs] + [d.digest for d, _ in plan.manifests])
    result = PushResult(name=name, reference=str(Reference(dest.domain, dest.path, dest.tag)) if dest.tag
                        else f"{dest.name}@{plan.root.digest}", descriptor=plan.root, blobs=tuple(blobs),
                        manifests_pushed=pushed, manifests_present=present, seconds=time.monotonic() - started)
    return result


# --- the plan -----------------------------------------------------------------


def _plan(store: Store, name: str, target: Descriptor, platform: Platform | None, lease: str) -> _Plan:
    """Every manifest (children first) and blob to push, all checked to be in the store."""
    leases = store.metadata.leases
    manifests: list[tuple[Descriptor, bytes]] = []
    blobs: dict[Digest, Descriptor] = {}
    seen: set[Digest] = set()

    def read(desc: Descriptor, what: str) -> bytes:
        leases.add_resource(lease, RESOURCE_CONTENT, str(desc.digest))
        try:
            return store.content.read_all(desc.digest, limit=MAX_MANIFEST_BYTES)
        except NotFound:
            raise FailedPrecondition(f"image {name}: its {what} {desc.digest} is not in the store",
                                     hint="pull the image again") from None

    def visit(desc: Descriptor, what: str) -> None:
        if desc.digest in seen:
            return
        seen.add(desc.digest)
        data = read(desc, what)
        if desc.media_type in media.INDEXES:
            index = parse_index(data, desc.media_type)
            missing = [c for c in index.manifests if not _stored(store, c.digest)]
            if missing:
                platforms = sorted({str(c.platform) for c in missing if c.platform is not None})
                raise FailedPrecondition(
                    f"image {name} is an index of {len(index.manifests)} manifests, {len(missing)} of them not in "
                    f"the store ({', '.join(platforms) or 'no platform'}): a pull keeps only its platform's",
                    hint="push one platform's manifest alone with --platform OS/ARCH")
            for child in index.manifests:
                visit(child, "manifest")
        elif desc.media_type in media.MANIFESTS:
            manifest = parse_manifest(data, desc.media_type)
            for blob in (manifest.config, *manifest.layers):
                if blob.digest in blobs:
                    continue
                if not _stored(store, blob.digest):
                    if blob.media_type in _NON_DISTRIBUTABLE:
                        continue  # foreign layers stay where their URLs point
                    raise FailedPrecondition(f"image {name}: blob {blob.digest} of manifest {desc.digest} is not "
                                             f"in the store", hint="pull the image again")
                leases.add_resource(lease, RESOURCE_CONTENT, str(blob.digest))
                blobs[blob.digest] = blob
        else:
            raise InvalidArgument(f"image {name}: {what} {desc.digest} has media type {desc.media_type!r}, "
                                  "not a manifest or index")
        manifests.append((desc, data))

    root = target
    if platform is not None and target.media_type in media.INDEXES:
        index = parse_index(read(target, "index"), target.media_type)
        chosen = [c for c in index.manifests
                  if c.platform is not None and platform.matches(c.platform) and c.media_type in media.MANIFESTS]
        if not chosen:
            offered = ", ".join(sorted({str(c.platform) for c in index.manifests if c.platform is not None}))
            raise NotFound(f"image {name} has no manifest for platform {platform}", hint=f"it has: {offered}")
        root = chosen[0]
    visit(root, "index" if root.media_type in media.INDEXES else "manifest")
    return _Plan(root=root, manifests=tuple(manifests), blobs=tuple(blobs.values()))


def _stored(store: Store, digest: Digest) -> bool:
    try:
        store.content.info(digest)
        return True
    except NotFound:
        return False


# --- mount sources ---------------------------------------------------------------


def _image_sources(store: Store, name: str, target: Digest, dest: Reference) -> list[str]:
    """Repositories on ``dest``'s registry the image came from or was given
    as: its own name's, and those of images naming the same target."""
    others = sorted(img.name for img in store.metadata.images.list(namespace=store.namespace)
                    if img.target.digest == target and img.name != name)
    names = [name, *others]
    found: list[str] = []
    for text in names:
        try:
            ref = parse_reference(text)
        except InvalidArgument:
            continue
        if ref.domain == dest.domain and ref.path != dest.path and ref.path not in found:
            found.append(ref.path)
    return found


def _blob_sources(store: Store, digest: Digest, dest: Reference, image_sources: Sequence[str]) -> list[str]:
    """Where ``digest`` may be mounted from: its record's distribution.source
    label for the registry first (known to hold it), then the image's."""
    labelled: list[str] = []
    try:
        value = store.metadata.blobs.get(str(digest), namespace=store.namespace).labels.get(
            LABEL_DISTRIBUTION_SOURCE + dest.domain, "")
        labelled = [r.strip() for r in value.split(",") if r.strip()]
    except NotFound:
        pass
    found: list[str] = []
    for repo in [*labelled, *image_sources]:
        if repo != dest.path and repo not in found:
            found.append(repo)
    return found[:_MAX_SOURCES]


def _remember(store: Store, dest: Reference, digests: Sequence[Digest]) -> None:
    """Add the destination to the distribution.source label of each blob's
    record (as containerd does after a push): a later push to another
    repository of the registry mounts from it.  Best effort."""
    key = LABEL_DISTRIBUTION_SOURCE + dest.domain
    blobs = store.metadata.blobs
    for digest in dict.fromkeys(digests):
        try:
            current = blobs.get(str(digest), namespace=store.namespace).labels.get(key, "")
            repos = [r for r in current.split(",") if r]
            if dest.path in repos:
                continue
            value = ",".join(sorted([*repos, dest.path]))
            if len(key) + len(value) > _MAX_LABEL:
                continue
            blobs.update_labels(str(digest), {key: value}, merge=True, namespace=store.namespace)
        except HawserError as exc:  # a record removed meanwhile, a busy database: only a later mount is lost
            _log.info("not recording %s as a source of %s: %s", dest.name, digest, exc)


# --- blobs and manifests ---------------------------------------------------------


def _push_blobs(store: Store, client: RegistryClient, dest: Reference, blobs: Sequence[Descriptor],
                image_sources: Sequence[str], options: PushOptions, progress: ProgressSink) -> list[BlobPushed]:
    """Every blob, ``options.workers`` at a time, biggest first; the first
    failure stops the others (at their next piece) and is raised."""
    for desc in blobs:
        progress(LayerProgress(str(desc.digest), "waiting", 0, desc.size))
    if not blobs:
        return []
    abort = threading.Event()
    upload = options.upload or UploadOptions()

    def one(desc: Descriptor) -> BlobPushed:
        key = str(desc.digest)
        started = False

        def moved(position: int) -> None:
            nonlocal started
            if abort.is_set():
                raise _Aborted()
            if not started or position < desc.size:
                started = True
                progress(LayerProgress(key, "pushing", position, desc.size))

        sources = _blob_sources(store, desc.digest, dest, image_sources)
        outcome = client.push_blob(dest, lambda: store.content.open(desc.digest), desc, mount_from=sources,
                                   progress=moved, options=upload)
        stage: Stage = "exists" if outcome.how == "exists" else "mounted" if outcome.how == "mounted" else "done"
        progress(LayerProgress(key, stage, desc.size, desc.size))
        return outcome

    order = sorted(blobs, key=lambda d: -d.size)
    pool = ThreadPoolExecutor(max_workers=max(1, min(options.workers, len(order))), thread_name_prefix="push")
    futures: dict[Future[BlobPushed], Descriptor] = {}
    try:
        futures = {pool.submit(one, desc): desc for desc in order}
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in done if f.exception() is not None and not isinstance(f.exception(), _Aborted)]
        if failed:
            abort.set()
            error = failed[0].exception()
            progress(LayerProgress(str(futures[failed[0]].digest), "failed", 0, futures[failed[0]].size))
            assert error is not None
            raise error
        wait(futures)
    except BaseException:
        abort.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    by_digest = {futures_desc.digest: fut.result() for fut, futures_desc in futures.items()}
    return [by_digest[d.digest] for d in blobs]


def _push_manifests(client: RegistryClient, dest: Reference, plan: _Plan,
                    progress: ProgressSink) -> tuple[int, int]:
    """Children first, each by digest unless the repository has it; the root
    last, under the tag (unless the tag names it already)."""
    pushed = present = 0
    for desc, data in plan.manifests:
        is_root = desc.digest == plan.root.digest
        tag = dest.tag if is_root and dest.tag else None
        there = client.manifest_exists(dest, tag or str(desc.digest))
        if there is not None and there.digest == desc.digest:
            present += 1
            continue
        client.push_manifest(dest, data, desc.media_type, tag=tag)
        kind = "index" if desc.media_type in media.INDEXES else "manifest"
        progress(PullMessage(f"pushed {kind} {desc.digest}{f' as {tag}' if tag else ''}"))
        pushed += 1
    return pushed, present


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"

