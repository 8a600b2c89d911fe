"""The CLI's named networks (``hawser network create/ls/inspect/rm``), kept
per store as CNI conflists, as podman keeps its networks:

    root/networks/conf/NAME/NAME.conflist   the network: bridge and portmap
    root/networks/ipam/                     host-local's dataDir (its leases, per network)
    root/networks/results/                  the CNI result cache of its containers
    root/networks/endpoints/ID.json         a container on a network (name, addresses, files)
    root/networks/lock                      flock: networks and endpoints change under it
    state/networks/.rules-ID12              the network's egress rules are in (``ensure_rules``)

Everything is under the store's root, IPAM state too (not /var/lib/cni):
two stores on one host never share leases, and a store's removal takes its
networks along.  Each network has a bridge of its own; ``bridge``, docker's
default network, is made on first use from ``[cni] bridge_subnet`` and
``bridge_name``, by default a free /24 of 10.87.0.0/16 (none of the host's
routes, none of the store's networks) and ``hw-<store id[:12]>``: two stores
on one host get bridges of their own.

Each conflist has, besides what CNI reads, a ``hawser`` object (id,
created, labels, driver) that the plugins never see (``parse_network_config``
keeps only the chain).  One directory per network because ``CNINetwork``
takes a config dir and uses its first network.

A network's egress rules (``ensure_rules``) are the one thing it keeps on
the host outside the store while no container runs, as docker's bridges do;
``network rm`` removes them, a store deleted by hand leaves them (tagged
``hawser network <id[:12]>``; ``remove_rules`` takes them away).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from hawser._dataclass import dataclass, field, replace
from hawser.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from hawser.host import FileLock, atomic_write

DEFAULT_NETWORK = "bridge"
DEFAULT_SUBNET = ""  # a free /24 of _AUTO_SUBNETS, chosen when the network is made
DEFAULT_BRIDGE = ""  # hw-<store id[:12]>: named after the store, as its cgroups are
DRIVERS = ("bridge",)
# Names docker gives a meaning of their own: never a user network's.
RESERVED = frozenset({"host", "none", "default", "container"})

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_AUTO_SUBNETS = ipaddress.IPv4Network("10.87.0.0/16")


@dataclass(frozen=True, slots=True, kw_only=True)
class UserNetwork:
    """One named network as ``network inspect`` shows it."""

    name: str
    id: str
    driver: str
    subnet: str
    gateway: str
    bridge: str
    created: float
    labels: Mapping[str, str] = field(default_factory=dict)
    path: str = ""  # its conflist

    @property
    def conf_dir(self) -> str:
        return os.path.dirname(self.path)


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoint:
    """A container attached to a network (written before the attachment is
    made, so a crash leaves what its cleanup needs)."""

    container_id: str
    network: str
    name: str = ""
    hostname: str = ""
    ip: str = ""
    prefix_len: int = 0
    gateway: str = ""
    mac: str = ""
    hosts_path: str = ""  # the container's /etc/hosts on the host (rewritten with its peers)
    extra_hosts: tuple[str, ...] = ()  # --add-host lines, "NAME:IP"
    state_dir: str = ""  # where its pinned netns and files are
    ifname: str = "eth0"  # its interface: eth0 for the network it ran with, eth1... for `network connect`ed ones
    aliases: tuple[str, ...] = ()  # `network connect --alias`: more names its peers on this network resolve

    def to_json(self) -> bytes:
        return json.dumps({"container_id": self.container_id, "network": self.network, "name": self.name,
                           "hostname": self.hostname, "ip": self.ip, "prefix_len": self.prefix_len,
                           "gateway": self.gateway, "mac": self.mac, "hosts_path": self.hosts_path,
                           "extra_hosts": list(self.extra_hosts), "state_dir": self.state_dir,
                           "ifname": self.ifname, "aliases": list(self.aliases)}).encode()

    @classmethod
    def from_json(cls, data: bytes) -> Endpoint:
        doc = json.loads(data)
        return cls(container_id=str(doc["container_id"]), network=str(doc["network"]), name=str(doc["name"]),
                   hostname=str(doc["hostname"]), ip=str(doc["ip"]), prefix_len=int(doc["prefix_len"]),
                   gateway=str(doc["gateway"]), mac=str(doc["mac"]), hosts_path=str(doc["hosts_path"]),
                   extra_hosts=tuple(str(h) for h in doc["extra_hosts"]), state_dir=str(doc["state_dir"]),
                   ifname=str(doc.get("ifname") or "eth0"), aliases=tuple(str(a) for a in doc.get("aliases") or ()))

    @property
    def file_name(self) -> str:
        """``<id>.json`` for its first attachment (eth0), ``<id>@<network>.json``
        for each one ``network connect`` adds (a network name has no '@')."""
        return f"{self.container_id}.json" if self.ifname == "eth0" else f"{self.container_id}@{self.network}.json"


def check_network_name(name: str) -> None:
    if not _NAME.match(name):
        raise InvalidArgument(f"invalid network name {name!r}: use letters, digits, '_', '.', '-' "
                              "(up to 64, starting with a letter or digit)")


def _check_bridge_name(bridge: str) -> None:
    if not bridge or len(bridge) > 15 or "/" in bridge or ":" in bridge or any(c.isspace() for c in bridge):
        raise InvalidArgument(f"bridge name {bridge!r} is not a valid interface name (1-15 characters, "
                              "no '/', ':' or spaces)")


def host_routes() -> list[ipaddress.IPv4Network]:
    """The IPv4 destinations of the host's routing table, default route left out."""
    out: list[ipaddress.IPv4Network] = []
    try:
        with open("/proc/net/route", encoding="ascii") as f:
            next(f, None)
            for line in f:
                parts = line.split()
                if len(parts) < 8:
                    continue
                dest = ipaddress.IPv4Address(int(parts[1], 16).to_bytes(4, "little"))
                mask = ipaddress.IPv4Address(int(parts[7], 16).to_bytes(4, "little"))
                if int(mask) == 0:
                    continue
                out.append(ipaddress.IPv4Network(f"{dest}/{mask}", strict=False))
    except OSError:
        pass
    return out


