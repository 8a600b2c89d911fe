"""An image's history (``hawser history``): the config's ``history`` entries,
newest first, each with the size of the layer it made.

docker's rules: an entry marked ``empty_layer`` made no layer (size 0); the
others are the image's layers in order, bottom first, each sized as docker
sizes its layer directories (the files' sizes in the unpacked snapshot, each
inode once), else, where the store has no snapshot of it, by its descriptor
in the manifest.  A config without
history gets one entry per layer, as docker shows an imported image.
"""

from __future__ import annotations

import json

from hawser._dataclass import dataclass
from hawser.errors import HawserError, InvalidArgument

TYPE_CHECKING = False  # typing stays unimported at run time
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from hawser.images._service import ImageService
    from hawser.oci import Platform


@dataclass(frozen=True, slots=True, kw_only=True)
class HistoryEntry:
    """One row of ``history``: ``created`` (RFC 3339, "" if unknown), the
    command that made it, its layer's size (0: no layer), the comment."""

    created: str = ""
    created_by: str = ""
    size: int = 0
    comment: str = ""
    empty_layer: bool = False


def _text(entry: dict[str, Any], key: str, index: int) -> str:
    value = entry.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidArgument(f"image config: history[{index}].{key} must be a string")
    return value


def history_entries(config: bytes, layer_sizes: Sequence[int]) -> list[HistoryEntry]:
    """The entries of the image config ``config`` (its JSON), newest first;
    ``layer_sizes``: each layer's size, bottom first.  InvalidArgument for a
    config whose history is not a list of objects."""
    try:
        obj = json.loads(config)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidArgument(f"image config is not valid JSON: {exc}") from None
    raw = obj.get("history") if isinstance(obj, dict) else None
    if raw is None:
        raw = []
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise InvalidArgument("image config: history must be a list of objects")
    created = obj.get("created") if isinstance(obj.get("created"), str) else ""
    if not raw:  # no history: one row per layer
        return [HistoryEntry(created=created, size=size) for size in reversed(layer_sizes)]
    entries: list[HistoryEntry] = []
    layer = 0
    for index, entry in enumerate(raw):
        empty = entry.get("empty_layer") is True
        size = 0
        if not empty and layer < len(layer_sizes):
            size = layer_sizes[layer]
        if not empty:
            layer += 1
        entries.append(HistoryEntry(created=_text(entry, "created", index), created_by=_text(entry, "created_by",
                                    index), size=size, comment=_text(entry, "comment", index), empty_layer=empty))
    entries.reverse()
    return entries


def image_history(service: ImageService, text: str, platform: Platform | None = None
                  ) -> tuple[str, list[HistoryEntry]]:
    """The image ``text`` names (as ``resolve_name``): its ID (the config's
    digest) and its history, newest first.  NotFound if there is no such image."""
    detail = service.inspect(service.resolve_name(text), platform)
    full = service.snapshotter.name == "native"  # a native snapshot is its whole tree: a layer is the difference
    sizes: list[int] = []
    below = 0
    for chain_id, descriptor in zip(detail.chain_ids, detail.manifest.layers, strict=False):
        try:
            size = apparent_size(service.snapshotter.lower_dirs(str(chain_id))[0])
        except (HawserError, OSError):  # not unpacked here: its blob's size
            sizes.append(descriptor.size)
            continue
        sizes.append(max(size - below, 0) if full else size)
        below = size
    config = service.content.read_all(detail.config_digest)
    return str(detail.config_digest), history_entries(config, sizes)


def apparent_size(path: str) -> int:
    """docker's size of a layer's directory (``pkg/directory.Size``): the
    sizes of what is not a directory, each inode once, without following links."""
    import os

    seen: set[tuple[int, int]] = set()
    total = 0
    stack = [path]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                st = entry.stat(follow_symlinks=False)
                if st.st_size and (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_size
    return total
