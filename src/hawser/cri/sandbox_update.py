"""UpdatePodSandboxResources: "synchronously updates the PodSandboxConfig with
the pod-level resource configuration. This method is called _after_ the
Kubelet reconfigures the pod-level cgroups. This request is treated as best
effort, and failure will not block the Kubelet with proceeding with a
resize." (cri-api api.proto; KEP-1287, in-place pod resize)

``overhead`` is the pod's overhead, ``resources`` "the sum of container
resources for this sandbox"; in each, 0 and "" mean "not specified" (the value
kept so far stays).  Both are kept in the pod's record; a pod whose cgroup is
hawser's own (no ``cgroup_parent`` asked) gets its cgroup's limits set to their
sum, since nobody else sizes it; a cgroup kubelet made is kubelet's, resized
already, and left alone (containerd 2.1 only keeps the values and tells its
NRI plugins).  An unknown pod is NOT_FOUND, one that is not ready
FAILED_PRECONDITION, a value no cgroup takes INVALID_ARGUMENT.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._container_options import resources_from_cri
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument


async def update_pod_sandbox_resources(
        deps: CriDeps, request: api_pb2.UpdatePodSandboxResourcesRequest) -> api_pb2.UpdatePodSandboxResourcesResponse:
    if not request.pod_sandbox_id:
        raise InvalidArgument("UpdatePodSandboxResources: pod_sandbox_id is empty")
    await deps.require_sandboxes().update_resources(
        request.pod_sandbox_id, resources=resources_from_cri(request.resources),
        overhead=resources_from_cri(request.overhead))
    return api_pb2.UpdatePodSandboxResourcesResponse()
