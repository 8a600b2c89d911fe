"""``run/create --network container:NAME|ID`` (docker's): the new container
joins another's network namespace and shares its /etc/hosts, resolv.conf and
host name (``hawser.pods.ContainerNetworks`` pins the namespace again and
binds the files).  Here the name becomes an id and the namespace to join is
found: the other's pin, or, when it has none (``--network none`` or
``host``), its running init's; docker's refusals come first.

And ``hawser network connect/disconnect`` (``ContainerNetworks.connect`` and
``disconnect``): a container on several networks, one interface each."""

from __future__ import annotations

from hawser.cli._context import CliContext

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Handler, Parser
    from hawser.runtime import ContainerManager, ContainerOptions, NetworkRequest

PREFIX = "container:"


def shares_network(a: Namespace) -> bool:
    return str(getattr(a, "network", "") or "").startswith(PREFIX)


def container_network(ctx: CliContext, manager: ContainerManager, a: Namespace, request: NetworkRequest,
                      options: ContainerOptions) -> tuple[NetworkRequest, ContainerOptions]:
    """The request and options for ``--network container:NAME``: the other
    container's id and namespace, its host name.  InvalidArgument for a
    conflicting flag, NotFound for an unknown container, FailedPrecondition
    when it has no namespace to join (not running)."""
    from hawser._dataclass import replace
    from hawser.errors import FailedPrecondition, InvalidArgument
    from hawser.pods import ContainerNetworks
    from hawser.runtime import PAUSED, RUNNING

    if a.hostname:  # the others (-p, --add-host, --dns) are ContainerNetworks.plan's refusals
        raise InvalidArgument("conflicting options: hostname and the network mode")
    name = request.network[len(PREFIX):]
    if not name:
        raise InvalidArgument("invalid --network container:: name a container (container:NAME|ID)")
    owner = manager.lookup(name)
    netns = ContainerNetworks.of(ctx.config).pinned_netns(owner.id)
    if netns is None:  # none or host: the namespace is its init's, while it runs
        status = manager.status(owner)
        if status.state not in (RUNNING, PAUSED) or not status.pid:
            raise FailedPrecondition(f"cannot join network of a non running container: {name}",
                                     hint=f"start it first: hawser start {name}")
        netns = f"/proc/{status.pid}/ns/net"
    request = replace(request, network=f"{PREFIX}{owner.id}", netns=netns)
    return request, replace(options, hostname=str(owner.config.get("hostname") or ""))


# --- hawser network connect / disconnect -------------------------------------------------


def connect(p: Parser) -> Handler:
    """Connect a container to one more network (an interface eth1, eth2... in its namespace)."""
    p.add_argument("--alias", action="append", default=[], metavar="NAME",
                   help="Another name the container's peers on this network resolve.")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    return _connect


def _connect(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.pods import ContainerNetworks

    manager = ctx.containers()
    record = manager.lookup(a.container)
    entry = ContainerNetworks.of(ctx.config).connect(record, a.network, aliases=a.alias)
    manager.records.update(record.id, config={"networks": entry})  # inspect's NetworkSettings.Networks
    return None


def disconnect(p: Parser) -> Handler:
    """Disconnect a container from a network (its interface there goes)."""
    p.add_argument("-f", "--force", action="store_true",
                   help="No error for a container that is not on the network, or a network that does not exist.")
    p.add_argument("network", metavar="NETWORK")
    p.add_argument("container", metavar="CONTAINER")
    return _disconnect


def _disconnect(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.errors import FailedPrecondition, NotFound
    from hawser.pods import ContainerNetworks

    manager = ctx.containers()
    record = manager.lookup(a.container)
    try:
        name = ContainerNetworks.of(ctx.config).disconnect(record, a.network)
    except (FailedPrecondition, NotFound):
        if a.force:
            return None
        raise
    manager.records.update(record.id, drop={"networks": [name]})
    return None
