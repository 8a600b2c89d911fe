"""Container records and runtime states as CRI messages; the list filters."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from hawser.cri._container_options import (
    CRI_ANNOTATIONS,
    CRI_IMAGE,
    CRI_IMAGE_REF,
    CRI_LABELS,
    CRI_LOG_PATH,
    CRI_METADATA,
    CRI_MOUNTS,
)
from hawser.cri._containers import (
    UNKNOWN_EXIT_CODE,
    cri_state,
    cri_status,
    is_cri,
    lookup,
    reason,
)
from hawser.cri.container_list import cri_container, select
from hawser.errors import InvalidArgument, NotFound
from hawser.metadata import Container
from hawser.pods import LABEL_KIND, LABEL_SANDBOX_ID
from hawser.runtime import CREATED, EXITED, PAUSED, RUNNING, UNKNOWN, ContainerStatus


def record(id_: str, *, pod: str = "pod1", labels: dict[str, str] | None = None, kind: str = "container",
           **config: Any) -> Container:
    base: dict[str, Any] = {
        CRI_METADATA: {"name": f"n-{id_[:4]}", "attempt": 2}, CRI_IMAGE: "127.0.0.1:5000/app:v1",
        CRI_IMAGE_REF: "127.0.0.1:5000/app@sha256:" + "a" * 64, CRI_LABELS: labels or {},
        CRI_ANNOTATIONS: {"note": "x"}, CRI_MOUNTS: [{"container_path": "/d", "host_path": "/srv", "readonly": True,
                                                      "selinux_relabel": False, "propagation": 1}],
        CRI_LOG_PATH: "/var/log/pods/p/c/2.log", "stop_signal": int(signal.SIGTERM)}
    base.update(config)
    return Container(namespace="default", id=id_, name=f"name-{id_}", image="127.0.0.1:5000/app:v1",
                     image_id="sha256:" + "b" * 64, snapshotter="overlayfs", snapshot_key=f"container-{id_}",
                     config=base, labels={LABEL_SANDBOX_ID: pod, LABEL_KIND: kind}, created_at=1_700_000_000.25)


REASONS = [
    ("created", ContainerStatus(CREATED, pid=5), api_pb2.CONTAINER_CREATED, ("", "", 0)),
    ("running", ContainerStatus(RUNNING, pid=5, started_at=1.0), api_pb2.CONTAINER_RUNNING, ("", "", 0)),
    ("paused-is-running", ContainerStatus(PAUSED, pid=5), api_pb2.CONTAINER_RUNNING, ("", "", 0)),
    ("completed", ContainerStatus(EXITED, exit_code=0), api_pb2.CONTAINER_EXITED, ("Completed", "", 0)),
    ("error", ContainerStatus(EXITED, exit_code=3), api_pb2.CONTAINER_EXITED, ("Error", "", 3)),
    ("signalled", ContainerStatus(EXITED, exit_code=143), api_pb2.CONTAINER_EXITED, ("Error", "", 143)),
    ("oom", ContainerStatus(EXITED, exit_code=137, oom_killed=True), api_pb2.CONTAINER_EXITED,
     ("OOMKilled", "", 137)),
    ("exit-unknown", ContainerStatus(EXITED, reason="exit status unknown"), api_pb2.CONTAINER_EXITED,
     ("Unknown", "exit status unknown", UNKNOWN_EXIT_CODE)),
    ("unknown", ContainerStatus(UNKNOWN, reason="creation did not finish"), api_pb2.CONTAINER_UNKNOWN,
     ("Unknown", "creation did not finish", 0)),
]


@pytest.mark.parametrize(("state", "cri", "expected"), [r[1:] for r in REASONS], ids=[r[0] for r in REASONS])
def test_state_and_reason(state: ContainerStatus, cri: int, expected: tuple[str, str, int]) -> None:
    assert cri_state(state) == cri
    assert reason(state) == expected


class FakeManager:
    def __init__(self, records: list[Container]) -> None:
        self._records = records

    namespace = "default"

    @property
    def records(self) -> FakeManager:
        """The container records store (this fake plays it too)."""
        return self

    def list(self, *, namespace: str | None = None) -> list[Container]:
        return list(self._records)

    def get(self, id_: str, *, namespace: str | None = None) -> Container:
        for r in self._records:
            if r.id == id_:
                return r
        raise NotFound(id_)

    def bundle(self, id_: str) -> str:
        return f"/run/hawser/containers/{id_}"

    def container_log_path(self, r: Container) -> str:
        return str(r.config[CRI_LOG_PATH])


def test_status_message() -> None:
    rec = record("c" * 64, labels={"app": "web"})
    state = ContainerStatus(EXITED, exit_code=0, started_at=1_700_000_001.5, finished_at=1_700_000_002.0)
    spec = {"process": {"user": {"uid": 1000, "gid": 1000, "additionalGids": [1000, 5]}, "oomScoreAdj": 10},
            "linux": {"resources": {"memory": {"limit": 1 << 26}, "cpu": {"shares": 256}}}}
    status = cri_status(FakeManager([rec]), rec, state, spec)  # type: ignore[arg-type]
    assert status.id == rec.id and status.metadata == api_pb2.ContainerMetadata(name="n-cccc", attempt=2)
    assert status.state == api_pb2.CONTAINER_EXITED and (status.exit_code, status.reason) == (0, "Completed")
    assert status.created_at == 1_700_000_000_250_000_000
    assert status.started_at == 1_700_000_001_500_000_000 and status.finished_at == 1_700_000_002_000_000_000
    assert status.image.image == "127.0.0.1:5000/app:v1" and status.image_ref.endswith("a" * 64)
    assert status.image_id == "sha256:" + "b" * 64
    assert dict(status.labels) == {"app": "web"} and dict(status.annotations) == {"note": "x"}
    assert [(m.container_path, m.host_path, m.readonly, m.propagation) for m in status.mounts] == [
        ("/d", "/srv", True, api_pb2.PROPAGATION_HOST_TO_CONTAINER)]
    assert status.log_path == "/var/log/pods/p/c/2.log"
    assert status.stop_signal == api_pb2.SIGTERM
    assert (status.user.linux.uid, status.user.linux.gid, list(status.user.linux.supplemental_groups)) == (
        1000, 1000, [1000, 5])
    assert status.resources.linux.memory_limit_in_bytes == 1 << 26
    assert status.resources.linux.cpu_shares == 256 and status.resources.linux.oom_score_adj == 10

    created = cri_status(FakeManager([rec]), rec, ContainerStatus(CREATED, pid=3), None)  # type: ignore[arg-type]
    assert created.started_at == 0 and created.finished_at == 0 and not created.HasField("resources")
    # An exit whose time nobody saw still has a finish time (kubelet needs one).
    lost = cri_status(FakeManager([rec]), rec, ContainerStatus(EXITED, reason="exit status unknown"),  # type: ignore[arg-type]
                      None)
    assert lost.finished_at == lost.created_at and lost.exit_code == UNKNOWN_EXIT_CODE


def test_list_message() -> None:
    rec = record("d" * 64, pod="pod9", labels={"a": "b"})
    message = cri_container(rec, api_pb2.CONTAINER_RUNNING)
    assert (message.id, message.pod_sandbox_id, message.state) == (rec.id, "pod9", api_pb2.CONTAINER_RUNNING)
    assert message.metadata.name == "n-dddd" and dict(message.labels) == {"a": "b"}
    assert message.image_ref.endswith("a" * 64) and message.created_at == 1_700_000_000_250_000_000


def test_lookup_only_finds_cri_containers() -> None:
    cli = record("e" * 64, kind="")
    one, two = record("ab12" + "0" * 60), record("ab34" + "0" * 60)
    manager = FakeManager([cli, one, two])
    assert not is_cri(cli) and is_cri(one)
    assert lookup(manager, one.id) == one  # type: ignore[arg-type]
    assert lookup(manager, "ab3") == two  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="matches 2"):
        lookup(manager, "ab")  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        lookup(manager, cli.id)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        lookup(manager, "")  # type: ignore[arg-type]


def test_select() -> None:
    a = record("aa11" + "0" * 60, pod="p1", labels={"app": "web", "tier": "front"})
    b = record("aa22" + "0" * 60, pod="p1", labels={"app": "db"})
    c = record("bb33" + "0" * 60, pod="p2", labels={"app": "web"})
    every = [a, b, c]
    assert select(every) == every
    assert select(every, id_prefix="aa1") == [a]
    assert select(every, id_prefix="aa") == []  # ambiguous: nothing, as containerd's truncindex
    assert select(every, id_prefix=c.id) == [c]
    assert select(every, pod="p1") == [a, b]
    assert select(every, labels={"app": "web"}) == [a, c]
    assert select(every, labels={"app": "web", "tier": "front"}) == [a]
    assert select(every, pod="p2", labels={"app": "db"}) == []
