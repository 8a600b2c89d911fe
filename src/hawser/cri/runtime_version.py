"""Version: "returns the runtime name, runtime version, and runtime API version" (cri-api api.proto)."""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser import __version__
from hawser.cri.types import CriDeps

RUNTIME_NAME = "hawser"
RUNTIME_API_VERSION = "v1"
# The kubelet runtime API version this server speaks (the value containerd and CRI-O answer).
KUBELET_API_VERSION = "0.1.0"


async def version(deps: CriDeps, request: api_pb2.VersionRequest) -> api_pb2.VersionResponse:
    del deps, request  # the answer does not depend on the kubelet's version
    return api_pb2.VersionResponse(version=KUBELET_API_VERSION, runtime_name=RUNTIME_NAME,
                                   runtime_version=__version__, runtime_api_version=RUNTIME_API_VERSION)
