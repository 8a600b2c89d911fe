"""hawser's one typed configuration, read from TOML: the CLI's settings and the
daemon's in one model (the ``[daemon]``, ``[cri]`` and ``[cni]`` tables are
hawserd's; the CLI reads them and leaves them be).

Where the values come from, later over earlier:

1. the defaults below;
2. the config file: ``--config``, else $HAWSER_CONFIG, else
   ``/etc/hawser/config.toml`` (a missing default file means defaults);
3. every ``config.d/*.toml`` beside that file, in lexical order, tables
   merged key by key (CRI-O's ``crio.conf.d``, containerd's ``imports``);
4. command-line flags, through ``apply_overrides`` (both ``hawser`` and
   ``hawserd`` call it).

Every file, and the flags, pass one check (``_build``): unknown keys are errors,
so that a typo does not silently keep a default, and an error names the file
and the key.  A file may say ``version = 1`` at its top; none means 1, and a
version newer than ``CONFIG_VERSION`` is refused rather than half understood.

Built once (by the CLI or the daemon) and passed down; nothing reads it from a
global.
"""

from __future__ import annotations

import os

from hawser._dataclass import asdict, dataclass, field, fields, is_dataclass
from hawser.errors import InvalidArgument

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any, TypeVar

    T = TypeVar("T")

CONFIG_VERSION = 1
"""The config format this hawser reads and writes (the top-level ``version`` key)."""
DEFAULT_CONFIG_PATH = "/etc/hawser/config.toml"
DROP_IN_DIR = "config.d"
"""Beside the config file: ``*.toml`` files merged over it, in lexical order."""
SNAPSHOTTERS = ("overlayfs", "native")
DEFAULT_ADDRESS = "/run/hawser/hawser.sock"
DEFAULT_CONTAINERD_ADDRESS = "/run/hawser/containerd.sock"
DEFAULT_METRICS_ADDRESS = "127.0.0.1:1338"
DEFAULT_RUNTIME = "runc"
"""The runtime handler a pod gets when RunPodSandbox names none (and the CLI's containers)."""
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    config_path: str = "/etc/hawser/certs.d"
    docker_config: str = "~/.docker/config.json"
    max_concurrent_downloads: int = 3
    stall_timeout: float = 30.0
    stall_bytes: int = 1024
    max_retries: int = 5
    credential_helper_timeout: float = 30.0
    # A containers-policy.json (podman's, CRI-O's format) every pull must satisfy; "": none, all accepted.
    policy: str = ""


@dataclass(frozen=True, slots=True)
class GCConfig:
    pull_lease_ttl: float = 3600.0
    grace_period: float = 10.0


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    runc: str = ""
    conmon: str = ""
    # "": the store's own, /hawser/<store id[:12]> (hawser.store), so that stores never share one.
    cgroup_parent: str = ""
    stop_timeout: int = 10
    log_size_max: int = 0
    # The [runtimes.NAME] table of the handler used when a request names none.
    default_runtime: str = DEFAULT_RUNTIME
    # What the CLI's run and create join without --network: bridge, host, none or a network's name.
    default_network: str = "bridge"


@dataclass(frozen=True, slots=True)
class RuntimeHandlerConfig:
    """One ``[runtimes.NAME]`` table: an OCI runtime with runc's command line
    (runc, crun) that a pod selects with RunPodSandbox's ``runtime_handler``
    NAME, as containerd's ``runtimes`` and CRI-O's ``crio.runtime.runtimes``."""

    binary: str = ""  # a path, or a name looked up on PATH; "": the handler's name (runc: runtime.runc first)
    root: str = ""  # the runtime's state (--root); "": under the state dir (runc: state/runc)
    options: list[str] = field(default_factory=list, hash=False)  # global flags before each command
    # Prefixes of the annotations passed into the OCI spec (a trailing "*" allowed); the others are dropped.
    allowed_annotations: list[str] = field(default_factory=lambda: ["*"], hash=False)


def _default_runtimes() -> dict[str, RuntimeHandlerConfig]:
    return {DEFAULT_RUNTIME: RuntimeHandlerConfig()}


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    address: str = DEFAULT_ADDRESS
    # containerd's API (and the CRI too, as on containerd's socket); "" serves none.
    containerd_address: str = DEFAULT_CONTAINERD_ADDRESS
    log_level: str = "info"
    log_format: str = "text"


