"""Build small images in a real registry with the client's push API."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from hawser.oci import Descriptor, Digest, Reference, media
from hawser.registry import RegistryClient

# Users of the registries with auth that the fixtures start.
USERS = {"alice": "alice-password", "bob": "bob-password"}


@dataclass(frozen=True)
class PushedImage:
    ref: Reference
    manifest: Descriptor
    manifest_bytes: bytes
    config: Descriptor
    config_bytes: bytes
    layers: tuple[tuple[Descriptor, bytes], ...]


def push_image(client: RegistryClient, ref: Reference, *, docker: bool = False,
               layer_sizes: tuple[int, ...] = (1000, 70_000, 3), architecture: str = "amd64",
               tag: str | None = None) -> PushedImage:
    """Random layers, a config and a manifest (OCI or Docker schema 2), pushed under ``tag``."""
    layer_type = media.DOCKER_LAYER_GZIP if docker else media.OCI_LAYER_GZIP
    layers = []
    for size in layer_sizes:
        data = os.urandom(size)
        desc = Descriptor(layer_type, Digest.of(data), len(data))
        client.push_blob(ref, data, desc)
        layers.append((desc, data))
    config_bytes = json.dumps({
        "architecture": architecture, "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": [str(d.digest) for d, _ in layers]},
    }).encode()
    config = Descriptor(media.DOCKER_CONFIG if docker else media.OCI_CONFIG, Digest.of(config_bytes),
                        len(config_bytes))
    client.push_blob(ref, config_bytes, config)
    manifest_type = media.DOCKER_MANIFEST if docker else media.OCI_MANIFEST
    manifest_bytes = json.dumps({
        "schemaVersion": 2, "mediaType": manifest_type, "config": config.to_json(),
        "layers": [d.to_json() for d, _ in layers],
    }).encode()
    manifest = client.push_manifest(ref, manifest_bytes, manifest_type, tag=tag if tag is not None else ref.tag)
    return PushedImage(ref, manifest, manifest_bytes, config, config_bytes, tuple(layers))


def push_index(client: RegistryClient, ref: Reference, images: dict[str, PushedImage], *,
               docker: bool = False) -> tuple[Descriptor, bytes]:
    """An index over ``images`` keyed by architecture, pushed under ref's tag."""
    index_type = media.DOCKER_MANIFEST_LIST if docker else media.OCI_INDEX
    entries = []
    for arch, image in images.items():
        entry = image.manifest.to_json()
        entry["platform"] = {"os": "linux", "architecture": arch, **({"variant": "v8"} if arch == "arm64" else {})}
        entries.append(entry)
    data = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}).encode()
    return client.push_manifest(ref, data, index_type, tag=ref.tag), data
