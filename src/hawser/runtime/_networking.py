"""What a CLI container asks of networking, and the role that provides it.

``ContainerManager`` is given a ``ContainerNetworking`` (the CLI's: the
store's named networks through CNI, in ``hawser.pods``); runtime never imports
the network part.  The manager calls ``plan`` before the record is written
(nothing on the host changes: the record keeps the plan, so a crash later
leaves a record that names what to undo), ``join`` once the record exists,
and ``leave`` from every removal (``rm``, ``run --rm``, a failed create), so
no path can skip the teardown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hawser._dataclass import dataclass
from hawser.runtime._options import BindMount

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from typing import Any, Protocol

    from hawser.metadata import Container
else:
    Protocol = object  # the role is for type checkers; at run time a plain base class


@dataclass(frozen=True, slots=True, kw_only=True)
class PortRequest:
    """``-p [IP:][HOST:]CONTAINER[/PROTO]``: host_port 0 picks a free one."""

    container_port: int
    host_port: int = 0
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkRequest:
    """docker's network flags of run/create."""

    network: str = ""  # bridge, host, none, a network's name, or container:ID; "": the configured default
    netns: str = ""  # container:ID: that container's network namespace (its pin, or /proc/PID/ns/net)
    ports: tuple[PortRequest, ...] = ()
    publish_all: bool = False  # -P: the image's EXPOSE ports on free host ports
    add_hosts: tuple[str, ...] = ()  # "NAME:IP"
    dns: tuple[str, ...] = ()
    dns_search: tuple[str, ...] = ()
    dns_options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class NetworkJoin:
    """What a joined container runs with: the network namespace to join
    (``Namespaces.network``: a pin path, "host", or None for a new empty one)
    and the files bound in (/etc/hosts, /etc/resolv.conf, /etc/hostname)."""

    netns: str | None
    mounts: tuple[BindMount, ...] = ()
    networks: dict[str, Any] | None = None  # config["networks"]: {NAME: {ip, prefix_len, gateway, mac}}


class Background:
    """``fn(*args, **kwargs)`` in a thread of its own, started at once; ``wait``
    returns its result or raises its exception.  The CNI plugins of a join or
    a leave wait on iptables for most of their time: the manager mounts,
    writes the spec or tears the rootfs down meanwhile."""

    def __init__(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> None:
        import threading

        self._result: Any = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._result = fn(*args, **kwargs)
            except BaseException as exc:  # handed to wait()
                self._error = exc

        self._thread = threading.Thread(target=target, name="hawser-network")
        self._thread.start()

    def wait(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result

    def wait_quietly(self) -> None:
        """Wait for the end, whatever it was (an undo step: the error is reported elsewhere)."""
        self._thread.join()


class ContainerNetworking(Protocol):
    """Attach CLI containers to networks and detach them."""

    def plan(self, request: NetworkRequest, *, exposed_ports: Sequence[str]) -> dict[str, Any]:
        """The record's config entries for ``request`` (``network``: the
        request, ``ports``: the published ports, free host ports chosen),
        without changing the host.  NotFound for an unknown network,
        InvalidArgument for a bad port or host entry."""
        ...

    def join(self, record: Container, *, hostname: str) -> NetworkJoin:
        """Attach the container the record plans: pin its network namespace,
        run the CNI ADD, write its hosts and resolv.conf.  On failure what was
        done is undone before the error is raised."""
        ...

    def leave(self, record: Container) -> None:
        """Detach the container: CNI DEL, unpin, remove its files and lease;
        tell its peers.  Idempotent; also for a half-done join."""
        ...
