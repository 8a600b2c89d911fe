"""containerd's services on hawserd's gRPC server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hawser.containerd._api.services.introspection.v1 import introspection_pb2_grpc
from hawser.containerd._api.services.namespaces.v1 import namespace_pb2_grpc
from hawser.containerd._api.services.version.v1 import version_pb2_grpc
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd.introspection import Introspection
from hawser.containerd.namespaces import Namespaces
from hawser.containerd.version import Version

if TYPE_CHECKING:
    import grpc

    from hawser.pods import RunBlocking
    from hawser.store import Store

# The services served, by containerd's plugin ids (io.containerd.grpc.v1.<id>).
SERVICES = ["introspection", "namespaces", "version"]


def add_to_server(server: grpc.aio.Server, *, store: Store, blocking: RunBlocking) -> None:
    """Register containerd's services on ``server`` over ``store``."""
    deps = ContainerdDeps(store=store, blocking=blocking)
    namespace_pb2_grpc.add_NamespacesServicer_to_server(Namespaces(deps), server)
    version_pb2_grpc.add_VersionServicer_to_server(Version(), server)
    introspection_pb2_grpc.add_IntrospectionServicer_to_server(Introspection(deps, SERVICES), server)
