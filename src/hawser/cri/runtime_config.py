"""RuntimeConfig and UpdateRuntimeConfig.

RuntimeConfig tells kubelet the cgroup driver to match: hawser drives runc
with cgroupfs paths (``<pod cgroup parent>/<container id>``), so CGROUPFS.

UpdateRuntimeConfig carries the node's pod CIDR.  The CNI config owns address
assignment (host-local's subnet), as with containerd's and CRI-O's default
setups, so hawser records the CIDR in its log and changes nothing.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser._logging import get_logger
from hawser.cri.types import CriDeps

log = get_logger("hawser.cri")


async def runtime_config(deps: CriDeps, request: api_pb2.RuntimeConfigRequest) -> api_pb2.RuntimeConfigResponse:
    return api_pb2.RuntimeConfigResponse(linux=api_pb2.LinuxRuntimeConfiguration(cgroup_driver=api_pb2.CGROUPFS))


async def update_runtime_config(deps: CriDeps,
                                request: api_pb2.UpdateRuntimeConfigRequest) -> api_pb2.UpdateRuntimeConfigResponse:
    cidr = request.runtime_config.network_config.pod_cidr
    if cidr:
        log.info("pod CIDR from kubelet (address assignment stays with the CNI config)", extra={"pod_cidr": cidr})
    return api_pb2.UpdateRuntimeConfigResponse()
