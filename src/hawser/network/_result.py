"""CNI results (spec section 5, "Success"), parsed at the edge into frozen objects.

Results of spec 0.3.0 to 1.1.0 differ only in small ways (0.4.0 IP entries
carry a redundant ``version``; 1.0.0 dropped it; 1.1.0 added optional fields:
an interface's ``mtu``, ``socketPath`` and ``pciID``, a route's ``mtu``,
``advmss``, ``priority``, ``table`` and ``scope``), so one parser reads them
all.  The plugin's own JSON text is kept in ``Result.raw``: it goes back
verbatim as the next plugin's ``prevResult`` and into the cache, so fields
hawser does not model (a plugin's extensions, 1.1.0's additions) survive the
chain.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from hawser._dataclass import dataclass
from hawser.errors import FailedPrecondition

# Spec versions whose results this parser reads (0.1/0.2 used ip4/ip6 objects).
RESULT_VERSIONS = frozenset({"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"})

IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    mac: str = ""
    # the netns path for an interface inside the pod, "" for a host interface
    sandbox: str = ""


@dataclass(frozen=True, slots=True)
class IPConfig:
    address: IPInterface
    gateway: IPAddress | None = None
    # index into Result.interfaces, None when the plugin did not say
    interface: int | None = None

    @property
    def ip(self) -> str:
        return str(self.address.ip)


@dataclass(frozen=True, slots=True)
class Route:
    dst: IPNetwork
    gw: IPAddress | None = None


@dataclass(frozen=True, slots=True)
class DNS:
    nameservers: tuple[str, ...] = ()
    domain: str = ""
    search: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Result:
    cni_version: str
    interfaces: tuple[Interface, ...] = ()
    ips: tuple[IPConfig, ...] = ()
    routes: tuple[Route, ...] = ()
    dns: DNS = DNS()
    raw: str = "{}"

    def sandbox_ips(self, ifname: str | None = None) -> tuple[IPConfig, ...]:
        """The IPs on interfaces inside the pod (named ``ifname`` if given),
        IPv4 first as Kubernetes expects of a pod's primary IP.  IPs that name
        no interface count as the pod's (IPAM-style results)."""
        picked = []
        for ip in self.ips:
            if ip.interface is not None and 0 <= ip.interface < len(self.interfaces):
                iface = self.interfaces[ip.interface]
                if not iface.sandbox or (ifname is not None and iface.name != ifname):
                    continue
            picked.append(ip)
        return tuple(sorted(picked, key=lambda ip: ip.address.version))


def _bad(source: str, what: str) -> FailedPrecondition:
    return FailedPrecondition(f"{source} returned an invalid CNI result: {what}",
                              hint="check the plugin's version against the network config's cniVersion")


def _str(obj: dict[str, Any], key: str, source: str, *, required: bool = False) -> str:
    value = obj.get(key)
    if value is None:
        if required:
            raise _bad(source, f"{key!r} is missing")
        return ""
    if not isinstance(value, str):
        raise _bad(source, f"{key!r} is not a string")
    return value


def _list(obj: dict[str, Any], key: str, source: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise _bad(source, f"{key!r} is not a list")
    return value


def _object(value: Any, what: str, source: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(source, f"{what} is not an object")
    return value


def _strings(obj: dict[str, Any], key: str, source: str) -> tuple[str, ...]:
    items = _list(obj, key, source)
    if not all(isinstance(item, str) for item in items):
        raise _bad(source, f"{key!r} holds a non-string")
    return tuple(items)


def _ip(text: str, what: str, source: str) -> IPAddress:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise _bad(source, f"{what} {text!r} is not an IP address") from None


def parse_result(text: str | bytes, *, source: str = "CNI plugin") -> Result:
    """Parse a plugin's ADD output.  Raises FailedPrecondition naming ``source``
    when it is not JSON, not a result, or of an unsupported version."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: nested too deep
        raise _bad(source, f"not JSON ({exc})") from None
    return result_from_json(data, source=source)


def result_from_json(data: Any, *, source: str = "CNI plugin") -> Result:
    """Like ``parse_result`` for already decoded JSON."""
    obj = _object(data, "the result", source)
    version = _str(obj, "cniVersion", source, required=True)
    if version not in RESULT_VERSIONS:
        raise _bad(source, f"cniVersion {version!r} is not one of {', '.join(sorted(RESULT_VERSIONS))}")
    interfaces = []
    for item in _list(obj, "interfaces", source):
        iface = _object(item, "an interface", source)
        interfaces.append(Interface(name=_str(iface, "name", source, required=True), mac=_str(iface, "mac", source),
                                    sandbox=_str(iface, "sandbox", source)))
    ips = []
    for item in _list(obj, "ips", source):
        entry = _object(item, "an ips entry", source)
        address = _str(entry, "address", source, required=True)
        try:
            iface_addr: IPInterface = ipaddress.ip_interface(address)
        except ValueError:
            raise _bad(source, f"address {address!r} is not an IP with a prefix length") from None
        if "/" not in address:
            raise _bad(source, f"address {address!r} lacks a prefix length")
        gateway = _str(entry, "gateway", source)
        index = entry.get("interface")
        if index is not None and (not isinstance(index, int) or isinstance(index, bool) or index < 0):
            raise _bad(source, f"interface index {index!r} is not a non-negative integer")
        ips.append(IPConfig(address=iface_addr, gateway=_ip(gateway, "gateway", source) if gateway else None,
                            interface=index))
    routes = []
    for item in _list(obj, "routes", source):
        entry = _object(item, "a route", source)
        dst = _str(entry, "dst", source, required=True)
        try:
            network: IPNetwork = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            raise _bad(source, f"route dst {dst!r} is not a CIDR") from None
        gw = _str(entry, "gw", source)
        routes.append(Route(dst=network, gw=_ip(gw, "route gw", source) if gw else None))
    dns_obj = _object(obj.get("dns") or {}, "dns", source)
    dns = DNS(nameservers=_strings(dns_obj, "nameservers", source), domain=_str(dns_obj, "domain", source),
              search=_strings(dns_obj, "search", source), options=_strings(dns_obj, "options", source))
    return Result(cni_version=version, interfaces=tuple(interfaces), ips=tuple(ips), routes=tuple(routes), dns=dns,
                  raw=json.dumps(obj, separators=(",", ":")))
