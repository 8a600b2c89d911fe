"""containerd's services on hawserd's gRPC server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hawser.containerd._api.services.content.v1 import content_pb2_grpc
from hawser.containerd._api.services.introspection.v1 import introspection_pb2_grpc
from hawser.containerd._api.services.leases.v1 import leases_pb2_grpc
from hawser.containerd._api.services.namespaces.v1 import namespace_pb2_grpc
from hawser.containerd._api.services.version.v1 import version_pb2_grpc
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd.content import Content
from hawser.containerd.introspection import Introspection
from hawser.containerd.leases import Leases
from hawser.containerd.namespaces import Namespaces
from hawser.containerd.version import Version

if TYPE_CHECKING:
    import grpc

    from hawser.pods import RunBlocking
    from hawser.store import Store

# The services served, by containerd's plugin ids (io.containerd.grpc.v1.<id>).
SERVICES = ["content", "introspection", "leases", "namespaces", "version"]


def add_to_server(server: grpc.aio.Server, *, store: Store, blocking: RunBlocking) -> None:
    """Register containerd's services on ``server`` over ``store``."""
    deps = ContainerdDeps(store=store, blocking=blocking)
    namespace_pb2_grpc.add_NamespacesServicer_to_server(Namespaces(deps), server)
    version_pb2_grpc.add_VersionServicer_to_server(Version(), server)
    leases_pb2_grpc.add_LeasesServicer_to_server(Leases(deps), server)
    content_pb2_grpc.add_ContentServicer_to_server(Content(deps), server)
    introspection_pb2_grpc.add_IntrospectionServicer_to_server(Introspection(deps, SERVICES), server)
