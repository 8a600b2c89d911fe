"""StartContainer: "starts the container." (cri-api api.proto)

Only a created container starts: any other state is FAILED_PRECONDITION
(containerd: "container is in ... state"), an unknown id NOT_FOUND.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._containers import lookup
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument
from hawser.runtime import ContainerManager


async def start_container(deps: CriDeps, request: api_pb2.StartContainerRequest) -> api_pb2.StartContainerResponse:
    if not request.container_id:
        raise InvalidArgument("StartContainer: container_id is empty")
    await deps.blocking(_start, deps.require_containers(), request.container_id)
    return api_pb2.StartContainerResponse()


def _start(manager: ContainerManager, container_id: str) -> None:
    record = lookup(manager, container_id)
    manager.start(record.id)