def conflist(network: UserNetwork, *, ipam_dir: str) -> dict[str, Any]:
    """A network's conflist: a bridge of its own with host-local IPAM whose
    leases stay under the store (``ipam_dir``), and portmap for ``-p``
    (capability ``portMappings``; its default ``snat`` makes a port published
    on 127.0.0.1 answer there too).  No loopback plugin: hawser brings lo up
    when it pins the namespace.

    Egress is the network's, not each container's (``ensure_rules``): one
    MASQUERADE rule for the subnet and two FORWARD accepts for the bridge, as
    docker has per bridge, instead of the bridge plugin's ``ipMasq`` and the
    firewall plugin, which make and remove chains per container: some twenty
    iptables runs of every run and rm, most of a container's network cost."""
    net = ipaddress.ip_network(network.subnet)
    ip_range: dict[str, Any] = {"subnet": str(net)}
    if network.gateway:
        ip_range["gateway"] = network.gateway
    return {
        "cniVersion": "1.0.0",
        "name": network.name,
        "plugins": [
            {"type": "bridge", "bridge": network.bridge, "isGateway": True, "ipMasq": False, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[ip_range]],
                      "routes": [{"dst": "0.0.0.0/0" if net.version == 4 else "::/0"}], "dataDir": ipam_dir}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
        "hawser": {"id": network.id, "driver": network.driver, "created": network.created,
                   "labels": dict(network.labels), "subnet": network.subnet, "gateway": network.gateway,
                   "bridge": network.bridge},
    }


