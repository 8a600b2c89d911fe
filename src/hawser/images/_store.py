"""ImageStore: the image half of hawser's library API, over one root.

It composes the content store, the metadata database and a snapshotter, and
is what the CLI (and later the daemon) calls.  Several processes may open one
root at once.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from hawser._dataclass import dataclass, field
from hawser._failpoints import failpoint
from hawser._logging import get_logger
from hawser.config import Config
from hawser.content import ContentStore, LocalStore
from hawser.errors import FailedPrecondition, HawserError, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from hawser.host import proc_stat
from hawser.metadata import LABEL_REF_CONTENT, LABEL_REF_SNAPSHOT, Metadata
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
from hawser.snapshots import Kind, Snapshotter

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

    from hawser.images._progress import ProgressSink
    from hawser.metadata import GCReport

log = get_logger(__name__)

DEFAULT_NAMESPACE = "default"
LEASE_OWNER_PID = "hawser.io/lease.owner-pid"
RESERVE_NAME = "reserve"
RESERVE_BYTES = 1 << 20


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


class ImageStore:
    def __init__(self, *, config: Config, content: ContentStore, metadata: Metadata, snapshotter: Snapshotter,
                 namespace: str = DEFAULT_NAMESPACE) -> None:
        self.config = config
        self.content = content
        self.metadata = metadata
        self.snapshotter = snapshotter
        self.namespace = namespace
        self.locks_dir = os.path.join(config.state, "locks")

    @classmethod
    def open(cls, config: Config, *, to_free_space: bool = False) -> ImageStore:
        """Open (or create) the store under ``config.root``.

        ``to_free_space`` (prune): on a full disk, first give back the
        reserve, so that SQLite has the room to record what prune removes."""
        from hawser.snapshots import new_snapshotter, overlay_supported

        for path in (config.root, config.state):
            os.makedirs(path, mode=0o711, exist_ok=True)
        reserve = os.path.join(config.root, RESERVE_NAME)
        if to_free_space and _free_bytes(config.root) < RESERVE_BYTES and os.path.exists(reserve):
            log.warning("the disk under %s is full: releasing hawser's reserve to collect garbage", config.root)
            os.unlink(reserve)
        name = config.snapshotter
        snap_root = os.path.join(config.root, "snapshots")
        # Probe only a new store: one that already holds overlay snapshots keeps
        # using them (a probe can fail for passing reasons, such as a full disk).
        existing = os.path.exists(os.path.join(snap_root, name, "metadata.db"))
        if name == "overlayfs" and not existing and not overlay_supported(snap_root):
            log.warning("overlayfs is not usable under %s; using the native snapshotter", config.root)
            name = "native"
        store = cls(
            config=config,
            content=LocalStore(os.path.join(config.root, "content")),
            metadata=Metadata(os.path.join(config.root, "metadata.db")),
            snapshotter=new_snapshotter(name, os.path.join(snap_root, name)),
        )
        store._keep_reserve()
        return store

    @property
    def _reserve_path(self) -> str:
        return os.path.join(self.config.root, RESERVE_NAME)

    def _keep_reserve(self) -> None:
        """Hold RESERVE_BYTES of disk in a file that only prune gives back.

        SQLite needs a little room to record a removal; on a full disk the
        reserve is what lets ``system prune`` free space (see ``open``).  Best
        effort: on a disk already full there is simply no reserve."""
        if os.path.exists(self._reserve_path):
            return
        tmp = f"{self._reserve_path}.{os.getpid()}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE_BYTES)
            finally:
                os.close(fd)
            os.rename(tmp, self._reserve_path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def make_room(self) -> None:
        """On a full disk, give back the reserve (see ``_keep_reserve``): for
        removals, which free space, and for undoing what failed for lack of it.
        The next store opened takes the reserve again once there is room."""
        if _free_bytes(self.config.root) < RESERVE_BYTES:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._reserve_path)
                log.info("the disk under %s is full: gave back hawser's reserve", self.config.root)

    def close(self) -> None:
        self.metadata.close()
        self.snapshotter.close()

    # --- leases --------------------------------------------------------------

    @contextmanager
    def lease(self) -> Iterator[str]:
        """A lease protecting what an operation writes; dropped when it ends.

        If the process dies, the lease names its pid, so GC knows it is dead
        without waiting for the expiry."""
        lease = self.metadata.leases.create(
            ttl=self.config.gc.pull_lease_ttl, labels={LEASE_OWNER_PID: _pid_token(os.getpid())})
        try:
            yield lease
        except (ResourceExhausted, OSError) as exc:
            if isinstance(exc, OSError) and exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # The disk filled up.  What the operation left unfinished goes now
            # rather than at the next GC or resume, since it is what fills the
            # disk: snapshots of layers it was unpacking (their own removal
            # found no room to record it), and the partial downloads of layers
            # fetched beside the one that found no room.
            self.make_room()
            self._remove_unfinished(lease)
            raise
        finally:
            self.metadata.leases.delete(lease)

    def _remove_unfinished(self, lease: str) -> None:
        kind = f"snapshot/{self.snapshotter.name}"
        for resource in self.metadata.leases.list_resources(lease):
            if resource.kind == "ingest":
                with contextlib.suppress(NotFound, Unavailable):
                    self.content.abort(resource.key, wait=False)  # Unavailable: another pull writes it
            elif resource.kind == kind:
                with contextlib.suppress(HawserError):
                    if self.snapshotter.stat(resource.key).kind is not Kind.COMMITTED:
                        self.snapshotter.remove(resource.key)

    # --- pull / import ---------------------------------------------------------

    def pull(self, ref_text: str, *, platform: Platform | None = None, plain_http: bool = False,
             progress: ProgressSink | None = None, credentials: Any = None) -> ImageSummary:
        from hawser.images._progress import PullMessage, discard
        from hawser.images._pull import PullOptions, pull_into

        progress = progress or discard
        from hawser.registry import RegistryClient, RegistryOptions

        ref = parse_reference(ref_text)
        registry = self.config.registry
        client = RegistryClient(RegistryOptions(
            config_dir=registry.config_path, plain_http=plain_http, stall_timeout=registry.stall_timeout,
            stall_bytes=registry.stall_bytes, max_retries=registry.max_retries, docker_config=_docker_config_path(registry.docker_config),
            credentials=credentials,
        ))
        try:
            with self.lease() as lease:
                root = pull_into(self, client, ref, PullOptions(platform=platform, plain_http=plain_http),
                                 progress, lease)
                failpoint("pull.before-image-record")
                self._put_image(str(ref), root)
                failpoint("pull.after-image-record")
        finally:
            client.close()
        progress(PullMessage(f"stored {ref} ({root.digest})"))
        return self.summary(str(ref))

    def import_archive(self, path: str, *, name: str | None = None, platform: Platform | None = None,
                       progress: ProgressSink | None = None) -> list[ImageSummary]:
        from hawser.images._import import import_layout
        from hawser.images._progress import discard

        progress = progress or discard

        with self.lease() as lease:
            named = import_layout(self, path, name=name, platform=platform or Platform.host(),
                                  progress=progress, lease=lease)
            for image_name, root in named:
                self._put_image(image_name, root)
        return [self.summary(n) for n, _ in named]

    def _put_image(self, name: str, target: Descriptor) -> None:
        self.metadata.images.put(name, target, {}, namespace=self.namespace)

    # --- queries ---------------------------------------------------------------

    def resolve_name(self, text: str) -> str:
        """The stored image name for what a user typed: a full or short
        reference, or an image ID (config digest) or a unique prefix of one."""
        names = {img.name for img in self.metadata.images.list(namespace=self.namespace)}
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
        return [self.summary(img.name) for img in self.metadata.images.list(namespace=self.namespace)]

    def summary(self, name: str) -> ImageSummary:
        record = self.metadata.images.get(name, namespace=self.namespace)
        try:
            detail = self.inspect(name)
        except (NotFound, InvalidArgument):
            return ImageSummary(name, record.target, None, record.target.size, "", record.updated_at)
        return ImageSummary(name, record.target, detail.config_digest, detail.size, detail.config.created,
                            record.updated_at)

    def inspect(self, name: str, platform: Platform | None = None) -> ImageDetail:
        record = self.metadata.images.get(name, namespace=self.namespace)
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
            top = self.metadata.blobs.get(detail.config_digest, namespace=self.namespace).labels.get(label, "")
        except NotFound:
            top = ""
        if not top:
            raise FailedPrecondition(f"image {detail.name} is not unpacked", hint="pull it again")
        return top

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
        removed = []
        for text in names:
            name = self.resolve_name(text)
            self.metadata.images.delete(name, namespace=self.namespace)
            removed.append(name)
        if prune and removed:
            self.prune()
        return removed

    def prune(self, *, dry_run: bool = False) -> GCReport:
        from hawser.metadata import collect

        report = collect(self.metadata, self.content, {self.snapshotter.name: self.snapshotter}, dry_run=dry_run,
                         grace_period=self.config.gc.grace_period, lease_alive=lease_owner_alive)
        self._keep_reserve()
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


def _free_bytes(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def _docker_config_path(configured: str) -> str:
    """The configured docker config.json; for the default, ``$DOCKER_CONFIG`` wins, as with docker."""
    from hawser.config import RegistryConfig

    env_dir = os.environ.get("DOCKER_CONFIG")
    if env_dir and configured == RegistryConfig().docker_config:
        return os.path.join(env_dir, "config.json")
    return os.path.expanduser(configured)


def _pid_token(pid: int) -> str:
    """``pid:starttime``: a pid alone may be reused by another process."""
    stat = proc_stat(pid)
    return f"{pid}:{stat.start_time if stat is not None else 0}"


def lease_owner_alive(labels: Mapping[str, str]) -> bool:
    """Whether the process that took a lease (its ``LEASE_OWNER_PID`` label) still
    runs: the same pid with the same start time, and not a zombie (a dead process
    nobody waited for: pid 1 does not reap on every host). GC and ``system check``
    drop a lease whose owner is gone. Without the label (or with one not ours to
    read) the lease's expiry alone decides."""
    token = labels.get(LEASE_OWNER_PID)
    if not token:
        return True
    pid_text, _, start = token.partition(":")
    try:
        pid = int(pid_text)
    except ValueError:
        return True
    stat = proc_stat(pid)
    if stat is None or not stat.alive:
        return False
    return start in ("", "0") or str(stat.start_time) == start


__all__ = ["LABEL_REF_CONTENT", "LABEL_REF_SNAPSHOT", "LEASE_OWNER_PID", "ImageDetail", "ImageStore", "ImageSummary",
           "lease_owner_alive", "time"]
