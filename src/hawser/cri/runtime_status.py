"""Status: "returns the status of the runtime" (cri-api api.proto).

Two conditions kubelet requires: RuntimeReady (hawserd answers, so it can run
containers) and NetworkReady (the CNI manager's word: false, with the reason
``NetworkPluginNotReady``, while no CNI network config is loaded).  With
``verbose``, ``info["config"]`` is the effective configuration as JSON.
"""

from __future__ import annotations

import json

from cri_api.v1 import api_pb2

from hawser.cri.types import CriDeps

RUNTIME_READY = "RuntimeReady"
NETWORK_READY = "NetworkReady"


async def status(deps: CriDeps, request: api_pb2.StatusRequest) -> api_pb2.StatusResponse:
    network = await deps.blocking(deps.network_status)
    conditions = [
        api_pb2.RuntimeCondition(type=RUNTIME_READY, status=True),
        api_pb2.RuntimeCondition(type=NETWORK_READY, status=network.ready,
                                 reason="" if network.ready else network.reason,
                                 message="" if network.ready else network.message),
    ]
    # RuntimeFeatures: SupplementalGroupsPolicy (Merge and Strict) is served.
    response = api_pb2.StatusResponse(status=api_pb2.RuntimeStatus(conditions=conditions),
                                      features=api_pb2.RuntimeFeatures(supplemental_groups_policy=True))
    if request.verbose:
        response.info["config"] = json.dumps(deps.effective_config, sort_keys=True)
    return response
