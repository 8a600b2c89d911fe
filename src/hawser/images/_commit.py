"""Commit and diff: a container's changes to its image, as ``docker commit``
and ``docker diff`` (``podman commit``, ``podman diff``) show and keep them.

What a container changed is its active snapshot's own directory against
the image's top snapshot (the snapshot's parent).  On overlayfs that
directory is the overlay's upper dir, the change set itself: a 0/0
character device is a deletion, a directory with ``trusted.overlay.opaque``
replaced the one below; on the native snapshotter it is a full tree,
compared with the parent's.

``commit_container`` writes those changes as one gzip layer with the
layer maker (``_diff.write_layer``: overlay's whiteouts become OCI
``.wh.`` entries), then sends it through the layer pipeline a pull uses:
the blob is stored and verified in the content store and unpacked into a
snapshot committed under its chain ID on the image's chain, so a container
of the new image needs no unpack.  The new config is the image's with the
layer's diff ID, a history entry and the ``--change`` instructions applied
(``apply_changes``); the new manifest is the image's layers and the new
one.  All of it is written under a lease, the image record last.  The
container is frozen while its layer is read (``pause``, the caller's:
images does not drive runtimes) and thawed after, also on failure.

``container_changes`` lists what ``docker diff`` lists: ``A`` added, ``C``
changed, ``D`` deleted, every parent directory of a change as ``C``, by
path.  A path counts as changed when it is in the container's layer and
in the image (a file copied up is changed even when only its metadata
changed); a directory in both counts only when its mode, owner, mtime or
kept xattrs differ, or for what changed below it.  Inside a directory the
container replaced (an opaque one) each name of the image's directory that
the container did not make again is ``D``, so both snapshotters list the
same changes (docker lists the directory itself as deleted there).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import IO, Any

from hawser._dataclass import dataclass
from hawser._failpoints import failpoint
from hawser.errors import FailedPrecondition, InvalidArgument, NotFound
from hawser.images._chain import chain_ids
from hawser.images._diff import (
    _DELETE,
    _OPAQUE,
    DiffSource,
    _all_added,
    _kept_xattrs,
    _overlay_changes,
    _tree_changes,
    write_layer,
)
from hawser.images._labels import config_labels, manifest_labels
from hawser.images._lowers import _OPAQUE_XATTR, _is_whiteout_device
from hawser.images._progress import discard
from hawser.images._unpack import LayerPipeline, store_small_blob
from hawser.metadata import Container
from hawser.oci import Descriptor, Digest, Manifest, media
from hawser.snapshots import Kind, Snapshotter
from hawser.store import Store

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hawser.images._service import ImageDetail, ImageService

COMMIT = "commit"
_CHUNK = 1 << 20
INSTRUCTIONS = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "USER", "WORKDIR")
_DEFAULT_SHELL = ("/bin/sh", "-c")
_INSTRUCTION = re.compile(r"\s*([A-Za-z]+)(?:\s+|=)(.*)", re.DOTALL)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitOptions:
    """``changes``: Dockerfile instructions (``INSTRUCTIONS``) applied to the
    config in order; ``message``: the history entry's comment; ``author``:
    the config's and the history entry's author."""

    changes: tuple[str, ...] = ()
    message: str = ""
    author: str = ""


@dataclass(frozen=True, slots=True)
class CommitResult:
    """The committed image: its name, ID (config digest), manifest, and new layer."""

    name: str
    image_id: Digest
    manifest: Descriptor
    layer: Descriptor
    diff_id: Digest


@dataclass(frozen=True, slots=True)
class Change:
    """One line of ``hawser diff``: ``kind`` A, C or D, and an absolute path."""

    kind: str
    path: str

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"


# --- the container's layer -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Layer:
    """A container's own directory and the image's directories below it (nearest first)."""

    upper: str
    lowers: tuple[str, ...]
    parent: str
    overlay: bool

    def source(self) -> DiffSource:
        skip = _mount_points(self)
        if self.overlay:
            return DiffSource(upper=self.upper, overlay=True, skip=skip)
        return DiffSource(upper=self.upper, lower=self.lowers[0] if self.lowers else None, skip=skip)


# The files every CLI container gets bound in (its network's /etc/hosts and
# resolv.conf, /etc/hostname).  Where the image has none, runc makes an empty
# mount point in the container's own layer; docker keeps those in an "init"
# layer below the container's, so they are never a change: here they are
# skipped by diff and commit instead (one snapshot less per container).
RUNTIME_MOUNT_POINTS = ("etc/hostname", "etc/hosts", "etc/resolv.conf")


def _mount_points(layer: _Layer) -> frozenset[str]:
    """The runtime's mount points in the container's layer: empty files the image does not have."""
    found = set()
    for rel in RUNTIME_MOUNT_POINTS:
        st = _lstat(os.path.join(layer.upper, rel))
        if st is not None and stat.S_ISREG(st.st_mode) and st.st_size == 0 and \
                _lower_stat(layer.lowers, rel, layer.overlay) is None:
            found.add(rel)
    return frozenset(found)


def _container_layer(snapshotter: Snapshotter, record: Container) -> _Layer:
    if record.snapshotter != snapshotter.name:
        raise FailedPrecondition(f"container {record.name} has its rootfs in the {record.snapshotter} snapshotter, "
                                 f"this store uses {snapshotter.name}",
                                 hint=f"run the command with --snapshotter {record.snapshotter}")
    try:
        info = snapshotter.stat(record.snapshot_key)
    except NotFound:
        raise FailedPrecondition(f"container {record.name} has no rootfs snapshot ({record.snapshot_key})") from None
    if info.kind is Kind.COMMITTED:
        raise FailedPrecondition(f"container {record.name}'s snapshot {record.snapshot_key} is not active")
    upper = snapshotter.lower_dirs(record.snapshot_key)[0]
    lowers = tuple(snapshotter.lower_dirs(info.parent)) if info.parent else ()
    return _Layer(upper=upper, lowers=lowers, parent=info.parent, overlay=snapshotter.name == "overlayfs")


# --- diff -------------------------------------------------------------------------------


def _lower_stat(lowers: Sequence[str], rel: str, overlay: bool) -> tuple[str, os.stat_result] | None:
    """The entry at ``rel`` in the image's merged tree (its path in a layer, its
    stat); None where there is none."""
    if not overlay:
        if not lowers:
            return None
        path = os.path.join(lowers[0], rel)
        st = _lstat(path)
        return None if st is None else (path, st)
    parts = rel.split("/")
    for layer in lowers:
        # A layer hides everything below it at rel when it deletes rel or one of its
        # parents, has a non-directory on the way, or makes a directory on the way opaque.
        hidden = False
        for depth in range(1, len(parts) + 1):
            path = os.path.join(layer, *parts[:depth])
            st = _lstat(path)
            if st is None:
                break
            if _is_whiteout_device(st):
                return None
            if depth == len(parts):
                return path, st
            if not stat.S_ISDIR(st.st_mode):
                return None
            if _opaque(path):
                hidden = True
        if hidden:
            return None
    return None


def _lower_names(lowers: Sequence[str], rel: str, overlay: bool) -> set[str]:
    """The names in the image's merged directory ``rel``."""
    if not lowers:
        return set()
    names: set[str] = set()
    for layer in lowers if overlay else lowers[:1]:
        directory = os.path.join(layer, rel)
        try:
            entries = os.listdir(directory)
        except OSError:
            entries = []
        for name in entries:
            if _lower_stat(lowers, f"{rel}/{name}" if rel else name, overlay) is not None:
                names.add(name)
    return names


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, _OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _same_dir(lpath: str, lower: os.stat_result, upath: str, upper: os.stat_result, *,
              any_mtime: bool = False) -> bool:
    """``any_mtime``: a runtime mount point made in it changed its mtime; that alone is no change."""
    return (stat.S_ISDIR(lower.st_mode) and (lower.st_mode, lower.st_uid, lower.st_gid)
            == (upper.st_mode, upper.st_uid, upper.st_gid)
            and (any_mtime or lower.st_mtime_ns == upper.st_mtime_ns)
            and _kept_xattrs(lpath) == _kept_xattrs(upath))


