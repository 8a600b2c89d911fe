"""Pod networking through CNI (spec 1.1.0 and 1.0.0, also 0.4.0 and 0.3.x configs).

``CNINetwork`` reads the node's CNI config dir, runs the plugins of the
lexically first valid network per the CNI spec (ADD, DEL, CHECK), records
every attachment on disk so DEL works after restarts and config changes, and
reports the NetworkReady condition (with spec 1.1's STATUS for configs of
1.1.0 or later).  ``CNINetwork.gc`` DELs the attachments of pods that are
gone and runs spec 1.1's GC (hawserd: ``CNINetwork.recoverer`` at start-up).
The pod's network namespace itself is created and pinned by
``hawser.host.pin_namespaces``.

    net = CNINetwork("/etc/cni/net.d", ["/usr/lib/cni"], "/var/lib/hawser/cni/results")
    pod = await net.setup(PodNetworkRequest(pod_id=..., netns=pins["net"], name=..., namespace=...))
    pod.ip                       # "10.88.0.5"
    await net.teardown(pod_id)   # idempotent
"""

from hawser.network._config import ConfigSnapshot, NetworkConfig, PluginConfig, load_file, parse_network_config
from hawser.network._default import default_conflist, write_default_conflist
from hawser.network._errors import CNIError, PluginFailure
from hawser.network._gc import GCReport, StartupGC
from hawser.network._manager import DEFAULT_BIN_DIRS, DEFAULT_CACHE_DIR, DEFAULT_CONF_DIR, CNINetwork
from hawser.network._result import DNS, Interface, IPConfig, Result, Route, parse_result
from hawser.network._types import (
    DNSConfig,
    NetworkStatus,
    PodNetwork,
    PodNetworkRequest,
    PodNetworks,
    PortMapping,
)
from hawser.network._user_networks import (
    DEFAULT_NETWORK,
    Endpoint,
    UserNetwork,
    UserNetworks,
    check_network_name,
    delete_bridge,
    ensure_rules,
    remove_rules,
)

__all__ = [
    "DEFAULT_BIN_DIRS",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_CONF_DIR",
    "DEFAULT_NETWORK",
    "DNS",
    "CNIError",
    "CNINetwork",
    "ConfigSnapshot",
    "DNSConfig",
    "Endpoint",
    "GCReport",
    "IPConfig",
    "Interface",
    "NetworkConfig",
    "NetworkStatus",
    "PluginConfig",
    "PluginFailure",
    "PodNetwork",
    "PodNetworkRequest",
    "PodNetworks",
    "PortMapping",
    "Result",
    "Route",
    "StartupGC",
    "UserNetwork",
    "UserNetworks",
    "check_network_name",
    "default_conflist",
    "delete_bridge",
    "ensure_rules",
    "load_file",
    "parse_network_config",
    "parse_result",
    "remove_rules",
    "write_default_conflist",
]
