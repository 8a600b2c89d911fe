"""What the containerd API's services are given, by hawserd's composition root."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hawser._dataclass import dataclass

if TYPE_CHECKING:
    from hawser.pods import RunBlocking
    from hawser.store import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerdDeps:
    """The store every service works on (each request in the namespace it
    names), and how blocking work leaves the event loop."""

    store: Store
    blocking: RunBlocking