class UserNetworks:
    """The named networks and endpoints of one store (see the module's doc).

    Construction touches nothing; the default network is written by the
    first call that needs it.  Safe between processes (flock)."""

    def __init__(self, root: str, *, default_subnet: str = DEFAULT_SUBNET, default_bridge: str = DEFAULT_BRIDGE,
                 bin_dirs: Sequence[str] = ("/usr/lib/cni",), markers_dir: str = "") -> None:
        """``markers_dir``: where ``marker`` files say a network's egress rules
        are in (the store's state dir, gone after a reboot as the rules are)."""
        self.directory = os.path.join(root, "networks")
        self.markers_dir = markers_dir or os.path.join(self.directory, "run")
        self.default_subnet = default_subnet
        self.default_bridge = default_bridge
        self.bin_dirs = tuple(bin_dirs)
        self.conf_root = os.path.join(self.directory, "conf")
        self.ipam_dir = os.path.join(self.directory, "ipam")
        self.results_dir = os.path.join(self.directory, "results")
        self.endpoints_dir = os.path.join(self.directory, "endpoints")

    # --- locking ---------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's network lock (creating the layout if missing)."""
        for d in (self.conf_root, self.ipam_dir, self.results_dir, self.endpoints_dir):
            os.makedirs(d, mode=0o700, exist_ok=True)
        with FileLock(os.path.join(self.directory, "lock")):
            yield

    def marker(self, network: UserNetwork) -> str:
        """The file that says ``network``'s egress rules are installed (``ensure_rules``)."""
        return os.path.join(self.markers_dir, f".rules-{network.id[:12]}")

    # --- networks --------------------------------------------------------------

    def _path(self, name: str) -> str:
        return os.path.join(self.conf_root, name, f"{name}.conflist")

    def _read(self, name: str) -> UserNetwork | None:
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return None
        except ValueError as exc:
            raise FailedPrecondition(f"network {name}: {path} is not valid JSON ({exc})") from None
        meta = doc.get("hawser") or {}
        return UserNetwork(name=str(doc["name"]), id=str(meta.get("id", "")), driver=str(meta.get("driver", "bridge")),
                           subnet=str(meta.get("subnet", "")), gateway=str(meta.get("gateway", "")),
                           bridge=str(meta.get("bridge", "")), created=float(meta.get("created", 0)),
                           labels={str(k): str(v) for k, v in (meta.get("labels") or {}).items()}, path=path)

    def _write(self, network: UserNetwork) -> UserNetwork:
        path = self._path(network.name)
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        network = replace(network, path=path)
        data = json.dumps(conflist(network, ipam_dir=self.ipam_dir), indent=2).encode() + b"\n"
        if not atomic_write(path, data, mode=0o644, replace=False):
            raise AlreadyExists(f"network with name {network.name} already exists")
        return network

    def _names(self) -> list[str]:
        try:
            return sorted(n for n in os.listdir(self.conf_root) if not n.startswith("."))
        except FileNotFoundError:
            return []

    def ensure_default(self) -> UserNetwork:
        """The ``bridge`` network, written now if missing."""
        found = self._read(DEFAULT_NETWORK)
        if found is not None:
            return found
        with self.locked():
            found = self._read(DEFAULT_NETWORK)
            if found is not None:
                return found
            taken = [ipaddress.ip_network(n.subnet) for n in (self._read(x) for x in self._names())
                     if n is not None and n.subnet]
            try:
                net = ipaddress.ip_network(self.default_subnet) if self.default_subnet else self._free_subnet(taken)
            except ValueError as exc:
                raise InvalidArgument(f"[cni] bridge_subnet {self.default_subnet!r}: {exc}") from None
            bridge = self.default_bridge or f"hw-{self._store_id()[:12]}"
            _check_bridge_name(bridge)
            return self._write(UserNetwork(name=DEFAULT_NETWORK, id=os.urandom(32).hex(), driver="bridge",
                                           subnet=str(net), gateway=str(next(iter(net.hosts()))),
                                           bridge=bridge, created=time.time()))

    def _store_id(self) -> str:
        try:
            with open(os.path.join(os.path.dirname(self.directory), "store-id"), encoding="ascii") as f:
                return f.read().strip() or os.urandom(16).hex()
        except FileNotFoundError:
            return os.urandom(16).hex()

    def all_networks(self) -> list[UserNetwork]:
        """Every network, ``bridge`` first (made if missing)."""
        default = self.ensure_default()
        out = [default]
        for name in self._names():
            if name != DEFAULT_NETWORK:
                found = self._read(name)
                if found is not None:
                    out.append(found)
        return out

    def get(self, text: str) -> UserNetwork:
        """A network by name, id or unique id prefix.  NotFound otherwise."""
        networks = self.all_networks()
        for n in networks:
            if n.name == text or n.id == text:
                return n
        matches = [n for n in networks if len(text) >= 3 and n.id.startswith(text)]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"network {text} not found")

    def create(self, name: str, *, subnet: str = "", gateway: str = "", driver: str = "bridge",
               labels: Mapping[str, str] | None = None, bridge: str = "") -> UserNetwork:
        """A new bridge network.  AlreadyExists for a name in use,
        InvalidArgument for a bad name, driver, subnet or gateway, or a subnet
        overlapping another network of the store."""
        check_network_name(name)
        if name in RESERVED or name == DEFAULT_NETWORK:
            raise InvalidArgument(f"network name {name} is reserved (a pre-defined network's)")
        if driver not in DRIVERS:
            raise InvalidArgument(f"network driver {driver!r} is not supported", hint="use -d bridge")
        self.ensure_default()
        with self.locked():
            if self._read(name) is not None:
                raise AlreadyExists(f"network with name {name} already exists")
            others = [n for n in (self._read(x) for x in self._names()) if n is not None]
            taken = [ipaddress.ip_network(n.subnet) for n in others if n.subnet]
            if subnet:
                try:
                    net = ipaddress.ip_network(subnet)
                except ValueError as exc:
                    raise InvalidArgument(f"invalid subnet {subnet!r}: {exc}") from None
                clash = next((n for n in others if n.subnet and ipaddress.ip_network(n.subnet).overlaps(net)), None)
                if clash is not None:
                    raise InvalidArgument(f"subnet {net} overlaps network {clash.name}'s ({clash.subnet})")
            else:
                net = self._free_subnet(taken)
            if net.num_addresses < 4:
                raise InvalidArgument(f"subnet {net} is too small for a bridge network")
            gw: ipaddress.IPv4Address | ipaddress.IPv6Address
            if gateway:
                try:
                    gw = ipaddress.ip_address(gateway)
                except ValueError as exc:
                    raise InvalidArgument(f"invalid gateway {gateway!r}: {exc}") from None
                if gw not in net:
                    raise InvalidArgument(f"gateway {gw} is not in subnet {net}")
            else:
                gw = ipaddress.ip_address(str(next(iter(net.hosts()))))
            id_ = os.urandom(32).hex()
            bridge = bridge or f"hw-{id_[:12]}"
            _check_bridge_name(bridge)
            if any(n.bridge == bridge for n in others):
                raise InvalidArgument(f"bridge {bridge} is used by another network")
            return self._write(UserNetwork(name=name, id=id_, driver=driver, subnet=str(net), gateway=str(gw),
                                           bridge=bridge, created=time.time(), labels=dict(labels or {})))

    @staticmethod
    def _free_subnet(taken: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> ipaddress.IPv4Network:
        used = [*taken, *host_routes()]
        for candidate in _AUTO_SUBNETS.subnets(new_prefix=24):
            if not any(candidate.overlaps(u) for u in used):
                return candidate
        raise FailedPrecondition(f"no free /24 left in {_AUTO_SUBNETS} for a new network", hint="give --subnet")

    def remove(self, text: str) -> UserNetwork:
        """Remove a network: its conflist, its IPAM state and its bridge.
        FailedPrecondition while a container is on it, or for ``bridge``."""
        network = self.get(text)
        if network.name == DEFAULT_NETWORK:
            raise FailedPrecondition(f"{network.name} is a pre-defined network and cannot be removed")
        with self.locked():
            users = [e.container_id[:12] for e in self.endpoints() if e.network == network.name]
            if users:
                raise FailedPrecondition(f"error while removing network: network {network.name} id {network.id} "
                                         f"has active endpoints ({', '.join(users)})",
                                         hint="remove its containers first")
            shutil.rmtree(os.path.join(self.ipam_dir, network.name), ignore_errors=True)
            remove_rules(network, self.marker(network))
            delete_bridge(network.bridge)
            shutil.rmtree(network.conf_dir, ignore_errors=True)
        return network

    def cni(self, network: UserNetwork) -> Any:
        """The CNINetwork that attaches containers to ``network``."""
        from hawser.network._manager import CNINetwork

        return CNINetwork(network.conf_dir, self.bin_dirs, self.results_dir, plugin_timeout=30.0)

    def teardown_cni(self) -> Any:
        """A CNINetwork for DELs: every attachment is DELeted with the config
        it was added with (the cache has it), whichever network it was on."""
        from hawser.network._manager import CNINetwork

        return CNINetwork(os.path.join(self.conf_root, DEFAULT_NETWORK), self.bin_dirs, self.results_dir,
                          plugin_timeout=30.0)

    def cached_container_ids(self) -> set[str]:
        """The containers the CNI result cache holds attachments of."""
        from hawser.network._cache import ResultCache

        try:
            return {e.pod_id for e in ResultCache(self.results_dir).all_entries()}
        except OSError:
            return set()

    # --- endpoints -------------------------------------------------------------

    def endpoints(self) -> list[Endpoint]:
        out = []
        try:
            names = sorted(os.listdir(self.endpoints_dir))
        except FileNotFoundError:
            return []
        for n in names:
            if n.startswith(".") or not n.endswith(".json"):
                continue
            try:
                with open(os.path.join(self.endpoints_dir, n), "rb") as f:
                    out.append(Endpoint.from_json(f.read()))
            except (OSError, ValueError, KeyError, TypeError):
                continue
        return out

    def endpoint(self, container_id: str) -> Endpoint | None:
        try:
            with open(os.path.join(self.endpoints_dir, f"{container_id}.json"), "rb") as f:
                return Endpoint.from_json(f.read())
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError):
            return Endpoint(container_id=container_id, network="")

    def endpoints_of(self, container_id: str) -> list[Endpoint]:
        """Every attachment of a container (one per network), eth0's first."""
        return sorted((e for e in self.endpoints() if e.container_id == container_id),
                      key=lambda e: (len(e.ifname), e.ifname))

    def write_endpoint(self, endpoint: Endpoint) -> None:
        os.makedirs(self.endpoints_dir, mode=0o700, exist_ok=True)
        atomic_write(os.path.join(self.endpoints_dir, endpoint.file_name), endpoint.to_json(),
                     mode=0o600, durable=False)

    def remove_endpoint(self, container_id: str, network: str | None = None) -> None:
        """Forget the container's attachment to ``network``, or all of them."""
        with contextlib.suppress(FileNotFoundError):
            for n in os.listdir(self.endpoints_dir):
                if n == f"{container_id}.json" or n.startswith(f"{container_id}@"):
                    path = os.path.join(self.endpoints_dir, n)
                    if network is not None:
                        with contextlib.suppress(OSError, ValueError, KeyError, TypeError), open(path, "rb") as f:
                            if Endpoint.from_json(f.read()).network != network:
                                continue
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(path)


