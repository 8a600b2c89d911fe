"""Registry credentials: docker's ``config.json``, its credential helpers, and injected callbacks.

Which file: ``docker_config_path`` (a command's ``--authfile``, the
configured ``registry.docker_config`` when it is not the default,
``$REGISTRY_AUTH_FILE``, ``$DOCKER_CONFIG/config.json``, then
``~/.docker/config.json``); the pull, push and login all use it.

What in it, for a registry host (docker's order): the helper
``credHelpers`` names for the host, else the one ``credsStore`` names for
all, else the ``auths`` entry.  A helper that holds nothing for the host
leaves the ``auths`` entry to answer (docker would answer "anonymous"; an
entry written by another tool is more use).  Helpers are run by
``_helpers.CredentialHelper``.

``store_credentials`` and ``erase_credentials`` are what ``hawser login``
and ``logout`` write with: to the helper when one is named, else into
``auths``; the file is rewritten atomically (0600), every other key kept.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from urllib.parse import urlsplit

from hawser._dataclass import dataclass, field
from hawser.errors import InvalidArgument

TYPE_CHECKING = False  # typing stays unimported at run time
if TYPE_CHECKING:
    from hawser.registry._helpers import CredentialHelper, HelperCache

DEFAULT_DOCKER_CONFIG = "~/.docker/config.json"
# Every spelling docker has used for Docker Hub in config.json.
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})
# The key docker writes (and asks helpers) for Docker Hub.
_DOCKER_HUB_SERVER = "https://index.docker.io/v1/"
DEFAULT_HELPER_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """What to authenticate with: a user and password, or an identity (refresh) token.

    Secrets are kept out of ``repr`` so they never land in a log line.
    """

    username: str = ""
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)

    @property
    def has_basic(self) -> bool:
        return bool(self.username) and not self.identity_token


CredentialsFunc = Callable[[str], Credentials | None]


def normalize_host(key: str) -> str:
    """The registry host a config.json key or a request host names.

    ``https://index.docker.io/v1/``, ``index.docker.io`` and
    ``registry-1.docker.io`` all mean ``docker.io``; schemes and paths are
    dropped and the host is lower-cased (ports kept).
    """
    key = key.strip()
    try:
        key = urlsplit(key).netloc if "://" in key else key.split("/", 1)[0]
    except ValueError:  # an unbalanced "[": no host to normalise, compare the key as written
        pass
    key = key.lower()
    return "docker.io" if key in _DOCKER_HUB_ALIASES else key


def _entry_credentials(entry: object, where: str) -> Credentials:
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{where} must be an object")
    username, password = "", ""
    auth = entry.get("auth")
    if auth:
        if not isinstance(auth, str):
            raise InvalidArgument(f"{where}: auth must be a base64 string")
        try:
            decoded = base64.b64decode(auth.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise InvalidArgument(f"{where}: auth is not base64 of user:password",
                                  hint="log in again to rewrite it") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise InvalidArgument(f"{where}: auth is not base64 of user:password",
                                  hint="log in again to rewrite it")
    else:
        u, p = entry.get("username", ""), entry.get("password", "")
        if not isinstance(u, str) or not isinstance(p, str):
            raise InvalidArgument(f"{where}: username and password must be strings")
        username, password = u, p
    token = entry.get("identitytoken", "")
    if not isinstance(token, str):
        raise InvalidArgument(f"{where}: identitytoken must be a string")
    return Credentials(username=username, password=password, identity_token=token)


def server_url(host: str) -> str:
    """The key docker writes in ``auths`` and hands to helpers for a registry
    host: the host itself (``127.0.0.1:5000``), Docker Hub's v1 URL for it."""
    name = normalize_host(host)
    return _DOCKER_HUB_SERVER if name == "docker.io" else name


def docker_config_path(configured: str | os.PathLike[str] = DEFAULT_DOCKER_CONFIG, *,
                       authfile: str | os.PathLike[str] | None = None,
                       environ: Mapping[str, str] | None = None) -> Path:
    """The docker config file credentials are read from and written to.

    In order: ``authfile`` (a command's --authfile); ``configured`` (the
    config's ``registry.docker_config``) when it is not the default;
    ``$REGISTRY_AUTH_FILE`` (podman's, skopeo's); ``$DOCKER_CONFIG/config.json``
    (docker's); ``~/.docker/config.json``.  Reading and writing sides call
    this alike, so a login is what the next pull sees.
    """
    env = os.environ if environ is None else environ
    if authfile:
        chosen: str = os.fspath(authfile)
    elif os.fspath(configured) != DEFAULT_DOCKER_CONFIG:
        chosen = os.fspath(configured)
    elif env.get("REGISTRY_AUTH_FILE"):
        chosen = env["REGISTRY_AUTH_FILE"]
    elif env.get("DOCKER_CONFIG"):
        chosen = os.path.join(env["DOCKER_CONFIG"], "config.json")
    else:
        chosen = DEFAULT_DOCKER_CONFIG
    return Path(os.path.expanduser(chosen))


