"""StopPodSandbox: "stops any running process that is part of the sandbox and
reclaims network resources (e.g., IP addresses) allocated to the sandbox. If
there are any running containers in the sandbox, they must be forcibly
terminated. This call is idempotent, and must not return an error if all
relevant resources have already been reclaimed." (cri-api api.proto)

A pod that no longer exists is therefore not an error either.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument, NotFound


async def stop_pod_sandbox(deps: CriDeps, request: api_pb2.StopPodSandboxRequest) -> api_pb2.StopPodSandboxResponse:
    if not request.pod_sandbox_id:
        raise InvalidArgument("StopPodSandbox: pod_sandbox_id is empty")
    try:
        await deps.require_sandboxes().stop(request.pod_sandbox_id)
    except NotFound:
        pass
    return api_pb2.StopPodSandboxResponse()