def _raw_changes(layer: _Layer) -> Iterator[tuple[str, str]]:
    if layer.overlay:
        return _overlay_changes(layer.upper, "")
    if not layer.lowers:
        return _all_added(layer.upper, "")
    return _tree_changes(layer.lowers[0], layer.upper, "")


def _changes_of(layer: _Layer) -> list[Change]:
    found: dict[str, str] = {}
    skip = _mount_points(layer)
    holding = {rel.rpartition("/")[0] for rel in skip}  # their directories: changed by them alone (mtime)
    for kind, rel in _raw_changes(layer):
        if rel in skip:
            continue
        if kind == _DELETE:
            if _lower_stat(layer.lowers, rel, layer.overlay) is not None:
                found[rel] = "D"
        elif kind == _OPAQUE:
            kept = set(os.listdir(os.path.join(layer.upper, rel)))
            for name in _lower_names(layer.lowers, rel, layer.overlay) - kept:
                found[f"{rel}/{name}" if rel else name] = "D"
        else:
            lower = _lower_stat(layer.lowers, rel, layer.overlay)
            if lower is None:
                found[rel] = "A"
                continue
            upath = os.path.join(layer.upper, rel)
            upper = os.lstat(upath)
            if layer.overlay and stat.S_ISDIR(upper.st_mode) and _same_dir(*lower, upath, upper,
                                                                         any_mtime=rel in holding):
                continue  # copied up as a parent of a change: that change marks it below
            found[rel] = "C"
    for rel in list(found):
        parent = rel.rpartition("/")[0]
        while parent and parent not in found:
            found[parent] = "C"
            parent = parent.rpartition("/")[0]
    return [Change(kind, "/" + rel) for rel, kind in sorted(found.items())]


