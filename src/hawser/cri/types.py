"""What the CRI handlers are given, filled in by hawserd's composition root.

The handlers never build anything themselves: the daemon opens the store,
makes the executor for blocking work, the image, container and pod services,
the CNI manager and the streaming server, and hands them down in one
:class:`CriDeps`.  The roles it names are Protocols of their parts (``pods``,
``runtime``, ``images``); this module holds the CRI's own values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ParamSpec, Protocol, TypeVar

from hawser._dataclass import dataclass, field
from hawser.pods import RunBlocking

P = ParamSpec("P")
T = TypeVar("T")

if TYPE_CHECKING:
    from hawser.cri._catalog import ImageCatalog
    from hawser.cri._singleflight import SingleFlight
    from hawser.cri._stream_runtime import Streaming
    from hawser.cri.container_events import ContainerEvents
    from hawser.images import ImageService, ImageSummary, PullWorker
    from hawser.pods import PodService
    from hawser.runtime import ContainerManager, ContainerStatsReader

class NetworkCondition(Protocol):
    """The NetworkReady condition: ``reason`` is a CamelCase word, ``message`` says what to do."""

    @property
    def ready(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...


class NetworkStatus(Protocol):
    """Whether pod networking can be set up now (``CNINetwork.status`` is one)."""

    def __call__(self) -> NetworkCondition:
        """The current state. May read the CNI config dir; never raises."""
        ...


@dataclass(frozen=True, slots=True)
class NetworkState:
    ready: bool
    reason: str = ""
    message: str = ""


NETWORK_PLUGIN_NOT_READY = "NetworkPluginNotReady"


@dataclass(frozen=True, slots=True)
class NoNetwork:
    """A NetworkStatus that is never ready (for a daemon built without CNI)."""

    conf_dir: str

    def __call__(self) -> NetworkState:
        return NetworkState(
            ready=False, reason=NETWORK_PLUGIN_NOT_READY,
            message=f"network plugin is not ready: no CNI network is loaded (config dir {self.conf_dir})")


@dataclass(frozen=True, slots=True)
class PullKey:
    """What makes two PullImage requests the same pull: the normalised reference
    and who asks (a pull with one user's credentials is not shared with another's)."""

    reference: str
    credentials: str


def _stats_reader() -> ContainerStatsReader:
    from hawser.runtime import ContainerStatsReader

    return ContainerStatsReader()


def _pull_worker() -> PullWorker:
    from hawser.images import PullWorker

    return PullWorker()


@dataclass(frozen=True, slots=True, kw_only=True)
class CriDeps:
    """Everything the CRI handlers use.  Built once by the daemon; read-only afterwards."""

    images: ImageService
    catalog: ImageCatalog
    blocking: RunBlocking
    pulls: SingleFlight[PullKey, ImageSummary]
    # Where PullImage's pulls run: a process the first pull starts (the daemon stops it at shutdown).
    pull_worker: PullWorker = field(default_factory=_pull_worker)
    network_status: NetworkStatus
    # The effective configuration, JSON-ready: Status(verbose) reports it.
    effective_config: Mapping[str, Any] = field(default_factory=dict)
    # Runtime handlers requests may name ("" is the default one) when there is no
    # ``containers``; with it, its configured handlers (``runtime_handler()``).
    runtime_handlers: tuple[str, ...] = ("", "runc")
    # Pod sandboxes; None in a daemon built without them (image-only tests).
    sandboxes: PodService | None = None
    # Containers; None in a daemon built without them.
    containers: ContainerManager | None = None
    # The container event hub of GetContainerEvents (observing ``containers``).
    container_events: ContainerEvents | None = None
    # Container stats readers keep each container's previous CPU sample.
    container_stats: ContainerStatsReader = field(default_factory=_stats_reader)
    # The streaming server (Exec/Attach/PortForward URLs) and its runtime; None: those are UNIMPLEMENTED.
    streaming: Streaming | None = None

    async def lookup(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """A read of the metadata database (a lookup, a listing of the images):
        on the event loop where the database serves this thread's reads
        (``Database.read_here``: hawserd), else in a worker thread."""
        images: ImageService | None = self.images  # None in tests of the edge alone
        if images is None:
            return await self.blocking(fn, *args, **kwargs)
        return await images.store.metadata.db.lookup(self.blocking, fn, *args, **kwargs)

    def runtime_handler(self, name: str, *, call: str) -> str:
        """The configured runtime handler a request names ("": the default
        one's name).  Images are shared by every handler (one snapshotter),
        so an image call only checks the name.  InvalidArgument naming the
        configured handlers for any other name (containerd: no runtime for
        "x" is configured)."""
        import json

        from hawser.errors import InvalidArgument, NotFound

        if self.containers is None:
            if name in self.runtime_handlers:
                return name
            known = [h for h in self.runtime_handlers if h]
            raise InvalidArgument(f"{call}: no runtime for {json.dumps(name)} is configured",
                                  hint="configured runtime handlers: " + ", ".join(known))
        try:
            return self.containers.handler(name).name
        except NotFound as exc:
            raise InvalidArgument(f"{call}: {exc.message}", hint=exc.hint) from None

    def runtime_handler_names(self) -> tuple[str, ...]:
        """The handlers Status lists: "" (the default), then each configured one."""
        if self.containers is None:
            return self.runtime_handlers
        default = self.containers.default_handler.name
        return ("", default, *sorted(n for n in self.containers.handlers if n != default))

    def require_containers(self) -> ContainerManager:
        if self.containers is None:
            from hawser.errors import Unimplemented

            raise Unimplemented("this hawserd serves no containers")
        return self.containers

    def require_streaming(self) -> Streaming:
        if self.streaming is None:
            from hawser.errors import Unimplemented

            raise Unimplemented("this hawserd runs no streaming server")
        return self.streaming

    def require_sandboxes(self) -> PodService:
        if self.sandboxes is None:
            from hawser.errors import Unimplemented

            raise Unimplemented("this hawserd serves no pod sandboxes")
        return self.sandboxes


__all__ = ["CriDeps", "NetworkCondition", "NetworkState", "NetworkStatus", "NoNetwork", "PullKey", "RunBlocking"]
