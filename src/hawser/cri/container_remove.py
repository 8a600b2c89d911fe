"""RemoveContainer: "removes the container. If the container is running, the
container must be forcibly removed. This call is idempotent, and must not
return an error if the container has already been removed." (cri-api api.proto)

So an unknown id succeeds.  The log file stays: kubelet owns and removes it.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._containers import lookup
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument, NotFound
from hawser.runtime import ContainerManager


async def remove_container(deps: CriDeps,
                           request: api_pb2.RemoveContainerRequest) -> api_pb2.RemoveContainerResponse:
    if not request.container_id:
        raise InvalidArgument("RemoveContainer: container_id is empty")
    await deps.blocking(_remove, deps.require_containers(), request.container_id)
    return api_pb2.RemoveContainerResponse()


def _remove(manager: ContainerManager, container_id: str) -> None:
    try:
        record = lookup(manager, container_id)
        manager.remove(record.id, force=True)
    except NotFound:
        pass  # removed already (or by a concurrent call)
