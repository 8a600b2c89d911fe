"""Build OCI / Docker images from layer tars and push them to a test registry,
or write them as an OCI image layout.  Used by tests, the demo and benchmarks."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field

from hawser.oci import Descriptor, Digest, Platform, media, parse_reference


@dataclass
class BuiltImage:
    manifest: bytes
    manifest_desc: Descriptor
    config: bytes
    config_desc: Descriptor
    layers: list[tuple[Descriptor, bytes]]
    diff_ids: list[str]
    platform: Platform = field(default_factory=Platform.host)
    tars: list[bytes] = field(default_factory=list)


def _desc(media_type: str, data: bytes, platform: Platform | None = None) -> Descriptor:
    return Descriptor(media_type=media_type, digest=Digest.of(data), size=len(data), platform=platform)


def compress(data: bytes, compression: str) -> bytes:
    if compression == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if compression == "zstd":
        import zstandard

        return zstandard.ZstdCompressor().compress(data)
    return data


def build_image(layer_tars: Sequence[bytes], *, compression: str = "gzip", docker: bool = False,
                platform: Platform | None = None, cmd: Sequence[str] = ("/bin/sh",),
                env: Sequence[str] = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",),
                diff_ids: Sequence[str] | None = None, labels: dict[str, str] | None = None,
                volumes: Sequence[str] = ()) -> BuiltImage:
    """An image from uncompressed layer tars. ``diff_ids`` overrides the true
    ones (to build a lying image)."""
    platform = platform or Platform.host()
    if docker:
        layer_type = {"gzip": media.DOCKER_LAYER_GZIP, "none": "application/vnd.docker.image.rootfs.diff.tar"}[compression]
    else:
        layer_type = {"gzip": media.OCI_LAYER_GZIP, "zstd": media.OCI_LAYER_ZSTD, "none": media.OCI_LAYER}[compression]
    layers = []
    true_ids = []
    for tar in layer_tars:
        blob = compress(tar, compression)
        layers.append((_desc(layer_type, blob), blob))
        true_ids.append("sha256:" + hashlib.sha256(tar).hexdigest())
    config_obj = {
        "created": "2026-01-01T00:00:00Z",
        "architecture": platform.architecture,
        "os": platform.os,
        **({"variant": platform.variant} if platform.variant else {}),
        "config": {"Cmd": list(cmd), "Env": list(env), "WorkingDir": "/", "Labels": labels or {},
                   **({"Volumes": {v: {} for v in volumes}} if volumes else {})},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids or true_ids)},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layer_tars))],
    }
    config = json.dumps(config_obj, sort_keys=True).encode()
    config_desc = _desc(media.DOCKER_CONFIG if docker else media.OCI_CONFIG, config)
    manifest_type = media.DOCKER_MANIFEST if docker else media.OCI_MANIFEST
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": config_desc.to_json(),
        "layers": [d.to_json() for d, _ in layers],
    }, sort_keys=True).encode()
    return BuiltImage(manifest=manifest, manifest_desc=_desc(manifest_type, manifest), config=config,
                      config_desc=config_desc, layers=layers, diff_ids=list(true_ids), platform=platform,
                      tars=list(layer_tars))


def index_of(images: Sequence[BuiltImage], *, docker: bool = False) -> tuple[bytes, Descriptor]:
    index_type = media.DOCKER_MANIFEST_LIST if docker else media.OCI_INDEX
    entries = [Descriptor(media_type=i.manifest_desc.media_type, digest=i.manifest_desc.digest,
                          size=i.manifest_desc.size, platform=i.platform).to_json() for i in images]
    data = json.dumps({"schemaVersion": 2, "mediaType": index_type, "manifests": entries}, sort_keys=True).encode()
    return data, _desc(index_type, data)


def push_image(client: object, reference: str, image: BuiltImage, *, tag: str | None = None) -> Descriptor:
    """Push blobs and the manifest; ``tag`` None pushes by digest only."""
    ref = parse_reference(reference)
    for desc, blob in image.layers:
        client.push_blob(ref, blob, desc)  # type: ignore[attr-defined]
    client.push_blob(ref, image.config, image.config_desc)  # type: ignore[attr-defined]
    return client.push_manifest(ref, image.manifest, image.manifest_desc.media_type, tag=tag)  # type: ignore[attr-defined, no-any-return]


def push_index(client: object, reference: str, images: Sequence[BuiltImage], *, tag: str, docker: bool = False) -> Descriptor:
    ref = parse_reference(reference)
    for image in images:
        push_image(client, reference, image, tag=None)
    data, desc = index_of(images, docker=docker)
    return client.push_manifest(ref, data, desc.media_type, tag=tag)  # type: ignore[attr-defined, no-any-return]


def write_layout(path: str, images: Sequence[tuple[str | None, BuiltImage]], *, as_tar: bool = False) -> str:
    """Write an OCI image layout: a directory, or a tar of one at ``path``."""
    files: dict[str, bytes] = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}'}
    manifests = []
    for name, image in images:
        for desc, blob in [*image.layers, (image.config_desc, image.config), (image.manifest_desc, image.manifest)]:
            files[f"blobs/sha256/{desc.digest.encoded}"] = blob
        entry = image.manifest_desc.to_json()
        if name:
            entry["annotations"] = {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": name}
        manifests.append(entry)
    files["index.json"] = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_INDEX,
                                      "manifests": manifests}).encode()
    if as_tar:
        with tarfile.open(path, "w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return path
    for name, data in files.items():
        full = os.path.join(path, name)
        os.makedirs(os.path.dirname(full), exist_ok=True)
        with open(full, "wb") as f:
            f.write(data)
    return path
