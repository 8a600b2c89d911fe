"""hawser's one typed configuration object, read from TOML.

Built once (by the CLI or the daemon) and passed down; nothing reads it from a
global.  Unknown keys are errors, so a typo does not silently keep a default.
"""

from __future__ import annotations

import os

from hawser._dataclass import dataclass, field, fields, is_dataclass, replace
from hawser.errors import InvalidArgument

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

DEFAULT_CONFIG_PATH = "/etc/hawser/config.toml"


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    config_path: str = "/etc/hawser/certs.d"
    docker_config: str = "~/.docker/config.json"
    max_concurrent_downloads: int = 3
    stall_timeout: float = 30.0
    stall_bytes: int = 1024
    max_retries: int = 5


@dataclass(frozen=True, slots=True)
class GCConfig:
    pull_lease_ttl: float = 3600.0
    grace_period: float = 10.0


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    runc: str = ""
    conmon: str = ""
    cgroup_parent: str = "/hawser"
    stop_timeout: int = 10
    log_size_max: int = 0


@dataclass(frozen=True, slots=True)
class Config:
    root: str = "/var/lib/hawser"
    state: str = "/run/hawser"
    snapshotter: str = "overlayfs"
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    gc: GCConfig = field(default_factory=GCConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def with_overrides(self, **changes: Any) -> Config:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


DEFAULT_TOML = """\
# hawser configuration (defaults shown). Command-line flags override these.

# Persistent data: content store, metadata database, snapshots.
root = "/var/lib/hawser"
# Transient data (lost at reboot): locks, runtime state.
state = "/run/hawser"
# "overlayfs", or "native" (copies each layer; for filesystems without overlayfs).
snapshotter = "overlayfs"

[registry]
# containerd-style hosts.toml directory: certs.d/<host>/hosts.toml, certs.d/_default/hosts.toml.
config_path = "/etc/hawser/certs.d"
# Credentials are read from the "auths" of this docker config file.
docker_config = "~/.docker/config.json"
# Layers fetched (and unpacked) at once per pull.
max_concurrent_downloads = 3
# A transfer that brings fewer than stall_bytes bytes in stall_timeout seconds
# (silence, or a slow drip) has stalled: the pull fails, keeping what arrived,
# and the next pull resumes from there. stall_bytes = 0: silence only.
stall_timeout = 30.0
stall_bytes = 1024
# Retries per request on 5xx, 429 and dropped connections.
max_retries = 5

[gc]
# An interrupted pull's partial data is protected this long, then collected.
pull_lease_ttl = 3600.0
# Content and snapshots younger than this are never collected: a second guard,
# after leases, for a writer that has not attached its lease yet.
grace_period = 10.0

[runtime]
# The OCI runtime and the monitor; empty: found on PATH.
runc = ""
conmon = ""
# Every container gets its own cgroup under this one (cgroupfs driver).
cgroup_parent = "/hawser"
# Seconds between the stop signal and SIGKILL, unless the command says otherwise.
stop_timeout = 10
# Bytes of log per container before conmon rotates it; 0: unlimited.
log_size_max = 0
"""


def _build(cls: type[Any], data: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        spec = known.get(key)
        if spec is None:
            raise InvalidArgument(f"config: unknown key {where}{key!r}", hint=f"known keys: {', '.join(known)}")
        default = getattr(cls(), key)
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise InvalidArgument(f"config: {where}{key} must be a table")
            kwargs[key] = _build(type(default), value, f"{where}{key}.")
            continue
        expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise InvalidArgument(f"config: {where}{key} must be {expected.__name__}, not {type(value).__name__}")
        kwargs[key] = value
    return cls(**kwargs)


def parse_config(text: str, *, source: str = "config") -> Config:
    import tomllib  # with its regexes ~5 ms: only when a config file exists

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{source}: invalid TOML: {exc}") from None
    config: Config = _build(Config, data, "")
    if config.snapshotter not in ("overlayfs", "native"):
        raise InvalidArgument(f"{source}: snapshotter must be 'overlayfs' or 'native', not {config.snapshotter!r}")
    if config.registry.max_concurrent_downloads < 1:
        raise InvalidArgument(f"{source}: registry.max_concurrent_downloads must be at least 1")
    return config


def read_config_file(path: str | None) -> tuple[str, str | None]:
    """``(source, text)`` of the config file: ``path``, else $HAWSER_CONFIG,
    else the default path, where a missing file means defaults (text None).
    InvalidArgument if a named file is missing or unreadable."""
    target = path or os.environ.get("HAWSER_CONFIG") or DEFAULT_CONFIG_PATH
    try:
        with open(target, encoding="utf-8") as f:
            return target, f.read()
    except FileNotFoundError:
        if path:
            raise InvalidArgument(f"config file {path} does not exist") from None
        return target, None
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {target}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"config file {target} is not UTF-8 text: {exc.reason} at byte {exc.start}",
                              hint="TOML files are UTF-8") from None


def load_config(path: str | None) -> Config:
    """Load ``path``; a missing file at the default path means defaults."""
    source, text = read_config_file(path)
    return Config() if text is None else parse_config(text, source=source)