def container_changes(store: Store, record: Container) -> list[Change]:
    """What the container ``record`` added, changed and deleted in its rootfs,
    by path (see the module docstring).  FailedPrecondition when it has no
    active snapshot in this store's snapshotter.  Blocking."""
    return _changes_of(_container_layer(store.snapshotter, record))


# --- --change ---------------------------------------------------------------------------


def _split(change: str) -> tuple[str, str]:
    match = _INSTRUCTION.fullmatch(change)
    if match is None:
        raise InvalidArgument(f"invalid --change {change!r}: give an instruction and its arguments",
                              hint='e.g. --change \'CMD ["sh"]\'; instructions: ' + ", ".join(INSTRUCTIONS))
    word, rest = match.group(1).upper(), match.group(2).strip()
    if word not in INSTRUCTIONS:
        raise InvalidArgument(f"--change: unknown instruction {match.group(1)!r}",
                              hint="commit applies " + ", ".join(INSTRUCTIONS))
    if not rest:
        raise InvalidArgument(f"--change {word} needs arguments")
    return word, rest


def _command(rest: str, shell: Sequence[str]) -> list[str]:
    """A JSON array of strings (the exec form), else the shell form, as a Dockerfile reads them."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return [*shell, rest]


def _pairs(word: str, rest: str) -> list[tuple[str, str]]:
    """``K=V ...`` (quotes as a shell reads them), or the old ``K V`` form."""
    try:
        tokens = shlex.split(rest)
    except ValueError as exc:
        raise InvalidArgument(f"--change {word} {rest}: {exc}") from None
    if tokens and "=" not in tokens[0]:
        key, _, value = rest.partition(" ")
        value = value.strip()
        if not value and word == "ENV":
            raise InvalidArgument(f"--change ENV {rest}: give NAME=VALUE")
        return [(key, value)]
    pairs = []
    for token in tokens:
        key, eq, value = token.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"--change {word} {rest}: {token!r} is not KEY=VALUE")
        pairs.append((key, value))
    return pairs


def apply_changes(config: dict[str, Any], changes: Iterable[str]) -> None:
    """Apply ``changes`` (Dockerfile instructions, see ``INSTRUCTIONS``) to the
    runtime ``config`` (an image config's ``config`` object) in place.
    InvalidArgument for an unknown or malformed instruction."""
    cmd_set = False
    for change in changes:
        word, rest = _split(change)
        shell = config.get("Shell") or _DEFAULT_SHELL
        if word == "CMD":
            config["Cmd"] = _command(rest, shell)
            cmd_set = True
        elif word == "ENTRYPOINT":
            config["Entrypoint"] = _command(rest, shell)
            if not cmd_set:
                config["Cmd"] = None  # as a Dockerfile's ENTRYPOINT drops the image's CMD
        elif word == "ENV":
            env = list(config.get("Env") or [])
            for key, value in _pairs(word, rest):
                env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
            config["Env"] = env
        elif word == "LABEL":
            labels = dict(config.get("Labels") or {})
            labels.update(_pairs(word, rest))
            config["Labels"] = labels
        elif word == "EXPOSE":
            ports = dict(config.get("ExposedPorts") or {})
            for port in rest.split():
                number, _, proto = port.partition("/")
                if not number.isdigit() or not 0 < int(number) < 65536 or proto not in ("", "tcp", "udp", "sctp"):
                    raise InvalidArgument(f"--change EXPOSE: invalid port {port!r}", hint="PORT[/tcp|udp|sctp]")
                ports[f"{int(number)}/{proto or 'tcp'}"] = {}
            config["ExposedPorts"] = ports
        elif word == "USER":
            config["User"] = rest
        else:  # WORKDIR: relative to the one before, as in a Dockerfile
            config["WorkingDir"] = os.path.normpath(os.path.join(config.get("WorkingDir") or "/", rest))


def check_changes(changes: Iterable[str]) -> None:
    """Refuse bad instructions before anything is done (InvalidArgument)."""
    apply_changes({}, changes)


# --- commit -----------------------------------------------------------------------------


class _Spool:
    """The layer written to a temp file, read back by the layer pipeline (a ``BlobSource``)."""

    def __init__(self, spool: IO[bytes]) -> None:
        self._spool = spool

    def describe(self) -> str:
        return "the container's layer"

    @contextmanager
    def open_blob(self, desc: Descriptor, *, offset: int = 0) -> Iterator[Iterable[bytes]]:
        yield self._chunks(offset)

    def _chunks(self, offset: int) -> Iterator[bytes]:
        # pread: the spool's own file position is left alone.
        fd = self._spool.fileno()
        while chunk := os.pread(fd, _CHUNK, offset):
            offset += len(chunk)
            yield chunk


def _now() -> str:
    ns = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 10**9)) + f".{ns % 10**9:09d}Z"


def _created_by(record: Container, base: dict[str, Any]) -> str:
    entrypoint = record.config.get("entrypoint")
    args = record.config.get("args")
    argv = [*(base.get("Entrypoint") or [] if entrypoint is None else entrypoint),
            *(base.get("Cmd") or [] if args is None else args)]
    return " ".join(str(a) for a in argv)


def new_config(base: bytes, record: Container, diff_id: Digest, options: CommitOptions) -> bytes:
    """The committed image's config: ``base`` with the layer's diff ID, a
    history entry and ``options.changes`` applied."""
    config: dict[str, Any] = json.loads(base)
    runtime = dict(config.get("config") or {})
    created = _now()
    history_entry = {"created": created, "created_by": _created_by(record, runtime)}
    if options.author:
        history_entry["author"] = options.author
        config["author"] = options.author
    if options.message:
        history_entry["comment"] = options.message
    apply_changes(runtime, options.changes)
    config["config"] = runtime
    config["created"] = created
    rootfs = dict(config.get("rootfs") or {})
    rootfs["type"] = "layers"
    rootfs["diff_ids"] = [*(rootfs.get("diff_ids") or []), str(diff_id)]
    config["rootfs"] = rootfs
    config["history"] = [*(config.get("history") or []), history_entry]
    return json.dumps(config, separators=(",", ":")).encode()


def _manifest_bytes(base: Manifest, config: Descriptor, layers: Sequence[Descriptor]) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": base.media_type, "config": config.to_json(),
                       "layers": [d.to_json() for d in layers]}, separators=(",", ":")).encode()


Pause = Callable[[], AbstractContextManager[object]]


def base_image(images: ImageService, record: Container) -> ImageDetail:
    """The stored image the container was made from: its record's image name
    if that still names the image ID it was made from, else any name that
    does.  FailedPrecondition when none does (the image is gone)."""
    names = [record.image, *sorted(i.name for i in images.images.list(namespace=images.namespace))]
    for name in dict.fromkeys(names):
        try:
            detail = images.inspect(name)
        except (NotFound, InvalidArgument):
            continue
        if str(detail.config_digest) == record.image_id:
            return detail
    raise FailedPrecondition(f"the image container {record.name} was made from ({record.image}, "
                             f"{record.image_id}) is no longer stored", hint="pull it again to commit the container")


def commit_container(store: Store, record: Container, *, base_manifest: Manifest, base_config: bytes, name: str,
                     options: CommitOptions, pause: Pause | None = None) -> CommitResult:
    """Commit the container ``record``'s changes on its image (``base_manifest``
    and the bytes of its config, ``base_config``) as the image ``name`` (a
    normalised reference; moved if it names another image).  ``pause``
    freezes the container while its layer is read.  See the module
    docstring.  InvalidArgument for a bad change, FailedPrecondition when the
    container's snapshot is not on the image's top snapshot."""
    from hawser.oci import parse_config

    check_changes(options.changes)
    base = parse_config(base_config)
    layer = _container_layer(store.snapshotter, record)
    top = str(chain_ids(base.diff_ids)[-1]) if base.diff_ids else ""
    if layer.parent != top:
        raise FailedPrecondition(f"container {record.name}'s rootfs is not on its image's layers "
                                 f"(parent {layer.parent or 'none'}, image top {top or 'none'})")
    docker = base_manifest.media_type == media.DOCKER_MANIFEST
    with store.lease() as lease, tempfile.TemporaryFile(dir=store.config.root) as spool:
        with pause() if pause is not None else nullcontext():
            failpoint("commit.paused")
            written = write_layer(spool, layer.source(), compression="gzip")  # type: ignore[arg-type]
        spool.flush()
        layer_desc = Descriptor(media_type=media.DOCKER_LAYER_GZIP if docker else media.OCI_LAYER_GZIP,
                                digest=written.digest, size=written.size)
        config_data = new_config(base_config, record, written.diff_id, options)
        config = parse_config(config_data)
        config_desc = Descriptor(media_type=base_manifest.config.media_type, digest=Digest.of(config_data),
                                 size=len(config_data))
        layers = (*base_manifest.layers, layer_desc)
        manifest = Manifest(media_type=base_manifest.media_type, config=config_desc, layers=layers)
        manifest_data = _manifest_bytes(base_manifest, config_desc, layers)
        manifest_desc = Descriptor(media_type=base_manifest.media_type, digest=Digest.of(manifest_data),
                                   size=len(manifest_data))
        pipeline = LayerPipeline(content=store.content, metadata=store.metadata, snapshotter=store.snapshotter,
                                 source=_Spool(spool), lease=lease, locks_dir=store.locks_dir,
                                 namespace=store.namespace, max_concurrent=2, progress=discard)
        top_chain = pipeline.run(manifest, config)
        store_small_blob(store.content, store.metadata, lease, config_desc, config_data,
                         config_labels(store.snapshotter.name, top_chain), store.namespace)
        store_small_blob(store.content, store.metadata, lease, manifest_desc, manifest_data,
                         manifest_labels(manifest), store.namespace)
        store.metadata.images.put(name, manifest_desc, {}, namespace=store.namespace)
    return CommitResult(name=name, image_id=config_desc.digest, manifest=manifest_desc, layer=layer_desc,
                        diff_id=written.diff_id)


__all__ = ["COMMIT", "INSTRUCTIONS", "Change", "CommitOptions", "CommitResult", "apply_changes", "base_image", "check_changes",
           "commit_container", "container_changes", "new_config"]
