"""The network hawser installs when the node has none: one bridge, host-local
IPAM on a private subnet, and hostPorts through portmap.

Why these settings:
- ``isGateway`` gives the bridge the subnet's first address, so the node
  reaches its pods directly and pods get a default route through it (the
  bridge plugin also turns on IPv4 forwarding, which pod egress needs);
- ``ipMasq`` masquerades pod traffic leaving the subnet (pods talk to the
  world with the node's address);
- ``hairpinMode`` lets a pod reach itself through its own hostPort or a
  service address that lands back on it;
- ``portmap`` (capability ``portMappings``) implements hostPort with DNAT.
  Its default ``snat: true`` marks connections from 127.0.0.1 for
  masquerading and sets ``route_localnet`` on the bridge, so a hostPort also
  answers on 127.0.0.1 (checked against Debian 12's plugins, 1.1.1; IPv4
  only, the kernel has no route_localnet for IPv6).  route_localnet also lets
  a pod address 127.0.0.1 through the bridge (CVE-2020-8558); kube-proxy's
  KUBE-FIREWALL rule drops such packets on Kubernetes nodes;
- no ``loopback`` plugin: ``lo`` is brought up by hawser when it creates the
  pod's network namespace, so it is up whatever the node's conflist says and
  costs no plugin execution per pod.
"""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

from hawser.errors import InvalidArgument
from hawser.host import atomic_write
from hawser.network._config import CONFIG_EXTENSIONS

DEFAULT_CONFLIST_NAME = "10-hawser.conflist"


def default_conflist(name: str = "hawser", bridge: str = "hawser0", subnet: str = "10.88.0.0/16") -> dict[str, Any]:
    """The default network as a conflist document.  Raises InvalidArgument for
    a bad subnet or bridge name."""
    try:
        net = ipaddress.ip_network(subnet)
    except ValueError as exc:
        raise InvalidArgument(f"default CNI subnet {subnet!r}: {exc}") from None
    if not bridge or len(bridge) > 15 or "/" in bridge or any(c.isspace() for c in bridge):
        raise InvalidArgument(f"bridge name {bridge!r} is not a valid interface name")
    default_route = "0.0.0.0/0" if net.version == 4 else "::/0"
    return {
        "cniVersion": "1.0.0",
        "name": name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": True,
                "ipMasq": True,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": str(net)}]],
                    "routes": [{"dst": default_route}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }


def has_config(conf_dir: str) -> bool:
    """Whether ``conf_dir`` holds any CNI config file (valid or not)."""
    try:
        names = os.listdir(conf_dir)
    except FileNotFoundError:
        return False
    return any(not n.startswith(".") and os.path.splitext(n)[1] in CONFIG_EXTENSIONS for n in names)


def write_default_conflist(conf_dir: str, *, name: str = "hawser", bridge: str = "hawser0",
                           subnet: str = "10.88.0.0/16") -> str | None:
    """Write the default network to ``conf_dir`` unless a config file is there
    already (even an invalid one: that is the admin's to fix, not to shadow).
    Returns the path written, or None.  Never overwrites (the file is linked
    into place, which fails if it exists).  Raises OSError, InvalidArgument."""
    if has_config(conf_dir):
        return None
    os.makedirs(conf_dir, mode=0o755, exist_ok=True)
    final = os.path.join(conf_dir, DEFAULT_CONFLIST_NAME)
    data = json.dumps(default_conflist(name, bridge, subnet), indent=2).encode() + b"\n"
    # The temporary file is a dot file: the config loader and has_config skip it.
    if not atomic_write(final, data, mode=0o644, replace=False):
        return None
    return final
