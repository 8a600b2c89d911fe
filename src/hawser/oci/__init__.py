"""OCI and Docker image objects: digests, references, descriptors, manifests, configs."""

from hawser.oci import _media as media
from hawser.oci._digest import Digest
from hawser.oci._image import (
    MAX_CONFIG_BYTES,
    MAX_MANIFEST_BYTES,
    Descriptor,
    Healthcheck,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    normalize_arch,
    parse_config,
    parse_descriptor,
    parse_index,
    parse_manifest,
    sniff_media_type,
)
from hawser.oci._reference import Reference, parse_reference

__all__ = [
    "MAX_CONFIG_BYTES", "MAX_MANIFEST_BYTES", "Descriptor", "Digest", "Healthcheck", "ImageConfig", "Index", "Manifest",
    "Platform", "Reference", "media", "normalize_arch", "parse_config", "parse_descriptor", "parse_index", "parse_manifest",
    "parse_reference", "sniff_media_type",
]
