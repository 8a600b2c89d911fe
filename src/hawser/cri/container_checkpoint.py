"""CheckpointContainer: "checkpoints a container" (cri-api api.proto), for
kubelet's checkpoint API (the ContainerCheckpoint feature): a copy of a
running container's processes and state in an archive at ``location``.

A checkpoint needs CRIU (``runc checkpoint`` drives it).  hawser does not
checkpoint yet, and says why as the call's UNIMPLEMENTED (kubelet reports a
runtime without checkpoints from that code): "criu is not installed", or,
where ``criu check`` fails, criu's own error lines (``runtime.criu``), or,
where criu works, that hawser's side is not built.  The request is checked
first: an empty container id is INVALID_ARGUMENT, an unknown container
NOT_FOUND, whatever criu can do.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._containers import lookup
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument, Unimplemented
from hawser.runtime import ContainerManager
from hawser.runtime.criu import criu_status


async def checkpoint_container(deps: CriDeps,
                               request: api_pb2.CheckpointContainerRequest) -> api_pb2.CheckpointContainerResponse:
    if not request.container_id:
        raise InvalidArgument("CheckpointContainer: container_id is empty")
    reason = await deps.blocking(_why_not, deps.require_containers(), request.container_id)
    raise Unimplemented(f"CheckpointContainer: {reason}")


def _why_not(manager: ContainerManager, container_id: str) -> str:
    """Why the container cannot be checkpointed. NotFound for an unknown one.
    Blocking (the record; ``criu check`` on the process's first call)."""
    lookup(manager, container_id)
    criu = criu_status()
    if not criu.usable:
        return criu.reason
    return "checkpoint is not built yet although criu works"
