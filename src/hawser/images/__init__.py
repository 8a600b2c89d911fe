"""Images: pull, import, list, inspect, remove; the layer pipeline and its applier.

Exports are loaded on first use: unpack workers run ``python -m
hawser.images._unpack_worker`` and must not pay for the store's imports.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any

    from hawser.images._progress import LayerProgress, ProgressEvent, ProgressSink, PullMessage
    from hawser.images._store import ImageDetail, ImageStore, ImageSummary, lease_owner_alive

_EXPORTS = {
    "LayerProgress": "_progress", "ProgressEvent": "_progress", "ProgressSink": "_progress",
    "PullMessage": "_progress", "ImageDetail": "_store", "ImageStore": "_store", "ImageSummary": "_store",
    "lease_owner_alive": "_store",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hawser.images' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hawser.images.{module}"), name)


__all__ = [
    "ImageDetail", "ImageStore", "ImageSummary", "LayerProgress", "ProgressEvent", "ProgressSink", "PullMessage",
    "lease_owner_alive",
]
