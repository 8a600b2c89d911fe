"""ImageService: the images of one store and namespace (pull, import, resolve,
inspect, remove, GC), over the store's content, image and blob records, and
snapshotter."""

from __future__ import annotations

from collections.abc import Sequence

from hawser._dataclass import dataclass, field
from hawser._failpoints import failpoint
from hawser.errors import FailedPrecondition, HawserError, InvalidArgument, NotFound, error_kind
from hawser.images._events import GC, IMPORT, PULL, REMOVE
from hawser.metadata import LABEL_REF_CONTENT, LABEL_REF_SNAPSHOT
from hawser.oci import (
    Descriptor,
    Digest,
    ImageConfig,
    Manifest,
    Platform,
    media,
    parse_config,
    parse_index,
    parse_manifest,
    parse_reference,
)
from hawser.store import Store, lease_owner_alive

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

    from hawser.config import Config
    from hawser.images._commit import CommitOptions, CommitResult, Pause
    from hawser.images._events import ImageObserver, PullStats
    from hawser.images._progress import ProgressSink
    from hawser.images._push import PushOptions, PushResult
    from hawser.metadata import Container, GCReport
    from hawser.registry import RegistryOptions


@dataclass(frozen=True, slots=True)
class ImageSummary:
    name: str
    target: Descriptor
    image_id: Digest | None
    size: int
    created: str
    updated_at: float


@dataclass(frozen=True, slots=True)
class ImageDetail:
    name: str
    target: Descriptor
    manifest_digest: Digest
    manifest: Manifest
    config_digest: Digest
    config: ImageConfig
    size: int
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def chain_ids(self) -> tuple[Digest, ...]:
        """The snapshot key of each layer, bottom first (computed on demand: sha256 costs
        hashlib's import, ~4 ms, which a container start does without; see top_snapshot)."""
        from hawser.images._chain import chain_ids

        return tuple(chain_ids(self.config.diff_ids))

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "Name": self.name,
            "Id": str(self.config_digest),
            "Target": self.target.to_json(),
            "ManifestDigest": str(self.manifest_digest),
            "Platform": str(c.platform),
            "Created": c.created,
            "Author": c.author,
            "Size": self.size,
            "Config": {
                "User": c.user, "Env": list(c.env), "Entrypoint": list(c.entrypoint), "Cmd": list(c.cmd),
                "WorkingDir": c.working_dir, "Labels": dict(c.labels), "StopSignal": c.stop_signal,
                "ExposedPorts": list(c.exposed_ports), "Volumes": list(c.volumes),
            },
            "RootFS": {
                "Layers": [layer.to_json() for layer in self.manifest.layers],
                "DiffIDs": [str(d) for d in c.diff_ids],
                "ChainIDs": [str(d) for d in self.chain_ids],
            },
            "Labels": self.labels,
        }


