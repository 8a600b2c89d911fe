"""What the container handlers share: finding a CRI container (``lookup``: by
id or unique id prefix, never a container the CLI made), the list filters, and
turning what the runtime knows into the CRI's messages.

The reason of an exited container is kubelet's vocabulary: ``OOMKilled``
when the kernel's OOM killer ended it, ``Completed`` for exit code 0,
``Error`` otherwise (as containerd's CRI plugin reports them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cri_api.v1 import api_pb2

from hawser.cri._container_options import (
    CRI_ANNOTATIONS,
    CRI_IMAGE,
    CRI_IMAGE_REF,
    CRI_LABELS,
    CRI_LOG_PATH,
    CRI_METADATA,
    CRI_MOUNTS,
    CRI_SANDBOX_ID,
    KIND_CONTAINER,
    cri_signal,
    mount_from_json,
    resources_to_cri,
)
from hawser.errors import InvalidArgument, NotFound
from hawser.metadata import Container
from hawser.pods import LABEL_KIND, LABEL_SANDBOX_ID
from hawser.runtime import CREATED, EXITED, PAUSED, RUNNING, ContainerManager, ContainerStatus

if TYPE_CHECKING:
    from hawser.cri._stream_runtime import Streaming

# containerd's code for an exit status nobody saw (conmon gone without an exit file).
UNKNOWN_EXIT_CODE = 255

_STATES = {
    CREATED: api_pb2.CONTAINER_CREATED,
    RUNNING: api_pb2.CONTAINER_RUNNING,
    PAUSED: api_pb2.CONTAINER_RUNNING,
    EXITED: api_pb2.CONTAINER_EXITED,
}



def is_cri(record: Container) -> bool:
    return record.labels.get(LABEL_KIND) == KIND_CONTAINER


def lookup(manager: ContainerManager, container_id: str) -> Container:
    """The CRI container with this id or unique id prefix. NotFound otherwise
    (a container made by the CLI is not the CRI's). Blocking."""
    if not container_id:
        raise InvalidArgument("no container id given")
    if len(container_id) == 64:  # a full id, what kubelet always gives: one row, not a scan
        try:
            record = manager.records.get(container_id)
        except NotFound:
            raise NotFound(f"container {container_id} not found") from None
        if not is_cri(record):
            raise NotFound(f"container {container_id} not found")
        return record
    records = cri_list(manager)
    exact = next((r for r in records if r.id == container_id), None)
    if exact is not None:
        return exact
    matches = [r for r in records if r.id.startswith(container_id)]
    if len(matches) > 1:
        raise InvalidArgument(f"container id prefix {container_id!r} matches {len(matches)} containers",
                              hint="give more of the id")
    if not matches:
        raise NotFound(f"container {container_id} not found")
    return matches[0]


def cri_list(manager: ContainerManager) -> list[Container]:
    """Every CRI container's record. Blocking."""
    return [r for r in manager.records.list() if is_cri(r)]


def cri_state(state: ContainerStatus) -> api_pb2.ContainerState.ValueType:
    return _STATES.get(state.state, api_pb2.CONTAINER_UNKNOWN)


def cri_metadata(record: Container) -> api_pb2.ContainerMetadata:
    meta = record.config.get(CRI_METADATA) or {}
    return api_pb2.ContainerMetadata(name=str(meta.get("name", "")), attempt=int(meta.get("attempt", 0)))


def cri_labels(record: Container) -> dict[str, str]:
    return {str(k): str(v) for k, v in (record.config.get(CRI_LABELS) or {}).items()}


def cri_annotations(record: Container) -> dict[str, str]:
    return {str(k): str(v) for k, v in (record.config.get(CRI_ANNOTATIONS) or {}).items()}


def sandbox_id(record: Container) -> str:
    return str(record.labels.get(LABEL_SANDBOX_ID) or record.config.get(CRI_SANDBOX_ID) or "")


def image_spec(record: Container) -> api_pb2.ImageSpec:
    return api_pb2.ImageSpec(image=str(record.config.get(CRI_IMAGE) or record.image))


def image_ref(record: Container) -> str:
    return str(record.config.get(CRI_IMAGE_REF) or record.image_id)


def reason(state: ContainerStatus) -> tuple[str, str, int]:
    """(reason, message, exit code) as kubelet reads them."""
    if state.state == EXITED:
        if state.oom_killed:
            return "OOMKilled", "", state.exit_code if state.exit_code is not None else 137
        if state.exit_code is None:
            return "Unknown", state.reason, UNKNOWN_EXIT_CODE
        return ("Completed" if state.exit_code == 0 else "Error"), "", state.exit_code
    if state.state in (CREATED, RUNNING, PAUSED):
        return "", "", 0
    return "Unknown", state.reason, 0


def to_ns(seconds: float | None) -> int:
    """Seconds since the epoch (a float) to the CRI's nanoseconds, without
    float rounding in the large part (1700000000.25 -> ...250000000)."""
    if not seconds:
        return 0
    whole = int(seconds)
    return whole * 10**9 + round((seconds - whole) * 1e9)


def cri_status(manager: ContainerManager, record: Container, state: ContainerStatus,
               spec: Mapping[str, Any] | None) -> api_pb2.ContainerStatus:
    why, message, exit_code = reason(state)
    status = api_pb2.ContainerStatus(
        id=record.id, metadata=cri_metadata(record), state=cri_state(state), created_at=to_ns(record.created_at),
        started_at=to_ns(state.started_at) if state.state != CREATED else 0,
        finished_at=to_ns(state.finished_at) if state.state == EXITED else 0,
        exit_code=exit_code, image=image_spec(record), image_ref=image_ref(record), image_id=record.image_id,
        reason=why, message=message, labels=cri_labels(record), annotations=cri_annotations(record),
        mounts=[mount_from_json(m) for m in record.config.get(CRI_MOUNTS) or ()],
        log_path=str(record.config.get(CRI_LOG_PATH) or ""),
    )
    if state.state == EXITED and not status.finished_at:
        status.finished_at = status.started_at or status.created_at
    stop = _signal(record)
    if stop:
        status.stop_signal = stop
    if spec is not None:
        status.resources.linux.CopyFrom(resources_to_cri(spec))
        user = (spec.get("process") or {}).get("user") or {}
        status.user.linux.uid = int(user.get("uid", 0))
        status.user.linux.gid = int(user.get("gid", 0))
        status.user.linux.supplemental_groups.extend(int(g) for g in user.get("additionalGids") or ())
    return status


def _signal(record: Container) -> api_pb2.Signal.ValueType:
    """The stop signal the request or the image named (real-time ones too), else
    RUNTIME_DEFAULT: StopContainer then sends SIGTERM."""
    return cri_signal(record.config.get("stop_signal"))


def select(records: list[Container], *, id_prefix: str = "", pod: str = "",
           labels: Mapping[str, str] | None = None) -> list[Container]:
    """The records the id, pod and label filters keep (the state filter needs
    each one's live state: the caller applies it).  An id prefix matching
    several containers matches none, as a truncated index does in containerd."""
    if id_prefix:
        exact = [r for r in records if r.id == id_prefix]
        records = exact or [r for r in records if r.id.startswith(id_prefix)]
        if len(records) > 1:
            return []
    if pod:
        records = [r for r in records if sandbox_id(r) == pod]
    if labels:
        records = [r for r in records if _labels_match(cri_labels(r), labels)]
    return records


def _labels_match(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())


def running_cri_container(streaming: Streaming, container_id: str) -> str:
    """The full id of a running CRI container (by id or unique prefix).  Blocking.
    NotFound for an unknown one (or one the CLI made), FailedPrecondition when it is not running."""
    return streaming.runtime.running_container_id(lookup(streaming.runtime.containers, container_id).id)
