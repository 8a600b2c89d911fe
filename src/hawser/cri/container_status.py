"""ContainerStatus: "returns status of the container. If the container is not
present, returns an error." (cri-api api.proto): NOT_FOUND.

The status itself is built by ``_containers.cri_status``, which the list,
events and stats handlers share; verbose adds the runtime's view as JSON.
``stop_signal`` is the one CreateContainer's config asked, else the image's
StopSignal, else unset (RUNTIME_DEFAULT: SIGTERM), as containerd reports it;
``user.linux`` is the uid, gid and supplementary groups the runtime spec
gives the container's first process (runc sets exactly those).
``resources`` are the limits of the runtime spec, which UpdateContainerResources
rewrites; without one (a reboot emptied the state dir) those its record keeps,
which the update writes too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cri_api.v1 import api_pb2

from hawser.cri._container_options import CRI_CONFIG, resources_to_cri
from hawser.cri._containers import cri_status, lookup, sandbox_id
from hawser.cri.types import CriDeps
from hawser.errors import FailedPrecondition, InvalidArgument
from hawser.metadata import Container
from hawser.runtime import ContainerManager, ContainerStatus


async def container_status(deps: CriDeps,
                           request: api_pb2.ContainerStatusRequest) -> api_pb2.ContainerStatusResponse:
    if not request.container_id:
        raise InvalidArgument("ContainerStatus: container_id is empty")
    return await deps.blocking(_status, deps.require_containers(), request.container_id, request.verbose)


def _status(manager: ContainerManager, container_id: str, verbose: bool) -> api_pb2.ContainerStatusResponse:
    record = lookup(manager, container_id)
    state = manager.status(record)
    try:
        spec: Mapping[str, Any] | None = manager.spec(record)
    except FailedPrecondition:
        spec = None
    response = api_pb2.ContainerStatusResponse(status=cri_status(manager, record, state, spec))
    if spec is None:
        # No runtime spec (a reboot emptied the state dir): the limits the record
        # keeps, which UpdateContainerResources updates too.
        response.status.resources.linux.CopyFrom(resources_to_cri(_record_spec(record)))
    if verbose:
        response.info["info"] = json.dumps(_info(manager, record, state, spec))
    return response


def _record_spec(record: Container) -> dict[str, Any]:
    """The resource part of a runtime spec, as the record's options set it
    (``ContainerOptions.resources`` and ``oom_score_adj``)."""
    res = record.config.get("resources") or {}
    cpu = {key: res.get(name) for key, name in (("shares", "cpu_shares"), ("quota", "cpu_quota"),
                                                 ("period", "cpu_period"), ("cpus", "cpuset_cpus"),
                                                 ("mems", "cpuset_mems"))}
    memory = {"limit": res.get("memory_limit"), "swap": res.get("memory_swap")}
    return {"linux": {"resources": {"cpu": cpu, "memory": memory}},
            "process": {"oomScoreAdj": record.config.get("oom_score_adj")}}


# --- shared by the container handlers ------------------------------------------------


def _info(manager: ContainerManager, record: Container, state: ContainerStatus,
          spec: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "sandboxID": sandbox_id(record), "pid": state.pid, "state": state.state, "name": record.name,
        "image": record.image, "imageID": record.image_id, "snapshotter": record.snapshotter,
        "snapshotKey": record.snapshot_key, "bundle": manager.bundle(record.id),
        "cgroupsPath": record.config.get("cgroups_path", ""), "logPath": manager.container_log_path(record),
        "oomKilled": state.oom_killed, "runtimeType": "runc", "runtimeSpec": spec,
        "config": record.config.get(CRI_CONFIG),
    }
