"""What the containerd API's services are given, by hawserd's composition root."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from hawser._dataclass import dataclass

P = ParamSpec("P")
T = TypeVar("T")

if TYPE_CHECKING:
    from hawser.containerd._api.services.events.v1.events_pb2 import Envelope
    from hawser.containerd.managers import ContainerManagers
    from hawser.events import Broadcast, Journal
    from hawser.pods import RunBlocking
    from hawser.store import Store


@dataclass(frozen=True, slots=True, kw_only=True)
class ContainerdDeps:
    """The store every service works on (each request in the namespace it
    names), and how blocking work leaves the event loop.  ``journal``: the
    store's event journal, which the services append their changes to
    (``containerd.events.record``, ``journal_topic``); ``events``: its
    envelopes, for the Events service's subscribers.  None: nothing is
    journaled, no events are served.  ``containers``: each namespace's
    container manager (None: the Tasks service makes its own)."""

    store: Store
    blocking: RunBlocking
    journal: Journal | None = None
    events: Broadcast[Envelope] | None = None
    containers: ContainerManagers | None = None

    async def lookup(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """A lookup by key in the metadata database: on the event loop where the
        database serves this thread's reads (``Database.read_here``: hawserd),
        else in a worker thread."""
        return await self.store.metadata.db.lookup(self.blocking, fn, *args, **kwargs)
