"""StopContainer: "stops a running container with a grace period (i.e.,
timeout). This call is idempotent, and must not return an error if the
container has already been stopped. The runtime must forcibly kill the
container after the grace period is reached." (cri-api api.proto)

The stop signal is the request's (CreateContainer's stop_signal), else the
image's StopSignal, else SIGTERM; SIGKILL follows after ``timeout`` seconds
(0: at once).  An unknown container is NOT_FOUND, as in containerd.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._containers import lookup
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument
from hawser.runtime import ContainerManager


async def stop_container(deps: CriDeps, request: api_pb2.StopContainerRequest) -> api_pb2.StopContainerResponse:
    if not request.container_id:
        raise InvalidArgument("StopContainer: container_id is empty")
    await deps.blocking(_stop, deps.require_containers(), request.container_id, max(0, request.timeout))
    return api_pb2.StopContainerResponse()


def _stop(manager: ContainerManager, container_id: str, timeout: int) -> None:
    record = lookup(manager, container_id)
    manager.stop(record.id, float(timeout))
