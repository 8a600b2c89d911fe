"""Frozen image objects (OCI image spec, Docker schema 2), parsed at the edge.

JSON comes in as bytes and leaves as dataclasses; no dict travels further.
Every parser raises InvalidArgument with the field that was wrong.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import hawser.oci._media as media
from hawser._dataclass import dataclass, field
from hawser.errors import InvalidArgument, Unimplemented
from hawser.oci._digest import Digest

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

# containerd refuses manifests over 4 MiB; so do we (a manifest is small).
MAX_MANIFEST_BYTES = 4 << 20
MAX_CONFIG_BYTES = 8 << 20


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Parse ``os/arch[/variant]`` as given to --platform (arch aliases normalised)."""
        parts = text.strip().split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidArgument(f"invalid platform {text!r}", hint="use os/arch[/variant], e.g. linux/amd64")
        arch, variant = normalize_arch(parts[1], parts[2] if len(parts) == 3 else "")
        return cls(os=parts[0].lower(), architecture=arch, variant=variant)

    @classmethod
    def host(cls) -> Platform:
        arch, variant = normalize_arch(os.uname().machine, "")
        if arch == "arm":
            variant = variant or "v7"
        return cls(os="linux", architecture=arch, variant=variant)

    def matches(self, other: Platform) -> bool:
        """True when an image built for ``other`` runs here (self is the wanted platform)."""
        if self.os != other.os or self.architecture != other.architecture:
            return False
        if not self.variant or not other.variant:
            # arm64 images usually omit v8; amd64 has no variants in practice.
            return True
        return self.variant == other.variant


_ARCH_ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "armel": "arm",
                 "i386": "386", "i686": "386"}


def normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch = _ARCH_ALIASES.get(arch.lower(), arch.lower())
    variant = variant.lower()
    if arch == "arm64" and variant == "8":
        variant = "v8"
    if arch == "arm" and variant in ("5", "6", "7", "8"):
        variant = "v" + variant
    return arch, variant


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: Digest
    size: int
    urls: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    platform: Platform | None = None
    artifact_type: str = ""

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            out["urls"] = list(self.urls)
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            p: dict[str, Any] = {"architecture": self.platform.architecture, "os": self.platform.os}
            if self.platform.variant:
                p["variant"] = self.platform.variant
            if self.platform.os_version:
                p["os.version"] = self.platform.os_version
            out["platform"] = p
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Healthcheck:
    """An image's HEALTHCHECK (docker's config.Healthcheck): ``test`` is
    ``["NONE"]``, ``["CMD", arg...]`` or ``["CMD-SHELL", command]`` (empty:
    inherit); durations in seconds (0: docker's default); ``retries`` 0: default."""

    test: tuple[str, ...] = ()
    interval: float = 0.0
    timeout: float = 0.0
    start_period: float = 0.0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class ImageConfig:
    """The parts of an image configuration hawser uses (OCI config.md)."""

    platform: Platform
    diff_ids: tuple[Digest, ...]
    created: str = ""
    author: str = ""
    user: str = ""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""
    exposed_ports: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    healthcheck: Healthcheck | None = None


# --- parsing ---------------------------------------------------------------


def _load(data: bytes, what: str, limit: int) -> dict[str, Any]:
    if len(data) > limit:
        raise InvalidArgument(f"{what} is {len(data)} bytes, over the {limit} byte limit")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return obj


def _str(obj: Mapping[str, Any], key: str, what: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise InvalidArgument(f"{what}: missing {key!r}")
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what}: {key!r} must be a string")
    return value


def _str_list(obj: Mapping[str, Any], key: str, what: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidArgument(f"{what}: {key!r} must be a list of strings")
    return tuple(value)


def _str_map(obj: Mapping[str, Any], key: str, what: str) -> dict[str, str]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise InvalidArgument(f"{what}: {key!r} must map strings to strings")
    return dict(value)


def _parse_platform(obj: Any, what: str) -> Platform:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: platform must be an object")
    arch, variant = normalize_arch(_str(obj, "architecture", what, required=True), _str(obj, "variant", what))
    return Platform(
        os=_str(obj, "os", what, required=True), architecture=arch, variant=variant,
        os_version=_str(obj, "os.version", what),
    )


def parse_descriptor(obj: Any, what: str = "descriptor") -> Descriptor:
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what} must be an object")
    size = obj.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"{what}: size must be a non-negative integer")
    platform = obj.get("platform")
    return Descriptor(
        media_type=_str(obj, "mediaType", what, required=True),
        digest=Digest(_str(obj, "digest", what, required=True)),
        size=size,
        urls=_str_list(obj, "urls", what),
        annotations=_str_map(obj, "annotations", what),
        platform=None if platform is None else _parse_platform(platform, what),
        artifact_type=_str(obj, "artifactType", what),
    )


