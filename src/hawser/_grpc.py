"""The service edge of hawserd's gRPC APIs (the CRI, containerd's): hawser's
error kinds become gRPC status codes here, and only here.

A kind raised on purpose keeps its meaning for the client (a missing container
is NOT_FOUND, a bad reference INVALID_ARGUMENT), the codes containerd's
``errdefs`` gives the same kinds.  Anything else reaching the edge is a bug:
it is logged with its traceback and answered INTERNAL, and the daemon carries
on with the next request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Collection
from typing import Any, TypeVar

import grpc

from hawser import errors
from hawser._dataclass import dataclass

T = TypeVar("T")

# Most specific first is not needed: the kinds do not inherit from each other.
_CODES: dict[type[errors.HawserError], grpc.StatusCode] = {
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.DataLoss: grpc.StatusCode.DATA_LOSS,
    errors.Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
}


@dataclass(frozen=True, slots=True)
class GrpcStatus:
    code: grpc.StatusCode
    message: str
    # True when the exception is a bug (not an error kind raised on purpose).
    bug: bool = False


def grpc_status(exc: BaseException) -> GrpcStatus:
    """The gRPC status a client gets for ``exc``: THE mapping of error kinds to codes."""
    if isinstance(exc, errors.HawserError):
        # By the kind it is (a CNIUnavailable is an Unavailable): the first kind in its MRO.
        for kind in type(exc).__mro__:
            code = _CODES.get(kind)
            if code is not None:
                return GrpcStatus(code, str(exc))
        # errors.Internal, or a kind this table does not know yet: a bug either way.
        return GrpcStatus(grpc.StatusCode.INTERNAL, str(exc), bug=True)
    return GrpcStatus(grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}: {exc}", bug=True)



async def serve(context: grpc.aio.ServicerContext[Any, Any], method: str, work: Awaitable[T], *,
                log: logging.Logger, quiet: Collection[str] = ()) -> T:
    """Await one request's handler; on failure abort the call with its mapped
    status. Methods in ``quiet`` (polled ones) log at debug level."""
    start = time.monotonic()
    try:
        result = await work
    except Exception as exc:  # the edge: every failure becomes a status
        status = grpc_status(exc)
        elapsed = round(time.monotonic() - start, 4)
        if status.bug:
            log.error("request failed with a bug", exc_info=exc,
                      extra=dict(method=method, code=status.code.name, duration=elapsed))
        else:
            level = logging.DEBUG if method in quiet and status.code is grpc.StatusCode.NOT_FOUND \
                else logging.INFO
            log.log(level, "request failed",
                    extra=dict(method=method, code=status.code.name, error=status.message, duration=elapsed))
        await context.abort(status.code, status.message)
    log.log(logging.DEBUG if method in quiet else logging.INFO, "request done",
            extra=dict(method=method, duration=round(time.monotonic() - start, 4)))
    return result


__all__ = ["GrpcStatus", "grpc_status", "serve"]
