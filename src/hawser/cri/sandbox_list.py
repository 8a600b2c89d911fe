"""ListPodSandbox: "returns a list of PodSandboxes." (cri-api api.proto)

Filters combine with AND: ``id`` (a full id or a unique prefix, as containerd
accepts), ``state`` and ``label_selector`` (every pair must match).
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._sandbox_convert import cri_metadata, cri_state
from hawser.cri.types import CriDeps
from hawser.pods import Sandbox


async def list_pod_sandbox(deps: CriDeps, request: api_pb2.ListPodSandboxRequest) -> api_pb2.ListPodSandboxResponse:
    sandboxes = await deps.blocking(deps.require_sandboxes().all)
    wanted = request.filter if request.HasField("filter") else None
    items = [api_pb2.PodSandbox(id=s.id, metadata=cri_metadata(s), state=cri_state(s),
                                created_at=int(s.created_at * 1e9), labels=s.labels, annotations=s.annotations,
                                runtime_handler=s.runtime_handler)
             for s in sandboxes if wanted is None or _matches(s, wanted)]
    return api_pb2.ListPodSandboxResponse(items=items)


def _matches(sandbox: Sandbox, wanted: api_pb2.PodSandboxFilter) -> bool:
    if wanted.id and not sandbox.id.startswith(wanted.id):
        return False
    if wanted.HasField("state") and cri_state(sandbox) != wanted.state.state:
        return False
    return all(sandbox.labels.get(k) == v for k, v in wanted.label_selector.items())
