"""PortForward: "prepares a streaming endpoint to forward ports from a PodSandbox."
(cri-api api.proto)

The answer is a single-use URL on hawserd's streaming server; each forwarded
connection goes to localhost:port inside the pod's network namespace.  The
request's ports (each 1-65535, INVALID_ARGUMENT otherwise) limit the ports a
client may ask for; none means any.  An unknown pod is NOT_FOUND, a stopped
one FAILED_PRECONDITION.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri.streaming import PortForwardRequest
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument


async def port_forward_stream(deps: CriDeps, request: api_pb2.PortForwardRequest) -> api_pb2.PortForwardResponse:
    streaming = deps.require_streaming()
    if not request.pod_sandbox_id:
        raise InvalidArgument("PortForward: pod_sandbox_id is empty")
    wanted = PortForwardRequest(pod_sandbox_id=request.pod_sandbox_id, port=tuple(request.port))
    wanted.validate()
    sandbox = await deps.blocking(streaming.runtime.ready_sandbox, request.pod_sandbox_id)
    registered = PortForwardRequest(pod_sandbox_id=sandbox.id, port=wanted.port)
    return api_pb2.PortForwardResponse(url=streaming.server.port_forward_url(registered))
