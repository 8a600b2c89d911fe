"""The event journal every front end appends to (the CLI, hawserd's CRI and
containerd's API), and reads: ``hawser events``, and the event streams the
daemon serves."""

from __future__ import annotations

from hawser.events._journal import MAX_BYTES, Event, Journal, Tail, container_observer, image_observer, pod_observer

__all__ = ["MAX_BYTES", "Event", "Journal", "Tail", "container_observer", "image_observer", "pod_observer"]