def _new_cache() -> HelperCache:
    from hawser.registry._helpers import HelperCache

    return HelperCache()


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """A docker config file's credentials: ``auths`` keyed by normalised host,
    ``credsStore`` (one helper for every registry) and ``credHelpers`` (a
    helper per registry, keyed by normalised host)."""

    path: Path
    auths: dict[str, object]
    creds_store: str = ""
    cred_helpers: dict[str, str] = field(default_factory=dict)
    # Helper answers, kept for a while: one helper run per registry per pull.
    _cache: HelperCache = field(default_factory=_new_cache, repr=False, compare=False)

    def helper_for(self, host: str, *, timeout: float = DEFAULT_HELPER_TIMEOUT) -> CredentialHelper | None:
        """The helper that holds ``host``'s credentials (``credHelpers`` first,
        then ``credsStore``), or None for the file's own ``auths``."""
        from hawser.registry._helpers import CredentialHelper

        wanted = normalize_host(host)
        name = self.cred_helpers.get(wanted)
        if name is not None:
            return CredentialHelper(name, timeout=timeout, where=f"{self.path}: credHelpers[{wanted!r}]")
        if self.creds_store:
            return CredentialHelper(self.creds_store, timeout=timeout, where=f"{self.path}: credsStore")
        return None

    def lookup(self, host: str, *, helper_timeout: float = DEFAULT_HELPER_TIMEOUT) -> Credentials | None:
        """Credentials for ``host``: from its helper, else its ``auths`` entry.

        A helper that is not installed is passed over (noted in the log at
        info): a config copied from a desktop (``"credsStore": "desktop"``)
        must not fail pulls that its ``auths``, or no credentials, serve.
        Raises InvalidArgument (a malformed entry), and for a helper
        Unavailable (it failed) and DeadlineExceeded (it hung past
        ``helper_timeout``).
        """
        wanted = normalize_host(host)
        helper = self.helper_for(wanted, timeout=helper_timeout)
        if helper is not None:
            creds = self._cache.get(helper, server_url(wanted))
            if creds is not None:
                return creds
        entry = self.auths.get(wanted)
        if entry is None:
            return None
        creds = _entry_credentials(entry, f"{self.path}: auths entry for {wanted}")
        if not creds.username and not creds.identity_token:
            return None
        return creds


def _read_document(path: Path) -> dict[str, object] | None:
    """The file's JSON object; None when there is no file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InvalidArgument(f"cannot read docker config {path}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InvalidArgument(f"docker config {path} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"docker config {path} must be a JSON object")
    return doc


def _helpers_of(doc: Mapping[str, object], path: Path) -> tuple[str, dict[str, str]]:
    store = doc.get("credsStore", "")
    if not isinstance(store, str):
        raise InvalidArgument(f"docker config {path}: credsStore must be a string")
    helpers = doc.get("credHelpers", {})
    if not isinstance(helpers, dict) or not all(isinstance(v, str) for v in helpers.values()):
        raise InvalidArgument(f"docker config {path}: credHelpers must map registries to helper names")
    return store, {normalize_host(k): v for k, v in helpers.items()}


def load_docker_config(path: str | os.PathLike[str]) -> DockerConfig:
    """Read a docker config.json; a missing file means no credentials.

    Raises InvalidArgument when the file is not JSON, or ``auths``,
    ``credsStore`` or ``credHelpers`` is of the wrong type (the file name is
    in the message).
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    doc = _read_document(p)
    if doc is None:
        return DockerConfig(path=p, auths={})
    auths = doc.get("auths", {})
    if not isinstance(auths, dict):
        raise InvalidArgument(f"docker config {p}: auths must be an object")
    normalised: dict[str, object] = {}
    for key, entry in auths.items():
        # The exact host wins over an alias spelling of it ("docker.io" over
        # "https://index.docker.io/v1/"), whatever the order in the file.
        host = normalize_host(key)
        if host not in normalised or key.lower() == host:
            normalised[host] = entry
    store, helpers = _helpers_of(doc, p)
    return DockerConfig(path=p, auths=normalised, creds_store=store, cred_helpers=helpers)


