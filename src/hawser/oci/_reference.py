"""Image references: ``[host[:port]/]path[:tag][@digest]`` (distribution's grammar).

Names are normalised the way docker and containerd users expect:
``busybox`` means ``docker.io/library/busybox:latest``.  hawser never looks a
short name up anywhere else; tests and offline machines use fully qualified
references.
"""

from __future__ import annotations

import re

from hawser._dataclass import dataclass
from hawser.errors import InvalidArgument
from hawser.oci._digest import Digest

DEFAULT_DOMAIN = "docker.io"
_LEGACY_DOMAIN = "index.docker.io"
MAX_NAME_LENGTH = 255

_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")


@dataclass(frozen=True, slots=True)
class Reference:
    domain: str
    path: str
    tag: str = ""
    digest: Digest | None = None

    @property
    def name(self) -> str:
        """``domain/path``: the repository, without tag or digest."""
        return f"{self.domain}/{self.path}"

    @property
    def object(self) -> str:
        """What to ask the registry for: the digest if pinned, else the tag."""
        return str(self.digest) if self.digest else (self.tag or "latest")

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text

    def with_digest(self, digest: Digest) -> Reference:
        return Reference(self.domain, self.path, self.tag, digest)

    def familiar(self) -> str:
        """The short form docker shows: ``busybox:latest`` for docker.io/library/busybox."""
        name = self.name
        if self.domain == DEFAULT_DOMAIN:
            name = self.path.removeprefix("library/")
        if self.tag:
            name += f":{self.tag}"
        if self.digest:
            name += f"@{self.digest}"
        return name


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        return first, rest
    return DEFAULT_DOMAIN, name


def parse_reference(text: str, *, default_tag: str = "latest") -> Reference:
    """Parse and normalise an image reference; raises InvalidArgument with the reason."""
    if not isinstance(text, str) or not text:
        raise InvalidArgument("empty image reference")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidArgument(f"invalid reference {text!r}: contains whitespace")
    remainder = text
    digest: Digest | None = None
    if "@" in remainder:
        remainder, _, digest_text = remainder.partition("@")
        try:
            digest = Digest(digest_text)
        except InvalidArgument as exc:
            raise InvalidArgument(f"invalid reference {text!r}: {exc.message}") from None
    tag = ""
    slash = remainder.rfind("/")
    colon = remainder.rfind(":")
    if colon > slash:
        remainder, tag = remainder[:colon], remainder[colon + 1:]
        if not _TAG.match(tag):
            raise InvalidArgument(f"invalid reference {text!r}: bad tag {tag!r}")
    domain, path = _split_domain(remainder)
    if not _DOMAIN.match(domain):
        raise InvalidArgument(f"invalid reference {text!r}: bad registry host {domain!r}")
    if domain == _LEGACY_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = f"library/{path}"
    if not path or not all(_COMPONENT.match(c) for c in path.split("/")):
        hint = "repository names are lowercase" if path != path.lower() else None
        raise InvalidArgument(f"invalid reference {text!r}: bad repository name {path!r}", hint=hint)
    if len(domain) + 1 + len(path) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"invalid reference {text!r}: name longer than {MAX_NAME_LENGTH} characters")
    if not tag and digest is None:
        tag = default_tag
    return Reference(domain=domain, path=path, tag=tag, digest=digest)
