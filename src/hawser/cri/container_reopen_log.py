"""ReopenContainerLog: "asks runtime to reopen the stdout/stderr log file for
the container. This is often called after the log file has been rotated. If
the container is not running, container runtime can choose to either create
a new log file and return nil, or return an error. Once it returns error,
new container log file MUST NOT be created." (cri-api api.proto)

hawser returns FAILED_PRECONDITION for a container that is not running (as
containerd does).  For a running one, conmon is told through its control
fifo and the call returns once the new file exists; conmon writes to the
old file until then, so no line is lost.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._containers import lookup
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument
from hawser.runtime import ContainerManager


async def reopen_container_log(deps: CriDeps,
                               request: api_pb2.ReopenContainerLogRequest) -> api_pb2.ReopenContainerLogResponse:
    if not request.container_id:
        raise InvalidArgument("ReopenContainerLog: container_id is empty")
    await deps.blocking(_reopen, deps.require_containers(), request.container_id)
    return api_pb2.ReopenContainerLogResponse()


def _reopen(manager: ContainerManager, container_id: str) -> None:
    manager.reopen_log(lookup(manager, container_id).id)
