"""Attach: "prepares a streaming endpoint to attach to a running container."
(cri-api api.proto)

The answer is a single-use URL on hawserd's streaming server; the session
relays the container's output (from conmon's attach socket) and the client's
input until the container exits or the client detaches, which leaves the
container running.  Validation as for Exec; an unknown container is
NOT_FOUND, one that is not running FAILED_PRECONDITION.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._containers import running_cri_container
from hawser.cri.streaming import AttachRequest
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument


async def attach_stream(deps: CriDeps, request: api_pb2.AttachRequest) -> api_pb2.AttachResponse:
    streaming = deps.require_streaming()
    if not request.container_id:
        raise InvalidArgument("Attach: container_id is empty")
    wanted = AttachRequest(container_id=request.container_id, tty=request.tty, stdin=request.stdin,
                           stdout=request.stdout, stderr=request.stderr)
    wanted.validate()
    container_id = await deps.blocking(running_cri_container, streaming, request.container_id)
    registered = AttachRequest(container_id=container_id, tty=wanted.tty, stdin=wanted.stdin,
                               stdout=wanted.stdout, stderr=wanted.stderr)
    return api_pb2.AttachResponse(url=streaming.server.attach_url(registered))

