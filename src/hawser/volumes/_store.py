"""The volume store of one store root and namespace (docker's local driver).

Layout: ``root/volumes/<namespace>/<name>/_data`` (the mountpoint) and
``.../<name>/volume.json`` (the metadata), as nerdctl lays out containerd's
namespaces.  Crash safety: ``_data`` is made first and ``volume.json``
written atomically last, so a directory without metadata is a create a crash
cut short (not listed; the next create of the name finishes it).  A removal
renames the volume's directory to a dot name first (atomic), then deletes it:
a crash leaves a dot directory, never half a volume, and the next removal or
prune sweeps it.

Who uses a volume is read from the container records of the namespace (their
config's ``mounts`` name it), so a removal can refuse while any container,
running or not, has it.  One lock per namespace orders the two: creating a
container with volumes holds it shared (``in_use``) until its record is
written, a removal exclusively.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping

from hawser._dataclass import dataclass, field
from hawser.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from hawser.host import FileLock, atomic_write, fsync_dir, is_mountpoint, mount, unmount_all

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

    from hawser.metadata import Container, ContainerRecords
    from hawser.store import Store

# docker's label on the volumes it makes for `-v /dst` and an image's VOLUME (prune's default target).
ANONYMOUS_LABEL = "com.docker.volume.anonymous"
_NAME_RE = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
_META = "volume.json"
_DATA = "_data"
# The local driver's options (`volume create -o`): a filesystem mounted on _data while the volume is used.
_OPTION_KEYS = ("type", "device", "o")


def check_volume_name(name: str) -> None:
    """InvalidArgument unless ``name`` is a valid local volume name (docker's rule)."""
    if not _NAME_RE.fullmatch(name) or len(name) > 200:
        raise InvalidArgument(f"{name!r} includes invalid characters for a local volume name, only "
                              '"[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed',
                              hint="to bind a host directory, give its absolute path")


def parse_volume_options(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``-o type=tmpfs -o device=tmpfs -o o=size=64m,uid=1000``, or the same in one
    ``-o type=tmpfs,device=tmpfs,o=size=64m``: a comma starts a new option only
    before one of the driver's keys, so ``o``'s own commas stay in its value."""
    out: dict[str, str] = {}
    for item in items:
        key = ""
        for piece in item.split(","):
            k, sep, v = piece.partition("=")
            if sep and k in _OPTION_KEYS:
                key = k
                out[key] = v
            elif key:
                out[key] += "," + piece
            else:
                raise InvalidArgument(f"invalid volume option {item!r}: use type=, device= or o=",
                                      hint="e.g. -o type=tmpfs -o device=tmpfs -o o=size=64m")
    if out and "type" not in out:
        raise InvalidArgument("volume options need type= (e.g. type=tmpfs, or type=none with o=bind)")
    if out.get("type") and out.get("type") != "tmpfs" and not out.get("device"):
        raise InvalidArgument(f"a volume of type {out['type']!r} needs device=")
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Volume:
    """A volume's metadata; ``mountpoint`` is the host directory containers bind."""

    name: str
    created_at: float
    labels: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, str] = field(default_factory=dict)
    mountpoint: str = ""

    @property
    def anonymous(self) -> bool:
        return ANONYMOUS_LABEL in self.labels

    def to_json(self) -> dict[str, Any]:
        """docker's ``volume inspect`` layout."""
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at))
        return {"CreatedAt": created, "Driver": "local", "Labels": dict(self.labels) or None,
                "Mountpoint": self.mountpoint, "Name": self.name, "Options": dict(self.options) or None,
                "Scope": "local"}


