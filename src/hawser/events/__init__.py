"""The event journal every front end appends to (the CLI, hawserd's CRI and
containerd's API), and reads: ``hawser events``, and the event streams the
daemon serves (``Broadcast``: a journal follower fanning out to subscribers)."""

from __future__ import annotations

from hawser._lazy import lazy_exports
from hawser.events._journal import (
    GC_LISTED,
    MAX_BYTES,
    Event,
    Journal,
    Tail,
    container_observer,
    gc_removals,
    image_observer,
    pod_observer,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hawser.events._broadcast import POLL_INTERVAL, QUEUE_SIZE, Blocking, Broadcast, Follower

# The fan-out needs asyncio: loaded by hawserd only, not by every CLI command that journals.
_EXPORTS = {name: "_broadcast" for name in ("POLL_INTERVAL", "QUEUE_SIZE", "Blocking", "Broadcast", "Follower")}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["GC_LISTED", "MAX_BYTES", "POLL_INTERVAL", "QUEUE_SIZE", "Blocking", "Broadcast", "Event", "Follower",
           "Journal", "Tail", "container_observer", "gc_removals", "image_observer", "pod_observer"]