@dataclass(frozen=True, slots=True)
class CRIConfig:
    stream_address: str = "127.0.0.1"
    stream_port: int = 0


@dataclass(frozen=True, slots=True)
class CNIConfig:
    conf_dir: str = "/etc/cni/net.d"
    bin_dir: str = "/usr/lib/cni"
    # The CLI's default network ("bridge", docker's name): its subnet and bridge interface; "": chosen
    # when it is made (a free /24 of 10.87.0.0/16; hw-<store id[:12]>).
    bridge_subnet: str = ""
    bridge_name: str = ""


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    # HOST:PORT of hawserd's Prometheus endpoint; loopback only by default; "" serves none.
    address: str = DEFAULT_METRICS_ADDRESS


@dataclass(frozen=True, slots=True)
class Config:
    version: int = CONFIG_VERSION
    root: str = "/var/lib/hawser"
    state: str = "/run/hawser"
    snapshotter: str = "overlayfs"
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    gc: GCConfig = field(default_factory=GCConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # [runtimes.NAME] tables, merged over the default one ("runc": the runc on PATH).
    runtimes: dict[str, RuntimeHandlerConfig] = field(default_factory=_default_runtimes, hash=False)
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    cri: CRIConfig = field(default_factory=CRIConfig)
    cni: CNIConfig = field(default_factory=CNIConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)


def runtime_binary(config: Config, name: str) -> str:
    """What the runtime handler ``name`` runs, as configured: its binary, else
    (for runc) ``runtime.runc``, else its name; a path or a name on PATH."""
    binary = config.runtimes[name].binary
    if not binary and name == DEFAULT_RUNTIME:
        binary = config.runtime.runc
    return binary or name


def runtime_root(config: Config, name: str) -> str:
    """The state directory (``--root``) of the runtime handler ``name``:
    state/runc for runc (where hawser's runc has always kept it), else state/runtimes/NAME."""
    root = config.runtimes[name].root
    if root:
        return root
    return os.path.join(config.state, "runc" if name == DEFAULT_RUNTIME else os.path.join("runtimes", name))


def find_runtime_binary(binary: str) -> str | None:
    """The executable ``binary`` names (a path, or a name on PATH, else in
    /usr/sbin, where Debian puts runc); None when there is none."""
    import shutil

    if os.path.isabs(binary):
        return binary if os.path.isfile(binary) and os.access(binary, os.X_OK) else None
    found = shutil.which(binary)
    if found is None and os.access(os.path.join("/usr/sbin", binary), os.X_OK):
        found = os.path.join("/usr/sbin", binary)
    return found


@dataclass(frozen=True, slots=True)
class ConfigFiles:
    """The files a config was read from."""

    main: str = ""  # the config file; "" when there was none (the default path, missing)
    drop_ins: tuple[str, ...] = ()  # config.d/*.toml, in the order they were merged


# --- what each key means: the comments of `hawser config default` ----------------------

_HEADER = """\
# hawser configuration (defaults shown). Command-line flags override these.
# Files config.d/*.toml beside this one are merged over it in name order, table by table,
# key by key: a drop-in sets only the keys it changes."""

_DOCS: dict[str, str] = {
    "version": f"The format of this file. Without it: 1. This hawser reads versions up to {CONFIG_VERSION}.",
    "root": "Persistent data: content store, metadata database, snapshots.",
    "state": "Transient data (lost at reboot): locks, runtime state.",
    "snapshotter": '"overlayfs", or "native" (copies each layer; for filesystems without overlayfs).',
    "registry.config_path":
        "containerd-style hosts.toml directory: certs.d/<host>/hosts.toml, certs.d/_default/hosts.toml.",
    "registry.docker_config": 'Credentials are read from (and hawser login writes to) this docker config file:\n'
                              'its credential helpers, else its "auths". For the default, $REGISTRY_AUTH_FILE\n'
                              'or $DOCKER_CONFIG/config.json wins.',
    "registry.max_concurrent_downloads": "Layers fetched (and unpacked) at once per pull.",
    "registry.stall_timeout":
        "A transfer that brings fewer than stall_bytes bytes in stall_timeout seconds\n"
        "(silence, or a slow drip) has stalled: the pull fails, keeping what arrived,\n"
        "and the next pull resumes from there. stall_bytes = 0: silence only.",
    "registry.stall_bytes": "",
    "registry.max_retries": "Retries per request on 5xx, 429 and dropped connections.",
    "registry.credential_helper_timeout":
        "Seconds a credential helper (docker-credential-NAME, named by credsStore or credHelpers\n"
        "in the docker config) may take to answer.",
    "registry.policy":
        "A signature policy (containers-policy.json, e.g. /etc/containers/policy.json) every pull\n"
        "must satisfy: insecureAcceptAnything, reject, sigstoreSigned (cosign keys) per scope.\n"
        "Empty: no policy, every image accepted.",
    "gc.pull_lease_ttl": "An interrupted pull's partial data is protected this long, then collected.",
    "gc.grace_period":
        "Content and snapshots younger than this are never collected: a second guard,\n"
        "after leases, for a writer that has not attached its lease yet.",
    "runtime.runc": "runc (the runc handler's, unless [runtimes.runc] names a binary) and the monitor;\n"
                    "empty: found on PATH.",
    "runtime.conmon": "",
    "runtime.cgroup_parent": "Every container gets its own cgroup under this one (cgroupfs driver); "
                             "empty: /hawser/<the store's id>, one per store.",
    "runtime.stop_timeout": "Seconds between the stop signal and SIGKILL, unless the command says otherwise.",
    "runtime.log_size_max": "Bytes of log per container before conmon rotates it; 0: unlimited.",
    "runtime.default_runtime": "The runtime handler ([runtimes.NAME]) of a pod whose RunPodSandbox names none,\n"
                               "and of the CLI's containers.",
    "runtime.default_network": "The network of the CLI's run and create without --network: bridge (docker's\n"
                               "default network, [cni] bridge_subnet and bridge_name), host, none or a name.",
    "runtimes": "Runtime handlers: a pod picks one by name (RunPodSandbox's runtime_handler, a RuntimeClass'\n"
                "handler). Each is an OCI runtime with runc's command line (runc, crun); the tables are\n"
                "merged over the default runc one. crun needs a cgroup v2 or v1-only host (not a hybrid one).",
    "daemon.address": "hawserd: the CRI unix socket kubelet dials.",
    "daemon.containerd_address": "containerd's API (ctr, nerdctl) and the CRI on one more socket; empty: none.",
    "daemon.log_level": f"Least important events hawserd logs: {', '.join(LOG_LEVELS)}.",
    "daemon.log_format": '"text": key=value lines (logfmt); "json": one JSON object per line.',
    "cri.stream_address": "The exec/attach/port-forward server's address and port; port 0: a free one at start.",
    "cri.stream_port": "",
    "cni.conf_dir": "CNI network configs, and the plugins.",
    "cni.bin_dir": "",
    "cni.bridge_subnet": "The CLI's default network (\"bridge\", made on first use): its subnet and bridge\n"
                         "interface; empty: a free /24 of 10.87.0.0/16 and hw-<store id[:12]>, so that two\n"
                         "stores on one host never share them. Other networks: hawser network create.",
    "cni.bridge_name": "",
    "metrics.address": "hawserd: HOST:PORT ([::1]:PORT for IPv6) of the Prometheus metrics endpoint; empty: none.",
}
"""The comment above each key (dotted) in the default file; "" shares the comment above."""

_HANDLER_DOCS: dict[str, str] = {
    "binary": "A path, or a name found on PATH; empty: the handler's name (for runc: runtime.runc first).",
    "root": "The runtime's state directory (its --root); empty: state/runc for runc, else state/runtimes/NAME.",
    "options": 'Global flags put before each of its commands, e.g. ["--debug"].',
    "allowed_annotations": "Prefixes of the annotations passed into a container's OCI spec (a trailing \"*\" is\n"
                           'allowed; "*" passes all); the others are left out of the spec.',
}
"""The comment above each key of a ``[runtimes.NAME]`` table in the default file."""


# --- the rules beyond a value's type --------------------------------------------------


def _version(value: Any) -> str | None:
    if value > CONFIG_VERSION:
        return (f"{value} is newer than this hawser reads (version {CONFIG_VERSION}): "
                f"upgrade hawser, or write the file for version {CONFIG_VERSION}")
    if value < 1:
        return f"{value} is not a config version (the first is 1)"
    return None


def _one_of(*choices: str) -> Callable[[Any], str | None]:
    listed = ", ".join(repr(c) for c in choices)
    return lambda value: None if value in choices else f"must be one of {listed}, not {value!r}"


def _within(low: int, high: int | None = None) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if high is None:
            return None if value >= low else f"must be at least {low}, not {value}"
        return None if low <= value <= high else f"must be within {low}..{high}, not {value}"

    return check


def _absolute(value: Any) -> str | None:
    return None if os.path.isabs(value) else f"must be an absolute path, not {value!r}"


def _absolute_or_empty(value: Any) -> str | None:
    return None if value == "" else _absolute(value)


def _handler_name(value: Any) -> str | None:
    # A RuntimeClass' handler is a DNS label (Kubernetes validates it as one).
    if (0 < len(value) <= 63 and value[0] != "-" and value[-1] != "-"
            and all(c in "abcdefghijklmnopqrstuvwxyz0123456789-" for c in value)):
        return None
    return (f"must be a DNS label (lowercase letters, digits and '-', at most 63, as a RuntimeClass' "
            f"handler), not {value!r}")


def _binary(value: Any) -> str | None:
    if value == "" or os.path.isabs(value) or "/" not in value:
        return None
    return f"must be an absolute path or a name found on PATH, not {value!r}"


def _flags(value: Any) -> str | None:
    bad = [v for v in value if not v.startswith("-")]
    return f"must be flags (each starts with '-'), not {bad[0]!r}" if bad else None


def _not_empty_items(value: Any) -> str | None:
    return "must not hold an empty string" if "" in value else None


def _host_port_or_empty(value: Any) -> str | None:
    if value == "":
        return None
    host, sep, port = value.rpartition(":")
    if sep and host and port.isdigit() and int(port) <= 65535:
        return None
    return f'must be HOST:PORT (e.g. "127.0.0.1:1338", "[::1]:1338") or "", not {value!r}'


_RULES: dict[str, Callable[[Any], str | None]] = {
    "version": _version,
    "snapshotter": _one_of(*SNAPSHOTTERS),
    "registry.max_concurrent_downloads": _within(1),
    "daemon.address": _absolute,
    "daemon.containerd_address": _absolute_or_empty,
    "daemon.log_level": _one_of(*LOG_LEVELS),
    "daemon.log_format": _one_of(*LOG_FORMATS),
    "cri.stream_port": _within(0, 65535),
    "runtime.cgroup_parent": _absolute_or_empty,
    "runtime.default_runtime": _handler_name,
    "runtimes.*.binary": _binary,
    "runtimes.*.root": _absolute_or_empty,
    "runtimes.*.options": _flags,
    "runtimes.*.allowed_annotations": _not_empty_items,
    "metrics.address": _host_port_or_empty,
}
"""Dotted key -> what is wrong with a value of the right type, or None.  Each
rule looks at one key only, so that a drop-in checked alone is checked fully.
A table of tables (``runtimes``) names its keys ``runtimes.*.key``."""

_TABLES_OF: dict[str, type[Any]] = {"runtimes": RuntimeHandlerConfig}
"""Keys whose value is a table of tables named by the user (``[runtimes.NAME]``),
and the model of each; the tables are merged over the default's, by name."""


def _rule_key(name: str) -> str:
    parts = name.split(".")
    if len(parts) == 3 and parts[0] in _TABLES_OF:
        parts[1] = "*"
    return ".".join(parts)


# --- the one parser -------------------------------------------------------------------


def _build(cls: type[T], data: Mapping[str, Any], where: str, *, source: str = "config") -> T:
    """``cls`` from the table ``data``: each key known, each value of its
    default's type (an integer is taken for a float) and within its rule;
    missing keys keep their defaults.  ``where`` is the table's dotted prefix
    (``"registry."``); ``source`` names the file (or "command line") in errors."""
    defaults = cls()
    known = [f.name for f in fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}{key}"
        if key not in known:
            table = f" in [{where[:-1]}]" if where else ""
            raise InvalidArgument(f"{source}: unknown key {name!r}", hint=f"known keys{table}: {', '.join(known)}")
        default = getattr(defaults, key)
        if is_dataclass(default):
            if not isinstance(value, dict):
                raise InvalidArgument(f"{source}: {name} must be a table, not {type(value).__name__}")
            kwargs[key] = _build(type(default), value, f"{name}.", source=source)
            continue
        if name in _TABLES_OF:
            kwargs[key] = {**default, **_build_tables(_TABLES_OF[name], value, name, source=source)}
            continue
        expected = type(default)
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise InvalidArgument(f"{source}: {name} must be {expected.__name__}, not {type(value).__name__}")
        if expected is list:
            wrong = next((v for v in value if not isinstance(v, str)), None)
            if wrong is not None:
                raise InvalidArgument(f"{source}: {name} must be a list of strings, not of {type(wrong).__name__}")
            value = list(value)
        rule = _RULES.get(_rule_key(name))
        problem = rule(value) if rule else None
        if problem:
            raise InvalidArgument(f"{source}: {name} {problem}")
        kwargs[key] = value
    return cls(**kwargs)


def _build_tables(cls: type[T], data: Any, name: str, *, source: str) -> dict[str, T]:
    """The named tables of ``[NAME.x]``, ``[NAME.y]``..., each a ``cls``."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"{source}: {name} must be a table of tables ([{name}.NAME]), "
                              f"not {type(data).__name__}")
    tables: dict[str, T] = {}
    for key, value in data.items():
        problem = _handler_name(key)
        if problem:
            raise InvalidArgument(f"{source}: [{name}.{key}]: the name {problem}")
        if not isinstance(value, dict):
            raise InvalidArgument(f"{source}: {name}.{key} must be a table, not {type(value).__name__}")
        tables[key] = _build(cls, value, f"{name}.{key}.", source=source)
    return tables


def _whole(config: Config, source: str) -> Config:
    """The checks across keys, on a config merged from all its files (a drop-in
    alone may name a handler another file defines)."""
    if config.runtime.default_runtime not in config.runtimes:
        raise InvalidArgument(f"{source}: runtime.default_runtime {config.runtime.default_runtime!r} names no "
                              "[runtimes.NAME] table",
                              hint="configured: " + ", ".join(sorted(config.runtimes)))
    return config


def _load_toml(text: str, source: str) -> dict[str, Any]:
    """The table of one file, checked on its own (so that an error names this file)."""
    import tomllib  # with its regexes ~5 ms: only when a config file exists

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgument(f"{source}: invalid TOML: {exc}") from None
    _build(Config, data, "", source=source)
    return data


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on ``base``: tables merged key by key, any other value replaced."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        merged[key] = _merge(below, value) if isinstance(value, dict) and isinstance(below, dict) else value
    return merged


def config_from_dict(data: Mapping[str, Any]) -> Config:
    """A config from its dict form (``asdict``), checked as a file is: how a
    child process gets its parent's."""
    return _whole(_build(Config, data, ""), "config")


def parse_config(text: str, *, source: str = "config") -> Config:
    """One config file's text as a Config; InvalidArgument naming ``source`` and the key."""
    return _whole(_build(Config, _load_toml(text, source), "", source=source), source)


def read_config(path: str | None) -> tuple[Config, ConfigFiles]:
    """The config file (``path``; else $HAWSER_CONFIG; else the default path,
    where a missing file means defaults) with its drop-ins merged over it, and
    the files read.  InvalidArgument naming the file that is wrong."""
    main, text = read_config_file(path)
    layers = [] if text is None else [(main, text)]
    drop_ins = _read_drop_ins(os.path.join(os.path.dirname(main), DROP_IN_DIR))
    data: dict[str, Any] = {}
    for source, body in layers + drop_ins:
        data = _merge(data, _load_toml(body, source))
    config = _whole(_build(Config, data, "", source=main), main)
    return config, ConfigFiles(main=main if text is not None else "", drop_ins=tuple(p for p, _ in drop_ins))


def load_config(path: str | None) -> Config:
    """``read_config``'s Config."""
    return read_config(path)[0]


def apply_overrides(config: Config, overrides: Mapping[str, object]) -> Config:
    """``config`` with command-line flags over it: the one place flags override
    the files, for ``hawser`` and ``hawserd`` alike.  ``overrides`` maps a
    dotted key (``"root"``, ``"registry.config_path"``) to its flag's value;
    None (a flag not given) keeps the config's value.  The values pass the
    files' checks; an error names the key and "command line"."""
    tables: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        *path, name = key.split(".")
        table = tables
        for part in path:
            table = table.setdefault(part, {})
        table[name] = value
    if not tables:
        return config
    return _whole(_build(Config, _merge(asdict(config), tables), "", source="command line"), "command line")


def read_config_file(path: str | None) -> tuple[str, str | None]:
    """``(source, text)`` of the config file: ``path``, else $HAWSER_CONFIG,
    else the default path, where a missing file means defaults (text None).
    InvalidArgument if a named file is missing or unreadable."""
    target = path or os.environ.get("HAWSER_CONFIG") or DEFAULT_CONFIG_PATH
    try:
        return target, _read_text(target)
    except FileNotFoundError:
        if path:
            raise InvalidArgument(f"config file {path} does not exist") from None
        return target, None


def _read_drop_ins(directory: str) -> list[tuple[str, str]]:
    """``(path, text)`` of each ``*.toml`` in ``directory``, in lexical order; none if it does not exist."""
    try:
        names = sorted(n for n in os.listdir(directory) if n.endswith(".toml") and not n.startswith("."))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise InvalidArgument(f"cannot read config drop-in directory {directory}: {exc.strerror}") from None
    paths = [os.path.join(directory, name) for name in names]
    try:
        return [(p, _read_text(p)) for p in paths]
    except FileNotFoundError as exc:  # removed since the listing
        raise InvalidArgument(f"cannot read config file {exc.filename}: {exc.strerror}") from None


def _read_text(path: str) -> str:
    """The UTF-8 text of ``path``; FileNotFoundError as it is, any other failure InvalidArgument."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise InvalidArgument(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise InvalidArgument(f"config file {path} is not UTF-8 text: {exc.reason} at byte {exc.start}",
                              hint="TOML files are UTF-8") from None


# --- the default file -----------------------------------------------------------------


def default_toml() -> str:
    """The default config file: every key of the model at its default under its
    comment (``_DOCS``), written by tomli_w; it parses back to ``Config()``."""
    import tomli_w  # only here: every other command only reads TOML

    blocks = [_HEADER]

    def table(value: Any, path: tuple[str, ...], comment: str = "") -> None:
        lines = [f"# {line}\n" for line in comment.splitlines()]
        if path:
            header: dict[str, Any] = {}
            for part in reversed(path):
                header = {part: header}
            lines.append(tomli_w.dumps(header))
        # The keys of a [runtimes.NAME] table are documented once for every name.
        docs, prefix = (_HANDLER_DOCS, ()) if len(path) == 2 and path[0] in _TABLES_OF else (_DOCS, path)
        nested: list[tuple[tuple[str, ...], Any, str]] = []
        for f in fields(value):
            item = getattr(value, f.name)
            dotted = ".".join((*path, f.name))
            if is_dataclass(item):
                nested.append(((*path, f.name), item, ""))
                continue
            if dotted in _TABLES_OF:  # [runtimes.NAME] tables, under the comment on them all
                nested += [((*path, f.name, name), sub, "" if i else _DOCS.get(dotted, ""))
                           for i, (name, sub) in enumerate(item.items())]
                continue
            doc = docs.get(".".join((*prefix, f.name)), "")
            lines.extend(f"# {line}\n" for line in doc.splitlines())
            lines.append(tomli_w.dumps({f.name: item}))
        blocks.append("".join(lines).rstrip("\n"))
        for sub_path, item, sub_comment in nested:
            table(item, sub_path, sub_comment)

    table(Config(), ())
    return "\n\n".join(blocks) + "\n"
