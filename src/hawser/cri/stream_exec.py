"""Exec: "prepares a streaming endpoint to execute a command in the container."
(cri-api api.proto)

The answer is a single-use URL on hawserd's streaming server; the command
runs when the client (kubelet, crictl) connects to it, and the session ends
with its exit code.  As the contract says, one of stdin, stdout and stderr
must be requested, and a tty excludes stderr (INVALID_ARGUMENT otherwise).
An unknown container is NOT_FOUND, one that is not running
FAILED_PRECONDITION: checked here, and again when the session starts.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._containers import running_cri_container
from hawser.cri.streaming import ExecRequest
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument


async def exec_stream(deps: CriDeps, request: api_pb2.ExecRequest) -> api_pb2.ExecResponse:
    streaming = deps.require_streaming()
    if not request.container_id:
        raise InvalidArgument("Exec: container_id is empty")
    wanted = ExecRequest(container_id=request.container_id, cmd=tuple(request.cmd), tty=request.tty,
                         stdin=request.stdin, stdout=request.stdout, stderr=request.stderr)
    wanted.validate()
    container_id = await deps.blocking(running_cri_container, streaming, request.container_id)
    registered = ExecRequest(container_id=container_id, cmd=wanted.cmd, tty=wanted.tty, stdin=wanted.stdin,
                             stdout=wanted.stdout, stderr=wanted.stderr)
    return api_pb2.ExecResponse(url=streaming.server.exec_url(registered))


