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
    from hawser.images._service import ImageDetail, ImageService, ImageSummary, RunnableImage

_EXPORTS = {
    "LayerProgress": "_progress", "ProgressEvent": "_progress", "ProgressSink": "_progress",
    "PullMessage": "_progress", "ImageDetail": "_service", "ImageService": "_service", "ImageSummary": "_service",
    "RunnableImage": "_service",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hawser.images' has no attribute {name!r}")
    return getattr(importlib.import_module(f"hawser.images.{module}"), name)


__all__ = [
    "ImageDetail", "ImageService", "ImageSummary", "LayerProgress", "ProgressEvent", "ProgressSink", "PullMessage",
    "RunnableImage",
]
