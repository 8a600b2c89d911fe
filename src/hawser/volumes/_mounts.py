"""docker's mount syntax: ``-v SRC:DST[:MODE]``, ``-v DST`` and ``--mount
type=bind|volume|tmpfs,...`` parsed into ``MountRequest`` values, and a
container record's mounts in the layout of docker's inspect (``Mounts``).

A source that is not an absolute path is a volume name, never a path under
the current directory: ``./data`` or ``a/b`` is refused as an invalid name.
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping

from hawser._dataclass import dataclass, field
from hawser.errors import InvalidArgument
from hawser.volumes._store import check_volume_name

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")
_TRUE = ("", "1", "true")
_FALSE = ("0", "false")


@dataclass(frozen=True, slots=True, kw_only=True)
class MountRequest:
    """One mount a user asked for.  ``type``: bind, volume or tmpfs; ``source``:
    the host path of a bind, the name of a volume ("" for an anonymous one)."""

    type: str
    destination: str
    source: str = ""
    readonly: bool = False
    propagation: str = "rprivate"
    nocopy: bool = False  # a volume: no copy-up of the image's content
    volume_options: Mapping[str, str] = field(default_factory=dict)  # --mount volume-opt=
    volume_labels: Mapping[str, str] = field(default_factory=dict)  # --mount volume-label=
    tmpfs_size: int | None = None
    tmpfs_mode: int | None = None


def _destination(path: str, spec: str) -> str:
    if not path.startswith("/"):
        raise InvalidArgument(f"invalid mount {spec!r}: the destination {path!r} must be an absolute path")
    if ".." in path.split("/"):  # refused, not cleaned: what a '..' climbs over is the image's to decide
        raise InvalidArgument(f"invalid mount destination {path!r}: must be a normalised path")
    normal = posixpath.normpath(path)
    if normal == "/":
        raise InvalidArgument(f"invalid mount {spec!r}: the destination cannot be '/'")
    return normal


def parse_volume(spec: str) -> MountRequest:
    """docker's ``-v``: ``/dst[:MODE]`` (an anonymous volume), ``NAME:/dst[:MODE]``
    (a named volume), ``/host:/dst[:MODE]`` (a bind).  MODE: a comma list of
    ro, rw, nocopy, z, Z and a propagation.  InvalidArgument otherwise."""
    parts = spec.split(":")
    if len(parts) == 2 and not parts[1].startswith("/"):
        parts = ["", *parts]  # /dst:ro
    elif len(parts) == 1:
        parts = ["", parts[0]]
    if len(parts) not in (2, 3) or not parts[1]:
        raise InvalidArgument(f"invalid volume {spec!r}: use [SRC:]DST[:MODE]")
    source, dst = parts[0], _destination(parts[1], spec)
    modes = [m for m in parts[2].split(",") if m] if len(parts) == 3 else []
    for m in modes:
        if m not in ("ro", "rw", "nocopy", "z", "Z", *_PROPAGATIONS):
            raise InvalidArgument(f"invalid volume mode {m!r} in {spec!r}",
                                  hint="use ro, rw, nocopy or a propagation (rprivate, rshared, rslave...)")
    propagation = next((m for m in modes if m in _PROPAGATIONS), "rprivate")
    readonly = "ro" in modes
    if source.startswith("/"):
        if "nocopy" in modes:
            raise InvalidArgument(f"invalid volume {spec!r}: nocopy is for volumes, not binds")
        return MountRequest(type="bind", source=posixpath.normpath(source), destination=dst, readonly=readonly,
                            propagation=propagation)
    if source:
        check_volume_name(source)  # ./data, a/b, ~/x: refused, never bound from the current directory
    if propagation != "rprivate":
        raise InvalidArgument(f"invalid volume {spec!r}: a propagation is for binds")
    return MountRequest(type="volume", source=source, destination=dst, readonly=readonly,
                        nocopy="nocopy" in modes)


def _flag(key: str, value: str | None, spec: str) -> bool:
    if value is None or value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidArgument(f"invalid mount {spec!r}: {key}={value!r} is not a boolean")


def parse_size(text: str) -> int:
    """``65536``, ``64k``, ``64m``, ``1g`` (docker's units: powers of 1024)."""
    units = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = text.strip().lower()
    if t.endswith("b") and len(t) > 1 and t[-2] in "kmgt":
        t = t[:-1]
    unit = t[-1] if t and t[-1] in units else ""
    number = t[: len(t) - len(unit)]
    try:
        value = int(float(number) * units[unit])
    except ValueError:
        raise InvalidArgument(f"invalid size {text!r}: use bytes or a number with k, m, g") from None
    if value <= 0:
        raise InvalidArgument(f"invalid size {text!r}: must be positive")
    return value


def parse_mount(spec: str) -> MountRequest:
    """docker's ``--mount``: comma-separated ``key[=value]`` items: type (bind,
    volume (the default), tmpfs), source/src, target/destination/dst,
    readonly/ro, bind-propagation, volume-nocopy, volume-opt=K=V, volume-label=K=V,
    volume-driver=local, tmpfs-size, tmpfs-mode.  InvalidArgument otherwise."""
    kind = "volume"
    source = target = ""
    readonly = nocopy = False
    propagation: str | None = None
    vopts: dict[str, str] = {}
    vlabels: dict[str, str] = {}
    size: int | None = None
    mode: int | None = None
    for item in (i.strip() for i in spec.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        val = value if sep else None
        key = key.lower()
        if key == "type":
            kind = value
        elif key in ("source", "src"):
            source = value
        elif key in ("target", "destination", "dst"):
            target = value
        elif key in ("readonly", "ro"):
            readonly = _flag(key, val, spec)
        elif key == "bind-propagation":
            if value not in _PROPAGATIONS:
                raise InvalidArgument(f"invalid mount {spec!r}: unknown bind-propagation {value!r}")
            propagation = value
        elif key == "volume-nocopy":
            nocopy = _flag(key, val, spec)
        elif key == "volume-opt":
            k, s, v = value.partition("=")
            if not s:
                raise InvalidArgument(f"invalid mount {spec!r}: volume-opt takes KEY=VALUE")
            vopts[k] = v if k not in vopts else vopts[k] + "," + v
        elif key == "volume-label":
            k, _, v = value.partition("=")
            vlabels[k] = v
        elif key == "volume-driver":
            if value != "local":
                raise InvalidArgument(f"invalid mount {spec!r}: only the local volume driver exists")
        elif key == "tmpfs-size":
            size = parse_size(value)
        elif key == "tmpfs-mode":
            try:
                mode = int(value, 8)
            except ValueError:
                raise InvalidArgument(f"invalid mount {spec!r}: tmpfs-mode is octal (e.g. 1777)") from None
        elif key in ("consistency", "bind-recursive"):
            pass  # macOS' consistency; binds are recursive already
        else:
            raise InvalidArgument(f"invalid mount {spec!r}: unknown key {key!r}")
    if not target:
        raise InvalidArgument(f"invalid mount {spec!r}: target= is required")
    dst = _destination(target, spec)
    if kind not in ("bind", "volume", "tmpfs"):
        raise InvalidArgument(f"invalid mount {spec!r}: type {kind!r} is not bind, volume or tmpfs")
    if propagation is not None and kind != "bind":
        raise InvalidArgument(f"invalid mount {spec!r}: bind-propagation is for type=bind")
    if (vopts or vlabels or nocopy) and kind != "volume":
        raise InvalidArgument(f"invalid mount {spec!r}: volume-* options are for type=volume")
    if (size is not None or mode is not None) and kind != "tmpfs":
        raise InvalidArgument(f"invalid mount {spec!r}: tmpfs-* options are for type=tmpfs")
    if kind == "bind":
        if not source.startswith("/"):
            raise InvalidArgument(f"invalid mount {spec!r}: a bind's source must be an absolute path",
                                  hint="a path relative to the current directory is never bound")
        return MountRequest(type="bind", source=posixpath.normpath(source), destination=dst, readonly=readonly,
                            propagation=propagation or "rprivate")
    if kind == "tmpfs":
        if source:
            raise InvalidArgument(f"invalid mount {spec!r}: a tmpfs has no source")
        return MountRequest(type="tmpfs", destination=dst, readonly=readonly, tmpfs_size=size, tmpfs_mode=mode)
    if source:
        check_volume_name(source)
    return MountRequest(type="volume", source=source, destination=dst, readonly=readonly, nocopy=nocopy,
                        volume_options=vopts, volume_labels=vlabels)


def volume_names(config: Mapping[str, Any]) -> list[str]:
    """The volumes a container record's config mounts."""
    return [str(m["volume"]) for m in config.get("mounts") or () if isinstance(m, Mapping) and m.get("volume")]


def container_mounts(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A container record's mounts (its options' binds, volumes and tmpfs) in
    docker's inspect layout: Type, Name (volumes), Source, Destination,
    Driver, Mode, RW, Propagation."""
    out: list[dict[str, Any]] = []
    for m in config.get("mounts") or ():
        if not isinstance(m, Mapping):
            continue
        rw = not m.get("readonly", False)
        if m.get("volume"):
            out.append({"Type": "volume", "Name": m["volume"], "Source": m.get("source", ""),
                        "Destination": m.get("destination", ""), "Driver": "local", "Mode": "" if rw else "ro",
                        "RW": rw, "Propagation": ""})
        else:
            out.append({"Type": "bind", "Source": m.get("source", ""), "Destination": m.get("destination", ""),
                        "Mode": "" if rw else "ro", "RW": rw, "Propagation": m.get("propagation", "rprivate")})
    for t in config.get("tmpfs") or ():
        if isinstance(t, Mapping):
            rw = "ro" not in (t.get("options") or ())
            out.append({"Type": "tmpfs", "Source": "", "Destination": t.get("destination", ""),
                        "Mode": "" if rw else "ro", "RW": rw, "Propagation": ""})
    return out
