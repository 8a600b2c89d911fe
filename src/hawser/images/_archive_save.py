"""``hawser save``: images of the store written as a tar archive, streamed.

Two formats:

* ``oci-archive``: an OCI image layout in a tar, as ``podman save --format
  oci-archive`` and ``skopeo copy ... oci-archive:`` write it and as ``hawser
  load``, ``hawser image import``, podman, skopeo, containerd and Docker 25
  read it: ``oci-layout``, every blob under ``blobs/sha256/`` exactly as it is
  stored (an image pulled as an index keeps its index and the children of
  every platform stored whole), and ``index.json`` last, an entry per name
  with the name in ``org.opencontainers.image.ref.name`` and
  ``io.containerd.image.name``.  Every digest is kept.
* ``docker-archive``: Docker's format, as ``podman save`` writes it:
  ``HEX.json`` (the config, unchanged: the image ID is kept), one ``HEX.tar``
  per layer named by its diff_id (the format keeps layers uncompressed),
  then ``manifest.json`` (``Config``, ``RepoTags``, ``Layers``) and
  ``repositories``.  The manifest digests are not kept: the format has no
  manifests.  One platform per image: this host's, if stored.

Nothing is held in memory.  Blobs are copied by the kernel (``sendfile``)
from the content store into the archive; docker-archive's layers are
decompressed on the way and checked against their diff_ids.  The size of a
decompressed layer is only known at its end: into a file the header is
written after the data (``pwrite``); into a pipe the layer is decompressed
twice, once to measure it.  The documents that name everything else come
last, so an archive cut short is refused by every reader.  Into a file, the
archive is written under a temporary name beside it and renamed when
complete: a failed save leaves no half archive under the name.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, BinaryIO

from hawser._dataclass import dataclass, field
from hawser.errors import DataLoss, FailedPrecondition, InvalidArgument, NotFound
from hawser.images._chain import chain_ids
from hawser.images._import import CONTAINERD_NAME, REF_NAME, layout_path
from hawser.oci import (
    Descriptor,
    Digest,
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
    from hawser.content import ContentStore
    from hawser.images._decompress import Compression
    from hawser.store import Store

FORMATS = ("oci-archive", "docker-archive")
CHUNK = 1 << 20
_BLOCK = 512
_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'


def save_archive(store: Store, images: Sequence[tuple[str, Descriptor]], output: str, *, format: str,
                 platform: Platform, lease: str) -> None:
    """Write ``images`` (stored name, record target) to ``output`` ("-": standard
    output) in ``format``.  Everything the archive needs is found (and held by
    ``lease`` against a collection) before a byte is written: FailedPrecondition
    when an image is not stored whole, InvalidArgument for an unknown format."""
    if format not in FORMATS:
        raise InvalidArgument(f"unknown archive format {format!r}", hint="oci-archive or docker-archive")
    blobs = _Blobs(store, lease)
    if format == "oci-archive":
        roots = [(name, root, blobs.oci(name, root)) for name, root in images]
        with open_output(output) as fd:
            _write_oci(_TarWriter(fd), blobs, roots)
    else:
        entries = _docker_entries(blobs, images, platform)
        with open_output(output) as fd:
            _write_docker(_TarWriter(fd), blobs, entries)


# --- what to write ----------------------------------------------------------------------


class _Blobs:
    """The content store as ``save`` reads it: each blob looked up once and held by the lease."""

    def __init__(self, store: Store, lease: str) -> None:
        self.content = store.content
        self._store = store
        self._lease = lease
        self._held: set[Digest] = set()

    def hold(self, desc: Descriptor, name: str, what: str) -> None:
        if desc.digest in self._held:
            return
        self._store.metadata.leases.add_resource(self._lease, "content", str(desc.digest))
        try:
            size = self.content.info(desc.digest).size
        except NotFound:
            raise FailedPrecondition(f"image {name}: its {what} {desc.digest} is not in the content store",
                                     hint="pull the image again") from None
        if size != desc.size:
            raise DataLoss(f"image {name}: the stored {what} {desc.digest} is {size} bytes, not {desc.size}",
                           hint="hawser system check finds what else is damaged")
        self._held.add(desc.digest)

    def read(self, desc: Descriptor, name: str, what: str) -> bytes:
        self.hold(desc, name, what)
        return self.content.read_all(desc.digest, limit=desc.size or None)

    def manifest(self, desc: Descriptor, name: str) -> Manifest:
        """The manifest ``desc`` with its config and layers held: FailedPrecondition if any is missing."""
        manifest = parse_manifest(self.read(desc, name, "manifest"), desc.media_type)
        self.hold(manifest.config, name, "config")
        for layer in manifest.layers:
            self.hold(layer, name, "layer")
        return manifest

    def stored(self, desc: Descriptor) -> bool:
        try:
            return self.content.info(desc.digest).size == desc.size
        except NotFound:
            return False

    def oci(self, name: str, root: Descriptor) -> list[Descriptor]:
        """Every blob of the image, children before parents."""
        if root.media_type in media.MANIFESTS:
            manifest = self.manifest(root, name)
            return [*manifest.layers, manifest.config, root]
        if root.media_type not in media.INDEXES:
            raise FailedPrecondition(f"image {name}: cannot save a {root.media_type!r}")
        index = parse_index(self.read(root, name, "index"), root.media_type)
        out: list[Descriptor] = []
        for child in self.children(index):
            manifest = self.manifest(child, name)
            out += [*manifest.layers, manifest.config, child]
        if not out:
            raise FailedPrecondition(f"image {name}: none of the platforms of its index is stored",
                                     hint="pull the image again")
        return [*out, root]

    def children(self, index: Index) -> list[Descriptor]:
        """The manifests of ``index`` stored whole (a pull stores one platform's)."""
        out = []
        for child in index.manifests:
            if child.media_type not in media.MANIFESTS or not self.stored(child):
                continue
            try:
                manifest = parse_manifest(self.content.read_all(child.digest, limit=child.size or None),
                                          child.media_type)
            except (NotFound, InvalidArgument):
                continue
            if all(self.stored(d) for d in (manifest.config, *manifest.layers)):
                out.append(child)
        return out


@dataclass(slots=True)
class _DockerImage:
    config: Descriptor
    layers: list[tuple[Descriptor, Digest]]  # the stored blob, its diff_id
    tags: list[str] = field(default_factory=list)


def _docker_entries(blobs: _Blobs, images: Sequence[tuple[str, Descriptor]], platform: Platform
                    ) -> list[_DockerImage]:
    from hawser.registry import select_platform

    by_config: dict[Digest, _DockerImage] = {}
    for name, root in images:
        desc = root
        if root.media_type in media.INDEXES:
            index = parse_index(blobs.read(root, name, "index"), root.media_type)
            stored = blobs.children(index)
            if not stored:
                raise FailedPrecondition(f"image {name}: none of the platforms of its index is stored",
                                         hint="pull the image again")
            try:
                desc = select_platform(Index(index.media_type, tuple(stored)), platform)
            except NotFound:
                desc = stored[0]
        elif root.media_type not in media.MANIFESTS:
            raise FailedPrecondition(f"image {name}: cannot save a {root.media_type!r}")
        manifest = blobs.manifest(desc, name)
        image = by_config.get(manifest.config.digest)
        if image is None:
            config = parse_config(blobs.read(manifest.config, name, "config"))
            if len(config.diff_ids) != len(manifest.layers):
                raise DataLoss(f"image {name}: {len(manifest.layers)} layers but {len(config.diff_ids)} diff_ids")
            for layer in manifest.layers:
                if media.layer_compression(layer.media_type) is None:
                    raise FailedPrecondition(f"image {name}: layer {layer.digest} is a {layer.media_type!r}, "
                                             "which docker-archive cannot hold", hint="save it as oci-archive")
            image = by_config[manifest.config.digest] = _DockerImage(
                config=manifest.config, layers=list(zip(manifest.layers, config.diff_ids, strict=True)))
        ref = parse_reference(name)
        if ref.tag:  # RepoTags hold tags only: a name by digest alone is left out
            image.tags.append(f"{ref.name}:{ref.tag}")
    return list(by_config.values())


# --- writing ------------------------------------------------------------------------------


def _write_oci(tar: _TarWriter, blobs: _Blobs, roots: list[tuple[str, Descriptor, list[Descriptor]]]) -> None:
    tar.add_bytes("oci-layout", _LAYOUT)
    tar.directory("blobs/")
    tar.directory("blobs/sha256/")
    written: set[Digest] = set()
    for _name, _root, descs in roots:
        for desc in descs:
            if desc.digest not in written:
                with blobs.content.open(desc.digest) as f:
                    tar.add_file(layout_path(desc.digest), f, desc.size)
                written.add(desc.digest)
    manifests = []
    for name, root, _descs in roots:
        entry = Descriptor(media_type=root.media_type, digest=root.digest, size=root.size).to_json()
        entry["annotations"] = {CONTAINERD_NAME: name, REF_NAME: name}
        manifests.append(entry)
    index = {"schemaVersion": 2, "mediaType": media.OCI_INDEX, "manifests": manifests}
    tar.add_bytes("index.json", json.dumps(index, separators=(",", ":")).encode())
    tar.close()


def _write_docker(tar: _TarWriter, blobs: _Blobs, images: list[_DockerImage]) -> None:
    written: set[str] = set()
    manifest = []
    repositories: dict[str, dict[str, str]] = {}
    for image in images:
        config_name = f"{image.config.digest.encoded}.json"
        if config_name not in written:
            with blobs.content.open(image.config.digest) as f:
                tar.add_file(config_name, f, image.config.size)
            written.add(config_name)
        layer_names = []
        for layer, diff_id in image.layers:
            name = f"{diff_id.encoded}.tar"
            layer_names.append(name)
            if name in written:
                continue
            compression = media.layer_compression(layer.media_type)
            if compression is None or compression == "none":
                if layer.digest != diff_id:
                    raise DataLoss(f"layer {layer.digest} is uncompressed but its diff_id is {diff_id}")
                with blobs.content.open(layer.digest) as f:
                    tar.add_file(name, f, layer.size)
            else:
                tar.add_layer(name, blobs.content, layer.digest, compression, diff_id)  # type: ignore[arg-type]
            written.add(name)
        manifest.append({"Config": config_name, "RepoTags": image.tags, "Layers": layer_names})
        # The legacy top layer ID, as containers/image computes it: the top chain ID.
        top = chain_ids([d for _, d in image.layers])[-1].encoded if image.layers else image.config.digest.encoded
        for tag in image.tags:
            repo, _, t = tag.rpartition(":")
            repositories.setdefault(repo, {})[t] = top
    tar.add_bytes("manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
    tar.add_bytes("repositories", json.dumps(repositories, separators=(",", ":")).encode())
    tar.close()


@contextmanager
def open_output(path: str) -> Iterator[int]:
    """The descriptor to write an archive to ("-": standard output, never a
    terminal): a regular file is written under a temporary name beside it and
    renamed when the ``with`` ends without an error; see the module docstring."""
    if path == "-":
        if os.isatty(1):
            raise InvalidArgument("refusing to write an archive to a terminal", hint="use -o FILE, or redirect")
        yield 1
        return
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"{path} is a directory", hint="-o names the archive file to write")
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)  # a pipe, a device: written in place
        try:
            yield fd
        finally:
            os.close(fd)
        return
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileNotFoundError:
        raise NotFound(f"{directory}: no such directory") from None
    try:
        try:
            yield fd
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class _TarWriter:
    """A tar written straight to a descriptor: PAX headers from tarfile, data by sendfile."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        st = os.fstat(fd)
        self._seekable = stat.S_ISREG(st.st_mode) and not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_APPEND
        self._pos = os.lseek(fd, 0, os.SEEK_CUR) if self._seekable else 0

    def _write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        self._pos += len(data)

    def _pad(self, size: int) -> None:
        if size % _BLOCK:
            self._write(bytes(_BLOCK - size % _BLOCK))

    @staticmethod
    def _header(name: str, size: int, *, type: bytes = tarfile.REGTYPE, mode: int = 0o644) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.type, info.mode = size, type, mode
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")

    def directory(self, name: str) -> None:
        self._write(self._header(name, 0, type=tarfile.DIRTYPE, mode=0o755))

    def add_bytes(self, name: str, data: bytes) -> None:
        self._write(self._header(name, len(data)))
        self._write(data)
        self._pad(len(data))

    def add_file(self, name: str, f: BinaryIO, size: int) -> None:
        """``size`` bytes of ``f`` from its start, copied in the kernel."""
        self._write(self._header(name, size))
        src, offset = f.fileno(), 0
        while offset < size:
            try:
                n = os.sendfile(self._fd, src, offset, min(size - offset, 1 << 30))
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
                    raise
                n = self._copy_slowly(src, offset, size - offset)
            if n == 0:
                raise DataLoss(f"{name}: the stored blob is shorter than its {size} bytes")
            offset += n
        self._pos += size
        self._pad(size)

    def _copy_slowly(self, src: int, offset: int, count: int) -> int:
        data = os.pread(src, min(count, CHUNK), offset)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        return len(data)

    def add_layer(self, name: str, content: ContentStore, digest: Digest, compression: Compression,
                  diff_id: Digest) -> None:
        """The layer ``digest``, decompressed, checked against ``diff_id``."""
        from hawser.images._decompress import open_decompressed

        def chunks() -> Iterator[bytes]:
            with content.open(digest) as f:
                reader = open_decompressed(f, compression)
                while chunk := reader.read(CHUNK):
                    yield chunk

        hasher, size = diff_id.hasher(), 0
        if self._seekable:
            start = self._pos
            self._write(self._header(name, 0))
            for chunk in chunks():
                hasher.update(chunk)
                self._write(chunk)
                size += len(chunk)
        else:
            for chunk in chunks():
                hasher.update(chunk)
                size += len(chunk)
        if Digest.from_hasher(hasher) != diff_id:
            raise DataLoss(f"the stored layer {digest} does not decompress to its diff_id {diff_id}",
                           hint="hawser system check finds what else is damaged")
        if not self._seekable:
            self._write(self._header(name, size))
            for chunk in chunks():
                self._write(chunk)
        elif size < 8 ** 11:
            os.pwrite(self._fd, self._header(name, size), start)  # the same 512 bytes, with the size
        else:
            self._patch(start, size)
        self._pad(size)

    def _patch(self, start: int, size: int) -> None:
        """A size too big for the ustar field (8 GiB and more), in GNU base-256 as Go and tar(1) read it."""
        header = bytearray(os.pread(self._fd, _BLOCK, start))
        header[124:136] = (size | (0x80 << 88)).to_bytes(12, "big")
        header[148:156] = b" " * 8
        header[148:156] = f"{sum(header):06o}".encode() + b"\0 "
        os.pwrite(self._fd, bytes(header), start)

    def close(self) -> None:
        self._write(bytes(2 * _BLOCK))


__all__ = ["FORMATS", "open_output", "save_archive"]