def sniff_media_type(data: bytes, declared: str = "") -> str:
    """The media type of a manifest document: its own mediaType field, else the
    Content-Type the registry declared, else guessed from its shape."""
    obj = _load(data, "manifest", MAX_MANIFEST_BYTES)
    mt = obj.get("mediaType")
    if isinstance(mt, str) and mt:
        return mt
    if obj.get("schemaVersion") == 1:
        return media.DOCKER_SCHEMA1
    if declared and declared not in ("application/json", "text/plain"):
        return declared
    if "manifests" in obj:
        return media.OCI_INDEX
    if "config" in obj and "layers" in obj:
        return media.OCI_MANIFEST
    raise InvalidArgument("manifest has no mediaType and is neither an index nor a manifest")


def _reject_schema1(media_type: str) -> None:
    if media_type in media.SCHEMA1:
        raise Unimplemented(
            "Docker image manifest schema 1 is deprecated and not supported",
            hint="push the image again with a current Docker or buildkit (schema 2 or OCI)",
        )


def parse_manifest(data: bytes, media_type: str = "") -> Manifest:
    obj = _load(data, "manifest", MAX_MANIFEST_BYTES)
    mt = _str(obj, "mediaType", "manifest") or media_type or media.OCI_MANIFEST
    _reject_schema1(mt)
    if obj.get("schemaVersion") == 1:
        _reject_schema1(media.DOCKER_SCHEMA1)
    if mt not in media.MANIFESTS:
        raise InvalidArgument(f"unsupported manifest media type {mt!r}")
    if obj.get("schemaVersion") != 2:
        raise InvalidArgument("manifest: schemaVersion must be 2")
    layers = obj.get("layers")
    if not isinstance(layers, list):
        raise InvalidArgument("manifest: layers must be a list")
    return Manifest(
        media_type=mt,
        config=parse_descriptor(obj.get("config"), "manifest config"),
        layers=tuple(parse_descriptor(d, f"manifest layer {i}") for i, d in enumerate(layers)),
        annotations=_str_map(obj, "annotations", "manifest"),
    )


def parse_index(data: bytes, media_type: str = "") -> Index:
    obj = _load(data, "index", MAX_MANIFEST_BYTES)
    mt = _str(obj, "mediaType", "index") or media_type or media.OCI_INDEX
    _reject_schema1(mt)
    if mt not in media.INDEXES:
        raise InvalidArgument(f"unsupported index media type {mt!r}")
    if obj.get("schemaVersion") != 2:
        raise InvalidArgument("index: schemaVersion must be 2")
    manifests = obj.get("manifests")
    if not isinstance(manifests, list):
        raise InvalidArgument("index: manifests must be a list")
    return Index(
        media_type=mt,
        manifests=tuple(parse_descriptor(d, f"index entry {i}") for i, d in enumerate(manifests)),
        annotations=_str_map(obj, "annotations", "index"),
    )


def parse_config(data: bytes) -> ImageConfig:
    obj = _load(data, "image config", MAX_CONFIG_BYTES)
    rootfs = obj.get("rootfs")
    if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
        raise InvalidArgument("image config: rootfs.type must be 'layers'")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise InvalidArgument("image config: rootfs.diff_ids must be a list")
    cfg = obj.get("config") or {}
    if not isinstance(cfg, dict):
        raise InvalidArgument("image config: config must be an object")
    what = "image config"
    arch, variant = normalize_arch(_str(obj, "architecture", what, required=True), _str(obj, "variant", what))
    return ImageConfig(
        platform=Platform(os=_str(obj, "os", what, required=True), architecture=arch, variant=variant,
                          os_version=_str(obj, "os.version", what)),
        diff_ids=tuple(Digest(d) if isinstance(d, str) else Digest("") for d in diff_ids),
        created=_str(obj, "created", what),
        author=_str(obj, "author", what),
        user=_str(cfg, "User", what),
        env=_str_list(cfg, "Env", what),
        entrypoint=_str_list(cfg, "Entrypoint", what),
        cmd=_str_list(cfg, "Cmd", what),
        working_dir=_str(cfg, "WorkingDir", what),
        labels=_str_map(cfg, "Labels", what),
        stop_signal=_str(cfg, "StopSignal", what),
        exposed_ports=tuple(sorted((cfg.get("ExposedPorts") or {}).keys())) if isinstance(cfg.get("ExposedPorts") or {}, dict) else (),
        volumes=tuple(sorted((cfg.get("Volumes") or {}).keys())) if isinstance(cfg.get("Volumes") or {}, dict) else (),
        healthcheck=_healthcheck(cfg.get("Healthcheck"), what),
    )


def _healthcheck(obj: Any, what: str) -> Healthcheck | None:
    """docker's config.Healthcheck: durations in nanoseconds."""
    if obj is None:
        return None
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{what}: 'Healthcheck' must be an object")

    def seconds(key: str) -> float:
        value = obj.get(key) or 0
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise InvalidArgument(f"{what}: Healthcheck {key!r} must be a non-negative integer (nanoseconds)")
        return value / 1e9

    retries = obj.get("Retries") or 0
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise InvalidArgument(f"{what}: Healthcheck 'Retries' must be a non-negative integer")
    return Healthcheck(test=_str_list(obj, "Test", f"{what}: Healthcheck"), interval=seconds("Interval"),
                       timeout=seconds("Timeout"), start_period=seconds("StartPeriod"), retries=retries)
