"""GetContainerEvents: a server stream of container lifecycle events
(CONTAINER_CREATED_EVENT, STARTED, STOPPED, DELETED), each with the pod's
status and the statuses of the pod's containers, as containerd sends them to
kubelet's evented PLEG.

Where events come from: the store's event journal (``hawser.events``), the
one record of what happened to containers whoever did it: these handlers,
the pod lifecycle, or a ``hawser -n k8s.io`` command, with hawserd up or
down.  ``ContainerEvents`` follows it (``JournalTail``, a background loop
the daemon runs: woken at once by hawserd's own appends, polling for other
processes' every EVENT_POLL_INTERVAL), keeps the CRI's containers of its
namespace, and fans their events out.  ``ExitWatcher``, another loop,
notices the exit files conmon writes when a container ends on its own and
has the manager read that status, which journals the exit (once: the
manager's ``exit-seen`` stamp).

What was journaled while hawserd was down is not lost: the hub keeps, in the
state dir, the time of the last journal event it handled, and at start-up
(``recover``) reads from there: those events (with the exits that happened
meanwhile, which recovery journals first) wait for the first subscriber,
which gets them before the live ones.

The fan-out is the journal's ``Broadcast``, which containerd's Events service
shares: every subscriber has a bounded queue, and one that falls behind is
dropped (its stream ends with RESOURCE_EXHAUSTED; kubelet reconnects and
relists) rather than slowing the others down or growing without bound.
Nothing is built while nobody listens, but the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import grpc
from cri_api.v1 import api_pb2

from hawser._grpc import grpc_status
from hawser._logging import get_logger
from hawser.cri._containers import cri_list, cri_status, sandbox_id, to_ns
from hawser.cri._sandbox_convert import cri_metadata as pod_metadata
from hawser.cri._sandbox_convert import cri_state as pod_state
from hawser.cri._sandbox_convert import namespace_options
from hawser.errors import HawserError, InvalidArgument, NotFound
from hawser.events import Broadcast, Journal
from hawser.events import Event as JournalEvent
from hawser.pods import LABEL_KIND, LABEL_SANDBOX_ID, Sandbox, SandboxLookup
from hawser.runtime import ContainerManager

if TYPE_CHECKING:
    from hawser.cri.types import CriDeps, RunBlocking
    from hawser.metadata import Container

log = get_logger("hawser.cri.events")

# Events a subscriber may have queued before it counts as too slow; also the
# most events kept from while hawserd was down.
SUBSCRIBER_QUEUE = 1024
# How often the exit watcher looks for new exit files.
EXIT_POLL_INTERVAL = 0.2
# How often the journal is read for other processes' events.
EVENT_POLL_INTERVAL = 0.2
# The name of the hub's place in the journal (the time after the last event it handled).
CURSOR = "cri"

# The journal's container actions, as the CRI's event types.
_TYPES = {
    "create": api_pb2.CONTAINER_CREATED_EVENT,
    "start": api_pb2.CONTAINER_STARTED_EVENT,
    "exit": api_pb2.CONTAINER_STOPPED_EVENT,
    "remove": api_pb2.CONTAINER_DELETED_EVENT,
}
_KIND_CONTAINER = "container"  # LABEL_KIND of the CRI's containers

Event = api_pb2.ContainerEventResponse


class ContainerEvents:
    """The CRI's container events: the journal's, of the manager's namespace
    and the CRI's containers, built into ContainerEventResponses and fanned
    out by a ``Broadcast`` (hawser.events) under the cursor ``cri``.
    Constructing it starts nothing; the daemon runs ``recover`` and then
    ``JournalTail``."""

    def __init__(self, manager: ContainerManager, sandboxes: SandboxLookup | None, journal: Journal, *,
                 blocking: RunBlocking, queue_size: int = SUBSCRIBER_QUEUE, locate: Locate | None = None) -> None:
        self.manager = manager
        self.locate = locate
        self.sandboxes = sandboxes
        self.journal = journal
        self.blocking = blocking
        self.broadcast: Broadcast[Event] = Broadcast(journal, self._build_all, cursor=CURSOR, blocking=blocking,
                                                     queue_size=queue_size, what="container event")

    @property
    def listening(self) -> bool:
        return self.broadcast.listening

    async def recover(self) -> None:
        """Journal the exits that happened while hawserd was down, then keep
        what was journaled since the last event handled as the backlog (a
        Recoverer: before the socket serves)."""
        await self.blocking(record_unseen_exits, self.manager, self.locate)
        await self.broadcast.recover()

    async def follow(self, interval: float = EVENT_POLL_INTERVAL) -> None:
        await self.broadcast.follow(interval)

    async def poll(self) -> list[Event]:
        """One read of the journal; publishes and returns the CRI's events in it."""
        return await self.broadcast.poll()

    def subscribe(self) -> AsyncIterator[Event]:
        """Events from now on (the first subscriber after a restart: the
        backlog first). ResourceExhausted when this subscriber fell too far behind."""
        return self.broadcast.subscribe()

    def _build_all(self, events: list[JournalEvent]) -> list[Event]:
        """The CRI's events among the journal's ``events``. Blocking."""
        built = []
        for event in events:
            if (event.type != "container" or event.namespace != self.manager.namespace
                    or event.action not in _TYPES or event.attributes.get(LABEL_KIND) != _KIND_CONTAINER):
                continue
            try:
                built.append(self.build(event))
            except Exception:
                log.exception("building a container event failed", extra={"container": event.id})
        return built

    def build(self, event: JournalEvent) -> Event:
        """The CRI's event for a journal event, with the pod's status and its
        containers' as they are now. Blocking."""
        answer = Event(container_id=event.id, container_event_type=_TYPES[event.action],
                       created_at=int(event.time * 1e9))
        pod = event.attributes.get(LABEL_SANDBOX_ID, "")
        if self.sandboxes is not None and pod:
            with contextlib.suppress(NotFound, InvalidArgument):
                answer.pod_sandbox_status.CopyFrom(pod_sandbox_status(self.sandboxes.get(pod)))
        for other in cri_list(self.manager):
            if pod and sandbox_id(other) == pod:
                with contextlib.suppress(HawserError):
                    answer.containers_statuses.append(
                        cri_status(self.manager, other, self.manager.status(other), None))
        return answer


