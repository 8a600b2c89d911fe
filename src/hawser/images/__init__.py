"""Images: pull, import, list, inspect, remove; the layer pipeline and its applier.

Exports are loaded on first use: unpack workers run ``python -m
hawser.images._unpack_worker`` and must not pay for the store's imports.
"""

from __future__ import annotations

from hawser._lazy import lazy_exports

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:

    from hawser.images._apply import ApplyResult
    from hawser.images._commit import Change, CommitOptions, CommitResult, check_changes, container_changes
    from hawser.images._copy import CopyOptions, CopyResult, copy_image
    from hawser.images._diff import DiffSource, WrittenLayer, write_layer
    from hawser.images._events import GC, IMPORT, PULL, REMOVE, ImageEvent, ImageObserver, PullStats
    from hawser.images._history import HistoryEntry, history_entries, image_history
    from hawser.images._layer import unpack_blob
    from hawser.images._policy import enforce_on_record
    from hawser.images._progress import LayerProgress, ProgressEvent, ProgressSink, PullMessage
    from hawser.images._pull_process import pull_in_child
    from hawser.images._pull_worker import PullWorker
    from hawser.images._push import PushOptions, PushResult
    from hawser.images._service import ImageDetail, ImageService, ImageSummary, RunnableImage
    from hawser.images._sign import generate_signing_key, sign_image

_EXPORTS = {
    "LayerProgress": "_progress", "ProgressEvent": "_progress", "ProgressSink": "_progress",
    "PullMessage": "_progress", "ImageDetail": "_service", "ImageService": "_service", "ImageSummary": "_service",
    "RunnableImage": "_service", "pull_in_child": "_pull_process", "PullWorker": "_pull_worker", "ApplyResult": "_apply",
    "ImageEvent": "_events", "ImageObserver": "_events", "PullStats": "_events", "PULL": "_events",
    "IMPORT": "_events", "REMOVE": "_events", "GC": "_events",
    "unpack_blob": "_layer", "DiffSource": "_diff", "WrittenLayer": "_diff", "write_layer": "_diff",
    "PushOptions": "_push", "PushResult": "_push",
    "Change": "_commit", "CommitOptions": "_commit", "CommitResult": "_commit", "check_changes": "_commit",
    "container_changes": "_commit",
    "CopyOptions": "_copy", "CopyResult": "_copy", "copy_image": "_copy",
    "generate_signing_key": "_sign", "sign_image": "_sign", "enforce_on_record": "_policy",
    "HistoryEntry": "_history", "history_entries": "_history", "image_history": "_history",
}


__getattr__ = lazy_exports(__name__, _EXPORTS)


__all__ = [
    "GC",
    "IMPORT",
    "PULL",
    "REMOVE",
    "ApplyResult",
    "Change",
    "CommitOptions",
    "CommitResult",
    "CopyOptions",
    "CopyResult",
    "DiffSource",
    "HistoryEntry",
    "ImageDetail",
    "ImageEvent",
    "ImageObserver",
    "ImageService",
    "ImageSummary",
    "LayerProgress",
    "ProgressEvent",
    "ProgressSink",
    "PullMessage",
    "PullStats",
    "PullWorker",
    "PushOptions",
    "PushResult",
    "RunnableImage",
    "WrittenLayer",
    "check_changes",
    "container_changes",
    "copy_image",
    "enforce_on_record",
    "generate_signing_key",
    "history_entries",
    "image_history",
    "pull_in_child",
    "sign_image",
    "unpack_blob",
    "write_layer",
]
