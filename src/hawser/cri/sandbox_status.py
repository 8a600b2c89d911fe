"""PodSandboxStatus: "returns the status of the PodSandbox. If the PodSandbox
is not present, returns an error." (cri-api api.proto): NOT_FOUND.

The pod's IPs are what CNI gave it (the first IPv4 one is ``ip``); with
``verbose`` the ``info`` map holds the pod's config and runtime facts as JSON.
"""

from __future__ import annotations

import json
import time

from cri_api.v1 import api_pb2

from hawser.cri._sandbox_convert import cri_metadata, cri_state, namespace_options
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument
from hawser.pods import Sandbox


async def pod_sandbox_status(deps: CriDeps,
                             request: api_pb2.PodSandboxStatusRequest) -> api_pb2.PodSandboxStatusResponse:
    if not request.pod_sandbox_id:
        raise InvalidArgument("PodSandboxStatus: pod_sandbox_id is empty")
    sandbox = await deps.blocking(deps.require_sandboxes().get, request.pod_sandbox_id)
    status = api_pb2.PodSandboxStatus(
        id=sandbox.id, metadata=cri_metadata(sandbox), state=cri_state(sandbox),
        created_at=int(sandbox.created_at * 1e9), labels=sandbox.labels, annotations=sandbox.annotations,
        runtime_handler=sandbox.runtime_handler,
        linux=api_pb2.LinuxPodSandboxStatus(namespaces=api_pb2.Namespace(options=namespace_options(sandbox))),
    )
    if sandbox.ips:
        status.network.ip = sandbox.ips[0]
        status.network.additional_ips.extend(api_pb2.PodIP(ip=ip) for ip in sandbox.ips[1:])
    response = api_pb2.PodSandboxStatusResponse(status=status, timestamp=time.time_ns())
    if request.verbose:
        response.info["info"] = json.dumps(_info(sandbox))
    return response


def _info(sandbox: Sandbox) -> dict[str, object]:
    return {
        "id": sandbox.id, "state": sandbox.state, "reason": sandbox.reason, "hostname": sandbox.hostname,
        "cgroupParent": sandbox.cgroup_parent, "logDirectory": sandbox.log_directory,
        "namespaces": {"network": sandbox.netns, "ipc": sandbox.ipc, "uts": sandbox.uts, "pid": sandbox.pid},
        "resolvConf": sandbox.resolv_conf, "shm": sandbox.shm, "ips": list(sandbox.ips),
        "config": sandbox.config.get("request", {}),
    }
