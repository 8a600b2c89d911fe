"""containerd's services on hawserd's gRPC server."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hawser.containerd._api.services.containers.v1 import containers_pb2_grpc
from hawser.containerd._api.services.content.v1 import content_pb2_grpc
from hawser.containerd._api.services.diff.v1 import diff_pb2_grpc
from hawser.containerd._api.services.events.v1 import events_pb2_grpc
from hawser.containerd._api.services.images.v1 import images_pb2_grpc
from hawser.containerd._api.services.introspection.v1 import introspection_pb2_grpc
from hawser.containerd._api.services.leases.v1 import leases_pb2_grpc
from hawser.containerd._api.services.namespaces.v1 import namespace_pb2_grpc
from hawser.containerd._api.services.snapshots.v1 import snapshots_pb2_grpc
from hawser.containerd._api.services.tasks.v1 import tasks_pb2_grpc
from hawser.containerd._api.services.version.v1 import version_pb2_grpc
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd.containers import Containers
from hawser.containerd.content import Content
from hawser.containerd.diff import Diff
from hawser.containerd.events import Events
from hawser.containerd.images import Images
from hawser.containerd.introspection import Introspection
from hawser.containerd.leases import Leases
from hawser.containerd.namespaces import Namespaces
from hawser.containerd.snapshots import Snapshots
from hawser.containerd.tasks import Tasks
from hawser.containerd.version import Version

if TYPE_CHECKING:
    import grpc

    from hawser.containerd.events import Envelope
    from hawser.containerd.managers import ContainerManagers
    from hawser.events import Broadcast, Journal
    from hawser.pods import RunBlocking
    from hawser.store import Store

# The services served, by containerd's plugin ids (io.containerd.grpc.v1.<id>).
SERVICES = ["containers", "content", "diff", "events", "images", "introspection", "leases", "namespaces", "snapshots", "tasks", "version"]


def add_to_server(server: grpc.aio.Server, *, store: Store, blocking: RunBlocking, journal: Journal | None = None,
                  events: Broadcast[Envelope] | None = None, containers: ContainerManagers | None = None) -> None:
    """Register containerd's services on ``server`` over ``store``; the
    services journal their changes in ``journal``, Subscribe serves
    ``events``, and tasks run with ``containers``' managers."""
    deps = ContainerdDeps(store=store, blocking=blocking, journal=journal, events=events, containers=containers)
    namespace_pb2_grpc.add_NamespacesServicer_to_server(Namespaces(deps), server)
    version_pb2_grpc.add_VersionServicer_to_server(Version(), server)
    leases_pb2_grpc.add_LeasesServicer_to_server(Leases(deps), server)
    content_pb2_grpc.add_ContentServicer_to_server(Content(deps), server)
    snapshots_pb2_grpc.add_SnapshotsServicer_to_server(Snapshots(deps), server)
    diff_pb2_grpc.add_DiffServicer_to_server(Diff(deps), server)
    images_pb2_grpc.add_ImagesServicer_to_server(Images(deps), server)
    events_pb2_grpc.add_EventsServicer_to_server(Events(deps), server)
    containers_pb2_grpc.add_ContainersServicer_to_server(Containers(deps), server)
    tasks_pb2_grpc.add_TasksServicer_to_server(Tasks(deps), server)
    introspection_pb2_grpc.add_IntrospectionServicer_to_server(Introspection(deps, SERVICES), server)
