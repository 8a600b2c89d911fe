"""CNI network configuration files (spec section 1), read the way CNI users expect.

The config dir holds ``*.conflist`` files (a network: a list of plugins) and
``*.conf``/``*.json`` files (one plugin, wrapped here into a list of one).  The
lexically first *valid* file is the network; invalid files are skipped with a
logged reason.  ``ConfigDir.snapshot`` re-reads the dir only when its mtime or
a candidate file's identity (mtime, size, inode) changed, so a new, edited or
removed file is picked up on the next call without a restart, and an
unchanged dir costs a listdir and a few stats.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from typing import Any

from hawser._dataclass import dataclass
from hawser.errors import InvalidArgument

log = logging.getLogger("hawser.network")

# Spec versions of network configs hawser runs (their results share one format).
CONFIG_VERSIONS = ("1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0")
CONFIG_EXTENSIONS = (".conflist", ".conf", ".json")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def version_tuple(version: str) -> tuple[int, ...]:
    """"0.4.0" -> (0, 4, 0); anything unparsable sorts first."""
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (-1,)


@dataclass(frozen=True, slots=True)
class PluginConfig:
    """One plugin of a network: its executable name, the capabilities it
    declares and its whole config object (JSON text, handed to it on exec)."""

    type: str
    capabilities: frozenset[str]
    raw: str
    ipam_type: str = ""  # the IPAM plugin it delegates to, if any


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """A network (a config list).  ``raw`` is the normalized list as JSON: what
    the result cache keeps so DEL runs with the config ADD ran with."""

    name: str
    cni_version: str
    plugins: tuple[PluginConfig, ...]
    disable_check: bool = False
    source: str = ""
    raw: str = "{}"
    disable_gc: bool = False

    @property
    def supports_check(self) -> bool:
        """CHECK and prevResult on DEL arrived with spec 0.4.0."""
        return version_tuple(self.cni_version) >= (0, 4, 0)

    @property
    def supports_status_and_gc(self) -> bool:
        """STATUS and GC arrived with spec 1.1.0; plugins of older configs may not know them."""
        return version_tuple(self.cni_version) >= (1, 1, 0)


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    """The state of the config dir at one moment."""

    conf_dir: str
    network: NetworkConfig | None
    # (file name, why it was skipped), in the order the files were tried
    skipped: tuple[tuple[str, str], ...] = ()
    # set when the dir itself cannot be read
    error: str = ""


def _invalid(source: str, why: str) -> InvalidArgument:
    return InvalidArgument(f"CNI config {source}: {why}")


def _pick_version(obj: dict[str, Any], source: str) -> str:
    """The spec version to run the network with.  Spec 1.1's ``cniVersions``
    lists every version the config conforms to: the runtime picks the highest
    one it speaks, counting ``cniVersion`` too (libcni's rule), so a config
    saying ``"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "1.1.0"]`` runs
    as 1.1.0 here and as 1.0.0 with an older runtime."""
    version = obj.get("cniVersion")
    versions = obj.get("cniVersions")
    if versions is not None:
        if not isinstance(versions, list) or not all(isinstance(v, str) for v in versions):
            raise _invalid(source, "cniVersions is not a list of strings")
        offered: list[str] = [*versions, *([version] if isinstance(version, str) else [])]
        usable = [v for v in offered if v in CONFIG_VERSIONS]
        if usable:
            return max(usable, key=version_tuple)
        raise _invalid(source, f"none of cniVersions {versions} is supported "
                               f"(hawser speaks {', '.join(CONFIG_VERSIONS)})")
    if not isinstance(version, str):
        raise _invalid(source, "cniVersion is missing or not a string")
    if version not in CONFIG_VERSIONS:
        raise _invalid(source, f"cniVersion {version!r} is not supported (hawser speaks {', '.join(CONFIG_VERSIONS)})")
    return version


def _plugin(obj: Any, source: str, index: int) -> PluginConfig:
    where = f"plugin {index}"
    if not isinstance(obj, dict):
        raise _invalid(source, f"{where} is not an object")
    kind = obj.get("type")
    if not isinstance(kind, str) or not kind:
        raise _invalid(source, f"{where} has no \"type\"")
    # the type names an executable looked up in the bin dirs, never a path
    if "/" in kind or kind in (".", "..") or "\0" in kind:
        raise _invalid(source, f"{where} type {kind!r} is not a plugin name")
    caps = obj.get("capabilities", {})
    if not isinstance(caps, dict) or not all(isinstance(v, bool) for v in caps.values()):
        raise _invalid(source, f"{where} ({kind}) capabilities must map names to true/false")
    ipam = obj.get("ipam", {})
    if not isinstance(ipam, dict):
        raise _invalid(source, f"{where} ({kind}) ipam is not an object")
    ipam_type = ipam.get("type", "")
    if not isinstance(ipam_type, str) or "/" in ipam_type or ipam_type in (".", ".."):
        raise _invalid(source, f"{where} ({kind}) ipam type {ipam_type!r} is not a plugin name")
    return PluginConfig(type=kind, capabilities=frozenset(k for k, v in caps.items() if v),
                        raw=json.dumps(obj, separators=(",", ":")), ipam_type=ipam_type)


def parse_network_config(data: str | bytes, *, source: str = "<config>", single: bool = False) -> NetworkConfig:
    """Parse a config list, or with ``single`` a one-plugin config (``.conf``)
    wrapped into a list.  Raises InvalidArgument saying what is wrong."""
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise _invalid(source, f"not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise _invalid(source, "not a JSON object")
    if single:
        if "plugins" in obj:
            raise _invalid(source, "a single-plugin config (.conf/.json) must not have \"plugins\"; "
                                   "rename it to .conflist")
        obj = {"cniVersion": obj.get("cniVersion"), "name": obj.get("name"), "plugins": [obj],
               **({"cniVersions": obj["cniVersions"]} if "cniVersions" in obj else {})}
        if obj["cniVersion"] is None:
            del obj["cniVersion"]
    name = obj.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise _invalid(source, f"network name {name!r} is missing or invalid "
                               "(letters, digits, '_', '.', '-', starting with a letter or digit)")
    version = _pick_version(obj, source)
    plugins = obj.get("plugins")
    if not isinstance(plugins, list) or not plugins:
        raise _invalid(source, "\"plugins\" is missing or empty")
    parsed = tuple(_plugin(p, source, i) for i, p in enumerate(plugins))
    disable_check = _flag(obj, "disableCheck", source)
    disable_gc = _flag(obj, "disableGC", source)
    normalized: dict[str, Any] = {"cniVersion": version, "name": name, "disableCheck": disable_check}
    if disable_gc:  # only when set: entries cached before spec 1.1 keep their exact form
        normalized["disableGC"] = True
    normalized["plugins"] = plugins
    return NetworkConfig(name=name, cni_version=version, plugins=parsed, disable_check=disable_check, source=source,
                         raw=json.dumps(normalized, separators=(",", ":")), disable_gc=disable_gc)


def _flag(obj: dict[str, Any], key: str, source: str) -> bool:
    value = obj.get(key, False)
    if isinstance(value, str):  # libcni accepts "true"/"false" strings too
        value = value.lower() == "true"
    if not isinstance(value, bool):
        raise _invalid(source, f"{key} is not a boolean")
    return value


def load_file(path: str) -> NetworkConfig:
    """Read one config file.  Raises InvalidArgument (bad content or an
    unknown extension) or OSError (unreadable)."""
    ext = os.path.splitext(path)[1]
    if ext not in CONFIG_EXTENSIONS:
        raise _invalid(path, f"unknown extension {ext!r}")
    with open(path, "rb") as f:
        data = f.read(1 << 20)
    return parse_network_config(data, source=path, single=ext != ".conflist")


_Key = tuple[int, tuple[tuple[str, int, int, int], ...]]


class ConfigDir:
    """The CNI config dir, re-read when it changes (no watcher thread: callers
    ask, and the answer is fresh).  Safe to use from several threads."""

    def __init__(self, conf_dir: str) -> None:
        self.conf_dir = conf_dir
        self._key: _Key | None = None
        self._snapshot: ConfigSnapshot | None = None
        self._lock = threading.Lock()

    def _current_key(self) -> _Key:
        st = os.stat(self.conf_dir)
        files = []
        with os.scandir(self.conf_dir) as entries:
            for entry in entries:
                # dotfiles are editors' and atomic writers' temporaries
                if entry.name.startswith(".") or os.path.splitext(entry.name)[1] not in CONFIG_EXTENSIONS:
                    continue
                try:
                    fst = entry.stat()  # follows symlinks, as a reader does
                except OSError:
                    continue
                files.append((entry.name, fst.st_mtime_ns, fst.st_size, fst.st_ino))
        files.sort()
        return st.st_mtime_ns, tuple(files)

    def snapshot(self) -> ConfigSnapshot:
        """The chosen network (or None) and why other files were skipped.
        Never raises: an unreadable dir is a snapshot with ``error`` set."""
        with self._lock:
            return self._read()

    def _read(self) -> ConfigSnapshot:
        try:
            key = self._current_key()
        except OSError as exc:
            snap = ConfigSnapshot(conf_dir=self.conf_dir, network=None,
                                  error=f"cannot read {self.conf_dir}: {exc.strerror or exc}")
            self._remember(None, snap)
            return snap
        if key == self._key and self._snapshot is not None:
            return self._snapshot
        skipped: list[tuple[str, str]] = []
        network = None
        for name, *_ in key[1]:
            try:
                network = load_file(os.path.join(self.conf_dir, name))
                break
            except InvalidArgument as exc:
                skipped.append((name, exc.message))
            except OSError as exc:
                skipped.append((name, f"cannot read it: {exc.strerror or exc}"))
        snap = ConfigSnapshot(conf_dir=self.conf_dir, network=network, skipped=tuple(skipped))
        self._remember(key, snap)
        return snap

    def _remember(self, key: _Key | None, snap: ConfigSnapshot) -> None:
        old = self._snapshot
        self._key, self._snapshot = key, snap
        if old == snap:
            return
        for name, why in snap.skipped:
            log.warning("skipping CNI config %s: %s", os.path.join(self.conf_dir, name), why)
        if snap.network is not None:
            log.info("CNI network %r (cniVersion %s, plugins %s) from %s", snap.network.name, snap.network.cni_version,
                     ",".join(p.type for p in snap.network.plugins), snap.network.source)
        else:
            log.warning("no valid CNI network config in %s%s", self.conf_dir,
                        f" ({snap.error})" if snap.error else "")
