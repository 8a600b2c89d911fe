"""Records and what they name: images (index, manifest, config, layers and the
unpacked snapshot chain), containers (their snapshot, their pod) and pods
(their pinned namespaces).

An image that misses something is reported, not repaired: ``hawser pull``
fetches what is missing (and unpacks again what is no longer unpacked); the
image record stays so the name still lists, as needing a pull.  What can be
rebuilt from the store itself is: a blob an image needs whose file is there
but whose record is gone is recorded again (with the GC labels a pull would
write), and a config's label naming a snapshot that is gone is dropped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from hawser.check._context import Context, NotRepaired, Records, Resolved
from hawser.check._types import (
    BLOB_UNRECORDED,
    CONTAINER_SANDBOX_MISSING,
    CONTAINER_SNAPSHOT_MISSING,
    IMAGE_INCOMPLETE,
    SANDBOX_NOT_READY,
    SNAPSHOT_REF_MISSING,
)
from hawser.errors import DataLoss, HawserError, NotFound
from hawser.metadata import (
    LABEL_REF_SNAPSHOT,
    Blob,
    Container,
    Image,
    SandboxRecord,
    content_ref_label,
    content_refs,
    snapshot_ref_label,
)
from hawser.oci import Descriptor, Digest, media, parse_config, parse_index, parse_manifest
from hawser.pods import LABEL_SANDBOX_ID, SANDBOX_READY
from hawser.snapshots import Kind

# runc statuses of a container that is (still, or being) alive: never touch its resources.
LIVE = frozenset({"creating", "created", "running", "paused"})


def check_records(ctx: Context) -> None:
    records = ctx.read_records()
    for image in records.images:
        with ctx.guard(f"image {_name(image)}"):
            _ImageCheck(ctx, records, image).run()
    removed: set[str] = set()
    sandboxes = {(s.namespace, s.id) for s in records.sandboxes}
    for container in records.containers:
        with ctx.guard(f"container {container.id}"):
            _container(ctx, container, sandboxes, removed)
    for sandbox in records.sandboxes:
        with ctx.guard(f"pod sandbox {sandbox.id}"):
            _sandbox(ctx, sandbox)


def _name(image: Image) -> str:
    return image.name if image.namespace == "default" else f"{image.namespace}/{image.name}"


def image_needs(ctx: Context, records: Records) -> dict[Digest, set[str]]:
    """Every digest an image needs, with the names of those images: followed
    through the records' gc.ref.content labels, as GC does, and through the
    index and manifest blobs themselves, so that a blob whose record is gone
    is still known as needed (the records area records it again)."""
    needs: dict[Digest, set[str]] = {}
    for image, digest, _ in _reached(ctx, records):
        needs.setdefault(digest, set()).add(_name(image))
    return needs


def image_chain_tops(ctx: Context, records: Records) -> dict[str, set[str]]:
    """The chain ID of each image's top layer (its snapshot key), read from the
    image's config, with the names of those images.  What the image is unpacked
    into whether or not a config record's label names it: the records area labels
    a config whose record is gone again, and the next pull reuses what is committed."""
    configs: dict[Digest, set[str]] = {}
    for image, digest, media_type in _reached(ctx, records):
        if media_type in media.CONFIGS:
            configs.setdefault(digest, set()).add(_name(image))
    tops: dict[str, set[str]] = {}
    for digest, names in configs.items():
        try:
            diff_ids = parse_config(ctx.content.read_all(digest)).diff_ids
        except HawserError:
            continue  # missing or corrupt: reported on its own
        if diff_ids:
            tops.setdefault(str(chain_ids(diff_ids)[-1]), set()).update(names)
    return tops


def _reached(ctx: Context, records: Records) -> Iterator[tuple[Image, Digest, str]]:
    """``(image, digest, media type)`` of everything each image reaches: through
    the records' gc.ref.content labels (media type "": the label does not say)
    and through the index and manifest blobs themselves."""
    by_ns = {(blob.namespace, digest): blob for digest, blobs in records.blobs.items() for blob in blobs}
    for image in records.images:
        todo: list[tuple[Digest, str]] = [(image.target.digest, image.target.media_type)]
        # By media type too: a manifest a label reached first is read once its index names its type.
        seen: set[tuple[Digest, str]] = set()
        while todo:
            digest, media_type = todo.pop()
            if (digest, media_type) in seen:
                continue
            seen.add((digest, media_type))
            yield image, digest, media_type
            blob = by_ns.get((image.namespace, digest))
            if blob is not None:
                todo.extend((child, "") for child in content_refs(blob.labels))
            if media_type in media.INDEXES or media_type in media.MANIFESTS:
                todo.extend(_children(ctx, digest, media_type))


def _children(ctx: Context, digest: Digest, media_type: str) -> list[tuple[Digest, str]]:
    try:
        data = ctx.content.read_all(digest)
        if media_type in media.INDEXES:
            return [(m.digest, m.media_type) for m in parse_index(data, media_type).manifests]
        manifest = parse_manifest(data, media_type)
    except HawserError:
        return []  # missing or corrupt: reported on its own
    return [(manifest.config.digest, manifest.config.media_type), *((d.digest, d.media_type) for d in manifest.layers)]


def image_snapshots(ctx: Context, records: Records, needs: dict[Digest, set[str]]) -> dict[str, set[str]]:
    """The top snapshot key each image's config names (for this store's snapshotter), with the images."""
    label = f"{LABEL_REF_SNAPSHOT}{ctx.snapshotter.name}"
    tops: dict[str, set[str]] = {}
    for digest, blobs in records.blobs.items():
        for blob in blobs:
            key = blob.labels.get(label)
            if key and digest in needs:
                tops.setdefault(key, set()).update(needs[digest])
    return tops


def chain_ids(diff_ids: tuple[Digest, ...]) -> list[Digest]:
    """ChainIDs (OCI image spec, config.md): the snapshot key of each layer."""
    chains: list[Digest] = []
    for diff_id in diff_ids:
        chains.append(Digest(diff_id) if not chains else Digest.of(f"{chains[-1]} {diff_id}".encode()))
    return chains


class _ImageCheck:
    def __init__(self, ctx: Context, records: Records, image: Image) -> None:
        self.ctx = ctx
        self.records = records
        self.image = image
        self.ns = image.namespace
        self.missing: list[str] = []
        self.label = f"{LABEL_REF_SNAPSHOT}{ctx.snapshotter.name}"

    def record(self, digest: Digest) -> Blob | None:
        return next((b for b in self.records.blobs.get(digest, ()) if b.namespace == self.ns), None)

    def exists(self, digest: Digest) -> bool:
        try:
            self.ctx.content.info(digest)
            return True
        except NotFound:
            return False

    def fetch(self, desc: Descriptor, role: str, *, read: bool = True) -> bytes | None:
        """The blob's bytes (verified); None, noting it as missing, when it is not there."""
        digest = desc.digest
        if digest in self.ctx.corrupt:
            return None  # reported as corrupt, with this image named
        if not self.exists(digest):
            self.missing.append(f"{role} {digest}")
            return None
        if not read:
            return None
        try:
            return self.ctx.content.read_all(digest)
        except NotFound:
            self.missing.append(f"{role} {digest}")
        except DataLoss:
            self.missing.append(f"{role} {digest} (corrupt)")
        return None

    def run(self) -> None:
        target = self.image.target
        role = "index" if target.media_type in media.INDEXES else "manifest"
        data = self.fetch(target, role)
        if data is not None:
            if role == "index":
                self.index(target, data)
            else:
                self.manifest(target, data)
        if self.missing:
            self.ctx.report(IMAGE_INCOMPLETE, _name(self.image),
                            f"missing {', '.join(self.missing)}: `hawser pull {self.image.name}` fetches it again")

    def index(self, desc: Descriptor, data: bytes) -> None:
        index = parse_index(data, desc.media_type)
        record = self.record(desc.digest)
        if record is not None:
            # The pull records the manifests it stored on the index (gc.ref.content.m.<i>).
            wanted = set(content_refs(record.labels))
            manifests = [m for m in index.manifests if m.digest in wanted]
        else:
            manifests = [m for m in index.manifests if self.exists(m.digest)]
            self.unrecorded(desc, {content_ref_label(f"m.{i}"): str(m.digest) for i, m in enumerate(manifests)})
        if not manifests:
            self.missing.append(f"a manifest of index {desc.digest}")
        for each in manifests:
            found = self.fetch(each, "manifest")
            if found is not None:
                self.manifest(each, found)

    def manifest(self, desc: Descriptor, data: bytes) -> None:
        manifest = parse_manifest(data, desc.media_type)
        if self.record(desc.digest) is None:
            labels = {content_ref_label("config"): str(manifest.config.digest)}
            labels.update({content_ref_label(f"l.{i}"): str(layer.digest) for i, layer in enumerate(manifest.layers)})
            self.unrecorded(desc, labels)
        for layer in manifest.layers:
            self.fetch(layer, "layer", read=False)
            if self.exists(layer.digest) and layer.digest not in self.ctx.corrupt and self.record(layer.digest) is None:
                self.unrecorded(layer, {})
        config = self.fetch(manifest.config, "config")
        if config is not None:
            self.config(manifest.config, config)

    def config(self, desc: Descriptor, data: bytes) -> None:
        config = parse_config(data)
        record = self.record(desc.digest)
        if not config.diff_ids:
            if record is None:
                self.unrecorded(desc, {})
            return
        snapshotter = self.ctx.snapshotter
        if record is None:
            top = chain_ids(config.diff_ids)[-1]
            labels = {snapshot_ref_label(snapshotter.name): str(top)} if self.committed(top) else {}
            if not labels:
                self.missing.append("its unpacked layers")
            self.unrecorded(desc, labels)
            return
        top_key = record.labels.get(self.label, "")
        if not top_key:
            if not any(key.startswith(LABEL_REF_SNAPSHOT) for key in record.labels):
                self.missing.append("its unpacked layers (never unpacked)")
            return  # unpacked for another snapshotter only: run it with that one
        if top_key in self.ctx.broken_snapshots:
            return  # reported as a broken snapshot, with this image named
        if self.committed(top_key):
            return
        self.missing.append("its unpacked layers")
        metadata, ns, label = self.ctx.metadata, self.ns, self.label

        def repair() -> None:
            try:
                current = metadata.blobs.get(desc.digest, namespace=ns).labels.get(label, "")
            except NotFound:
                raise Resolved("its record is gone meanwhile") from None
            if current != top_key and self.committed(current):
                raise Resolved("unpacked again meanwhile")
            # An empty value deletes the key (merge): the image now shows as not unpacked.
            metadata.blobs.update_labels(desc.digest, {label: ""}, merge=True, namespace=ns)

        self.ctx.report(SNAPSHOT_REF_MISSING, str(desc.digest),
                        f"the config of image {_name(self.image)} names snapshot {top_key}, which is gone "
                        "(repair drops the label; the next pull unpacks the image again)", repair=repair)

    def committed(self, key: str) -> bool:
        try:
            return self.ctx.snapshotter.stat(key).kind is Kind.COMMITTED
        except NotFound:
            return False

    def unrecorded(self, desc: Descriptor, labels: dict[str, str]) -> None:
        digest, metadata, ns = desc.digest, self.ctx.metadata, self.ns
        if digest in self.ctx.corrupt or not self.exists(digest):
            return

        def repair() -> None:
            try:
                metadata.blobs.get(digest, namespace=ns)
                raise Resolved("recorded meanwhile")
            except NotFound:
                pass
            size = self.ctx.content.info(digest).size
            metadata.blobs.record(digest, size, labels, namespace=ns)

        self.ctx.report(BLOB_UNRECORDED, str(digest),
                        f"image {_name(self.image)} needs it and its file is there, but namespace {ns} has no record "
                        "of it (repair records it again)", repair=repair)


