"""Registry credentials: docker's ``config.json`` ``auths`` and injected callbacks.

Only the ``auths`` map is read.  Credential helpers (``credsStore``,
``credHelpers``) run external programs and are not supported yet; a host that
is only covered by a helper is treated as anonymous.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from hawser._dataclass import dataclass, field
from hawser.errors import InvalidArgument

DEFAULT_DOCKER_CONFIG = "~/.docker/config.json"
# Every spelling docker has used for Docker Hub in config.json.
_DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com"})


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


@dataclass(frozen=True, slots=True)
class DockerConfig:
    """The ``auths`` of a docker config file, keyed by normalised host."""

    path: Path
    auths: dict[str, object]

    def lookup(self, host: str) -> Credentials | None:
        """Credentials for ``host``; InvalidArgument if its entry is malformed."""
        wanted = normalize_host(host)
        entry = self.auths.get(wanted)
        if entry is None:
            return None
        creds = _entry_credentials(entry, f"{self.path}: auths entry for {wanted}")
        if not creds.username and not creds.identity_token:
            return None
        return creds


def load_docker_config(path: str | os.PathLike[str]) -> DockerConfig:
    """Read a docker config.json; a missing file means no credentials.

    Raises InvalidArgument when the file is not JSON or ``auths`` is not an
    object (the file name is in the message).
    """
    p = Path(os.path.expanduser(os.fspath(path)))
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        return DockerConfig(path=p, auths={})
    except OSError as exc:
        raise InvalidArgument(f"cannot read docker config {p}: {exc.strerror}") from None
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InvalidArgument(f"docker config {p} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidArgument(f"docker config {p} must be a JSON object")
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
    return DockerConfig(path=p, auths=normalised)
