"""ExecSync: "runs a command in a container synchronously." (cri-api api.proto)

``timeout`` is in seconds, 0 for none ("Default: 0 (run forever)"); past it
the call answers DEADLINE_EXCEEDED, which kubelet reads as a probe timeout.
It holds even when the command leaves a background process holding its
output open: conmon kills the exec at the deadline.  An unknown container is
NOT_FOUND, one that is not running FAILED_PRECONDITION.  Output beyond
MAX_OUTPUT bytes per stream is cut, so that the answer fits in a gRPC message.
"""

from __future__ import annotations

from collections.abc import Sequence

from cri_api.v1 import api_pb2

from hawser.cri._containers import lookup
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument
from hawser.runtime import ContainerManager, ExecResult

MAX_OUTPUT = 8 << 20


async def exec_sync(deps: CriDeps, request: api_pb2.ExecSyncRequest) -> api_pb2.ExecSyncResponse:
    if not request.container_id:
        raise InvalidArgument("ExecSync: container_id is empty")
    if not request.cmd:
        raise InvalidArgument("ExecSync: cmd is empty")
    if request.timeout < 0:
        raise InvalidArgument(f"ExecSync: invalid timeout {request.timeout}: must not be negative")
    result = await deps.blocking(_exec, deps.require_containers(), request.container_id, list(request.cmd),
                                 request.timeout)
    return api_pb2.ExecSyncResponse(stdout=result.stdout[:MAX_OUTPUT], stderr=result.stderr[:MAX_OUTPUT],
                                    exit_code=result.exit_code)


def _exec(manager: ContainerManager, container_id: str, cmd: Sequence[str], timeout: int) -> ExecResult:
    record = lookup(manager, container_id)
    return manager.exec_sync(record.id, cmd, timeout=float(timeout))
