"""Networks, as docker's CLI has them: ``hawser network create/ls/inspect/rm/prune``,
``hawser port``, and the network flags of run and create (``--network``,
``-p``, ``-P``, ``--add-host``, ``--dns``...).  The networks are the store's
(``hawser.network.UserNetworks``); containers join them through
``hawser.pods.ContainerNetworks``, which the container manager calls."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import group

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Any

    from hawser.cli._parser import Handler, Parser
    from hawser.network import UserNetwork, UserNetworks
    from hawser.runtime import NetworkRequest


# --- run and create ------------------------------------------------------------------


def network_arguments(p: Parser) -> None:
    """The network flags of run and create."""
    p.add_argument("--network", default="", metavar="bridge|host|none|NAME",
                   help="Network: the default bridge, the host's, none (loopback only), a named one, or "
                        "container:NAME (another container's) [default: runtime.default_network, bridge].")
    p.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:][HOST:]CONTAINER[/PROTO]",
                   help="Publish a container port on the host (HOST empty: a free port).")
    p.add_argument("-P", "--publish-all", action="store_true", help="Publish the image's exposed ports on free ports.")
    p.add_argument("--add-host", action="append", default=[], metavar="NAME:IP", help="Add a line to /etc/hosts.")
    p.add_argument("--dns", action="append", default=[], metavar="IP", help="DNS server for /etc/resolv.conf.")
    p.add_argument("--dns-search", action="append", default=[], metavar="DOMAIN", help="DNS search domain.")
    p.add_argument("--dns-option", "--dns-opt", action="append", default=[], metavar="OPT", help="resolv.conf option.")


def network_request(a: Namespace) -> NetworkRequest:
    """The NetworkRequest the flags ask for.  InvalidArgument for a bad one."""
    from hawser.errors import InvalidArgument
    from hawser.pods import parse_add_host, parse_port
    from hawser.runtime import NetworkRequest

    for item in a.add_host:
        parse_add_host(item)
    for ip in a.dns:
        import ipaddress

        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"invalid --dns {ip!r}: not an IP address") from None
    if a.network in ("host", "none") and (a.publish or a.publish_all):
        echo(f"WARNING: Published ports are discarded when using {a.network} network mode", err=True)
    return NetworkRequest(network=a.network, ports=tuple(parse_port(spec) for spec in a.publish),
                          publish_all=a.publish_all, add_hosts=tuple(a.add_host), dns=tuple(a.dns),
                          dns_search=tuple(a.dns_search), dns_options=tuple(a.dns_option))


# --- hawser port ------------------------------------------------------------------------


def port(p: Parser) -> Handler:
    """List a container's published ports, or the host address of one."""
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("private_port", nargs="?", metavar="PRIVATE_PORT[/PROTO]")
    return _port


def format_port(entry: dict[str, Any]) -> str:
    host_ip = str(entry.get("host_ip") or "0.0.0.0")
    host = f"[{host_ip}]" if ":" in host_ip else host_ip
    return f"{host}:{entry['host_port']}"


