"""The CRI's service edge: ``hawser._grpc`` maps error kinds to status codes
(for the CRI and containerd's API alike); this names the methods kubelet
polls, which log quietly.

Log records carry their fields as ``extra`` attributes; hawserd's formatter
writes them as ``key=value`` pairs.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc

from hawser import _grpc

log = logging.getLogger("hawser.cri")

T = TypeVar("T")

# Methods kubelet polls every few seconds: logged at debug level, not info.
QUIET_METHODS = frozenset({
    "Version", "Status", "ListImages", "ImageStatus", "ImageFsInfo", "ListPodSandbox", "ListContainers",
    "PodSandboxStatus", "ContainerStatus", "ListContainerStats", "ListPodSandboxStats", "ContainerStats",
    "PodSandboxStats", "ListMetricDescriptors", "ListPodSandboxMetrics", "RuntimeConfig",
})


async def serve(context: grpc.aio.ServicerContext[Any, Any], method: str, work: Awaitable[T]) -> T:
    """Await one CRI request's handler; on failure abort the call with its mapped status."""
    return await _grpc.serve(context, method, work, log=log, quiet=QUIET_METHODS)