# Where an exit file's container is: its namespace's manager and its record (None: no container has the id).
Locate = Callable[[str], "tuple[ContainerManager, Container] | None"]


def in_manager(manager: ContainerManager) -> Locate:
    """The containers of ``manager``'s namespace only."""

    def locate(container_id: str) -> tuple[ContainerManager, Container] | None:
        try:
            return manager, manager.records.get(container_id)
        except NotFound:
            return None

    return locate


def record_unseen_exits(manager: ContainerManager, locate: Locate | None = None) -> list[str]:
    """Have each exit file's container (``locate``: default, ``manager``'s
    namespace only) read its status when nobody has seen that exit yet (the
    read journals it). Blocking; the ids."""
    locate = locate or in_manager(manager)
    seen = []
    for container_id in sorted(_list_dir(manager.exits_dir)):
        if os.path.exists(os.path.join(manager.bundle(container_id), "exit-seen")):
            continue
        found = locate(container_id)
        if found is None:
            continue  # removed, or another namespace's that this locate does not see
        owner, record = found
        with contextlib.suppress(HawserError):
            owner.status(record)
            seen.append(container_id)
    return seen


def pod_sandbox_status(sandbox: Sandbox) -> api_pb2.PodSandboxStatus:
    status = api_pb2.PodSandboxStatus(
        id=sandbox.id, metadata=pod_metadata(sandbox), state=pod_state(sandbox),
        created_at=to_ns(sandbox.created_at), labels=sandbox.labels, annotations=sandbox.annotations,
        runtime_handler=sandbox.runtime_handler,
        linux=api_pb2.LinuxPodSandboxStatus(namespaces=api_pb2.Namespace(options=namespace_options(sandbox))))
    if sandbox.ips:
        status.network.ip = sandbox.ips[0]
        status.network.additional_ips.extend(api_pb2.PodIP(ip=ip) for ip in sandbox.ips[1:])
    return status


class JournalTail:
    """The background loop (the daemon's ``BackgroundLoop``) that feeds the hub from the journal."""

    name = "container-events"

    def __init__(self, events: ContainerEvents) -> None:
        self.events = events

    async def run(self) -> None:
        await self.events.follow()


class ExitWatcher:
    """A background loop: notices the exit files conmon writes in
    ``state/exits`` and has the manager read those containers' status, which
    journals each exit once.  Polls: a directory listing of a tmpfs every
    EXIT_POLL_INTERVAL seconds costs next to nothing."""

    name = "container-exit-watcher"

    def __init__(self, manager: ContainerManager, blocking: RunBlocking, *, locate: Locate | None = None,
                 interval: float = EXIT_POLL_INTERVAL) -> None:
        """``locate``: where an exit file's container is (default: ``manager``'s
        namespace only; hawserd's sees every namespace: the exits directory is the store's)."""
        self.manager = manager
        self.blocking = blocking
        self.locate = locate or in_manager(manager)
        self.interval = interval
        self._known: set[str] | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception:
                log.exception("container exit watcher failed; retrying")
            await asyncio.sleep(self.interval)

    async def scan(self) -> list[str]:
        """One look at the exits directory; returns the new exits (ids) it had read."""
        names = await self.blocking(_list_dir, self.manager.exits_dir)
        known, self._known = self._known, names
        if known is None:
            return []  # the first look: recovery read what exited before the daemon started
        fresh = sorted(names - known)
        if fresh:
            await self.blocking(self._read, fresh)
        return fresh

    def _read(self, ids: list[str]) -> None:
        for container_id in ids:
            found = self.locate(container_id)
            if found is None:
                continue
            owner, record = found
            with contextlib.suppress(HawserError):
                owner.status(record)  # journals the exit, if nobody has yet


def _list_dir(path: str) -> set[str]:
    try:
        return {name for name in os.listdir(path) if not name.startswith(".")}
    except FileNotFoundError:
        return set()


async def get_container_events(deps: CriDeps, request: api_pb2.GetEventsRequest,
                               context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Event]:
    """The stream, until the client goes away; an error becomes the stream's status."""
    events = deps.container_events
    if events is None:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "this hawserd serves no container events")
        return
    try:
        async for event in events.subscribe():
            yield event
    except HawserError as exc:
        status = grpc_status(exc)
        await context.abort(status.code, status.message)


def new_container_events(manager: ContainerManager, sandboxes: SandboxLookup | None, journal: Journal,
                         blocking: RunBlocking) -> tuple[ContainerEvents, list[Any]]:
    """The hub over ``journal`` and the loops the daemon runs for it."""
    events = ContainerEvents(manager, sandboxes, journal, blocking=blocking)
    return events, [JournalTail(events), ExitWatcher(manager, blocking, locate=events.locate)]


__all__ = [
    "ContainerEvents",
    "ExitWatcher",
    "JournalTail",
    "get_container_events",
    "in_manager",
    "new_container_events",
    "pod_sandbox_status",
    "record_unseen_exits",
]