class ImageService:
    """Images of one store and namespace: pull, import, resolve, inspect, remove, GC.

    ``observers`` hear (in the calling thread) an ``ImageEvent`` for each image
    pulled, imported or removed, each failed pull and each collection; they
    must not block or raise.  The event journal and hawserd's metrics are fed
    this way."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.content = store.content
        self.images = store.metadata.images
        self.blobs = store.metadata.blobs
        self.snapshotter = store.snapshotter
        self.config = store.config
        self.namespace = store.namespace
        self.observers: list[ImageObserver] = []

    def _notify(self, action: str, **what: Any) -> None:
        if not self.observers:
            return
        from hawser.images._events import ImageEvent

        event = ImageEvent(action=action, namespace=self.namespace, **what)
        for observer in list(self.observers):
            try:
                observer(event)
            except Exception:
                import logging

                logging.getLogger(__name__).exception("image observer failed")

    def record_pull(self, reference: str, *, stats: PullStats | None = None, error: str = "") -> None:
        """Tell the observers of a pull made elsewhere (hawserd pulls in a child
        process): done, with its ``stats``, or failed with the ``error`` kind."""
        digest = ""
        if not error:
            try:
                digest = str(self.images.get(reference, namespace=self.namespace).target.digest)
            except NotFound:
                pass
        self._notify(PULL, name=reference, digest=digest, stats=stats, error=error)

    # --- pull / import ---------------------------------------------------------

    def pull(self, ref_text: str, *, platform: Platform | None = None, plain_http: bool = False,
             progress: ProgressSink | None = None, credentials: Any = None,
             signature_policy: str | None = None) -> ImageSummary:
        from hawser.images._progress import PullMessage, discard
        from hawser.images._pull import PullOptions, pull_into

        progress = progress or discard
        from hawser.registry import RegistryClient

        ref = parse_reference(ref_text)
        client = RegistryClient(registry_options(self.config, plain_http=plain_http, credentials=credentials))
        try:
            with self.store.lease() as lease:
                root, meter = pull_into(self.store, client, ref,
                                        PullOptions(platform=platform, plain_http=plain_http,
                                                    policy=self.config.registry.policy if signature_policy is None
                                                    else signature_policy),
                                        progress, lease)
                failpoint("pull.before-image-record")
                self._put_image(str(ref), root)
                failpoint("pull.after-image-record")
        except HawserError as exc:
            self._notify(PULL, name=str(ref), error=error_kind(exc))
            raise
        finally:
            client.close()
        progress(PullMessage(f"stored {ref} ({root.digest})"))
        self._notify(PULL, name=str(ref), digest=str(root.digest), stats=meter.stats())
        return self.summary(str(ref))

    def import_archive(self, path: str, *, name: str | None = None, platform: Platform | None = None,
                       progress: ProgressSink | None = None) -> list[ImageSummary]:
        from hawser.images._import import import_layout
        from hawser.images._progress import discard

        progress = progress or discard

        with self.store.lease() as lease:
            named = import_layout(self.store, path, name=name, platform=platform or Platform.host(),
                                  progress=progress, lease=lease)
            for image_name, root in named:
                self._put_image(image_name, root)
        for image_name, root in named:
            self._notify(IMPORT, name=image_name, digest=str(root.digest))
        return [self.summary(n) for n, _ in named]

    def load_archive(self, path: str, *, name: str | None = None, platform: Platform | None = None,
                     progress: ProgressSink | None = None) -> list[ImageSummary]:
        """``hawser load``: the images of an archive (``path``, "-" for standard
        input) in any format ``_archive_load`` reads, stored, unpacked, then recorded."""
        from hawser.images._archive_load import load_archive
        from hawser.images._progress import discard

        with self.store.lease() as lease:
            named = load_archive(self.store, path, name=name, platform=platform or Platform.host(),
                                 progress=progress or discard, lease=lease)
            for image_name, root in named:
                self._put_image(image_name, root)
        for image_name, root in named:
            self._notify(IMPORT, name=image_name, digest=str(root.digest))
        return [self.summary(n) for n in dict.fromkeys(n for n, _ in named)]

    def save_archive(self, texts: Sequence[str], output: str, *, format: str = "oci-archive",
                     platform: Platform | None = None) -> list[str]:
        """``hawser save``: the images ``texts`` name (as ``resolve_name`` takes
        them) written to ``output`` ("-": standard output) as ``format``
        (``_archive_save``); the stored names saved."""
        from hawser.images._archive_save import save_archive

        names = list(dict.fromkeys(self.resolve_name(t) for t in texts))
        images = [(n, self.images.get(n, namespace=self.namespace).target) for n in names]
        with self.store.lease() as lease:
            save_archive(self.store, images, output, format=format, platform=platform or Platform.host(),
                         lease=lease)
        return names

    def export_snapshot(self, key: str, output: str) -> None:
        """``hawser export``: the filesystem of the active snapshot ``key`` (a container's) as a tar."""
        from hawser.images._export import export_snapshot

        export_snapshot(self.store, key, output)

    def import_rootfs(self, path: str, *, name: str | None = None, platform: Platform | None = None,
                      progress: ProgressSink | None = None) -> ImageSummary:
        """``hawser import``: a filesystem tar (``path``, "-" for standard input) as a one-layer image."""
        from hawser.images._export import import_rootfs
        from hawser.images._progress import discard

        with self.store.lease() as lease:
            [(image_name, root)] = import_rootfs(self.store, path, name=name, platform=platform or Platform.host(),
                                                 progress=progress or discard, lease=lease)
            self._put_image(image_name, root)
        self._notify(IMPORT, name=image_name, digest=str(root.digest))
        return self.summary(image_name)

    def _put_image(self, name: str, target: Descriptor) -> None:
        self.images.put(name, target, {}, namespace=self.namespace)

    # --- push / tag (images/_push.py, images/_tag.py) ---------------------------

    def push(self, source: str, destination: str | None = None, *, plain_http: bool = False,
             options: PushOptions | None = None, progress: ProgressSink | None = None,
             credentials: Any = None) -> PushResult:
        """Push the stored image ``source`` (as for ``resolve_name``) to the
        registry reference ``destination``, by default its own name."""
        from hawser.images._progress import discard
        from hawser.images._push import PUSH, PushOptions, destination_of, push_image
        from hawser.registry import RegistryClient

        name = self.resolve_name(source)
        dest = destination_of(name, destination)
        client = RegistryClient(registry_options(self.config, plain_http=plain_http, credentials=credentials))
        try:
            result = push_image(self.store, client, name, dest, options or PushOptions(), progress or discard)
        except HawserError as exc:
            self._notify(PUSH, name=str(dest), error=error_kind(exc))
            raise
        finally:
            client.close()
        self._notify(PUSH, name=result.reference, digest=str(result.descriptor.digest))
        return result

    def tag(self, source: str, target: str, *, force: bool = False) -> ImageSummary:
        """Name the stored image ``source`` also ``target`` (see ``images._tag``)."""
        from hawser.images._tag import TAG, tag_image

        new = tag_image(self.store, self.resolve_name(source), target, force=force)
        summary = self.summary(new)
        self._notify(TAG, name=new, digest=str(summary.target.digest))
        return summary

    # --- commit (images/_commit.py) ------------------------------------------------

    def commit(self, container: Container, target: str, *, options: CommitOptions | None = None,
               pause: Pause | None = None) -> CommitResult:
        """``hawser commit``: the container's changes as a new layer on the image it
        was made from, recorded as ``target`` (see ``images._commit``)."""
        from hawser.images._commit import COMMIT, CommitOptions, base_image, commit_container

        name = str(parse_reference(target))
        base = base_image(self, container)
        result = commit_container(self.store, container, base_manifest=base.manifest,
                                  base_config=self.content.read_all(base.config_digest), name=name,
                                  options=options or CommitOptions(), pause=pause)
        self._notify(COMMIT, name=name, digest=str(result.manifest.digest))
        return result

    # --- queries ---------------------------------------------------------------

    def resolve_name(self, text: str) -> str:
        """The stored image name for what a user typed: a full or short
        reference, or an image ID (config digest) or a unique prefix of one."""
        names = {img.name for img in self.images.list(namespace=self.namespace)}
        if text in names:
            return text
        try:
            ref = str(parse_reference(text))
            if ref in names:
                return ref
        except InvalidArgument:
            pass
        prefix = text.removeprefix("sha256:")
        if len(prefix) >= 4 and all(c in "0123456789abcdef" for c in prefix):
            matches = [n for n in names if str(self.summary(n).image_id or "").removeprefix("sha256:")
                       .startswith(prefix)]
            if len(set(str(self.summary(n).image_id) for n in matches)) == 1:
                return sorted(matches)[0]
            if matches:
                raise InvalidArgument(f"image ID prefix {text!r} is ambiguous", hint="give more characters")
        raise NotFound(f"image {text!r} not found", hint="`hawser images` lists the images; `hawser pull` fetches one")

    def list_images(self) -> list[ImageSummary]:
        return [self.summary(img.name) for img in self.images.list(namespace=self.namespace)]

    def summary(self, name: str) -> ImageSummary:
        record = self.images.get(name, namespace=self.namespace)
        try:
            detail = self.inspect(name)
        except (NotFound, InvalidArgument):
            return ImageSummary(name, record.target, None, record.target.size, "", record.updated_at)
        return ImageSummary(name, record.target, detail.config_digest, detail.size, detail.config.created,
                            record.updated_at)

    def inspect(self, name: str, platform: Platform | None = None) -> ImageDetail:
        record = self.images.get(name, namespace=self.namespace)
        manifest_desc = self._platform_manifest(record.target, platform or Platform.host())
        manifest = parse_manifest(self.content.read_all(manifest_desc.digest, limit=manifest_desc.size or None),
                                  manifest_desc.media_type)
        config = parse_config(self.content.read_all(manifest.config.digest))
        size = manifest_desc.size + manifest.config.size + sum(layer.size for layer in manifest.layers)
        if record.target.digest != manifest_desc.digest:
            size += record.target.size
        return ImageDetail(
            name=name, target=record.target, manifest_digest=manifest_desc.digest, manifest=manifest,
            config_digest=manifest.config.digest, config=config,
            size=size, labels=dict(record.labels),
        )

    def top_snapshot(self, detail: ImageDetail) -> str:
        """The key of the image's top layer snapshot in this store's snapshotter, as
        unpacking labelled its config; "" for an image without layers.
        FailedPrecondition if the image is not unpacked there."""
        if not detail.config.diff_ids:
            return ""
        label = f"{LABEL_REF_SNAPSHOT}{self.snapshotter.name}"
        try:
            top = self.blobs.get(detail.config_digest, namespace=self.namespace).labels.get(label, "")
        except NotFound:
            top = ""
        if not top:
            raise FailedPrecondition(f"image {detail.name} is not unpacked", hint="pull it again")
        return top

    def runnable(self, text: str) -> RunnableImage:
        """The stored image a container is to be made from (``text`` as for
        ``resolve_name``). NotFound if absent, FailedPrecondition if not unpacked."""
        name = self.resolve_name(text)
        detail = self.inspect(name)
        top = self.top_snapshot(detail)
        if top:
            try:
                self.snapshotter.stat(top)
            except NotFound:
                raise FailedPrecondition(f"image {name} is not unpacked", hint="pull it again") from None
        return RunnableImage(name=name, image_id=str(detail.config_digest), config=detail.config, top_snapshot=top)

    def _platform_manifest(self, target: Descriptor, platform: Platform) -> Descriptor:
        if target.media_type not in media.INDEXES:
            return target
        index = parse_index(self.content.read_all(target.digest), target.media_type)
        stored = [d for d in index.manifests if self._has_blob(d.digest)]
        for desc in stored:
            if desc.platform is None or platform.matches(desc.platform):
                return desc
        if stored:
            return stored[0]
        raise NotFound(f"no manifest of {target.digest} is stored")

    def _has_blob(self, digest: Digest) -> bool:
        try:
            self.content.info(digest)
            return True
        except NotFound:
            return False

    # --- removal, usage, GC ---------------------------------------------------------

    def remove(self, names: Sequence[str], *, prune: bool = True) -> list[str]:
        """Remove the images ``names`` resolve to (NotFound for one that none
        names), then, with ``prune``, collect what they held."""
        removed = []
        for text in names:
            name = self.resolve_name(text)
            self.untag(name)
            removed.append(name)
        if prune and removed:
            self.prune()
        return removed

    def untag(self, name: str) -> None:
        """Forget the stored name ``name`` (exactly); NotFound if there is none."""
        record = self.images.get(name, namespace=self.namespace)
        self.images.delete(name, namespace=self.namespace)
        self._notify(REMOVE, name=name, digest=str(record.target.digest))

    def prune(self, *, dry_run: bool = False) -> GCReport:
        from hawser.metadata import collect

        report = collect(self.store.metadata, self.content, {self.snapshotter.name: self.snapshotter},
                         dry_run=dry_run, grace_period=self.config.gc.grace_period, lease_alive=lease_owner_alive)
        self.store.keep_reserve()
        if not dry_run:
            self._notify(GC, report=report)
        return report

    def usage(self) -> dict[str, Any]:
        images = self.list_images()
        snapshots = list(self.snapshotter.walk())
        snap_bytes = 0
        for info in snapshots:
            try:
                snap_bytes += self.snapshotter.usage(info.key).size
            except NotFound:
                pass
        return {
            "images": {"count": len(images), "size": sum(i.size for i in images)},
            "content": {"count": sum(1 for _ in self.content.walk()), "size": self.content.usage()},
            "snapshots": {"count": len(snapshots), "size": snap_bytes, "snapshotter": self.snapshotter.name},
        }


def registry_options(config: Config, *, plain_http: bool = False, credentials: Any = None) -> RegistryOptions:
    """The registry client's options for a pull into a store of ``config``
    (hawserd's pull worker resolves with the same, see ``_pull_process``)."""
    from hawser.registry import RegistryOptions

    registry = config.registry
    return RegistryOptions(
        config_dir=registry.config_path, plain_http=plain_http, stall_timeout=registry.stall_timeout,
        stall_bytes=registry.stall_bytes, max_retries=registry.max_retries,
        docker_config=_docker_config_path(registry.docker_config), credentials=credentials,
        credential_helper_timeout=registry.credential_helper_timeout,
    )


def _docker_config_path(configured: str) -> str:
    """The configured docker config.json; for the default, ``$REGISTRY_AUTH_FILE`` or
    ``$DOCKER_CONFIG`` wins, as with podman and docker (and ``hawser login``)."""
    from hawser.registry import docker_config_path

    return str(docker_config_path(configured))


@dataclass(frozen=True, slots=True)
class RunnableImage:
    """What a container is made from: the stored name, the image ID (config
    digest), the config, and the top layer's snapshot key ("" without layers)."""

    name: str
    image_id: str
    config: ImageConfig
    top_snapshot: str


__all__ = ["LABEL_REF_CONTENT", "LABEL_REF_SNAPSHOT", "ImageDetail", "ImageService", "ImageSummary", "RunnableImage"]
