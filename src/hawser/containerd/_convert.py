"""Conversions every containerd service shares: GC label keys (containerd's
``containerd.io/gc.*`` are hawser's ``hawser.io/gc.*``: the same references
under another prefix, translated at the edge both ways), label updates by
field mask, digests from requests, and timestamps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from hawser.errors import InvalidArgument, Unimplemented
from hawser.metadata import LABEL_GC_REF_CONTENT, LABEL_GC_REF_SNAPSHOT, LABEL_GC_ROOT
from hawser.oci import Digest

# containerd's GC labels and hawser's own: the same references under another prefix.
_GC_PREFIXES = (
    ("containerd.io/gc.root", LABEL_GC_ROOT),
    ("containerd.io/gc.ref.content", LABEL_GC_REF_CONTENT),
    ("containerd.io/gc.ref.snapshot", LABEL_GC_REF_SNAPSHOT),
)


def _swap_prefix(key: str, pairs: Sequence[tuple[str, str]]) -> str:
    for old, new in pairs:
        if key == old or key.startswith(old + "."):
            return new + key[len(old):]
    return key


def to_hawser_key(key: str) -> str:
    """A label key as a containerd client names it, as hawser stores it
    (``containerd.io/gc.ref.content.l.0`` -> ``hawser.io/gc.ref.content.l.0``)."""
    return _swap_prefix(key, _GC_PREFIXES)


def to_containerd_key(key: str) -> str:
    """A label key as hawser stores it, as a containerd client expects it."""
    return _swap_prefix(key, [(new, old) for old, new in _GC_PREFIXES])


def to_containerd_labels(labels: Mapping[str, str]) -> dict[str, str]:
    return {to_containerd_key(k): v for k, v in labels.items()}


def label_update(paths: Sequence[str], want: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """The labels (hawser's keys) an Update writes, and whether they merge into
    the record's (True) or replace them (False), as containerd applies a field
    mask: none or ``labels`` replaces them all with the request's;
    ``labels.<key>`` sets that key to the request's value, an empty or absent
    value removing it. InvalidArgument for any other path: only labels change."""
    keys = []
    for path in paths:
        if path == "labels":
            continue
        key = path[len("labels."):] if path.startswith("labels.") else ""
        if not key:
            raise InvalidArgument(f"cannot update {path!r} field on content info: only labels change",
                                  hint="use the field mask paths 'labels' or 'labels.<key>'")
        keys.append(key)
    if not paths or "labels" in paths:
        return {to_hawser_key(k): v for k, v in want.items() if v}, False
    return {to_hawser_key(key): want.get(key, "") for key in keys}, True


def parse_digest(value: str) -> Digest:
    """A request's digest; InvalidArgument when malformed, as containerd
    answers. An algorithm hawser does not store is refused the same way
    (containerd, which knows sha384, would answer NOT_FOUND for one)."""
    try:
        return Digest(value)
    except (InvalidArgument, Unimplemented) as exc:
        raise InvalidArgument(f"{value!r} failed validation: {exc.message}",
                              hint="a digest is algorithm:hex, e.g. sha256:<64 hex digits>") from None


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(round(seconds * 1e9))
    return stamp