class VolumeStore:
    """The volumes of one namespace of a store."""

    def __init__(self, *, root: str, namespace: str, locks_dir: str, containers: ContainerRecords) -> None:
        self.dir = os.path.join(root, "volumes", namespace)
        self.namespace = namespace
        self._lock_path = os.path.join(locks_dir, f"volumes-{namespace}.lock")
        self._containers = containers
        os.makedirs(locks_dir, mode=0o711, exist_ok=True)

    @classmethod
    def of(cls, store: Store) -> VolumeStore:
        """The volumes of ``store``'s root and namespace."""
        return cls(root=store.config.root, namespace=store.namespace, locks_dir=store.locks_dir,
                   containers=store.metadata.containers)

    # --- records ----------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def _read(self, name: str) -> Volume | None:
        try:
            with open(os.path.join(self._path(name), _META), encoding="utf-8") as f:
                data = json.load(f)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except (OSError, ValueError) as exc:
            raise FailedPrecondition(f"volume {name}: unreadable metadata: {exc}") from None
        return Volume(name=name, created_at=float(data.get("created", 0)), labels=dict(data.get("labels") or {}),
                      options=dict(data.get("options") or {}), mountpoint=os.path.join(self._path(name), _DATA))

    def get(self, name: str) -> Volume:
        """The volume ``name``; NotFound if there is none."""
        volume = self._read(name) if _NAME_RE.fullmatch(name) else None
        if volume is None:
            raise NotFound(f"no such volume: {name}")
        return volume

    def volumes(self) -> list[Volume]:
        """Every volume of the namespace, by name."""
        try:
            names = sorted(n for n in os.listdir(self.dir) if not n.startswith("."))
        except FileNotFoundError:
            return []
        return [v for v in map(self._read, names) if v is not None]

    def create(self, name: str | None = None, *, labels: Mapping[str, str] | None = None,
               options: Mapping[str, str] | None = None, exist_ok: bool = True) -> Volume:
        """Make a volume (no name: a random 64-hex one, as docker).  An existing
        one of that name is returned as it is (docker's create is idempotent)
        unless ``exist_ok`` is False (AlreadyExists).  InvalidArgument for a bad name."""
        name = name or os.urandom(32).hex()
        check_volume_name(name)
        existing = self._read(name)
        if existing is not None:
            if not exist_ok:
                raise AlreadyExists(f"volume {name} exists")
            return existing
        path = self._path(name)
        os.makedirs(self.dir, mode=0o711, exist_ok=True)
        os.makedirs(os.path.join(path, _DATA), mode=0o755, exist_ok=True)
        os.chmod(path, 0o711)
        meta = {"name": name, "created": time.time(), "labels": dict(labels or {}), "options": dict(options or {})}
        # replace=False: of two racing creates one writes, both get the volume that is.
        atomic_write(os.path.join(path, _META), json.dumps(meta, sort_keys=True) + "\n", mode=0o600,
                     replace=False)
        volume = self._read(name)
        assert volume is not None
        return volume

    # --- use --------------------------------------------------------------------

    @contextlib.contextmanager
    def in_use(self) -> Iterator[None]:
        """Held while a container that uses volumes is made (until its record is
        written): no removal of a volume can come between."""
        with FileLock(self._lock_path, shared=True):
            yield

    def activate(self, volume: Volume) -> str:
        """The host directory to bind for ``volume``: with driver options (a tmpfs,
        a bind of ``device``), their filesystem is mounted on ``_data`` first if
        it is not yet (it stays until the volume is removed)."""
        opts = volume.options
        if opts.get("type") and not is_mountpoint(volume.mountpoint):
            flags = [o for o in opts.get("o", "").split(",") if o]
            fstype = opts["type"]
            try:
                mount("tmpfs" if fstype == "tmpfs" else fstype, opts.get("device") or "tmpfs", volume.mountpoint,
                      flags)
            except OSError as exc:
                raise FailedPrecondition(f"volume {volume.name}: cannot mount {opts.get('device')!r} "
                                         f"({fstype}, {opts.get('o', '')}): {exc.strerror}") from None
        return volume.mountpoint

    def users(self) -> dict[str, list[Container]]:
        """The containers (running or not) using each volume, by volume name."""
        from hawser.volumes._mounts import volume_names

        out: dict[str, list[Container]] = {}
        for record in self._containers.list():
            for name in volume_names(record.config):
                out.setdefault(name, []).append(record)
        return out

    # --- removal ----------------------------------------------------------------

    def remove(self, names: list[str] | tuple[str, ...], *, force: bool = False
               ) -> list[tuple[str, Exception | None]]:
        """Remove volumes; each name's outcome (None: removed).  A volume a
        container uses is refused (FailedPrecondition, whatever ``force``);
        ``force`` only quiets NotFound, as docker's ``volume rm -f``."""
        out: list[tuple[str, Exception | None]] = []
        with FileLock(self._lock_path):
            users = self.users()
            for name in names:
                try:
                    volume = self.get(name)
                    used = users.get(name)
                    if used:
                        raise FailedPrecondition(
                            f"remove {name}: volume is in use by container(s) "
                            + ", ".join(c.name for c in used), hint="remove the container(s) first")
                    self._remove(volume)
                except NotFound as exc:
                    out.append((name, None if force else exc))
                except (FailedPrecondition, OSError) as exc:
                    out.append((name, exc))
                else:
                    out.append((name, None))
        return out

    def prune(self, *, all_: bool = False, labels: Mapping[str, str | None] | None = None) -> list[tuple[str, int]]:
        """Remove the volumes no container uses: only anonymous ones unless
        ``all_`` (docker 23+).  ``labels``: only volumes with these labels (a
        None value: the key with any value).  The removed ones and their sizes."""
        removed: list[tuple[str, int]] = []
        with FileLock(self._lock_path):
            users = self.users()
            for volume in self.volumes():
                if volume.name in users or not (all_ or volume.anonymous):
                    continue
                if labels and not matches_labels(volume, labels):
                    continue
                size = disk_usage(volume.mountpoint)
                self._remove(volume)
                removed.append((volume.name, size))
            self._sweep()
        return removed

    def _remove(self, volume: Volume) -> None:
        path = self._path(volume.name)
        if volume.options.get("type"):
            unmount_all(volume.mountpoint, detach=True)
        trash = os.path.join(self.dir, f".removing-{volume.name}-{os.urandom(4).hex()}")
        os.rename(path, trash)  # atomic: the volume is gone, whatever happens to its files
        fsync_dir(self.dir)
        _remove_tree(trash)

    def _sweep(self) -> None:
        """Finish the removals a crash cut short."""
        with contextlib.suppress(FileNotFoundError):
            for n in os.listdir(self.dir):
                if n.startswith(".removing-"):
                    _remove_tree(os.path.join(self.dir, n))


def _remove_tree(path: str) -> None:
    data = os.path.join(path, _DATA)
    if os.path.isdir(data):
        unmount_all(data, detach=True)  # a tmpfs volume a crash left mounted
    shutil.rmtree(path, ignore_errors=True)


def matches_labels(volume: Volume, labels: Mapping[str, str | None]) -> bool:
    """Whether the volume has each label (a None value: any value)."""
    return all(k in volume.labels and (v is None or volume.labels[k] == v) for k, v in labels.items())


def disk_usage(path: str) -> int:
    """Bytes of the files under ``path`` (symlinks not followed)."""
    total = 0
    for directory, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
    return total
