"""hawserd's settings: hawser's one config model (``hawser.config.Config``,
whose ``[daemon]``, ``[cri]`` and ``[cni]`` tables are the daemon's), the files
it was read from, and the flags over it.

The file is the one the CLI reads (``/etc/hawser/config.toml`` and its
``config.d/*.toml``); the daemon's own tables look like::

    [daemon]
    address = "/run/hawser/hawser.sock"   # the CRI socket kubelet dials
    log_level = "info"                    # debug, info, warning, error
    [cri]
    stream_address = "127.0.0.1"          # the exec/attach/port-forward server
    stream_port = 0                       # 0: a free port chosen at start
    [cni]
    conf_dir = "/etc/cni/net.d"
    bin_dir = "/usr/lib/cni"
    [runtimes.crun]                       # a runtime handler pods may name (RuntimeClass)
    binary = "/usr/bin/crun"

At start the daemon also checks what the files cannot say alone: that each
runtime handler's binary exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hawser._dataclass import asdict, dataclass, field
from hawser.config import (
    DEFAULT_RUNTIME,
    CNIConfig,
    Config,
    ConfigFiles,
    CRIConfig,
    DaemonConfig,
    apply_overrides,
    find_runtime_binary,
    read_config,
    runtime_binary,
)
from hawser.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything hawserd is configured with; built once by ``main`` and passed down."""

    config: Config = field(default_factory=Config)
    files: ConfigFiles = field(default_factory=ConfigFiles)

    @property
    def daemon(self) -> DaemonConfig:
        return self.config.daemon

    @property
    def cri(self) -> CRIConfig:
        return self.config.cri

    @property
    def cni(self) -> CNIConfig:
        return self.config.cni

    @property
    def source(self) -> str:
        """The config file read, "" for none."""
        return self.files.main

    def effective(self) -> dict[str, Any]:
        """The settings as JSON-ready data (Status(verbose) and the start-up log report it)."""
        data = asdict(self.config)
        data["config_file"] = self.files.main
        data["config_drop_ins"] = list(self.files.drop_ins)
        return data


def load_settings(path: str | None, overrides: Mapping[str, object]) -> Settings:
    """Read the config file (``path``; else $HAWSER_CONFIG; else the default
    path, where a missing file means defaults) and its drop-ins, and apply the
    flags: ``overrides`` maps dotted keys to flag values, None for a flag not
    given (see ``hawser.config.apply_overrides``)."""
    config, files = read_config(path)
    config = apply_overrides(config, overrides)
    check_runtimes(config, source=files.main or "config")
    return Settings(config=config, files=files)


def check_runtimes(config: Config, *, source: str) -> None:
    """InvalidArgument, naming the key, for a runtime handler whose binary is
    not there: found at start, not by the first pod that names it."""
    for name, table in config.runtimes.items():
        binary = runtime_binary(config, name)
        if find_runtime_binary(binary) is not None:
            continue
        key = (f"runtimes.{name}.binary" if table.binary or name != DEFAULT_RUNTIME or not config.runtime.runc
               else "runtime.runc")
        where = "is not an executable file" if binary.startswith("/") else "is not found on PATH"
        raise InvalidArgument(f"{source}: runtime handler {name!r}: {key} {binary!r} {where}",
                              hint=f"install it, or set {key} to its absolute path"
                                   + ("" if name == DEFAULT_RUNTIME else f", or remove [runtimes.{name}]"))
