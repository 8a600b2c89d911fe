"""RemovePodSandbox: "removes the sandbox. If there are any running containers
in the sandbox, they must be forcibly terminated and removed. This call is
idempotent, and must not return an error if the sandbox has already been
removed." (cri-api api.proto)
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument


async def remove_pod_sandbox(deps: CriDeps,
                             request: api_pb2.RemovePodSandboxRequest) -> api_pb2.RemovePodSandboxResponse:
    if not request.pod_sandbox_id:
        raise InvalidArgument("RemovePodSandbox: pod_sandbox_id is empty")
    await deps.require_sandboxes().remove(request.pod_sandbox_id)
    return api_pb2.RemovePodSandboxResponse()
