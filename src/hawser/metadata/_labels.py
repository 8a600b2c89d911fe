"""Labels the garbage collector reads (after containerd's ``containerd.io/gc.*``).

References live in labels so that GC can walk from an image to everything it
needs without parsing a single manifest:

- on a blob record, ``hawser.io/gc.ref.content.<name>`` = a child digest, in the
  same namespace. The pull writes ``...content.m.<i>`` on an index for its
  manifests, ``...content.config`` and ``...content.l.<i>`` on a manifest;
- on a blob record or a snapshot, ``hawser.io/gc.ref.snapshot.<snapshotter>``
  (optionally followed by ``/<anything>`` when there are several) = a snapshot
  key of that snapshotter. The pull writes it on an image config, pointing at
  the chain ID of the top layer; a snapshot's parents are followed through
  ``Info.parent`` and need no label;
- ``hawser.io/gc.root`` (any value) on a blob record or a snapshot pins it, and
  everything it references, whether or not an image uses it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from hawser.errors import HawserError
from hawser.oci import Digest

LABEL_GC_ROOT = "hawser.io/gc.root"
LABEL_GC_REF_CONTENT = "hawser.io/gc.ref.content"
LABEL_GC_REF_SNAPSHOT = "hawser.io/gc.ref.snapshot"
# The same, as prefixes to append a name to: f"{LABEL_REF_CONTENT}l.0", f"{LABEL_REF_SNAPSHOT}overlayfs".
LABEL_REF_CONTENT = LABEL_GC_REF_CONTENT + "."
LABEL_REF_SNAPSHOT = LABEL_GC_REF_SNAPSHOT + "."

# Kinds of the resources a lease holds.
RESOURCE_CONTENT = "content"
RESOURCE_INGEST = "ingest"
RESOURCE_SNAPSHOT_PREFIX = "snapshot/"


def content_ref_label(name: str) -> str:
    """The label key by which a blob references a child blob, e.g. ``content_ref_label("l.0")``."""
    return f"{LABEL_GC_REF_CONTENT}.{name}"


def snapshot_ref_label(snapshotter: str, suffix: str = "") -> str:
    """The label key by which a blob or snapshot references a snapshot of ``snapshotter``."""
    key = f"{LABEL_GC_REF_SNAPSHOT}.{snapshotter}"
    return f"{key}/{suffix}" if suffix else key


def snapshot_resource(snapshotter: str) -> str:
    """The lease resource kind of a snapshot of ``snapshotter``: ``snapshot/<snapshotter>``."""
    return f"{RESOURCE_SNAPSHOT_PREFIX}{snapshotter}"


def content_refs(labels: Mapping[str, str]) -> Iterator[Digest]:
    """The child digests named by ``labels``; malformed values are skipped (they name nothing)."""
    for key, value in labels.items():
        if key == LABEL_GC_REF_CONTENT or key.startswith(LABEL_GC_REF_CONTENT + "."):
            try:
                yield Digest(value)
            except HawserError:
                continue


def snapshot_refs(labels: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """``(snapshotter, key)`` pairs named by ``labels``."""
    prefix = LABEL_GC_REF_SNAPSHOT + "."
    for key, value in labels.items():
        if key.startswith(prefix) and value:
            snapshotter = key[len(prefix):].split("/", 1)[0]
            if snapshotter:
                yield snapshotter, value
