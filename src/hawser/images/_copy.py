"""``hawser image copy``: an image from one place to another, in skopeo's transport syntax.

    docker://REF                a registry reference
    oci:DIR[:TAG]               an OCI image layout directory (TAG: its ``org.opencontainers.image.ref.name``)
    oci-archive:FILE[:TAG]      a tar of one
    docker-archive:FILE[:REF]   docker's ``save`` format
    hawser:NAME                 the local store (as containers-storage: is skopeo's)

Between places other than the store nothing is unpacked: manifests and blobs
are copied byte for byte, so digests stay what they were (docker-archive, whose
format keeps no manifest, is the exception: its manifest is made up on reading).
Without ``all_platforms`` an index is copied as the one manifest that fits
``platform`` (the host's by default), as skopeo does; with it, the index and
every child.  Into the store an image goes through pull, import or load (it is
unpacked there); out of it through push or save, so what those check holds here.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from typing import TYPE_CHECKING, Protocol

from hawser._dataclass import dataclass
from hawser.errors import DataLoss, InvalidArgument, NotFound, Unimplemented
from hawser.images._progress import ProgressSink, PullMessage
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

if TYPE_CHECKING:
    from hawser.images._service import ImageService
    from hawser.registry import RegistryClient

DOCKER, OCI, OCI_ARCHIVE, DOCKER_ARCHIVE, STORE = "docker", "oci", "oci-archive", "docker-archive", "hawser"
TRANSPORTS = (DOCKER, OCI, OCI_ARCHIVE, DOCKER_ARCHIVE, STORE)
_REF_NAME = "org.opencontainers.image.ref.name"
_CHUNK = 1 << 20
_SKIPPED_LAYERS = frozenset({
    media.DOCKER_LAYER_FOREIGN_GZIP, media.OCI_LAYER_NONDIST, media.OCI_LAYER_NONDIST_GZIP,
    media.OCI_LAYER_NONDIST_ZSTD,
})


@dataclass(frozen=True, slots=True)
class Location:
    """A parsed ``TRANSPORT:REST``: ``path`` (a file, a directory, a registry
    reference or a stored name) and ``tag`` (a layout's tag, an archive's reference)."""

    transport: str
    path: str
    tag: str = ""

    def __str__(self) -> str:
        if self.transport == DOCKER:
            return f"docker://{self.path}"
        return f"{self.transport}:{self.path}{':' + self.tag if self.tag else ''}"


def parse_location(text: str) -> Location:
    """``docker://REF``, ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``,
    ``docker-archive:FILE[:REF]``, ``hawser:NAME``; InvalidArgument otherwise."""
    transport, sep, rest = text.partition(":")
    hint = "give TRANSPORT:WHERE with TRANSPORT one of docker://, oci:, oci-archive:, docker-archive:, hawser:"
    if not sep or transport not in TRANSPORTS:
        raise InvalidArgument(f"{text!r}: unknown transport {transport!r}" if sep else
                              f"{text!r} names no transport", hint=hint)
    if transport == DOCKER:
        if not rest.startswith("//"):
            raise InvalidArgument(f"{text!r}: the docker transport is written docker://REFERENCE", hint=hint)
        ref = parse_reference(rest[2:])
        return Location(DOCKER, str(ref))
    if transport == STORE:
        if not rest:
            raise InvalidArgument(f"{text!r}: name the image (hawser:NAME)")
        return Location(STORE, rest)
    path, _, tag = rest.partition(":")
    if not path:
        raise InvalidArgument(f"{text!r}: no path", hint=f"{transport}:PATH[:TAG]")
    if transport == DOCKER_ARCHIVE and tag:
        tag = str(parse_reference(tag))
    return Location(transport, path, tag)


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyOptions:
    """``all_platforms``: an index and all its children, else the manifest for
    ``platform`` (default: the host's).  ``src_plain_http``/``dest_plain_http``:
    http, not https, to the source's or destination's registry."""

    all_platforms: bool = False
    platform: Platform | None = None
    src_plain_http: bool = False
    dest_plain_http: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyResult:
    """What was copied: the root at the destination, and how many blobs and manifests."""

    destination: str
    descriptor: Descriptor
    blobs: int
    manifests: int


# --- sources --------------------------------------------------------------------------------


class _Source(Protocol):
    def describe(self) -> str: ...

    def read_blob(self, desc: Descriptor, limit: int) -> bytes: ...

    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> AbstractContextManager[Iterable[bytes]]: ...


class _RegistrySource:
    def __init__(self, client: RegistryClient, ref: Reference) -> None:
        self._client, self._ref = client, ref

    def describe(self) -> str:
        return self._ref.name

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        if desc.media_type in media.MANIFESTS | media.INDEXES:
            return self._client.fetch_manifest(self._ref, desc)
        return self._client.fetch_blob_bytes(self._ref, desc, limit=limit)

    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> AbstractContextManager[Iterable[bytes]]:
        return self._client.fetch_blob(self._ref, desc, offset=offset)


class _StoreSource:
    def __init__(self, images: ImageService, name: str) -> None:
        self._content, self._name = images.store.content, name

    def describe(self) -> str:
        return f"image {self._name}"

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        try:
            return self._content.read_all(desc.digest, limit=limit)
        except NotFound:
            raise NotFound(f"image {self._name}: {desc.digest} is not in the store",
                           hint="a pull keeps only its platform's manifest: copy one platform, or pull again") from None

    @contextmanager
    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> Iterator[Iterable[bytes]]:
        with self._content.open(desc.digest) as f:
            f.seek(offset)
            yield iter(lambda: f.read(_CHUNK), b"")


def _layout_root(source: _Source, read: Callable[[str], bytes], tag: str) -> tuple[Descriptor, bytes]:
    """The entry of a layout's index.json that ``tag`` names (the only one when no tag is given)."""
    top = parse_index(read("index.json"), media.OCI_INDEX)
    entries = [d for d in top.manifests if not tag or d.annotations.get(_REF_NAME) == tag]
    if not entries:
        raise NotFound(f"{source.describe()}: no image tagged {tag!r}" if tag else
                       f"{source.describe()}: index.json lists no images")
    if len(entries) > 1:
        raise InvalidArgument(f"{source.describe()} holds {len(entries)} images", hint="name one: oci:DIR:TAG")
    root = Descriptor(media_type=entries[0].media_type, digest=entries[0].digest, size=entries[0].size)
    return root, source.read_blob(root, MAX_MANIFEST_BYTES)


class _Known:
    """A source with some blobs at hand (a docker-archive's config: its file is not named by digest)."""

    def __init__(self, source: _Source, known: dict[Digest, bytes]) -> None:
        self._source, self._known = source, known

    def describe(self) -> str:
        return self._source.describe()

    def read_blob(self, desc: Descriptor, limit: int) -> bytes:
        data = self._known.get(desc.digest)
        return self._source.read_blob(desc, limit) if data is None else data

    @contextmanager
    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> Iterator[Iterable[bytes]]:
        data = self._known.get(desc.digest)
        if data is not None:
            yield [data[offset:]]
            return
        with self._source.open_blob(desc, offset=offset) as chunks:
            yield chunks


@contextmanager
def _open_source(images: ImageService, loc: Location, options: CopyOptions,
                 client: Callable[[bool], RegistryClient]) -> Iterator[tuple[_Source, Descriptor, bytes]]:
    """The source, its root descriptor and the root's bytes (verified)."""
    if loc.transport == DOCKER:
        ref = parse_reference(loc.path)
        registry = client(options.src_plain_http)
        resolved = registry.resolve(ref)
        yield _RegistrySource(registry, ref), resolved.descriptor, resolved.data
    elif loc.transport == STORE:
        name = images.resolve_name(loc.path)
        root = images.store.metadata.images.get(name, namespace=images.store.namespace).target
        source = _StoreSource(images, name)
        yield source, root, source.read_blob(root, MAX_MANIFEST_BYTES)
    elif loc.transport == OCI:
        from hawser.images._import import ArchiveSource, DirFiles

        if not os.path.isfile(os.path.join(loc.path, "index.json")):
            raise NotFound(f"{loc.path} is not an OCI image layout: no index.json")
        layout = ArchiveSource(DirFiles(loc.path))
        yield (layout, *_layout_root(layout, lambda n: layout.files.read(n, MAX_MANIFEST_BYTES), loc.tag))
    else:
        from hawser.images._tarindex import open_archive

        with open_archive(loc.path, spool_dir=images.store.config.root) as index:
            if loc.transport == OCI_ARCHIVE:
                from hawser.images._import import ArchiveSource

                if index.get("index.json") is None:
                    raise InvalidArgument(f"{loc.path} is not an oci-archive: no index.json in it")
                tar = ArchiveSource(index)
                yield (tar, *_layout_root(tar, lambda n: index.read(n, MAX_MANIFEST_BYTES), loc.tag))
            else:
                from hawser.images._archive_load import plan_docker_archive

                if index.get("manifest.json") is None:
                    raise InvalidArgument(f"{loc.path} is not a docker-archive: no manifest.json in it")
                archive, plans = plan_docker_archive(index, name=None)
                chosen = [p for p in plans if not loc.tag or p.name == loc.tag]
                if not chosen:
                    raise NotFound(f"{loc.path}: no image named {loc.tag}")
                if len({p.manifest_desc.digest for p in chosen}) > 1:
                    raise InvalidArgument(f"{loc.path} holds {len(plans)} images", hint="name one: docker-archive:FILE:REF")
                plan = chosen[0]
                yield _Known(archive, {plan.manifest.config.digest: plan.config_data}), plan.manifest_desc, \
                    plan.manifest_data


# --- the walk -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Plan:
    root: Descriptor
    manifests: tuple[tuple[Descriptor, bytes], ...]  # children first, the root last
    blobs: tuple[Descriptor, ...]


def _plan(source: _Source, root: Descriptor, data: bytes, options: CopyOptions) -> _Plan:
    from hawser.registry import select_platform

    if root.media_type in media.INDEXES and not options.all_platforms:
        root = select_platform(data, options.platform)
        data = source.read_blob(root, MAX_MANIFEST_BYTES)
        root = Descriptor(media_type=root.media_type, digest=root.digest, size=root.size)
    manifests: list[tuple[Descriptor, bytes]] = []
    blobs: dict[Digest, Descriptor] = {}

    def visit(desc: Descriptor, body: bytes) -> None:
        if any(d.digest == desc.digest for d, _ in manifests):
            return
        if desc.media_type in media.INDEXES:
            for child in parse_index(body, desc.media_type).manifests:
                if child.media_type in media.INDEXES | media.MANIFESTS:
                    visit(child, source.read_blob(child, MAX_MANIFEST_BYTES))
                else:  # an artifact's blob named by an index
                    blobs.setdefault(child.digest, child)
        elif desc.media_type in media.MANIFESTS:
            manifest = parse_manifest(body, desc.media_type)
            for blob in (manifest.config, *manifest.layers):
                if blob.media_type not in _SKIPPED_LAYERS:
                    blobs.setdefault(blob.digest, blob)
        else:
            raise InvalidArgument(f"{source.describe()}: {desc.digest} has media type {desc.media_type!r}, "
                                  "not a manifest or index")
        manifests.append((desc, body))

    visit(root, data)
    return _Plan(root=root, manifests=tuple(manifests), blobs=tuple(blobs.values()))


class _ChunkReader(io.RawIOBase):
    """A file over a source's blob stream (what ``push_blob`` reads)."""

    def __init__(self, source: _Source, desc: Descriptor) -> None:
        self._stack = ExitStack()
        self._chunks = iter(self._stack.enter_context(source.open_blob(desc)))
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._rest:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._rest = bytes(chunk)
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n

    def close(self) -> None:
        self._stack.close()
        super().close()


# --- destinations ---------------------------------------------------------------------------


def _to_registry(source: _Source, plan: _Plan, client: RegistryClient, ref: Reference,
                 progress: ProgressSink) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from hawser.images._push import DEFAULT_WORKERS

    def one(desc: Descriptor) -> None:
        client.push_blob(ref, lambda: io.BufferedReader(_ChunkReader(source, desc), _CHUNK), desc)

    with ThreadPoolExecutor(max_workers=DEFAULT_WORKERS, thread_name_prefix="copy") as pool:
        list(pool.map(one, sorted(plan.blobs, key=lambda d: -d.size)))
    for desc, data in plan.manifests:
        tag = ref.tag if desc.digest == plan.root.digest and ref.tag else None
        client.push_manifest(ref, data, desc.media_type, tag=tag)
    progress(PullMessage(f"copied {len(plan.blobs)} blobs and {len(plan.manifests)} manifests to {ref}"))


def _write_blob(directory: str, source: _Source, desc: Descriptor, data: bytes | None = None) -> None:
    """One blob into a layout, verified against its digest, written under a temporary name and renamed."""
    from hawser.images._import import layout_path

    path = os.path.join(directory, layout_path(desc.digest))
    try:
        if os.stat(path).st_size == desc.size:
            return  # content-addressed: there already
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    hasher, size = desc.digest.hasher(), 0
    try:
        with open(tmp, "wb") as f:
            chunks: Iterable[bytes]
            with ExitStack() as stack:
                chunks = [data] if data is not None else stack.enter_context(source.open_blob(desc))
                for chunk in chunks:
                    hasher.update(chunk)
                    size += len(chunk)
                    f.write(chunk)
        if size != desc.size or Digest.from_hasher(hasher) != desc.digest:
            raise DataLoss(f"{source.describe()}: blob {desc.digest} has other bytes ({size} bytes, "
                           f"{Digest.from_hasher(hasher)})", hint="the source is corrupt or was tampered with")
        os.rename(tmp, path)
    except BaseException:
        with _quiet():
            os.unlink(tmp)
        raise


@contextmanager
def _quiet() -> Iterator[None]:
    try:
        yield
    except FileNotFoundError:
        pass


def _to_layout(source: _Source, plan: _Plan, directory: str, tag: str) -> None:
    """Blobs, then manifests, then index.json (atomically: the image appears whole or not at all)."""
    from hawser.host import atomic_write

    os.makedirs(directory, exist_ok=True)
    for desc in plan.blobs:
        _write_blob(directory, source, desc)
    for desc, data in plan.manifests:
        _write_blob(directory, source, desc, data)
    index_path = os.path.join(directory, "index.json")
    entries: list[dict[str, object]] = []
    if os.path.exists(index_path):
        with open(index_path, "rb") as f:
            old = json.loads(f.read(MAX_MANIFEST_BYTES))
        entries = [e for e in old.get("manifests", []) if isinstance(e, dict)
                   and (e.get("annotations") or {}).get(_REF_NAME, "") != tag
                   and (tag or e.get("digest") != str(plan.root.digest))]
    entry: dict[str, object] = {"mediaType": plan.root.media_type, "digest": str(plan.root.digest),
                                "size": plan.root.size}
    if tag:
        entry["annotations"] = {_REF_NAME: tag}
    entries.append(entry)
    atomic_write(os.path.join(directory, "oci-layout"), b'{"imageLayoutVersion":"1.0.0"}')
    atomic_write(index_path, json.dumps({"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": entries},
                                        separators=(",", ":")))


def _to_oci_archive(source: _Source, plan: _Plan, path: str, tag: str) -> None:
    """A layout in a temporary directory beside ``path``, then tarred into it."""
    from hawser.images._archive_save import _TarWriter, open_output

    directory, base = os.path.split(os.path.abspath(path))
    work = tempfile.mkdtemp(prefix=f".{base}.", dir=directory)
    try:
        _to_layout(source, plan, work, tag)
        with open_output(path) as fd:
            tar = _TarWriter(fd)
            for name in ("oci-layout", "index.json"):
                with open(os.path.join(work, name), "rb") as f:
                    tar.add_bytes(name, f.read())
            tar.directory("blobs/")
            for alg in sorted(os.listdir(os.path.join(work, "blobs"))):
                tar.directory(f"blobs/{alg}/")
                for hexname in sorted(os.listdir(os.path.join(work, "blobs", alg))):
                    name = f"blobs/{alg}/{hexname}"
                    with open(os.path.join(work, name), "rb") as blob:
                        tar.add_file(name, blob, os.fstat(blob.fileno()).st_size)
            tar.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


# --- the copy -------------------------------------------------------------------------------


def copy_image(images: ImageService, source_text: str, dest_text: str, options: CopyOptions,
               progress: ProgressSink) -> CopyResult:
    """Copy the image at ``source_text`` to ``dest_text`` (see the module's docstring).

    Raises InvalidArgument (a transport or reference that does not parse),
    Unimplemented (a docker-archive destination from anywhere but the store),
    and what the registry client, pull, push, import, load and save raise."""
    src, dest = parse_location(source_text), parse_location(dest_text)
    if dest.transport == STORE:
        return _into_store(images, src, dest, options, progress)
    if src.transport == STORE and dest.transport in (DOCKER, OCI_ARCHIVE, DOCKER_ARCHIVE):
        return _out_of_store(images, src, dest, options, progress)
    if dest.transport == DOCKER_ARCHIVE:
        raise Unimplemented(f"copy to {dest}: a docker-archive is written from the store only",
                            hint=f"copy into the store first (hawser:NAME), then from it to {dest}")
    from hawser.images._service import registry_options
    from hawser.registry import RegistryClient

    clients: list[RegistryClient] = []

    def client(plain_http: bool) -> RegistryClient:
        made = RegistryClient(registry_options(images.config, plain_http=plain_http))
        clients.append(made)
        return made

    try:
        with _open_source(images, src, options, client) as (source, root, data):
            plan = _plan(source, root, data, options)
            progress(PullMessage(f"copying {src} ({plan.root.digest}) to {dest}"))
            if dest.transport == DOCKER:
                _to_registry(source, plan, client(options.dest_plain_http), parse_reference(dest.path), progress)
            elif dest.transport == OCI:
                _to_layout(source, plan, dest.path, dest.tag)
            else:
                _to_oci_archive(source, plan, dest.path, dest.tag)
    finally:
        for made in clients:
            made.close()
    return CopyResult(destination=str(dest), descriptor=plan.root, blobs=len(plan.blobs),
                      manifests=len(plan.manifests))


def _into_store(images: ImageService, src: Location, dest: Location, options: CopyOptions,
                progress: ProgressSink) -> CopyResult:
    """Pull, import or load: the store keeps images unpacked, one platform of an index."""
    if options.all_platforms:
        raise Unimplemented("the store keeps one platform of an image: --all does not fit a hawser: destination",
                            hint="copy with --platform OS/ARCH, or without --all")
    name = str(parse_reference(dest.path))
    if src.transport == DOCKER:
        images.pull(src.path, platform=options.platform, plain_http=options.src_plain_http, progress=progress)
        summary = images.tag(src.path, name, force=True) if name != str(parse_reference(src.path)) else \
            images.summary(name)
    elif src.transport == STORE:
        summary = images.tag(src.path, name, force=True)
    else:
        with _picked(src) as path:
            load = images.import_archive if src.transport == OCI else images.load_archive
            loaded = load(path, name=name, platform=options.platform, progress=progress)
        summary = loaded[0]
    return CopyResult(destination=str(dest), descriptor=summary.target, blobs=0, manifests=0)


@contextmanager
def _picked(src: Location) -> Iterator[str]:
    """A layout or archive holding just the image ``src`` names (its tag), for import or load."""
    if not src.tag or src.transport == DOCKER_ARCHIVE:
        yield src.path
        return
    work = tempfile.mkdtemp(prefix=".hawser-copy.")
    try:
        layout = os.path.join(work, "layout")
        with _open_source_files(src) as (source, root, data):
            plan = _plan(source, root, data, CopyOptions(all_platforms=True))
            _to_layout(source, plan, layout, src.tag)
        yield layout
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextmanager
def _open_source_files(src: Location) -> Iterator[tuple[_Source, Descriptor, bytes]]:
    from hawser.images._import import open_layout

    with open_layout(src.path, spool_dir=tempfile.gettempdir()) as layout:
        yield (layout, *_layout_root(layout, lambda n: layout.files.read(n, MAX_MANIFEST_BYTES), src.tag))


def _out_of_store(images: ImageService, src: Location, dest: Location, options: CopyOptions,
                  progress: ProgressSink) -> CopyResult:
    """Push or save: what those do (mounts, resumes; an archive's names) for the store's image."""
    from hawser.images._push import PushOptions

    if dest.transport == DOCKER:
        result = images.push(src.path, dest.path, plain_http=options.dest_plain_http, progress=progress,
                             options=PushOptions(platform=None if options.all_platforms else
                                                 options.platform or Platform.host()))
        return CopyResult(destination=str(dest), descriptor=result.descriptor, blobs=len(result.blobs),
                          manifests=result.manifests_pushed + result.manifests_present)
    name = images.resolve_name(src.path)
    if dest.tag and str(parse_reference(dest.tag)) != name:
        raise InvalidArgument(f"copy to {dest}: an archive written from the store names the image {name}",
                              hint=f"tag it first (hawser tag {name} {dest.tag}), then copy hawser:{dest.tag}")
    images.save_archive([name], dest.path, format=dest.transport, platform=options.platform)
    return _saved(images, dest, name)


def _saved(images: ImageService, dest: Location, name: str) -> CopyResult:
    target = images.summary(name).target
    return CopyResult(destination=str(dest), descriptor=target, blobs=0, manifests=0)


__all__ = ["TRANSPORTS", "CopyOptions", "CopyResult", "Location", "copy_image", "parse_location"]

