"""Progress events of a pull or import, for the CLI's display (or a log)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from hawser._dataclass import dataclass

# A push's blobs: waiting, pushing, then exists (the registry had it), mounted or done.
Stage = Literal["waiting", "fetching", "unpacking", "exists", "done", "failed", "pushing", "mounted"]


@dataclass(frozen=True, slots=True)
class LayerProgress:
    """One layer's state. ``current``/``total`` count compressed bytes fetched."""

    digest: str
    stage: Stage
    current: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class PullMessage:
    """A milestone of the whole pull: resolved, manifest chosen, image stored."""

    text: str


ProgressEvent = LayerProgress | PullMessage

# Called from worker threads: implementations must be thread-safe.
ProgressSink = Callable[[ProgressEvent], None]


def discard(event: ProgressEvent) -> None:
    del event