def _port(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.errors import InvalidArgument, NotFound

    manager = ctx.containers()
    record = manager.lookup(a.container)
    ports: list[dict[str, Any]] = list(record.config.get("ports") or ())
    if a.private_port is None:
        for entry in ports:
            echo(f"{entry['container_port']}/{entry['protocol']} -> {format_port(entry)}")
        return None
    number, _, proto = a.private_port.partition("/")
    try:
        wanted = int(number)
    except ValueError:
        raise InvalidArgument(f"invalid port {a.private_port!r}: use PORT[/PROTO]") from None
    proto = proto or "tcp"
    found = [e for e in ports if int(e["container_port"]) == wanted and e["protocol"] == proto]
    if not found:
        raise NotFound(f"no public port '{wanted}/{proto}' published for {record.name}")
    for entry in found:
        echo(format_port(entry))
    return None


# --- hawser network ---------------------------------------------------------------------


def network(p: Parser) -> Handler:
    """Manage networks: create, ls, inspect, rm, prune, connect, disconnect."""
    from hawser.cli._network_container import connect, disconnect

    return group(p, {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm, "remove": rm,
                     "prune": prune, "connect": connect, "disconnect": disconnect})


def _networks(ctx: CliContext) -> UserNetworks:
    from hawser.pods import ContainerNetworks

    return ContainerNetworks.of(ctx.config).networks


def _labels(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def create(p: Parser) -> Handler:
    """Create a bridge network."""
    p.add_argument("-d", "--driver", default="bridge", metavar="DRIVER", help="Driver (bridge).")
    p.add_argument("--subnet", default="", metavar="CIDR", help="Subnet [default: a free /24 in 10.87.0.0/16].")
    p.add_argument("--gateway", default="", metavar="IP", help="Gateway [default: the subnet's first address].")
    p.add_argument("--label", action="append", default=[], metavar="K=V", help="Network label.")
    p.add_argument("-o", "--opt", action="append", default=[], metavar="K=V",
                   help="Driver option: com.docker.network.bridge.name=IFNAME.")
    p.add_argument("name", metavar="NAME")
    return _create


def _create(ctx: CliContext, a: Namespace) -> None:
    from hawser.errors import InvalidArgument

    bridge = ""
    for opt in a.opt:
        key, _, value = opt.partition("=")
        if key == "com.docker.network.bridge.name":
            bridge = value
        else:
            raise InvalidArgument(f"unsupported network option {key!r}",
                                  hint="only com.docker.network.bridge.name is supported")
    created = _networks(ctx).create(a.name, subnet=a.subnet, gateway=a.gateway, driver=a.driver,
                                    labels=_labels(a.label), bridge=bridge)
    echo(created.id)


def _filters(items: list[str]) -> dict[str, list[str]]:
    from hawser.errors import InvalidArgument

    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ("name", "id", "label", "driver"):
            raise InvalidArgument(f"invalid filter {item!r}", hint="use name=, id=, label=K[=V] or driver=")
        out.setdefault(key, []).append(value)
    return out


def _matches(net: UserNetwork, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        if key == "name" and not any(v in net.name for v in values):
            return False
        if key == "id" and not any(net.id.startswith(v) for v in values):
            return False
        if key == "driver" and net.driver not in values:
            return False
        if key == "label":
            for v in values:
                k, sep, want = v.partition("=")
                if k not in net.labels or (sep and net.labels[k] != want):
                    return False
    return True


def ls(p: Parser) -> Handler:
    """List networks."""
    p.add_argument("-q", "--quiet", action="store_true", help="Only the ids.")
    p.add_argument("-f", "--filter", action="append", default=[], metavar="K=V", help="name=, id=, label=, driver=.")
    p.add_argument("--no-trunc", action="store_true", help="Full ids.")
    p.add_argument("--format", metavar="FORMAT",
                   help="A Go template ('{{.Name}}'), 'table TEMPLATE', 'table' or 'json'.")
    return _ls


def _ls(ctx: CliContext, a: Namespace) -> None:
    filters = _filters(a.filter)
    nets = [n for n in _networks(ctx).all_networks() if _matches(n, filters)]
    # docker's order: by name
    nets.sort(key=lambda n: n.name)
    if a.quiet:
        for n in nets:
            echo(n.id if a.no_trunc else n.id[:12])
        return
    if a.format not in (None, "table"):  # docker's network context for templates
        import time

        from hawser.cli._filters import listing

        rows = [{"ID": n.id if a.no_trunc else n.id[:12], "Name": n.name, "Driver": n.driver, "Scope": "local",
                 "IPv6": "false", "Internal": "false", "Labels": ",".join(f"{k}={v}" for k, v in
                                                                         sorted(n.labels.items())),
                 "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(n.created))} for n in nets]
        headers = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "IPv6": "IPV6",
                   "Internal": "INTERNAL", "Labels": "LABELS", "CreatedAt": "CREATED"}
        echo(listing(rows, fmt=a.format, default="", headers=headers), end="")
        return
    width = 64 if a.no_trunc else 12
    echo(f"{'NETWORK ID':<{width + 3}}{'NAME':<20}{'DRIVER':<10}SCOPE")
    for n in nets:
        echo(f"{(n.id if a.no_trunc else n.id[:12]):<{width + 3}}{n.name:<20}{n.driver:<10}local")


def inspect_json(net: UserNetwork, networks: UserNetworks) -> dict[str, Any]:
    """docker's layout of ``network inspect``."""
    import time

    containers = {}
    for e in networks.endpoints():
        if e.network == net.name:
            containers[e.container_id] = {"Name": e.name, "EndpointID": e.container_id, "MacAddress": e.mac,
                                          "IPv4Address": f"{e.ip}/{e.prefix_len}" if e.ip else "",
                                          "IPv6Address": ""}
    created = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(net.created)) + f".{int(net.created % 1 * 1e9):09d}Z"
    return {"Name": net.name, "Id": net.id, "Created": created, "Scope": "local", "Driver": net.driver,
            "EnableIPv6": False,
            "IPAM": {"Driver": "default", "Options": {}, "Config": [{"Subnet": net.subnet, "Gateway": net.gateway}]},
            "Internal": False, "Attachable": False, "Ingress": False, "ConfigFrom": {"Network": ""},
            "ConfigOnly": False, "Containers": containers,
            "Options": {"com.docker.network.bridge.name": net.bridge}, "Labels": dict(net.labels)}


def inspect(p: Parser) -> Handler:
    """Show networks as JSON."""
    p.add_argument("names", nargs="+", metavar="NETWORK")
    return _inspect


def _inspect(ctx: CliContext, a: Namespace) -> int | None:
    import json

    from hawser.errors import NotFound

    networks = _networks(ctx)
    out = []
    failed = False
    for name in a.names:
        try:
            out.append(inspect_json(networks.get(name), networks))
        except NotFound as exc:
            echo(f"hawser: {exc.message}", err=True)
            failed = True
    echo(json.dumps(out, indent=4))
    return 1 if failed else None


def rm(p: Parser) -> Handler:
    """Remove networks (refused while a container is on one)."""
    p.add_argument("-f", "--force", action="store_true", help="No error for a network that does not exist.")
    p.add_argument("names", nargs="+", metavar="NETWORK")
    return _rm


def _rm(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.errors import HawserError, NotFound

    networks = _networks(ctx)
    failed = False
    for name in a.names:  # as docker: each one, the errors reported at the end
        try:
            networks.remove(name)
            echo(name)
        except NotFound as exc:
            if not a.force:
                echo(f"hawser: {exc.message}", err=True)
                failed = True
        except HawserError as exc:
            echo(f"hawser: {exc.message}", err=True)
            failed = True
    return 1 if failed else None


def prune(p: Parser) -> Handler:
    """Remove every network no container is on (bridge stays)."""
    p.add_argument("-f", "--force", action="store_true", help="Do not ask.")
    p.add_argument("--filter", action="append", default=[], metavar="label=K[=V]", help="Only those networks.")
    return _prune


def _prune(ctx: CliContext, a: Namespace) -> int | None:
    import sys

    from hawser.network import DEFAULT_NETWORK

    networks = _networks(ctx)
    filters = _filters(a.filter)
    if not a.force and sys.stdin.isatty():
        sys.stderr.write("WARNING! This will remove all custom networks not used by at least one container.\n"
                         "Are you sure you want to continue? [y/N] ")
        sys.stderr.flush()
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return None
    used = {e.network for e in networks.endpoints()}
    removed = []
    for net in networks.all_networks():
        if net.name == DEFAULT_NETWORK or net.name in used or not _matches(net, filters):
            continue
        networks.remove(net.name)
        removed.append(net.name)
    if removed:
        echo("Deleted Networks:")
        for name in removed:
            echo(name)
    return None
