"""hawserd's settings: hawser's Config plus the daemon's own sections, flags on top.

The config file is the one the CLI reads (``/etc/hawser/config.toml``), with
three more tables only the daemon uses::

    [daemon]
    address = "/run/hawser/hawser.sock"   # the CRI socket kubelet dials
    log_level = "info"                    # debug, info, warning, error
    [cri]
    stream_address = "127.0.0.1"          # the exec/attach/port-forward server
    stream_port = 0                       # 0: a free port chosen at start
    [cni]
    conf_dir = "/etc/cni/net.d"
    bin_dir = "/usr/lib/cni"

Until ``hawser.config.Config`` grows these sections, they are taken out of the
file here and the rest goes through ``hawser.config.parse_config`` unchanged,
so both keep rejecting unknown keys.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from hawser import _dataclass as dataclasses
from hawser._dataclass import dataclass, field, fields, replace
from hawser.config import Config, parse_config, read_config_file
from hawser.errors import InvalidArgument

DEFAULT_ADDRESS = "/run/hawser/hawser.sock"
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True, slots=True)
class DaemonSection:
    address: str = DEFAULT_ADDRESS
    log_level: str = "info"


@dataclass(frozen=True, slots=True)
class CRISection:
    stream_address: str = "127.0.0.1"
    stream_port: int = 0


@dataclass(frozen=True, slots=True)
class CNISection:
    conf_dir: str = "/etc/cni/net.d"
    bin_dir: str = "/usr/lib/cni"


_SECTIONS: dict[str, type[Any]] = {"daemon": DaemonSection, "cri": CRISection, "cni": CNISection}


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything hawserd is configured with; built once by ``main`` and passed down."""

    config: Config = field(default_factory=Config)
    daemon: DaemonSection = field(default_factory=DaemonSection)
    cri: CRISection = field(default_factory=CRISection)
    cni: CNISection = field(default_factory=CNISection)
    source: str = ""  # the config file read, "" for none

    def effective(self) -> dict[str, Any]:
        """The settings as JSON-ready data (Status(verbose) and the start-up log report it)."""
        data = dataclasses.asdict(self.config)
        for name in _SECTIONS:
            data[name] = dataclasses.asdict(getattr(self, name))
        data["config_file"] = self.source
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class Overrides:
    """Command-line flags; None keeps the file's (or the default) value."""

    root: str | None = None
    state: str | None = None
    snapshotter: str | None = None
    address: str | None = None
    registry_config_dir: str | None = None
    cni_conf_dir: str | None = None
    cni_bin_dir: str | None = None
    stream_address: str | None = None
    stream_port: int | None = None
    log_level: str | None = None


def load_settings(path: str | None, overrides: Overrides) -> Settings:
    """Read the config file (``path``; else $HAWSER_CONFIG; else the default
    path, where a missing file means defaults) and apply the flags."""
    source, text = read_config_file(path)
    settings = Settings() if text is None else parse_settings(text, source=source)
    return apply_overrides(settings, overrides)


def parse_settings(text: str, *, source: str = "config") -> Settings:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{source}: invalid TOML: {exc}") from None
    sections: dict[str, Any] = {}
    for name, cls in _SECTIONS.items():
        table = data.pop(name, {})
        if not isinstance(table, dict):
            raise InvalidArgument(f"{source}: {name} must be a table")
        sections[name] = _build(cls, table, f"{source}: {name}.")
    config = parse_config(_dump_toml(data), source=source)
    settings = Settings(config=config, source=source, **sections)
    _validate(settings, source)
    return settings


def apply_overrides(settings: Settings, o: Overrides) -> Settings:
    config = settings.config.with_overrides(root=o.root, state=o.state, snapshotter=o.snapshotter)
    if o.registry_config_dir is not None:
        config = replace(config, registry=replace(config.registry, config_path=o.registry_config_dir))
    settings = replace(
        settings, config=config,
        daemon=_with(settings.daemon, address=o.address, log_level=o.log_level),
        cri=_with(settings.cri, stream_address=o.stream_address, stream_port=o.stream_port),
        cni=_with(settings.cni, conf_dir=o.cni_conf_dir, bin_dir=o.cni_bin_dir),
    )
    _validate(settings, "command line")
    return settings


def _with(section: Any, **changes: Any) -> Any:
    return replace(section, **{k: v for k, v in changes.items() if v is not None})


def _validate(settings: Settings, source: str) -> None:
    if settings.config.snapshotter not in ("overlayfs", "native"):
        raise InvalidArgument(f"{source}: snapshotter must be 'overlayfs' or 'native', "
                              f"not {settings.config.snapshotter!r}")
    if not os.path.isabs(settings.daemon.address):
        raise InvalidArgument(f"{source}: daemon.address must be an absolute path, not {settings.daemon.address!r}")
    if settings.daemon.log_level not in LOG_LEVELS:
        raise InvalidArgument(f"{source}: daemon.log_level must be one of {', '.join(LOG_LEVELS)}, "
                              f"not {settings.daemon.log_level!r}")
    if not 0 <= settings.cri.stream_port <= 65535:
        raise InvalidArgument(f"{source}: cri.stream_port must be within 0..65535, not {settings.cri.stream_port}")


def _build(cls: type[Any], table: dict[str, Any], where: str) -> Any:
    known = {f.name for f in fields(cls)}
    defaults = cls()
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise InvalidArgument(f"{where}{key}: unknown key", hint=f"known keys: {', '.join(sorted(known))}")
        expected = type(getattr(defaults, key))
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise InvalidArgument(f"{where}{key} must be {expected.__name__}, not {type(value).__name__}")
        kwargs[key] = value
    return cls(**kwargs)


# --- the rest of the file, written back as TOML for parse_config -----------------------


def _dump_toml(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    lines: list[str] = []
    tables: list[tuple[str, dict[str, Any]]] = []
    for key, value in data.items():
        if isinstance(value, dict):
            tables.append((key, value))
        else:
            lines.append(f"{_key(key)} = {_value(value)}")
    for key, value in tables:
        path = (*prefix, key)
        lines.append(f"[{'.'.join(_key(p) for p in path)}]")
        lines.append(_dump_toml(value, path))
    return "\n".join(lines) + "\n"


def _key(key: str) -> str:
    return _string(key)


def _string(text: str) -> str:
    # JSON's escapes are TOML's; DEL is the one control character JSON leaves raw.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    # Dates and times: hawser's config has none; keep TOML's own text form.
    return str(value.isoformat())
