"""hawserd's composition root: the one place that builds the parts and wires them.

``Daemon.build`` opens the store, makes the image, container and pod
services, the CNI manager and the streaming server, and passes them down;
constructors start nothing.  ``Daemon.run`` takes the daemon's locks (its
state dir, its root, its socket: one hawserd owns each), recovers state from
the store, serves both CRI services on the unix socket, runs every background
loop inside one ``asyncio.TaskGroup``, and on the stop event shuts down
gracefully: it stops serving, lets requests finish, and leaves every container
running (conmon, not hawserd, is their parent).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar, cast

import grpc

from hawser import __version__
from hawser.daemon import _socket
from hawser.daemon._config import Settings

if TYPE_CHECKING:
    from hawser.containerd import ContainerManagers
    from hawser.containerd.events import Envelope
    from hawser.cri.types import CriDeps
    from hawser.events import Broadcast, Journal
    from hawser.metrics import Metrics, RequestMetrics
    from hawser.network import PodNetworks
    from hawser.store import Store

log = logging.getLogger("hawser.daemon")

# The namespace of the CRI's objects, containerd's CRI plugin's.
CRI_NAMESPACE = "k8s.io"

P = ParamSpec("P")
T = TypeVar("T")

# Kubelet's own default limit; ListImages and ListContainers answers can be large.
MAX_MESSAGE_BYTES = 16 << 20
# How long requests in flight (a pull, say) may run on after SIGTERM.
SHUTDOWN_GRACE = 10.0
# Then how long blocking calls (threads) get to finish before the process leaves them.
DRAIN_TIMEOUT = 5.0
# Worker threads for blocking store calls; created on demand.
BLOCKING_WORKERS = 16
# After this long without a request, a daemon that was busy returns freed heap pages to the kernel.
HEAP_TRIM_INTERVAL = 1.0


class Recoverer(Protocol):
    """A part with state to rebuild at start-up (sandboxes and containers from
    SQLite, conmon exit files and ``runc state``)."""

    async def recover(self) -> None:
        """Rebuild in-memory state from disk; runs before the socket serves.
        Raises only for a store it cannot read at all (the daemon then exits)."""
        ...


class BackgroundLoop(Protocol):
    """A loop that runs as long as the daemon (exit watcher, GC, CNI config watch)."""

    name: str

    async def run(self) -> None:
        """Run until cancelled; handle (and log) its own errors."""
        ...


class Offloader:
    """Runs blocking calls in worker threads (the CRI handlers' ``RunBlocking``).

    It counts the calls running, so that shutdown knows whether a thread (a
    pull, which cannot be interrupted) is still at work."""

    def __init__(self, max_workers: int = BLOCKING_WORKERS) -> None:
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="hawserd-blocking")
        self._lock = threading.Lock()
        self._running = 0

    def __call__(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> asyncio.Future[T]:
        call = functools.partial(fn, *args, **kwargs)
        return asyncio.get_running_loop().run_in_executor(self._executor, self._tracked, call)

    def _tracked(self, call: Callable[[], T]) -> T:
        with self._lock:
            self._running += 1
        try:
            return call()
        finally:
            with self._lock:
                self._running -= 1

    @property
    def running(self) -> int:
        with self._lock:
            return self._running

    async def drain(self, timeout: float) -> bool:
        """Drop queued calls and wait up to ``timeout`` for running ones; True if none is left."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + timeout
        while self.running and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        return self.running == 0


class RequestCounter(grpc.aio.ServerInterceptor):
    """Counts the CRI requests in flight (a server interceptor), for the
    shutdown line: a PullImage or RunPodSandbox awaits a child process or
    the event loop, not a worker thread, so the Offloader does not see it.
    With ``metrics``, each call's method, status code and duration are
    observed too (hawser_grpc_requests_total, ..._duration_seconds).

    In flight, unary calls only: GetContainerEvents, kubelet's one stream,
    stays open as long as kubelet is connected and is no work to wait for.
    Metrics observe streams too (``_observed_stream``)."""

    def __init__(self, metrics: RequestMetrics | None = None) -> None:
        self.running = 0  # touched on the event loop only
        self.calls = 0  # ever started, streams too: HeapTrimmer's sign of activity
        self.metrics = metrics
        # A method's handler never changes: wrapped once, not per call (a call's
        # fixed cost is the most of what a small request costs).
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        self.calls += 1
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            handler = await continuation(handler_call_details)
            if handler is None:  # an unknown method: not kept (a client may make up any number)
                return None
            wrapped = self._wrapped[method] = self._wrap(handler, method)
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler[Any, Any], method: str) -> grpc.RpcMethodHandler[Any, Any]:
        if handler.unary_unary is None:
            return handler if self.metrics is None else _observed_stream(handler, method, self.metrics)
        # hawserd's servicer methods are coroutines (the stubs type behaviors as plain functions).
        behavior = cast(Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]], handler.unary_unary)

        metrics = self.metrics

        async def counted(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            self.running += 1
            started = time.perf_counter()
            code = "UNKNOWN"  # an exception other than an abort: grpc answers UNKNOWN
            try:
                answer = await behavior(request, context)
                code = _code_name(context.code(), "OK")
                return answer
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except BaseException:
                code = _code_name(context.code(), code)  # context.abort() set it before raising
                raise
            finally:
                self.running -= 1
                if metrics is not None:
                    metrics.observe(method, code, time.perf_counter() - started)

        return grpc.unary_unary_rpc_method_handler(counted, request_deserializer=handler.request_deserializer,
                                                   response_serializer=handler.response_serializer)


def _observed_stream(handler: grpc.RpcMethodHandler[Any, Any], method: str,
                     metrics: RequestMetrics) -> grpc.RpcMethodHandler[Any, Any]:
    """A streaming method's handler that observes its code and duration (whole
    stream: for GetContainerEvents, as long as kubelet stays connected).  Its
    behavior is an async generator (yields) or a coroutine (context.write)."""
    if handler.unary_stream is not None:
        behavior: Any = handler.unary_stream
        factory: Any = grpc.unary_stream_rpc_method_handler
    elif handler.stream_unary is not None:
        behavior, factory = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    else:
        behavior, factory = handler.stream_stream, grpc.stream_stream_rpc_method_handler

    def finish(context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None) -> str:
        if error is None:
            return _code_name(context.code(), "OK")
        if isinstance(error, asyncio.CancelledError | GeneratorExit):  # the client went away
            return "CANCELLED"
        return _code_name(context.code(), "UNKNOWN")

    if inspect.isasyncgenfunction(behavior):
        async def observed_generator(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started, error = time.perf_counter(), None
            try:
                async for answer in behavior(request, context):
                    yield answer
            except BaseException as exc:
                error = exc
                raise
            finally:
                metrics.observe(method, finish(context, error), time.perf_counter() - started)

        observed: Any = observed_generator
    else:
        async def observed_coroutine(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started, error = time.perf_counter(), None
            try:
                return await behavior(request, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                metrics.observe(method, finish(context, error), time.perf_counter() - started)

        observed = observed_coroutine
    return cast("grpc.RpcMethodHandler[Any, Any]",
                factory(observed, request_deserializer=handler.request_deserializer,
                        response_serializer=handler.response_serializer))


def _code_name(code: object, default: str) -> str:
    """``grpc.StatusCode.NOT_FOUND`` -> "NOT_FOUND"; ``default`` when none was set."""
    return code.name if isinstance(code, grpc.StatusCode) else default


class HeapTrimmer:
    """Gives the heap pages a burst of requests freed back to the kernel once
    the daemon is idle (a BackgroundLoop); see host.trim_heap.

    Idle: no request for a whole interval.  Not the Offloader's calls: the
    exit watcher and the event followers poll through it several times a
    second, so those never stop and the heap was never trimmed."""

    name = "heap-trimmer"

    def __init__(self, offloader: Offloader, requests: RequestCounter, interval: float = HEAP_TRIM_INTERVAL) -> None:
        self.offloader = offloader
        self.requests = requests
        self.interval = interval

    async def run(self) -> None:
        from hawser.host import trim_heap

        trimmed = previous = self.requests.calls
        while True:
            await asyncio.sleep(self.interval)
            calls = self.requests.calls
            # Busy since the last trim, and quiet for a whole interval now.
            if calls != trimmed and calls == previous and self.offloader.running == 0:
                trim_heap()
                trimmed = calls
            previous = calls


class Daemon:
    def __init__(self, settings: Settings, *, store: Store, network: PodNetworks, deps: CriDeps,
                 offloader: Offloader, recoverers: Sequence[Recoverer] = (),
                 loops: Sequence[BackgroundLoop] = (), metrics: Metrics | None = None,
                 journal: Journal | None = None, containerd_events: Broadcast[Envelope] | None = None,
                 managers: ContainerManagers | None = None) -> None:
        self.settings = settings
        self.managers = managers
        # What containerd's services journal to, and the events its Subscribe serves.
        self.journal = journal
        self.containerd_events = containerd_events
        self.store = store
        self.network = network
        self.deps = deps
        self.offloader = offloader
        self.metrics = metrics
        self.requests = RequestCounter(metrics.requests if metrics is not None else None)
        self.recoverers = list(recoverers)
        self.loops = [*loops, HeapTrimmer(offloader, self.requests)]
        # True after run() when a blocking call was still running at exit: the
        # caller must end the process without waiting for that thread.
        self.abandoned = False

    @classmethod
    def build(cls, settings: Settings) -> Daemon:
        """Open the store and wire the parts (nothing is started)."""
        from hawser._dataclass import replace
        from hawser.containerd import ContainerManagers
        from hawser.cri import background_loops, new_deps, new_streaming
        from hawser.errors import AlreadyExists
        from hawser.events import Journal, container_observer, image_observer, pod_observer
        from hawser.images import ImageService
        from hawser.network import CNINetwork
        from hawser.pods import PodService
        from hawser.runtime import ContainerManager
        from hawser.store import Store

        config = settings.config
        store = Store.open(config)
        offloader = Offloader()
        # Attachments are recorded on persistent storage: IPAM state outlives reboots.
        network = CNINetwork(settings.cni.conf_dir, [settings.cni.bin_dir],
                             os.path.join(config.root, "cni", "results"))
        # The CRI's images, pods and containers live in k8s.io, as with containerd's
        # CRI plugin (`hawser -n k8s.io ps`, `ctr -n k8s.io images ls` see them).
        with contextlib.suppress(AlreadyExists):  # listed from the start, as containerd's CRI plugin makes it
            store.metadata.namespaces.create(CRI_NAMESPACE)
        cri_store = store.in_namespace(CRI_NAMESPACE)
        images = ImageService(cri_store)
        containers = ContainerManager.of(cri_store, images)
        sandboxes = PodService.of(cri_store, containers=containers, network=network, blocking=offloader)
        # The CRI's changes go into the store's event journal, beside the CLI's.
        journal = Journal.of_state(config.state)
        images.observers.append(image_observer(journal))
        containers.observers.append(container_observer(journal))
        sandboxes.observers.append(pod_observer(journal))
        # Each namespace's container manager: containerd's Tasks run with them, and the exit
        # watcher reads any namespace's exit through them (the exits directory is the store's).
        managers = ContainerManagers(store, journal, known={CRI_NAMESPACE: containers})
        # Exec/Attach/PortForward's streaming server: run() starts and stops it.
        streaming = new_streaming(containers=containers, sandboxes=sandboxes, blocking=offloader,
                                  address=settings.cri.stream_address, port=settings.cri.stream_port)
        deps = new_deps(images=images, blocking=offloader, network_status=network.status,
                        effective_config=settings.effective(), sandboxes=sandboxes, containers=containers,
                        streaming=streaming, journal=journal, locate=managers.locate)
        # The configured runtime handlers ([runtimes.NAME]), for what reads the list itself.
        deps = replace(deps, runtime_handlers=deps.runtime_handler_names())
        metrics = None
        if config.metrics.address:
            from hawser.metrics import (
                DaemonCollector,
                cgroup_source,
                container_states,
                new_metrics,
                pod_states,
                store_sizes,
            )

            pulls = deps.pulls
            # Starts are counted by run(), once it holds the state dir.
            daemon = DaemonCollector(started=time.time(), starts=0, recovered=lambda: sandboxes.recovered)
            metrics = new_metrics(__version__, containers=container_states(containers),
                                  pods=pod_states(cri_store.metadata.sandboxes),
                                  cgroups=cgroup_source(containers, sandboxes), merged_pulls=lambda: pulls.merged,
                                  store=store_sizes(store.metadata, store.snapshotter), daemon=daemon)
            # In the calling thread, after the journal's: counters only, nothing blocks.
            images.observers.append(metrics.images.observe)
            containers.observers.append(metrics.containers.observe)
        containerd_events: Broadcast[Envelope] | None = None
        containerd_loops: list[BackgroundLoop] = []
        if settings.daemon.containerd_address:
            from hawser.containerd.events import new_events

            # containerd's Subscribe: the journal's events, with what came while hawserd was down.
            containerd_events, followers = new_events(journal, blocking=offloader)
            containerd_loops.extend(followers)
        return cls(settings, store=store, network=network, deps=deps, offloader=offloader,
                   # Pods first: what their recovery journals is part of the events' backlog.
                   # Then CNI's GC (spec 1.1): the attachments of every pod that exists, in any namespace, are valid.
                   recoverers=[sandboxes, network.recoverer(lambda: [
                                   s.id for ns in store.metadata.namespaces.list()
                                   for s in store.metadata.sandboxes.list(namespace=ns.name)]),
                               *([deps.container_events] if deps.container_events else []),
                               *([containerd_events] if containerd_events else [])],
                   loops=[*background_loops(deps), *containerd_loops],
                   metrics=metrics, journal=journal, containerd_events=containerd_events, managers=managers)

    def _count_start(self) -> None:
        """One more start of hawserd on its state dir (``state/daemon-starts``), for the metrics."""
        from hawser.metrics import record_start

        starts = record_start(self.settings.config.state)
        if self.metrics is not None and self.metrics.daemon is not None:
            self.metrics.daemon.starts = starts

    async def recover(self) -> None:
        """The start-up recovery hook: every Recoverer, in order."""
        for part in self.recoverers:
            await part.recover()

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until ``stop`` is set, then shut down gracefully."""
        # The locks first, and held until the last blocking call is done: one
        # daemon recovers and drives a state dir, and a root (whose containers
        # a second daemon would see as lost, and remove), at a time.
        with contextlib.ExitStack() as held:
            held.callback(_socket.lock_state(self.settings.config.state).release)
            held.callback(_socket.lock_root(self.settings.config.root).release)
            self._count_start()
            await self._serve(stop)
            await self._close()

    async def _serve(self, stop: asyncio.Event) -> None:
        from hawser.cri import add_to_server

        address = self.settings.daemon.address
        # containerd's API (ctr, nerdctl) on a socket of its own; the CRI is served
        # there too, as it is on containerd's socket.
        containerd_address = self.settings.daemon.containerd_address
        addresses = [address, *([containerd_address] if containerd_address else [])]
        locks = []
        metrics_server = None
        try:
            for path in addresses:
                locks.append((path, _socket.claim(path)))
            if self.metrics is not None:
                from hawser.metrics import MetricsServer

                # Before recovery: a busy address fails start-up at once, with the metrics' own error.
                metrics_server = MetricsServer(self.settings.config.metrics.address, self.metrics.registry)
                metrics_server.start()
            await self.recover()
            await self._start_streaming()
            # Lookups by key (a blob's record, an image's, a container's) answer on the
            # event loop: ctr makes dozens per run, and a worker thread costs more.
            self.store.metadata.db.read_here()
            server = grpc.aio.server(interceptors=[self.requests], options=[
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ])
            add_to_server(server, self.deps)
            if containerd_address:
                from hawser import containerd

                containerd.add_to_server(server, store=self.store, blocking=self.offloader, journal=self.journal,
                                         events=self.containerd_events, containers=self.managers)
            with _socket.private_umask():
                for path in addresses:
                    server.add_insecure_port(f"unix:{path}")
                await server.start()
            for path in addresses:
                _socket.open_to_group(path)
            log.info("serving", extra={"address": address, "containerd_address": containerd_address or None,
                                       "metrics_address": self.settings.config.metrics.address or None,
                                       "metrics_port": metrics_server.port if metrics_server else None,
                                       "version": __version__, "pid": os.getpid()})
            _notify("READY=1")
            try:
                async with asyncio.TaskGroup() as tasks:
                    running = [tasks.create_task(loop.run(), name=loop.name) for loop in self.loops]
                    await stop.wait()
                    # Requests: CRI calls in flight.  Blocking calls: worker threads at work (a request's or a loop's).
                    log.info("shutting down: containers keep running",
                             extra={"grace": SHUTDOWN_GRACE, "requests_running": self.requests.running,
                                    "blocking_calls_running": self.offloader.running})
                    _notify("STOPPING=1")
                    for task in running:
                        task.cancel()
            finally:
                # grpc cancels the task of an RPC whose handler has returned but whose answer is
                # still being written when the server's stop completes, and logs that as an
                # unhandled CancelledError: shutdown noise, not a bug of the request.
                logging.getLogger("grpc._cython.cygrpc").setLevel(logging.CRITICAL)
                await server.stop(SHUTDOWN_GRACE)
        finally:
            # After the requests in flight: a pull still running fails; the worker is reaped.
            await self.deps.pull_worker.close()
            await self._stop_streaming()
            if metrics_server is not None:
                await metrics_server.stop()
            for path, lock in reversed(locks):
                _socket.release(path, lock)

    async def _start_streaming(self) -> None:
        # Before the CRI socket serves: the URLs Exec/Attach/PortForward hand out must work.
        streaming = self.deps.streaming
        if streaming is None:
            return
        try:
            await streaming.server.start()
        except OSError as exc:
            from hawser.errors import Unavailable

            cri = self.settings.cri
            raise Unavailable(f"cannot listen on {cri.stream_address}:{cri.stream_port} for streaming: "
                              f"{exc.strerror or exc}", hint="choose another [cri] stream_port") from None

    async def _stop_streaming(self) -> None:
        # Ends every exec, attach and port-forward session (an exec's process is killed). Idempotent.
        if self.deps.streaming is not None:
            await self.deps.streaming.server.stop()

    async def _close(self) -> None:
        started = time.monotonic()
        idle = await self.offloader.drain(DRAIN_TIMEOUT)
        if not idle:
            # A pull cannot be interrupted from outside its thread.  Leaving it is
            # safe: its lease and partial ingests are collected or resumed later.
            self.abandoned = True
            log.warning("exiting with blocking calls still running",
                        extra={"running": self.offloader.running,
                               "waited": round(time.monotonic() - started, 3)})
            return
        self.store.close()


def _notify(state: str) -> None:
    try:
        _socket.sd_notify(state)
    except OSError as exc:
        log.warning("sd_notify failed", extra={"state": state, "error": str(exc)})


def describe(settings: Settings) -> dict[str, Any]:
    """The start-up log line's fields."""
    c = settings.config
    return {"version": __version__, "root": c.root, "state": c.state, "snapshotter": c.snapshotter,
            "address": settings.daemon.address, "config_file": settings.source or "-"}
