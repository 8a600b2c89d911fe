"""containerd.services.introspection.v1.Introspection: hawser's parts as
containerd's plugins (``ctr plugins ls``), and the server's UUID.

Plugins are listed under containerd's types and ids where hawser has the
part, with the exports a client looks for (a snapshotter's and the content
store's root); the server UUID is the store's identity, so it is stable
across restarts as containerd's is.
"""

from __future__ import annotations

import os
import platform

from google.protobuf import empty_pb2

from hawser.containerd._api.services.introspection.v1 import introspection_pb2 as pb
from hawser.containerd._api.services.introspection.v1 import introspection_pb2_grpc
from hawser.containerd._api.types import platform_pb2
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._edge import Context, serve
from hawser.containerd._filters import labels_adaptor, parse_filters
from hawser.oci import normalize_arch

GRPC = "io.containerd.grpc.v1"


def host_platform() -> platform_pb2.Platform:
    arch, variant = normalize_arch(platform.machine(), "")
    return platform_pb2.Platform(os="linux", architecture=arch, variant=variant)


def plugins(deps: ContainerdDeps, services: list[str]) -> list[pb.Plugin]:
    """hawser's parts as containerd names its plugins; ``services``: the gRPC services served."""
    config = deps.store.config
    snapshotter = deps.store.snapshotter.name
    found = [
        pb.Plugin(type="io.containerd.content.v1", id="content",
                  exports={"root": os.path.join(config.root, "content")}),
        pb.Plugin(type="io.containerd.snapshotter.v1", id=snapshotter, platforms=[host_platform()],
                  exports={"root": os.path.join(config.root, "snapshots", snapshotter)}),
        pb.Plugin(type="io.containerd.metadata.v1", id="sqlite", requires=["io.containerd.content.v1",
                                                                           "io.containerd.snapshotter.v1"],
                  exports={"path": os.path.join(config.root, "metadata.db")}),
        pb.Plugin(type="io.containerd.runtime.v2", id="task", platforms=[host_platform()],
                  exports={"runtime": "runc under conmon", "state": config.state}),
        pb.Plugin(type=GRPC, id="cri", requires=["io.containerd.metadata.v1"]),
    ]
    found += [pb.Plugin(type=GRPC, id=name, requires=["io.containerd.metadata.v1"]) for name in services]
    return found


def _field(plugin: pb.Plugin) -> dict[str, str]:
    return {"type": plugin.type, "id": plugin.id}


class Introspection(introspection_pb2_grpc.IntrospectionServicer):
    def __init__(self, deps: ContainerdDeps, services: list[str]) -> None:
        self._deps = deps
        self._services = services

    async def Plugins(self, request: pb.PluginsRequest, context: Context) -> pb.PluginsResponse:
        async def work() -> pb.PluginsResponse:
            wanted = parse_filters(list(request.filters))
            return pb.PluginsResponse(plugins=[
                p for p in plugins(self._deps, self._services)
                if wanted.matches(labels_adaptor(_field(p), dict(p.exports)))])

        return await serve(context, "Plugins", work())

    async def Server(self, request: empty_pb2.Empty, context: Context) -> pb.ServerResponse:
        import uuid  # this call's alone, not every hawserd's

        return pb.ServerResponse(uuid=str(uuid.UUID(hex=self._deps.store.id)))
