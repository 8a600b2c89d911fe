"""Status: "returns the status of the runtime" (cri-api api.proto).

Two conditions kubelet requires: RuntimeReady (hawserd answers, so it can run
containers) and NetworkReady (the CNI manager's word: false, with the reason
``NetworkPluginNotReady``, while no CNI network config is loaded).  With
``verbose``, ``info["config"]`` is the effective configuration as JSON.

``runtime_handlers`` (kubelet 1.30+ reads them into the Node's
status.runtimeHandlers): the default handler as "", then each configured one,
with its features: recursive read-only mounts when the runtime knows "rro"
(``runc features``) and the kernel has mount_setattr (5.12+); user namespaces
never, as hawser makes no pods in user namespaces yet.
"""

from __future__ import annotations

import json

from cri_api.v1 import api_pb2

from hawser.cri.types import CriDeps

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hawser.cri.types import NetworkCondition
    from hawser.runtime import ContainerManager

RUNTIME_READY = "RuntimeReady"
NETWORK_READY = "NetworkReady"


async def status(deps: CriDeps, request: api_pb2.StatusRequest) -> api_pb2.StatusResponse:
    network, handlers = await deps.blocking(_probe, deps)
    conditions = [
        api_pb2.RuntimeCondition(type=RUNTIME_READY, status=True),
        api_pb2.RuntimeCondition(type=NETWORK_READY, status=network.ready,
                                 reason="" if network.ready else network.reason,
                                 message="" if network.ready else network.message),
    ]
    # RuntimeFeatures: SupplementalGroupsPolicy (Merge and Strict) is served.
    response = api_pb2.StatusResponse(status=api_pb2.RuntimeStatus(conditions=conditions),
                                      runtime_handlers=handlers,
                                      features=api_pb2.RuntimeFeatures(supplemental_groups_policy=True))
    if request.verbose:
        response.info["config"] = json.dumps(deps.effective_config, sort_keys=True)
    return response


def _probe(deps: CriDeps) -> tuple[NetworkCondition, list[api_pb2.RuntimeHandler]]:
    """Blocking: the CNI config dir is read; the first call asks each runtime's ``features``."""
    return deps.network_status(), _runtime_handlers(deps.containers, deps.runtime_handler_names())


def _runtime_handlers(containers: ContainerManager | None, names: tuple[str, ...]) -> list[api_pb2.RuntimeHandler]:
    """Each handler with its features."""
    out = []
    for name in names:
        features = api_pb2.RuntimeHandlerFeatures()
        if containers is not None:
            found = containers.handler(name).runc.features()
            features.recursive_read_only_mounts = found.recursive_read_only_mounts
            features.user_namespaces = found.user_namespaces
        out.append(api_pb2.RuntimeHandler(name=name, features=features))
    return out
