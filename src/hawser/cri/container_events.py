"""GetContainerEvents: a server stream of container lifecycle events
(CONTAINER_CREATED_EVENT, STARTED, STOPPED, DELETED), each with the pod's
status and the statuses of the pod's containers, as containerd sends them to
kubelet's evented PLEG.

Where events come from: ContainerManager tells its observers of every
create, start, stop and removal it makes (whoever called it: these
handlers, or the pod sandbox lifecycle), and ``ExitWatcher``, a background
loop, notices the exit files conmon writes when a container ends on its own.
A STOPPED event is sent once per container, whichever saw the exit first.

The watcher is a BackgroundLoop the daemon runs (``services.background_loops``);
it only polls while somebody subscribes.  A daemon that does not run it
still reports natural exits: the first subscriber then starts one for as
long as subscribers remain.

Every subscriber has a bounded queue: one that falls behind is dropped (its
stream ends with RESOURCE_EXHAUSTED; kubelet reconnects and relists) rather
than slowing the others down or growing without bound.  Nothing is built
while nobody listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from cri_api.v1 import api_pb2

from hawser._grpc import grpc_status
from hawser._logging import get_logger
from hawser.cri._containers import cri_list, cri_status, is_cri, sandbox_id, to_ns
from hawser.cri._sandbox_convert import cri_metadata as pod_metadata
from hawser.cri._sandbox_convert import cri_state as pod_state
from hawser.cri._sandbox_convert import namespace_options
from hawser.errors import HawserError, InvalidArgument, NotFound, ResourceExhausted
from hawser.metadata import Container
from hawser.pods import Sandbox, SandboxLookup
from hawser.runtime import EVENT_CREATED, EVENT_DELETED, EVENT_STARTED, EVENT_STOPPED, ContainerManager

if TYPE_CHECKING:
    from hawser.cri.types import CriDeps, RunBlocking

log = get_logger("hawser.cri.events")

# Events a subscriber may have queued before it counts as too slow.
SUBSCRIBER_QUEUE = 1024
# How often the exit watcher looks for new exit files.
EXIT_POLL_INTERVAL = 0.2

_TYPES = {
    EVENT_CREATED: api_pb2.CONTAINER_CREATED_EVENT,
    EVENT_STARTED: api_pb2.CONTAINER_STARTED_EVENT,
    EVENT_STOPPED: api_pb2.CONTAINER_STOPPED_EVENT,
    EVENT_DELETED: api_pb2.CONTAINER_DELETED_EVENT,
}

Event = api_pb2.ContainerEventResponse


class _Subscriber:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=size)


class ContainerEvents:
    """The event hub: observes a ContainerManager, fans events out to subscribers.

    ``observe`` is the manager's observer (called in worker threads, where
    blocking is fine: it builds the event there); subscribers live on the
    event loop.  Constructing it starts nothing; ``attach`` registers it with
    the manager."""

    def __init__(self, manager: ContainerManager, sandboxes: SandboxLookup | None, *,
                 blocking: RunBlocking | None = None, queue_size: int = SUBSCRIBER_QUEUE) -> None:
        self.manager = manager
        self.sandboxes = sandboxes
        self.blocking = blocking
        self.queue_size = queue_size
        self.watchers = 0  # ExitWatcher loops running
        self._own_watcher: asyncio.Task[None] | None = None
        self._subscribers: set[_Subscriber] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._stopped: set[str] = set()  # containers whose STOPPED event is out

    def attach(self) -> ContainerEvents:
        if self.observe not in self.manager.observers:
            self.manager.observers.append(self.observe)
        return self

    @property
    def listening(self) -> bool:
        return bool(self._subscribers)

    # --- producing (worker threads) ------------------------------------------------

    def observe(self, kind: str, record: Container) -> None:
        """A change the manager made (or the exit watcher saw). Blocking."""
        if kind not in _TYPES or not is_cri(record):
            return
        with self._lock:
            if kind == EVENT_STOPPED:
                if record.id in self._stopped:
                    return
                self._stopped.add(record.id)
            elif kind in (EVENT_DELETED, EVENT_CREATED):
                self._stopped.discard(record.id)
        loop = self._loop
        if loop is None or not self._subscribers:
            return
        when = time.time_ns()
        try:
            event = self.build(kind, record, when)
        except Exception:
            log.exception("building a container event failed", extra={"container": record.id, "kind": kind})
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: the daemon is going away
            loop.call_soon_threadsafe(self.publish, event)

    def build(self, kind: str, record: Container, when: int) -> Event:
        """The event with the pod's status and its containers'. Blocking."""
        event = Event(container_id=record.id, container_event_type=_TYPES[kind], created_at=when)
        pod = sandbox_id(record)
        if self.sandboxes is not None and pod:
            with contextlib.suppress(NotFound, InvalidArgument):
                event.pod_sandbox_status.CopyFrom(pod_sandbox_status(self.sandboxes.get(pod)))
        for other in cri_list(self.manager):
            if sandbox_id(other) == pod:
                with contextlib.suppress(HawserError):
                    event.containers_statuses.append(
                        cri_status(self.manager, other, self.manager.status(other), None))
        return event

    # --- fan-out (the event loop) ------------------------------------------------------

    def publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.queue.put_nowait(event)
            except asyncio.QueueFull:
                self._drop(subscriber)

    def _drop(self, subscriber: _Subscriber) -> None:
        self._subscribers.discard(subscriber)
        queue = subscriber.queue
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)  # tells the stream it was dropped
        log.warning("dropped a slow container event subscriber", extra={"queued": self.queue_size})

    async def subscribe(self) -> AsyncIterator[Event]:
        """Events from now on, until the caller stops iterating.
        ResourceExhausted when this subscriber fell too far behind."""
        self._loop = asyncio.get_running_loop()
        subscriber = _Subscriber(self.queue_size)
        self._subscribers.add(subscriber)
        if not self.watchers and self._own_watcher is None and self.blocking is not None:
            self._own_watcher = asyncio.create_task(ExitWatcher(self, self.blocking).run(),
                                                    name=ExitWatcher.name)
        try:
            while True:
                event = await subscriber.queue.get()
                if event is None:
                    raise ResourceExhausted(
                        f"container event stream dropped: more than {self.queue_size} events were not read",
                        hint="read the stream faster; relist, then subscribe again")
                yield event
        finally:
            self._subscribers.discard(subscriber)
            if not self._subscribers and self._own_watcher is not None:
                self._own_watcher.cancel()
                self._own_watcher = None


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


class ExitWatcher:
    """A background loop (the daemon's ``BackgroundLoop``): notices the exit
    files conmon writes in ``state/exits`` and reports STOPPED events for
    containers that ended on their own.  Polls: a directory listing of a
    tmpfs every EXIT_POLL_INTERVAL seconds costs next to nothing."""

    name = "container-exit-watcher"

    def __init__(self, events: ContainerEvents, blocking: RunBlocking, *,
                 interval: float = EXIT_POLL_INTERVAL) -> None:
        self.events = events
        self.blocking = blocking
        self.interval = interval
        self._known: set[str] | None = None

    async def run(self) -> None:
        self.events.watchers += 1
        try:
            while True:
                if not self.events.listening:
                    self._known = None  # exits while nobody listens are nobody's news
                else:
                    try:
                        await self.scan()
                    except Exception:
                        log.exception("container exit watcher failed; retrying")
                await asyncio.sleep(self.interval)
        finally:
            self.events.watchers -= 1

    async def scan(self) -> list[str]:
        """One look at the exits directory; returns the new exits (ids)."""
        names = await self.blocking(_list_dir, self.events.manager.exits_dir)
        known, self._known = self._known, names
        if known is None:
            return []  # the first look: what exited before the daemon started is not news
        fresh = sorted(names - known)
        if fresh:
            await self.blocking(self._report, fresh)
        return fresh

    def _report(self, ids: list[str]) -> None:
        manager = self.events.manager
        for container_id in ids:
            try:
                record = manager.records.get(container_id)
            except NotFound:
                continue
            self.events.observe(EVENT_STOPPED, record)


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


def new_container_events(manager: ContainerManager, sandboxes: SandboxLookup | None,
                         blocking: RunBlocking) -> tuple[ContainerEvents, ExitWatcher]:
    """The hub (attached to ``manager``) and the exit watcher loop the daemon runs."""
    events = ContainerEvents(manager, sandboxes, blocking=blocking).attach()
    return events, ExitWatcher(events, blocking)


__all__ = ["ContainerEvents", "ExitWatcher", "get_container_events", "new_container_events", "pod_sandbox_status"]

