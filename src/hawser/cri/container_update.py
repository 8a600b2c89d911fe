"""UpdateContainerResources: "updates ContainerConfig of the container
synchronously. If runtime fails to transactionally update the requested
resources, an error is returned." (cri-api api.proto)

The Linux limits the request sets (0 and "" mean "not specified", as at
create) go to the container's cgroup through ``runc update``, into its spec,
where ContainerStatus reads them, and into its record, which outlives the
spec (a reboot empties the state dir): kubelet's in-place resize
(InPlacePodVerticalScaling) then still reads the new limits after a restart
of hawserd or of the host.  A created, running or paused container can be
updated; an exited one is FAILED_PRECONDITION.  Windows resources and the
request's annotations are ignored.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._container_options import resources_from_cri
from hawser.cri._containers import lookup
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument
from hawser.runtime import ContainerManager, Resources


async def update_container_resources(
        deps: CriDeps, request: api_pb2.UpdateContainerResourcesRequest) -> api_pb2.UpdateContainerResourcesResponse:
    if not request.container_id:
        raise InvalidArgument("UpdateContainerResources: container_id is empty")
    resources = resources_from_cri(request.linux)
    await deps.blocking(_update, deps.require_containers(), request.container_id, resources)
    return api_pb2.UpdateContainerResourcesResponse()


def _update(manager: ContainerManager, container_id: str, resources: Resources) -> None:
    record = lookup(manager, container_id)
    manager.update_resources(record.id, resources)
