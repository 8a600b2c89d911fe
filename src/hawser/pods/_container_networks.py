"""Networking for the CLI's containers, with no daemon: the
``runtime.ContainerNetworking`` role over the store's named networks
(``network.UserNetworks``) and the CNI machinery the pods use.

A container on a bridge network gets, as a pod does, a network namespace
pinned before it starts (``host.pin_namespaces``, under
``state/networks/<id>/ns``) that runc joins, a CNI ADD with the published
ports as the ``portMappings`` capability, and files bound in from
``state/networks/<id>/``: ``hosts``, ``resolv.conf``, ``hostname``.  Every
container gets those three files, on ``--network host`` and ``none`` too, as
docker does.  The pin and the attachment live as long as the container (a
``start`` of an exited one finds them), until ``rm``.

Name resolution on a user network.  docker answers container names from an
embedded DNS server in its daemon, podman from aardvark-dns, a daemon it
starts per network.  hawser has no process that outlives a command, so the
names live in the containers' ``/etc/hosts``: each container's file lists the
other containers on its network, and when a container joins or leaves, the
files of the others are rewritten in place under the store's network lock.
In place (same inode), because each is bind-mounted into its container: a
rename would leave the container seeing the old file.  The cost is a file
write per peer per join, nothing while running; what it cannot do is what a
resolver can (names of containers on several networks at once, aliases
added later); on the default ``bridge`` network, as on docker's, containers
do not resolve each other.

Crash safety: the record keeps the plan (``config["network"]``) before
anything is made; the endpoint file is written before the namespace is
pinned and the CNI cache entry before the first ADD, so ``leave`` (``rm -f``)
or ``system check --repair`` (``leftovers``/``leave_id``) finds and undoes
whatever a killed command left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Collection, Mapping, Sequence

from hawser.errors import FailedPrecondition, InvalidArgument
from hawser.runtime import BindMount, NetworkJoin, NetworkRequest, PortRequest

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from hawser.config import Config
    from hawser.metadata import Container
    from hawser.network import Endpoint, UserNetworks

HOST, NONE = "host", "none"
CONTAINER = "container:"  # docker's --network container:ID: another container's network namespace
_BASE_HOSTS = ("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
               "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
_DEFAULT_DNS = ("8.8.8.8", "8.8.4.4")  # docker's, when the host has only loopback resolvers
_PROTOCOLS = ("tcp", "udp", "sctp")
HOST_GATEWAY = "host-gateway"  # docker's --add-host value for the host as the container reaches it


def parse_port(spec: str) -> PortRequest:
    """docker's ``-p [IP:][HOST:]CONTAINER[/PROTO]`` (IPv6 IP in brackets).
    InvalidArgument if malformed."""
    import ipaddress

    text, _, proto = spec.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in _PROTOCOLS:
        raise InvalidArgument(f"invalid port {spec!r}: protocol {proto!r} is not one of tcp, udp, sctp")
    host_ip = ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1:end + 2] != ":":
            raise InvalidArgument(f"invalid port {spec!r}: use [IP]:HOST:CONTAINER")
        host_ip, text = text[1:end], text[end + 2:]
        parts = text.split(":")
    else:
        parts = text.split(":")
        if len(parts) == 3:
            host_ip = parts.pop(0)
    if len(parts) > 2 or not parts[-1]:
        raise InvalidArgument(f"invalid port {spec!r}: use [IP:][HOST:]CONTAINER[/PROTO]")
    host = parts[0] if len(parts) == 2 else ""
    try:
        container = int(parts[-1])
        host_port = int(host) if host else 0
        if host_ip:
            ipaddress.ip_address(host_ip)
    except ValueError:
        raise InvalidArgument(f"invalid port {spec!r}: use [IP:][HOST:]CONTAINER[/PROTO] "
                              "with numbers for ports (ranges are not supported)") from None
    if not 1 <= container <= 65535 or not 0 <= host_port <= 65535:
        raise InvalidArgument(f"invalid port {spec!r}: ports are 1-65535")
    return PortRequest(container_port=container, host_port=host_port, protocol=proto, host_ip=host_ip)


def parse_add_host(spec: str) -> tuple[str, str]:
    """``NAME:IP`` (or ``NAME=IP``) as (name, ip); IP may be docker's
    ``host-gateway`` (the network's gateway: the host as the container reaches
    it).  InvalidArgument if malformed."""
    import ipaddress

    sep = "=" if "=" in spec else ":"
    name, _, ip = spec.partition(sep)
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    try:
        if ip != HOST_GATEWAY:
            ipaddress.ip_address(ip)
    except ValueError:
        raise InvalidArgument(f"invalid --add-host {spec!r}: use NAME:IP or NAME:host-gateway") from None
    if not name or any(c.isspace() for c in name):
        raise InvalidArgument(f"invalid --add-host {spec!r}: use NAME:IP")
    return name, ip


def _free_port(host_ip: str, protocol: str) -> int:
    import socket

    family = socket.AF_INET6 if ":" in host_ip else socket.AF_INET
    kind = socket.SOCK_DGRAM if protocol == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as s:
        s.bind((host_ip or ("::" if family == socket.AF_INET6 else "0.0.0.0"), 0))
        port: int = s.getsockname()[1]
        return port


def resolv_conf(*, dns: Sequence[str], search: Sequence[str], options: Sequence[str], host_file: str,
                keep_loopback: bool) -> str:
    """The container's resolv.conf: the host's resolvers (without loopback ones,
    which mean nothing in another network namespace), or the given ones."""
    servers: list[str] = []
    h_search: list[str] = []
    h_options: list[str] = []
    with contextlib.suppress(OSError), open(host_file, encoding="utf-8", errors="replace") as f:
        for line in f:
            words = line.split()
            if not words or words[0].startswith(("#", ";")):
                continue
            if words[0] == "nameserver" and len(words) > 1:
                servers.append(words[1])
            elif words[0] in ("search", "domain"):
                h_search = words[1:]
            elif words[0] == "options":
                h_options += words[1:]
    if not keep_loopback:
        servers = [s for s in servers if not _loopback(s)]
        if not servers:
            servers = list(_DEFAULT_DNS)
    servers = list(dns) or servers
    search = list(search) or h_search
    options = list(options) or h_options
    out = "".join(f"nameserver {s}\n" for s in servers)
    if search and search != ["."]:
        out += f"search {' '.join(search)}\n"
    if options:
        out += f"options {' '.join(options)}\n"
    return out


def _loopback(address: str) -> bool:
    if "." in address and ":" not in address:  # IPv4 (the usual case; no ipaddress import, ~1 ms, per run)
        return address.startswith("127.")
    import ipaddress

    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def _rewrite(path: str, text: str) -> None:
    """Replace the content of ``path`` in place: it is bind-mounted into a
    container, and a new inode would not reach it."""
    with contextlib.suppress(FileNotFoundError), open(path, "r+", encoding="utf-8") as f:
        f.write(text)
        f.truncate()


class ContainerNetworks:
    """The CLI's ``ContainerNetworking`` (see the module's doc)."""

    def __init__(self, networks: Callable[[], UserNetworks], state_dir: str, *,
                 default_network: str = "bridge") -> None:
        """``networks`` makes the store's UserNetworks when first needed: the
        network part (asyncio with it) is imported only by a command that
        attaches or detaches a container."""
        self._make_networks = networks
        self._networks: UserNetworks | None = None
        self.state_dir = state_dir  # state/networks: one dir per container
        self.default_network = default_network  # what a request naming none joins

    @property
    def networks(self) -> UserNetworks:
        if self._networks is None:
            self._networks = self._make_networks()
        return self._networks

    @classmethod
    def of(cls, config: Config) -> ContainerNetworks:
        """Touches nothing and imports nothing more (every CLI command makes one)."""
        cni = config.cni
        state_dir = os.path.join(config.state, "networks")

        def make() -> UserNetworks:
            from hawser.network import UserNetworks

            return UserNetworks(config.root, default_subnet=cni.bridge_subnet, default_bridge=cni.bridge_name,
                                bin_dirs=(cni.bin_dir,), markers_dir=state_dir)

        return cls(make, state_dir, default_network=config.runtime.default_network or "bridge")

    def directory(self, container_id: str) -> str:
        return os.path.join(self.state_dir, container_id)

    # --- plan ------------------------------------------------------------------

    def plan(self, request: NetworkRequest, *, exposed_ports: Sequence[str]) -> dict[str, Any]:
        mode = request.network or self.default_network
        if mode.startswith(CONTAINER):
            return _plan_shared(request, mode)
        for item in request.add_hosts:
            parse_add_host(item)
        if mode not in (HOST, NONE):
            mode = self.networks.get(mode).name  # NotFound for an unknown network; ``bridge`` made on first use
        ports: list[dict[str, Any]] = []
        if mode not in (HOST, NONE):  # docker discards published ports on host and none
            wanted = list(request.ports)
            if request.publish_all:
                explicit = {(p.container_port, p.protocol) for p in wanted}
                for item in exposed_ports:
                    number, _, proto = item.partition("/")
                    with contextlib.suppress(ValueError):
                        key = (int(number), (proto or "tcp").lower())
                        if key not in explicit and key[1] in _PROTOCOLS:
                            wanted.append(PortRequest(container_port=key[0], protocol=key[1]))
            taken: set[tuple[str, int, str]] = set()
            for p in wanted:
                host_port = p.host_port or _free_port(p.host_ip, p.protocol)
                if (p.host_ip, host_port, p.protocol) in taken:
                    raise InvalidArgument(f"host port {host_port}/{p.protocol} is published twice")
                taken.add((p.host_ip, host_port, p.protocol))
                ports.append({"host_ip": p.host_ip, "host_port": host_port, "container_port": p.container_port,
                              "protocol": p.protocol})
        return {"network": {"mode": mode, "add_hosts": list(request.add_hosts), "dns": list(request.dns),
                            "dns_search": list(request.dns_search), "dns_options": list(request.dns_options)},
                "ports": ports}

    # --- join ------------------------------------------------------------------

    def join(self, record: Container, *, hostname: str) -> NetworkJoin:
        plan: Mapping[str, Any] = record.config["network"]
        mode = str(plan["mode"])
        if mode.startswith(CONTAINER):
            return self._share(record, mode[len(CONTAINER):], str(plan.get("netns") or ""),
                               int(plan.get("netns_inode") or 0))
        directory = self.directory(record.id)
        os.makedirs(directory, mode=0o711, exist_ok=True)
        extra = tuple(str(h) for h in plan.get("add_hosts") or ())
        hostname = hostname or record.id[:12]
        files = {"hosts": "", "resolv.conf": "", "hostname": f"{hostname}\n"}
        files["resolv.conf"] = resolv_conf(dns=plan.get("dns") or (), search=plan.get("dns_search") or (),
                                           options=plan.get("dns_options") or (), host_file="/etc/resolv.conf",
                                           keep_loopback=mode == HOST)
        netns: str | None = None
        networks: dict[str, Any] | None = None
        if mode == HOST:
            netns = HOST
            try:
                with open("/etc/hosts", encoding="utf-8", errors="replace") as f:
                    files["hosts"] = f.read() + _extra_lines(extra, "127.0.0.1")
            except OSError:
                files["hosts"] = _BASE_HOSTS + _extra_lines(extra, "127.0.0.1")
        elif mode == NONE:
            files["hosts"] = _BASE_HOSTS + _extra_lines(extra)
        else:
            netns, networks = self._attach(record, mode, hostname, extra)
        for name, text in files.items():
            if name == "hosts" and networks is not None:
                continue  # written under the network lock by _attach
            path = os.path.join(directory, name)
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        mounts = tuple(BindMount(source=os.path.join(directory, name), destination=f"/etc/{name}")
                       for name in ("hosts", "resolv.conf", "hostname"))
        return NetworkJoin(netns=netns, mounts=mounts, networks=networks)

    def pinned_netns(self, container_id: str) -> str | None:
        """The network namespace pinned for a container (a bridge network's),
        or None (host, none, or not made yet)."""
        path = os.path.join(self.directory(container_id), "ns", "net")
        if not os.path.exists(path):  # host and none have no pin (nor the import)
            return None
        from hawser.host import is_netns

        return path if is_netns(path) else None

    def _share(self, record: Container, owner: str, source: str, inode: int) -> NetworkJoin:
        """``--network container:OWNER``: pin the owner's namespace (``source``:
        its pin or its init's /proc/PID/ns/net) again under the container's own
        directory, and bind the owner's hosts, resolv.conf and hostname files.
        The container's own pin, not the owner's path, is what its spec names:
        a /proc path would mean another process once the pid is reused, and the
        owner's pin goes with the owner.  So the owner can be removed while this
        container runs (as docker allows): its CNI DEL takes the interface away,
        the namespace lives on (loopback only) until this container's rm unpins it."""
        import threading

        from hawser.host import is_netns, pin_namespace_of, run_in_netns

        if not source or not is_netns(source) or (inode and _inode(source) != inode):
            # (a /proc path whose process is gone, its pid perhaps another's since: the inode tells)
            raise FailedPrecondition(f"cannot join network of container {owner[:12]}: its network namespace is gone",
                                     hint="start that container first")
        directory = self.directory(record.id)
        os.makedirs(directory, mode=0o711, exist_ok=True)
        pin = os.path.join(directory, "ns", "net")
        run_in_netns(source, lambda: pin_namespace_of(threading.get_native_id(), "net", pin))
        files = self.directory(owner)
        mounts = tuple(BindMount(source=os.path.join(files, name), destination=f"/etc/{name}")
                       for name in ("hosts", "resolv.conf", "hostname") if os.path.exists(os.path.join(files, name)))
        return NetworkJoin(netns=pin, mounts=mounts)

    def _attach(self, record: Container, mode: str, hostname: str,
                extra: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
        import asyncio

        from hawser.host import pin_namespaces
        from hawser.network import Endpoint, PodNetworkRequest, PortMapping, ensure_rules

        networks = self.networks
        network = networks.get(mode)
        directory = self.directory(record.id)
        hosts_path = os.path.join(directory, "hosts")
        endpoint = Endpoint(container_id=record.id, network=network.name, name=record.name, hostname=hostname,
                            hosts_path=hosts_path, extra_hosts=extra, state_dir=directory)
        with networks.locked():
            networks.write_endpoint(endpoint)  # first: what a crash leaves is findable
            ensure_rules(network, networks.marker(network))  # the network's egress, once per boot
        pins = pin_namespaces(os.path.join(directory, "ns"), ("net",))
        ports = tuple(PortMapping(container_port=int(p["container_port"]), host_port=int(p["host_port"]),
                                  protocol=str(p["protocol"]), host_ip=str(p["host_ip"]))
                      for p in record.config.get("ports") or ())
        request = PodNetworkRequest(pod_id=record.id, netns=pins["net"], name=record.name, namespace="",
                                    port_mappings=ports)
        attached = asyncio.run(networks.cni(network).setup(request))
        ip = attached.ip_configs[0] if attached.ip_configs else None
        mac = next((i.mac for i in attached.result.interfaces if i.sandbox and i.name == attached.ifname), "")
        from hawser._dataclass import replace

        endpoint = replace(endpoint, ip=ip.ip if ip else "", prefix_len=ip.address.network.prefixlen if ip else 0,
                           gateway=str(ip.gateway) if ip and ip.gateway else network.gateway, mac=mac)
        with networks.locked():
            networks.write_endpoint(endpoint)
            with open(hosts_path, "w", encoding="utf-8") as f:
                f.write(self._hosts_text(endpoint, networks.endpoints()))
            self._tell_peers(endpoint, networks.endpoints())
        return pins["net"], {network.name: {"ip": endpoint.ip, "prefix_len": endpoint.prefix_len,
                                            "gateway": endpoint.gateway, "mac": endpoint.mac}}

    @staticmethod
    def _hosts_text(first: Endpoint, endpoints: Sequence[Endpoint]) -> str:
        """A container's /etc/hosts: its own name on its first network's
        address (``first``: its first endpoint), then the peers of every
        network it is on (its endpoints among ``endpoints``)."""
        from hawser.network import DEFAULT_NETWORK

        own = [first, *(e for e in endpoints if e.container_id == first.container_id)]
        text = _BASE_HOSTS + _extra_lines(first.extra_hosts, first.gateway)
        if first.ip:
            names = " ".join(dict.fromkeys(n for n in (first.hostname, first.name) if n))
            text += f"{first.ip}\t{names}\n"
        # docker's default bridge resolves no container names
        mine = {e.network for e in own if e.network != DEFAULT_NETWORK}
        for peer in endpoints:
            if peer.container_id != first.container_id and peer.network in mine and peer.ip:
                names = " ".join(dict.fromkeys(n for n in (peer.name, peer.hostname, *peer.aliases) if n))
                text += f"{peer.ip}\t{names}\n"
        return text

    def _tell_peers(self, changed: Endpoint, endpoints: Sequence[Endpoint]) -> None:
        from hawser.network import DEFAULT_NETWORK

        if changed.network == DEFAULT_NETWORK:
            return
        told = set()
        for peer in endpoints:
            if peer.container_id != changed.container_id and peer.network == changed.network and peer.hosts_path \
                    and peer.container_id not in told:
                told.add(peer.container_id)
                _rewrite(peer.hosts_path, self._hosts_text(_own(peer.container_id, endpoints)[0], endpoints))

    # --- network connect / disconnect --------------------------------------------

    def connect(self, record: Container, network: str, *, aliases: Sequence[str] = ()) -> dict[str, Any]:
        """``network connect``: one more interface (eth1, eth2...) in the
        container's pinned namespace, a CNI ADD on ``network`` (no published
        ports: those are the first network's), the hosts files of the container
        and of its new peers rewritten.  Returns the record's ``networks``
        entry.  FailedPrecondition for a container on host, none or another's
        namespace, AlreadyExists when it is on ``network`` already."""
        import asyncio
        import itertools

        from hawser._dataclass import replace
        from hawser.errors import AlreadyExists
        from hawser.network import Endpoint, PodNetworkRequest, ensure_rules

        mode = str((record.config.get("network") or {}).get("mode") or NONE)
        refusals = {HOST: "container cannot be disconnected from host network or connected to host network",
                    NONE: "container cannot be connected to multiple networks with one of the networks in "
                          "private (none) mode"}
        if mode in refusals or mode.startswith(CONTAINER):
            raise FailedPrecondition(refusals.get(mode, "container sharing network namespace with another container "
                                                        "or host cannot be connected to any other network"))
        netns = self.pinned_netns(record.id)
        if netns is None:
            raise FailedPrecondition(f"container {record.name} has no network namespace (a reboot?)",
                                     hint="start it, or rm and run it again")
        networks = self.networks
        target = networks.get(network)  # NotFound
        directory = self.directory(record.id)
        with networks.locked():
            own = networks.endpoints_of(record.id)
            if any(e.network == target.name for e in own):
                raise AlreadyExists(f"endpoint with name {record.name} already exists in network {target.name}")
            used = {e.ifname for e in own}
            ifname = next(f"eth{i}" for i in itertools.count() if f"eth{i}" not in used)
            endpoint = Endpoint(container_id=record.id, network=target.name, name=record.name,
                                hostname=own[0].hostname if own else str(record.config.get("hostname") or ""),
                                hosts_path=os.path.join(directory, "hosts"),
                                extra_hosts=own[0].extra_hosts if own else (), state_dir=directory, ifname=ifname,
                                aliases=tuple(aliases))
            networks.write_endpoint(endpoint)  # first: what a crash leaves is findable
            ensure_rules(target, networks.marker(target))
        request = PodNetworkRequest(pod_id=record.id, netns=netns, name=record.name, namespace="", ifname=ifname)
        try:
            attached = asyncio.run(networks.cni(target).setup(request))  # undoes its own ADD on failure
        except BaseException:
            with networks.locked():
                networks.remove_endpoint(record.id, target.name)
            raise
        ip = attached.ip_configs[0] if attached.ip_configs else None
        mac = next((i.mac for i in attached.result.interfaces if i.sandbox and i.name == ifname), "")
        endpoint = replace(endpoint, ip=ip.ip if ip else "", prefix_len=ip.address.network.prefixlen if ip else 0,
                           gateway=str(ip.gateway) if ip and ip.gateway else target.gateway, mac=mac)
        with networks.locked():
            networks.write_endpoint(endpoint)
            endpoints = networks.endpoints()
            _rewrite(endpoint.hosts_path, self._hosts_text(_own(record.id, endpoints)[0], endpoints))
            self._tell_peers(endpoint, endpoints)
        return {target.name: {"ip": endpoint.ip, "prefix_len": endpoint.prefix_len, "gateway": endpoint.gateway,
                              "mac": endpoint.mac}}

    def disconnect(self, record: Container, network: str) -> str:
        """``network disconnect``: CNI DEL of the container's attachment to
        ``network`` (its interface goes), its endpoint forgotten, the hosts
        files rewritten.  Returns the network's name.  FailedPrecondition when
        the container is not on it."""
        import asyncio

        networks = self.networks
        name = networks.get(network).name  # NotFound
        endpoint = next((e for e in networks.endpoints_of(record.id) if e.network == name), None)
        if endpoint is None:
            raise FailedPrecondition(f"container {record.name} is not connected to network {name}")
        asyncio.run(networks.teardown_cni().teardown(record.id, network=name))  # raises, endpoint kept, to retry
        with networks.locked():
            networks.remove_endpoint(record.id, name)
            endpoints = networks.endpoints()
            own = _own(record.id, endpoints)
            _rewrite(endpoint.hosts_path, self._hosts_text(own[0], endpoints) if own else
                     _BASE_HOSTS + _extra_lines(endpoint.extra_hosts, endpoint.gateway))
            self._tell_peers(endpoint, endpoints)
        return name

    # --- leave -----------------------------------------------------------------

    def leave(self, record: Container) -> None:
        plan = record.config.get("network") or {}
        if plan.get("mode") in (HOST, NONE) or str(plan.get("mode")).startswith(CONTAINER):
            # no CNI: its files and pin only (and no import of the network part)
            self._remove_dir(record.id)
            return
        self.leave_id(record.id)

    def _remove_dir(self, container_id: str) -> None:
        directory = self.directory(container_id)
        if os.path.isdir(directory):
            if os.path.exists(os.path.join(directory, "ns")):  # none and host have no pins (nor the import)
                from hawser.host import remove_pin_dir

                remove_pin_dir(os.path.join(directory, "ns"))
            shutil.rmtree(directory, ignore_errors=True)

    def leave_id(self, container_id: str) -> None:
        """Undo whatever ``join`` made for ``container_id`` (any part of it).
        Idempotent.  Raises the CNI DEL's error (its cache entry is kept)."""
        networks = self.networks
        own = networks.endpoints_of(container_id)  # one per network it is on
        if own or self._cached(container_id):
            import asyncio

            asyncio.run(networks.teardown_cni().teardown(container_id))
        self._remove_dir(container_id)
        if own or networks.endpoint(container_id) is not None:  # (an unreadable one too)
            with networks.locked():
                networks.remove_endpoint(container_id)
                endpoints = networks.endpoints()
                for endpoint in own:
                    self._tell_peers(endpoint, endpoints)

    def _cached(self, container_id: str) -> bool:
        try:
            return any(n.startswith(f"{container_id}:") for n in os.listdir(self.networks.results_dir))
        except FileNotFoundError:
            return False

    # --- leftovers -------------------------------------------------------------

    def leftovers(self, live: Collection[str]) -> list[str]:
        """Ids of containers not in ``live`` (every record of the store) that
        left network state: a state dir (pinned netns, files), an endpoint or
        a CNI attachment.  For ``system check``."""
        found: set[str] = set()
        with contextlib.suppress(FileNotFoundError):
            found.update(n for n in os.listdir(self.state_dir) if not n.startswith("."))
        found.update(e.container_id for e in self.networks.endpoints())
        found.update(self.networks.cached_container_ids())
        return sorted(found - set(live))


def _own(container_id: str, endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    """A container's endpoints among ``endpoints``, eth0's first."""
    return sorted((e for e in endpoints if e.container_id == container_id), key=lambda e: (len(e.ifname), e.ifname))


def _plan_shared(request: NetworkRequest, mode: str) -> dict[str, Any]:
    """The plan of ``--network container:ID`` (the CLI resolved the name to the
    id and found ``request.netns``): docker's refusals of what the owner's
    network already decides."""
    conflicts = ((request.ports or request.publish_all, "port publishing and the container type network mode"),
                 (request.add_hosts, "custom host-to-IP mapping and the network mode"),
                 (request.dns or request.dns_search or request.dns_options, "dns and the network mode"))
    for given, what in conflicts:
        if given:
            raise InvalidArgument(f"conflicting options: {what}")
    if not request.netns:
        raise InvalidArgument(f"--network {mode}: no network namespace given for it")
    plan: dict[str, Any] = {"mode": mode, "netns": request.netns}
    if request.netns.startswith("/proc/"):  # a process's: what it names must not change under us
        plan["netns_inode"] = _inode(request.netns)
    return {"network": plan, "ports": []}


def _inode(path: str) -> int:
    try:
        return os.stat(path).st_ino
    except OSError:
        return -1


def _extra_lines(extra: Sequence[str], gateway: str = "") -> str:
    """The --add-host lines; ``gateway`` stands for host-gateway (none: InvalidArgument)."""
    lines = []
    for item in extra:
        name, ip = parse_add_host(item)
        if ip == HOST_GATEWAY:
            if not gateway:
                raise InvalidArgument(f"--add-host {item!r}: a container without a network has no gateway",
                                      hint="use an address, or a network (--network bridge|host|NAME)")
            ip = gateway
        lines.append(f"{ip}\t{name}\n")
    return "".join(lines)
