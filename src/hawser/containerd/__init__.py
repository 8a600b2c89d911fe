"""containerd's v1 gRPC API, served by hawserd over hawser's store: a protocol
adapter, so that ctr, nerdctl and other containerd clients work unchanged.

The stubs (``_api``) are generated at setup from containerd's own .proto files
(``scripts/containerd_protos.py``); each service is a module of its own.  A
request's namespace is its ``containerd-namespace`` header, as in containerd.
"""

from __future__ import annotations

from hawser._lazy import lazy_exports

TYPE_CHECKING = False  # typing stays unimported at run time
if TYPE_CHECKING:
    from hawser.containerd._server import SERVICES, add_to_server
    from hawser.containerd.managers import ContainerManagers

# The generated modules are heavy: loaded when hawserd wires the services.
_EXPORTS = {"SERVICES": "_server", "add_to_server": "_server", "ContainerManagers": "managers"}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = ["SERVICES", "ContainerManagers", "add_to_server"]
