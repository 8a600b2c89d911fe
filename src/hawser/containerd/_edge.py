"""The containerd API's service edge: the namespace a request names, and its
errors as containerd's ``errdefs`` codes (``hawser._grpc`` holds the mapping
the CRI uses too)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc

from hawser import _grpc
from hawser.errors import FailedPrecondition, InvalidArgument
from hawser.metadata import check_identifier

log = logging.getLogger("hawser.containerd")

T = TypeVar("T")
Context = grpc.aio.ServicerContext[Any, Any]

NAMESPACE_HEADER = "containerd-namespace"
# Reads ctr and nerdctl make by the dozen (listings, lookups, content): logged at debug level.
QUIET_METHODS = frozenset({"Version", "Plugins", "Server", "List", "Get", "Info", "Status", "ListStatuses",
                           "Stat", "Usage", "ListResources", "Read", "Mounts"})


def namespace_of(context: Context) -> str:
    """The namespace the request names (its ``containerd-namespace`` header),
    required as containerd requires it: FailedPrecondition without one."""
    for key, value in context.invocation_metadata() or ():
        if key == NAMESPACE_HEADER and isinstance(value, str):
            try:
                check_identifier(value, "namespace")
            except InvalidArgument:
                raise InvalidArgument(f"namespace {value!r} is not a valid containerd namespace") from None
            return value
    raise FailedPrecondition("namespace is required: failed precondition",
                             hint="set the containerd-namespace header (ctr -n NAME)")


async def serve(context: Context, method: str, work: Awaitable[T]) -> T:
    """Await one request's handler; on failure abort with containerd's code for it."""
    return await _grpc.serve(context, method, work, log=log, quiet=QUIET_METHODS)