# --- writing: login and logout ---------------------------------------------------


def _write_target(path: str | os.PathLike[str]) -> Path:
    """The file to replace: a symlinked config.json is written through (the
    link stays), as docker does."""
    p = Path(os.path.expanduser(os.fspath(path)))
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def _auths_of(doc: dict[str, object], path: Path) -> dict[str, object]:
    auths = doc.setdefault("auths", {})
    if not isinstance(auths, dict):
        raise InvalidArgument(f"docker config {path}: auths must be an object",
                              hint="fix or remove the file, then log in again")
    return auths


def _write_document(path: Path, doc: Mapping[str, object]) -> None:
    from hawser.host import atomic_write

    data = json.dumps(doc, indent="\t") + "\n"
    try:
        # The directory holds secrets: docker makes it 0700.
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        atomic_write(os.fspath(path), data, mode=0o600)
    except OSError as exc:
        raise InvalidArgument(f"cannot write docker config {path}: {exc.strerror or exc}") from None


def _drop_entries(auths: dict[str, object], host: str) -> bool:
    """Remove every spelling of ``host`` from ``auths``; whether one was there."""
    keys = [k for k in auths if normalize_host(k) == host]
    for k in keys:
        del auths[k]
    return bool(keys)


def store_credentials(path: str | os.PathLike[str], host: str, creds: Credentials, *,
                      helper_timeout: float = DEFAULT_HELPER_TIMEOUT) -> str:
    """Keep ``creds`` for ``host`` where the docker config at ``path`` says:
    its helper for the host (then the file records the login with an empty
    ``auths`` entry, as docker does, and keeps no secret), else its ``auths``.

    The file is replaced atomically with mode 0600, its other keys kept; it is
    created (and its directory, 0700) if missing.  Returns where the secret
    went, for the user: the file or the helper.  Raises InvalidArgument (the
    file is malformed or cannot be written) and what a helper raises.
    """
    target = _write_target(path)
    doc = _read_document(target) or {}
    auths = _auths_of(doc, target)
    store, helpers = _helpers_of(doc, target)
    name = normalize_host(host)
    key = server_url(name)
    config = DockerConfig(path=target, auths={}, creds_store=store, cred_helpers=helpers)
    helper = config.helper_for(name, timeout=helper_timeout)
    _drop_entries(auths, name)
    if helper is not None:
        helper.store(key, creds)
        auths[key] = {}
        where = f"credential helper {helper.program}"
    else:
        entry: dict[str, str] = {}
        if creds.username and not creds.identity_token:
            entry["auth"] = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode("ascii")
        if creds.identity_token:
            entry["identitytoken"] = creds.identity_token
        auths[key] = entry
        where = str(target)
    _write_document(target, doc)
    return where


def erase_credentials(path: str | os.PathLike[str], host: str, *,
                      helper_timeout: float = DEFAULT_HELPER_TIMEOUT) -> bool:
    """Forget ``host``'s credentials: erased through its helper (if the docker
    config names one) and every ``auths`` spelling of it removed.  False when
    there was nothing to forget (and nothing is written).  Raises what
    ``store_credentials`` raises.
    """
    from hawser.registry._helpers import HelperMissing

    target = _write_target(path)
    doc = _read_document(target)
    if doc is None:
        doc = {}
    auths = _auths_of(doc, target)
    store, helpers = _helpers_of(doc, target)
    name = normalize_host(host)
    config = DockerConfig(path=target, auths={}, creds_store=store, cred_helpers=helpers)
    helper = config.helper_for(name, timeout=helper_timeout)
    erased = False
    if helper is not None:
        try:
            erased = helper.erase(server_url(name))
        except HelperMissing:
            pass  # it holds nothing hawser could use: the auths entry is all there is to forget
    had_entry = _drop_entries(auths, name)
    if had_entry:
        _write_document(target, doc)
    return erased or had_entry


def logged_in_hosts(path: str | os.PathLike[str]) -> list[str]:
    """The registries the docker config at ``path`` records a login for (its ``auths`` keys, normalised)."""
    config = load_docker_config(_write_target(path))
    return sorted(config.auths)
