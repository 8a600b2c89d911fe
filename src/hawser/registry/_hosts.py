"""Registry hosts from containerd's ``certs.d/<namespace>/hosts.toml`` format.

For a reference's registry (its *namespace*, e.g. ``docker.io`` or
``127.0.0.1:5000``) the configuration directory is searched for, in order,
``host_port_`` (for names with a port), ``host:port`` / ``host``, and
``_default``; the first directory that exists wins.  Its ``hosts.toml`` lists
mirrors as ``[host."URL"]`` tables, tried in file order, and the ``server``,
tried last.  A directory without ``hosts.toml`` is read the way docker reads
``certs.d``: ``*.crt`` files are CA certificates, ``*.cert``/``*.key`` pairs
client certificates.

Without any configuration, ``docker.io`` is served by
``https://registry-1.docker.io`` and every other namespace by
``https://<namespace>``; ``plain_http`` turns that default into ``http://``.
Loopback hosts are *not* silently switched to http: that is containerd's
behaviour and it keeps a typo from downgrading a connection.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from hawser._dataclass import dataclass
from hawser.errors import InvalidArgument

_log = logging.getLogger(__name__)

CAP_PULL = "pull"
CAP_RESOLVE = "resolve"
CAP_PUSH = "push"
ALL_CAPABILITIES = frozenset({CAP_PULL, CAP_RESOLVE, CAP_PUSH})

DOCKER_HUB = "docker.io"
DOCKER_HUB_SERVER = "registry-1.docker.io"
DEFAULT_NAMESPACE_DIR = "_default"

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """How to verify a host and which client certificate to show it."""

    skip_verify: bool = False
    ca_files: tuple[Path, ...] = ()
    # (certificate, key) pairs; key None when the certificate file holds the key.
    client_certs: tuple[tuple[Path, Path | None], ...] = ()


@dataclass(frozen=True, slots=True)
class RegistryHost:
    """One place to send distribution API requests to, mirror or server."""

    scheme: str
    host: str  # netloc: "registry-1.docker.io", "127.0.0.1:5000", "[::1]:5000"
    path: str  # the API root, "/v2" unless override_path says otherwise
    capabilities: frozenset[str] = ALL_CAPABILITIES
    tls: TLSConfig = TLSConfig()
    headers: tuple[tuple[str, str], ...] = ()
    proxy: str | None = None
    dial_timeout: float | None = None
    # The namespace this host serves in lieu of (set for mirrors): sent as ?ns=.
    namespace: str = ""
    mirror: bool = False

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}{self.path}"

    def can(self, capability: str) -> bool:
        return capability in self.capabilities

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}"


def namespace_dirs(namespace: str) -> list[str]:
    """Directory names to look for, most specific first (containerd's order)."""
    names: list[str] = []
    host, port = split_port(namespace)
    if port:
        names.append(f"{host}_{port}_")
    names.append(namespace)
    names.append(DEFAULT_NAMESPACE_DIR)
    return names


def split_port(netloc: str) -> tuple[str, str]:
    """``("127.0.0.1", "5000")`` for ``127.0.0.1:5000``; IPv6 brackets kept."""
    if netloc.startswith("["):
        end = netloc.find("]")
        if end != -1 and netloc[end + 1:end + 2] == ":":
            return netloc[:end + 1], netloc[end + 2:]
        return netloc, ""
    host, sep, port = netloc.rpartition(":")
    if sep and port.isdigit():
        return host, port
    return netloc, ""


def default_server(namespace: str, *, plain_http: bool) -> tuple[str, str]:
    """(scheme, netloc) of the registry that serves a namespace by default."""
    netloc = DOCKER_HUB_SERVER if namespace == DOCKER_HUB else namespace
    return ("http" if plain_http else "https"), netloc


def find_namespace_dir(config_dir: Path | None, namespace: str) -> Path | None:
    if config_dir is None:
        return None
    for name in namespace_dirs(namespace):
        # A namespace must never walk out of the config dir ("../x").
        if "/" in name or name in (".", ".."):
            continue
        candidate = config_dir / name
        if candidate.is_dir():
            return candidate
    return None


def resolve_hosts(config_dir: Path | None, namespace: str, *, plain_http: bool = False) -> list[RegistryHost]:
    """The hosts to try for ``namespace``, in order: mirrors first, server last.

    Raises InvalidArgument when a hosts.toml is malformed (naming the file and
    the field).
    """
    directory = find_namespace_dir(config_dir, namespace)
    scheme, netloc = default_server(namespace, plain_http=plain_http)
    if directory is None:
        return [RegistryHost(scheme=scheme, host=netloc, path="/v2")]
    hosts_file = directory / "hosts.toml"
    if not hosts_file.is_file():
        return [RegistryHost(scheme=scheme, host=netloc, path="/v2", tls=_docker_cert_dir(directory))]
    return _parse_hosts_file(hosts_file, namespace, scheme=scheme, netloc=netloc)


def _docker_cert_dir(directory: Path) -> TLSConfig:
    """docker's certs.d layout: ``*.crt`` CAs, ``name.cert`` + ``name.key`` client pairs."""
    cas: list[Path] = []
    clients: list[tuple[Path, Path | None]] = []
    for entry in sorted(directory.iterdir()):
        if entry.suffix == ".crt" and entry.is_file():
            cas.append(entry)
        elif entry.suffix == ".cert" and entry.is_file():
            # Without NAME.key the .cert file must hold the key too (as containerd reads it).
            key = entry.with_suffix(".key")
            clients.append((entry, key if key.is_file() else None))
    return TLSConfig(ca_files=tuple(cas), client_certs=tuple(clients))


def _parse_hosts_file(path: Path, namespace: str, *, scheme: str, netloc: str) -> list[RegistryHost]:
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:  # tomllib decodes the bytes as UTF-8 first
        raise InvalidArgument(f"{path}: not valid TOML: {exc}") from None
    except OSError as exc:
        raise InvalidArgument(f"cannot read {path}: {exc.strerror}") from None
    base = path.parent
    hosts: list[RegistryHost] = []
    tables = doc.get("host", {})
    if not isinstance(tables, dict):
        raise InvalidArgument(f'{path}: "host" must be a table of [host."URL"] tables')
    # tomllib keeps the file's order, which is the order mirrors are tried in.
    for url, table in tables.items():
        if not isinstance(table, dict):
            raise InvalidArgument(f'{path}: [host."{url}"] must be a table')
        what = f'{path}: [host."{url}"]'
        h_scheme, h_netloc, h_path = _split_url(url, what, default_scheme="https")
        hosts.append(_host_from_table(table, what, base, h_scheme, h_netloc, h_path, namespace, mirror=True))
    server = doc.get("server")
    if server is not None:
        if not isinstance(server, str) or not server:
            raise InvalidArgument(f'{path}: "server" must be a URL string')
        s_scheme, s_netloc, s_path = _split_url(server, f"{path}: server", default_scheme=scheme)
    else:
        s_scheme, s_netloc, s_path = scheme, netloc, ""
    # Root-level fields configure the server (containerd reads them the same way).
    root = {k: v for k, v in doc.items() if k not in ("host", "server")}
    hosts.append(_host_from_table(root, str(path), base, s_scheme, s_netloc, s_path, namespace, mirror=False))
    return hosts


def _split_url(url: str, what: str, *, default_scheme: str) -> tuple[str, str, str]:
    if "://" not in url:
        url = f"{default_scheme}://{url}"
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unbalanced "[" of an IPv6 literal
        raise InvalidArgument(f"{what}: {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise InvalidArgument(f"{what}: {url!r} is not an http(s) URL")
    if parts.query or parts.fragment or "@" in parts.netloc:
        raise InvalidArgument(f"{what}: {url!r} must not carry a query, fragment or user info")
    return parts.scheme, parts.netloc, parts.path.rstrip("/")


def _host_from_table(table: Mapping[str, Any], what: str, base: Path, scheme: str, netloc: str, path: str,
                     namespace: str, *, mirror: bool) -> RegistryHost:
    known = {"capabilities", "skip_verify", "ca", "client", "header", "override_path", "proxy", "dial_timeout"}
    for key in table:
        if key not in known:
            # Ignored, not refused: a hosts.toml written for a newer containerd
            # (or a nested [host] table, which containerd ignores too) must
            # not stop pulls.
            _log.warning("%s: ignoring unknown field %r", what, key)
    override_path = table.get("override_path", False)
    if not isinstance(override_path, bool):
        raise InvalidArgument(f"{what}: override_path must be true or false")
    if not override_path and not path.endswith("/v2"):
        path = f"{path}/v2"
    caps_value = table.get("capabilities")
    if caps_value is None:
        capabilities = ALL_CAPABILITIES
    else:
        if not isinstance(caps_value, list) or not all(isinstance(c, str) for c in caps_value):
            raise InvalidArgument(f"{what}: capabilities must be a list of strings")
        caps_value = [c.lower() for c in caps_value]
        unknown = set(caps_value) - ALL_CAPABILITIES
        if unknown:
            raise InvalidArgument(f"{what}: unknown capabilities {sorted(unknown)}",
                                  hint='use "pull", "resolve" and "push"')
        capabilities = frozenset(caps_value)
    skip_verify = table.get("skip_verify", False)
    if not isinstance(skip_verify, bool):
        raise InvalidArgument(f"{what}: skip_verify must be true or false")
    proxy = table.get("proxy")
    if proxy is not None and (not isinstance(proxy, str) or "://" not in proxy):
        raise InvalidArgument(f"{what}: proxy must be a URL such as http://proxy:3128")
    dial_timeout = table.get("dial_timeout")
    return RegistryHost(
        scheme=scheme,
        host=netloc,
        path=path,
        capabilities=capabilities,
        tls=TLSConfig(skip_verify=skip_verify, ca_files=_ca_files(table.get("ca"), what, base),
                      client_certs=_client_certs(table.get("client"), what, base)),
        headers=_headers(table.get("header"), what),
        proxy=proxy,
        dial_timeout=None if dial_timeout is None else parse_duration(dial_timeout, f"{what}: dial_timeout"),
        namespace=namespace if mirror and netloc != namespace else "",
        mirror=mirror,
    )


def _relative(base: Path, name: str) -> Path:
    # Paths in hosts.toml may be relative to the file (containerd's docs).
    p = Path(name)
    return p if p.is_absolute() else base / p


def _ca_files(value: Any, what: str, base: Path) -> tuple[Path, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidArgument(f"{what}: ca must be a path or a list of paths")
    return tuple(_relative(base, v) for v in value)


def _client_certs(value: Any, what: str, base: Path) -> tuple[tuple[Path, Path | None], ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise InvalidArgument(f"{what}: client must be a path, a list of paths or a list of [cert, key] pairs")
    out: list[tuple[Path, Path | None]] = []
    for item in value:
        if isinstance(item, str) and item:
            out.append((_relative(base, item), None))
        elif (isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item)
              and item[0]):
            out.append((_relative(base, item[0]), _relative(base, item[1]) if item[1] else None))
        else:
            raise InvalidArgument(f"{what}: client entry {item!r} must be a path or a [cert, key] pair")
    return tuple(out)


def _headers(value: Any, what: str) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what}: header must be a table")
    out: list[tuple[str, str]] = []
    for name, v in value.items():
        values = [v] if isinstance(v, str) else v
        if not isinstance(values, list) or not all(isinstance(x, str) for x in values):
            raise InvalidArgument(f"{what}: header {name!r} must be a string or a list of strings")
        if any(c in name or any(c in x for x in values) for c in "\r\n"):
            raise InvalidArgument(f"{what}: header {name!r} contains a line break")
        out.extend((name, x) for x in values)
    return tuple(out)


def parse_duration(value: Any, what: str) -> float:
    """Seconds from a Go duration string ("1s", "500ms", "1m30s") or a number."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    if isinstance(value, str) and value:
        total, pos = 0.0, 0
        for m in _DURATION_PART.finditer(value):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            pos = m.end()
        else:
            if pos == len(value):
                return total
    raise InvalidArgument(f"{what}: {value!r} is not a duration", hint='write it like "1s" or "500ms"')