def _rules(network: UserNetwork) -> list[tuple[str, list[str]]]:
    """(table, rule) of the network's egress rules, each tagged with its id."""
    tag = ["-m", "comment", "--comment", f"hawser network {network.id[:12]}"]
    return [("nat", ["POSTROUTING", "-s", network.subnet, "!", "-d", network.subnet, *tag, "-j", "MASQUERADE"]),
            ("filter", ["FORWARD", "-o", network.bridge, *tag, "-j", "ACCEPT"]),
            ("filter", ["FORWARD", "-i", network.bridge, *tag, "-j", "ACCEPT"])]


def _iptables(network: UserNetwork) -> str:
    return "ip6tables" if ":" in network.subnet else "iptables"


def ensure_rules(network: UserNetwork, marker: str) -> None:
    """Install the network's egress rules unless ``marker`` (a file in the
    store's state dir, on tmpfs: gone after a reboot, as the rules are) says
    they are in.  Idempotent (each rule is checked before it is added).
    Raises FailedPrecondition when iptables fails."""
    if os.path.exists(marker):
        return
    from hawser.host import run_process

    binary = _iptables(network)
    for table, rule in _rules(network):
        if run_process([binary, "-w", "-t", table, "-C", *rule], timeout=30).returncode == 0:
            continue
        # FORWARD accepts go first (inserted): a DROP some firewall appended must not shadow them
        op = "-I" if table == "filter" else "-A"
        done = run_process([binary, "-w", "-t", table, op, *rule], timeout=30)
        if done.returncode != 0:
            raise FailedPrecondition(f"network {network.name}: {binary} {op} {' '.join(rule)} failed: "
                                     f"{done.stderr.decode(errors='replace').strip()}")
    os.makedirs(os.path.dirname(marker), mode=0o711, exist_ok=True)
    with open(marker, "w", encoding="utf-8"):
        pass


def remove_rules(network: UserNetwork, marker: str = "") -> None:
    """Remove the network's egress rules (each copy of each).  Best effort."""
    from hawser.host import run_process

    binary = _iptables(network)
    for table, rule in _rules(network):
        for _ in range(10):
            with contextlib.suppress(OSError):
                if run_process([binary, "-w", "-t", table, "-D", *rule], timeout=30).returncode != 0:
                    break
    if marker:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(marker)


def delete_bridge(bridge: str) -> None:
    """Delete the bridge interface ``bridge`` if it exists (best effort)."""
    if not bridge or not os.path.exists(f"/sys/class/net/{bridge}"):
        return
    from hawser.host import run_process

    with contextlib.suppress(OSError):
        run_process(["ip", "link", "del", bridge], timeout=10)
