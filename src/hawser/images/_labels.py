"""GC reference labels written on blob records (after containerd's gc.ref labels).

GC marks from image records and follows these labels alone: index -> manifests
-> config and layers -> the unpacked snapshot chain.
"""

from __future__ import annotations

from collections.abc import Sequence

from hawser.metadata import LABEL_REF_CONTENT, LABEL_REF_SNAPSHOT
from hawser.oci import Descriptor, Digest, Manifest


def manifest_labels(manifest: Manifest) -> dict[str, str]:
    labels = {f"{LABEL_REF_CONTENT}config": str(manifest.config.digest)}
    for i, layer in enumerate(manifest.layers):
        labels[f"{LABEL_REF_CONTENT}l.{i}"] = str(layer.digest)
    return labels


def index_labels(children: Sequence[Descriptor]) -> dict[str, str]:
    return {f"{LABEL_REF_CONTENT}m.{i}": str(d.digest) for i, d in enumerate(children)}


def config_labels(snapshotter: str, top_chain: Digest | None) -> dict[str, str]:
    return {f"{LABEL_REF_SNAPSHOT}{snapshotter}": str(top_chain)} if top_chain else {}