def _container_problems(ctx: Context, container: Container, sandboxes: set[tuple[str, str]]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if container.snapshotter == ctx.snapshotter.name:
        try:
            ctx.snapshotter.stat(container.snapshot_key)
        except NotFound:
            problems.append((CONTAINER_SNAPSHOT_MISSING,
                             f"its root filesystem snapshot {container.snapshot_key} is gone"))
    sandbox = container.labels.get(LABEL_SANDBOX_ID)
    if sandbox and (container.namespace, sandbox) not in sandboxes:
        problems.append((CONTAINER_SANDBOX_MISSING, f"its pod sandbox {sandbox} has no record"))
    return problems


def _container(ctx: Context, container: Container, sandboxes: set[tuple[str, str]], removed: set[str]) -> None:
    if not _container_problems(ctx, container, sandboxes):
        return
    # A create or rm holds the container's lock from before its record is written
    # until it is done (or until it died): judged again under it, a container
    # being made right now is not taken for a half-made one.
    runc_root = os.path.join(ctx.config.state, "runc")
    with ctx.container_lock(container.id):
        try:
            container = ctx.metadata.containers.get(container.id, namespace=container.namespace)
        except NotFound:
            return
        problems = _container_problems(ctx, container, sandboxes)
        status = ctx.host.runc_status(runc_root, container.id)
    if not problems:
        return
    live = status in LIVE

    def repair() -> None:
        if container.id in removed:
            raise Resolved("removed with the finding above")
        if live:
            raise NotRepaired(f"it is {status}: stop and remove it yourself (hawser rm -f {container.id[:12]})")
        # The same removal as `hawser rm -f`: runc, conmon, mounts, bundle, logs, then the record.
        try:
            ctx.host.remove_container(ctx.store, container)
        except NotFound:
            raise Resolved("removed meanwhile") from None
        removed.add(container.id)

    for kind, detail in problems:
        state = f"it is {status}" if live else "it is not running"
        ctx.report(kind, container.id, f"container {container.name}: {detail}; {state} "
                   "(repair removes a container that is not running)", repair=repair)


def _sandbox(ctx: Context, sandbox: SandboxRecord) -> None:
    if sandbox.state != SANDBOX_READY:
        return
    status = sandbox.status
    lost = [kind for kind in ("net", "ipc", "uts")
            if status.get(kind) and ctx.host.namespace_kind(str(status[kind])) != kind]
    if status.get("infra_holder"):
        try:
            alive = ctx.host.pid_namespace_alive(int(status["infra_holder"]), int(status.get("infra_pid", 0)),
                                                 sandbox.id)
        except (TypeError, ValueError):
            alive = False
        if not alive:
            lost.append("pid")
    if lost:
        ctx.info(SANDBOX_NOT_READY, sandbox.id,
                 f"pod {sandbox.name}: its {', '.join(lost)} namespace(s) are gone, so it is not ready "
                 "(hawserd marks it so when it starts; RemovePodSandbox cleans it up)")


__all__ = ["LIVE", "chain_ids", "check_records", "image_chain_tops", "image_needs", "image_snapshots"]
