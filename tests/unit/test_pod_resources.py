"""A pod's resources (UpdatePodSandboxResources): the checks, the sum kubelet
sizes a pod cgroup with, the limits written into a fake cgroup tree (v1 and
v2) and undone when one write fails, and what the pod's record keeps."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser.errors import FailedPrecondition, InvalidArgument
from hawser.host import CgroupLayout
from hawser.metadata import Metadata, SandboxRecord
from hawser.pods import SANDBOX_NOTREADY, SANDBOX_READY
from hawser.pods._resources import apply_pod_limits, check_pod_resources, pod_limits, update_pod_resources
from hawser.runtime import Resources
from tests.unit.host.test_cgroups import HYBRID_MOUNTINFO, UNIFIED_MOUNTINFO

MiB = 1 << 20
POD = "/hawser/store/pod-abc"
V1_FILES = {"cpu": ("cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"), "memory": ("memory.limit_in_bytes",),
            "cpuset": ("cpuset.cpus", "cpuset.mems")}


def v1_tree(tmp_path: Path) -> CgroupLayout:
    """A hybrid host's hierarchies under tmp_path, the pod's cgroup and its files there (as the kernel makes them)."""
    layout = CgroupLayout.detect(HYBRID_MOUNTINFO).rebased(str(tmp_path))
    for controller, names in V1_FILES.items():
        mount = Path(layout.mounts[controller])
        mount.mkdir(parents=True, exist_ok=True)
        for level in ("", "hawser", "hawser/store", "hawser/store/pod-abc"):
            (mount / level).mkdir(exist_ok=True)
            for name in names:
                initial = {"cpu.cfs_quota_us": "-1", "cpu.cfs_period_us": "100000", "cpu.shares": "1024",
                           "cpuset.cpus": "0-1" if not level else "", "cpuset.mems": "0" if not level else ""}
                (mount / level / name).write_text(initial.get(name, "9223372036854771712") + "\n")
    return layout


def v1(layout: CgroupLayout, controller: str, name: str) -> str:
    return Path(layout.mounts[controller], POD.lstrip("/"), name).read_text().strip()


def test_checks() -> None:
    check_pod_resources(Resources(cpu_shares=2, cpu_quota=-1, cpu_period=1000, memory_limit=1, cpuset_cpus="0-3,5"),
                        "resources")
    for bad in (Resources(cpu_shares=1), Resources(cpu_shares=262145), Resources(cpu_quota=999),
                Resources(cpu_quota=-2), Resources(cpu_period=999), Resources(cpu_period=1_000_001),
                Resources(memory_limit=-1), Resources(memory_limit=MiB, memory_swap=-2),
                Resources(cpuset_mems="a")):
        with pytest.raises(InvalidArgument, match="invalid overhead"):
            check_pod_resources(bad, "overhead")


def test_the_pod_cgroup_is_resources_plus_overhead() -> None:
    overhead = Resources(cpu_shares=102, cpu_quota=10000, cpu_period=100000, memory_limit=16 * MiB)
    assert pod_limits(Resources(cpu_shares=1536, cpu_quota=150000, cpu_period=100000, memory_limit=128 * MiB,
                                cpuset_cpus="0"), overhead) == Resources(
        cpu_shares=1638, cpu_quota=160000, cpu_period=100000, memory_limit=144 * MiB, cpuset_cpus="0")
    # No CPU limit (-1) and no memory limit stay so; the overhead's quota is taken to the resources' period.
    assert pod_limits(Resources(cpu_shares=2, cpu_quota=-1, cpu_period=50000), overhead) == Resources(
        cpu_shares=104, cpu_quota=-1, cpu_period=50000)
    assert pod_limits(Resources(cpu_quota=20000, cpu_period=50000), overhead).cpu_quota == 25000
    assert pod_limits(Resources(cpu_shares=262144), overhead).cpu_shares == 262144
    assert pod_limits(Resources(), Resources()) == Resources()


def test_v1_limits_are_written_and_undone_together(tmp_path: Path) -> None:
    layout = v1_tree(tmp_path)
    apply_pod_limits(layout, POD, Resources(cpu_shares=512, cpu_quota=50000, cpu_period=200000,
                                            memory_limit=64 * MiB, cpuset_cpus="1"))
    assert [v1(layout, "cpu", n) for n in V1_FILES["cpu"]] == ["512", "50000", "200000"]
    assert v1(layout, "memory", "memory.limit_in_bytes") == str(64 * MiB)
    assert v1(layout, "cpuset", "cpuset.cpus") == "1"
    # An empty cpuset on the way down is filled from its parent's, as runc fills them.
    assert Path(layout.mounts["cpuset"], "hawser", "cpuset.mems").read_text().strip() == "0"

    Path(layout.mounts["memory"], POD.lstrip("/"), "memory.limit_in_bytes").unlink()
    with pytest.raises(FailedPrecondition, match=r"has no memory\.limit_in_bytes"):
        apply_pod_limits(layout, POD, Resources(cpu_shares=4096, cpu_quota=90000, memory_limit=32 * MiB))
    assert [v1(layout, "cpu", n) for n in V1_FILES["cpu"]] == ["512", "50000", "200000"]


def test_v2_limits(tmp_path: Path) -> None:
    layout = CgroupLayout.detect(UNIFIED_MOUNTINFO).rebased(str(tmp_path))
    mount = Path(layout.mounts[""])
    pod = mount / POD.lstrip("/")
    pod.mkdir(parents=True)
    for level in (mount, mount / "hawser", mount / "hawser/store"):
        (level / "cgroup.subtree_control").write_text("cpu\n" if level == mount else "\n")
    for name, text in (("cpu.weight", "100"), ("cpu.max", "max 100000"), ("memory.max", "max")):
        (pod / name).write_text(text + "\n")
    apply_pod_limits(layout, POD, Resources(cpu_shares=1024, cpu_quota=150000, memory_limit=64 * MiB))
    assert (pod / "cpu.weight").read_text() == "39"  # runc's conversion of 1024 shares
    assert (pod / "cpu.max").read_text() == "150000 100000"
    assert (pod / "memory.max").read_text() == str(64 * MiB)
    assert (mount / "cgroup.subtree_control").read_text() == "+memory"  # cpu was enabled already
    assert (mount / "hawser/store/cgroup.subtree_control").read_text() == "+cpu +memory"
    apply_pod_limits(layout, POD, Resources(cpu_quota=-1, cpu_period=50000))
    assert (pod / "cpu.max").read_text() == "max 50000"


@pytest.fixture
def md(tmp_path: Path) -> Iterator[Metadata]:
    db = Metadata(tmp_path / "metadata.db")
    yield db
    db.close()


def sandbox(md: Metadata, cgroup: str, state: str = SANDBOX_READY) -> SandboxRecord:
    record = SandboxRecord(namespace="k8s.io", id="p" * 64, name="pod", config={}, labels={}, state=state,
                           status={"cgroup_parent": cgroup, "ips": ["10.0.0.2"]}, created_at=1.0)
    return md.sandboxes.create(record)


def test_the_record_keeps_what_each_update_sent(md: Metadata, tmp_path: Path) -> None:
    layout = v1_tree(tmp_path)
    record = sandbox(md, POD)
    applied = update_pod_resources(md.sandboxes, record, resources=Resources(cpu_shares=1000, memory_limit=64 * MiB),
                                   overhead=Resources(cpu_shares=24, memory_limit=MiB), own_cgroup=POD, layout=layout)
    assert applied == Resources(cpu_shares=1024, memory_limit=65 * MiB)
    assert v1(layout, "memory", "memory.limit_in_bytes") == str(65 * MiB)
    # Another writer's status entries stay; fields not sent again stay as kept.
    md.sandboxes.update(record.id, namespace="k8s.io", status_entries={"other": 1})
    record = md.sandboxes.get(record.id, namespace="k8s.io")
    update_pod_resources(md.sandboxes, record, resources=Resources(memory_limit=32 * MiB), overhead=Resources(),
                         own_cgroup=POD, layout=layout)
    status = md.sandboxes.get(record.id, namespace="k8s.io").status
    assert status["resources"] == {"resources": {"cpu_shares": 1000, "memory_limit": 32 * MiB},
                                   "overhead": {"cpu_shares": 24, "memory_limit": MiB},
                                   "applied": {"cpu_shares": 1024, "memory_limit": 33 * MiB}}
    assert status["ips"] == ["10.0.0.2"] and status["other"] == 1
    assert v1(layout, "memory", "memory.limit_in_bytes") == str(33 * MiB)


def test_kubelets_cgroup_and_a_stopped_pod(md: Metadata, tmp_path: Path) -> None:
    layout = v1_tree(tmp_path)
    record = sandbox(md, "/kubepods/podx")
    assert update_pod_resources(md.sandboxes, record, resources=Resources(memory_limit=64 * MiB),
                                overhead=Resources(), own_cgroup=POD, layout=layout) is None
    assert v1(layout, "memory", "memory.limit_in_bytes") == "9223372036854771712"
    assert md.sandboxes.get(record.id, namespace="k8s.io").status["resources"]["resources"] == {
        "memory_limit": 64 * MiB}
    md.sandboxes.delete(record.id, namespace="k8s.io")
    stopped = sandbox(md, POD, state=SANDBOX_NOTREADY)
    with pytest.raises(FailedPrecondition, match="not ready"):
        update_pod_resources(md.sandboxes, stopped, resources=Resources(memory_limit=64 * MiB),
                             overhead=Resources(), own_cgroup=POD, layout=layout)
