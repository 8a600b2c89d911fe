"""ListContainers: "lists all containers by filters." (cri-api api.proto)

Filters, ANDed, as containerd applies them: ``id`` (a full id or a unique id
prefix), ``state``, ``pod_sandbox_id`` (a full id or a unique prefix; an
unknown pod lists nothing) and ``label_selector`` (every key=value must
match the container's CRI labels).  Only CRI containers are listed, never
the CLI's.
"""

from __future__ import annotations

from cri_api.v1 import api_pb2

from hawser.cri._containers import (
    cri_annotations,
    cri_labels,
    cri_list,
    cri_metadata,
    cri_state,
    image_ref,
    image_spec,
    sandbox_id,
    select,
    to_ns,
)
from hawser.cri.types import CriDeps
from hawser.errors import InvalidArgument, NotFound
from hawser.metadata import Container
from hawser.runtime import ContainerManager


async def list_containers(deps: CriDeps, request: api_pb2.ListContainersRequest) -> api_pb2.ListContainersResponse:
    manager = deps.require_containers()
    wanted_pod = ""
    if request.HasField("filter") and request.filter.pod_sandbox_id:
        try:
            wanted_pod = (await deps.blocking(deps.require_sandboxes().get, request.filter.pod_sandbox_id)).id
        except (NotFound, InvalidArgument):
            return api_pb2.ListContainersResponse()
    containers = await deps.blocking(_list, manager, request.filter if request.HasField("filter") else None,
                                     wanted_pod)
    return api_pb2.ListContainersResponse(containers=containers)


def _list(manager: ContainerManager, flt: api_pb2.ContainerFilter | None, pod: str) -> list[api_pb2.Container]:
    records = cri_list(manager)
    if flt is not None:
        records = select(records, id_prefix=flt.id, pod=pod, labels=dict(flt.label_selector))
    out = []
    for record in records:
        state = cri_state(manager.status(record))
        if flt is not None and flt.HasField("state") and flt.state.state != state:
            continue
        out.append(cri_container(record, state))
    return out


def cri_container(record: Container, state: api_pb2.ContainerState.ValueType) -> api_pb2.Container:
    return api_pb2.Container(
        id=record.id, pod_sandbox_id=sandbox_id(record), metadata=cri_metadata(record), image=image_spec(record),
        image_ref=image_ref(record), state=state, created_at=to_ns(record.created_at),
        labels=cri_labels(record), annotations=cri_annotations(record), image_id=record.image_id)
