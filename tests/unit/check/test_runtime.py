"""Runtime leftovers: what a container or pod leaves on the host without its record."""

from __future__ import annotations

import os

from hawser.check import (
    ATTACH_DIR_ORPHAN,
    BUNDLE_ORPHAN,
    CGROUP_ORPHAN,
    CHECK_ERROR,
    CONMON_ORPHAN,
    EXIT_FILE_ORPHAN,
    INFO,
    LOG_DIR_ORPHAN,
    MOUNT_ORPHAN,
    NETNS_ORPHAN,
    POD_DIR_ORPHAN,
    RUNC_ORPHAN,
    Process,
)
from hawser.errors import FailedPrecondition
from tests.unit.check.conftest import CGROUP_PARENT, FakeHost, Node, kinds


def _leave_container(node: Node, id_: str, *, pid: int) -> Process:
    """Everything a container leaves on the host, as if its record were gone."""
    state, root = node.state, node.config.root
    node.mount(os.path.join(state, "containers", id_, "rootfs"))
    os.makedirs(os.path.join(state, "runc", id_))
    node.host.runc[id_] = "running"
    conmon = Process(pid=pid, start=pid * 10, argv=(
        "/usr/bin/conmon", "--api-version", "1", "--cid", id_, "--runtime-arg",
        f"--root={os.path.join(state, 'runc')}", "--bundle", os.path.join(state, "containers", id_)))
    node.host.conmons.append(conmon)
    os.makedirs(os.path.join(state, "exits"), exist_ok=True)
    with open(os.path.join(state, "exits", id_), "w") as f:
        f.write("0")
    os.makedirs(os.path.join(root, "containers", id_))
    os.makedirs(os.path.join(state, "attach", id_))
    node.make_cgroup(f"{CGROUP_PARENT}/{id_}")
    return conmon


def test_leftovers_of_a_container_without_record_are_found_and_removed_in_order(node: Node) -> None:
    image = node.add_image()
    live = node.add_container(image)
    _leave_container(node, live.id, pid=100)  # all of it owned by a record: nothing to say
    assert node.check().findings == ()

    orphan = "0" * 64
    _leave_container(node, orphan, pid=200)
    state, root = node.state, node.config.root
    report = node.check()
    assert kinds(report) == sorted([
        (RUNC_ORPHAN, orphan), (CONMON_ORPHAN, "200"),
        (MOUNT_ORPHAN, os.path.join(state, "containers", orphan, "rootfs")),
        (BUNDLE_ORPHAN, os.path.join(state, "containers", orphan)),
        (EXIT_FILE_ORPHAN, os.path.join(state, "exits", orphan)),
        (LOG_DIR_ORPHAN, os.path.join(root, "containers", orphan)),
        (ATTACH_DIR_ORPHAN, os.path.join(state, "attach", orphan)),
        (CGROUP_ORPHAN, f"{CGROUP_PARENT}/{orphan}"),
    ])
    assert next(f for f in report.findings if f.kind == ATTACH_DIR_ORPHAN).severity == INFO
    assert node.host.calls == []

    repaired = node.check(repair=True)
    assert all(f.repaired for f in repaired.findings) and repaired.exit_code == 0
    # runc first (it kills the processes and drops the cgroup), then conmon, then the mount.
    assert node.host.calls == [("runc_delete", orphan), ("kill", "200"),
                               ("unmount", os.path.join(state, "containers", orphan, "rootfs"))]
    for path in (os.path.join(state, "containers", orphan), os.path.join(state, "exits", orphan),
                 os.path.join(root, "containers", orphan), os.path.join(state, "attach", orphan),
                 *node.host.cgroup_dirs(f"{CGROUP_PARENT}/{orphan}")):
        assert not os.path.exists(path), path
    # The live container's resources are all still there.
    assert os.path.isdir(os.path.join(state, "containers", live.id)) and node.host.runc[live.id] == "running"
    assert node.host.conmons[0].pid == 100 and all(os.path.isdir(d) for d in
                                                    node.host.cgroup_dirs(f"{CGROUP_PARENT}/{live.id}"))
    assert node.check().findings == ()


def test_pinned_namespaces_and_the_directory_of_a_pod_without_record(node: Node) -> None:
    kept = node.add_sandbox(id_="b" * 64)
    for id_ in (kept.id, "c" * 64):
        pod = os.path.join(node.state, "sandboxes", id_)
        node.mount(os.path.join(pod, "ns"), "tmpfs")
        for kind in ("net", "ipc"):
            node.mount(os.path.join(pod, "ns", kind), "nsfs")
            node.host.namespaces[os.path.join(pod, "ns", kind)] = kind
        node.mount(os.path.join(pod, "shm"), "tmpfs")
    orphan = os.path.join(node.state, "sandboxes", "c" * 64)
    report = node.check()
    assert kinds(report) == sorted([(NETNS_ORPHAN, os.path.join(orphan, "ns")),
                                    (MOUNT_ORPHAN, os.path.join(orphan, "shm")),
                                    (POD_DIR_ORPHAN, orphan)])
    assert "ipc, net namespace" in next(f.detail for f in report.findings if f.kind == NETNS_ORPHAN)
    assert all(f.repaired for f in node.check(repair=True).findings)
    assert not os.path.exists(orphan) and os.path.isdir(os.path.join(node.state, "sandboxes", kept.id, "ns"))
    assert all(not m.path.startswith(orphan) for m in node.host.mount_table)
    assert node.check().findings == ()


def test_cgroups_are_judged_by_the_records_that_name_them(node: Node) -> None:
    image = node.add_image()
    container = node.add_container(image)
    pod = node.add_sandbox()
    pod_cgroup = pod.status["cgroup_parent"]
    node.make_cgroup(f"{CGROUP_PARENT}/{container.id}/sub")  # a container's own sub-cgroup
    node.make_cgroup(f"{pod_cgroup}/{'d' * 64}")  # in a live pod, no container record
    node.make_cgroup(f"{CGROUP_PARENT}/pod-eeeeeeeeeeee/{'f' * 64}")  # a whole pod gone
    node.make_cgroup(f"{CGROUP_PARENT}/pod-999999999999")  # what RemovePodSandbox leaves: info
    node.make_cgroup(f"{CGROUP_PARENT}/not-hawsers")
    report = node.check()
    assert kinds(report) == sorted([(CGROUP_ORPHAN, f"{pod_cgroup}/{'d' * 64}"),
                                    (CGROUP_ORPHAN, f"{CGROUP_PARENT}/pod-999999999999"),
                                    (CGROUP_ORPHAN, f"{CGROUP_PARENT}/pod-eeeeeeeeeeee")])
    assert [f.subject for f in report.findings if f.severity == INFO] == [f"{CGROUP_PARENT}/pod-999999999999"]
    assert all(f.repaired for f in node.check(repair=True).findings)
    assert not any(os.path.exists(d) for d in node.host.cgroup_dirs(f"{CGROUP_PARENT}/pod-999999999999"))
    assert os.path.isdir(node.host.cgroup_dirs(pod_cgroup)[0])
    assert os.path.isdir(node.host.cgroup_dirs(f"{CGROUP_PARENT}/{container.id}/sub")[0])


def test_a_mount_no_container_or_pod_would_make(node: Node) -> None:
    node.add_image(layers=1)
    stray = os.path.join(node.config.root, "snapshots", "native", "snapshots", "1", "fs")
    node.mount(stray, "bind")
    assert kinds(node.check()) == [(MOUNT_ORPHAN, stray)]
    assert node.check(repair=True).findings[0].repaired and node.host.calls == [("unmount", stray)]


def test_a_leftover_snapshot_directory_is_unmounted_before_it_is_deleted(node: Node) -> None:
    leftover = os.path.join(node.config.root, "snapshots", "native", "snapshots", "7")
    node.mount(os.path.join(leftover, "fs"), "bind")
    with open(os.path.join(leftover, "fs", "precious"), "w") as f:
        f.write("on the mounted filesystem")
    report = node.check(repair=True)
    assert all(f.repaired for f in report.findings)
    assert node.host.calls[0] == ("unmount", os.path.join(leftover, "fs")) and not os.path.exists(leftover)


def test_a_failed_repair_is_reported_and_the_rest_goes_on(node: Node) -> None:
    orphan = "0" * 64
    _leave_container(node, orphan, pid=300)
    rootfs = os.path.join(node.state, "containers", orphan, "rootfs")
    node.host.fail_unmount.add(rootfs)
    report = node.check(repair=True)
    failed = {f.kind: f for f in report.findings if not f.repaired and f.severity != INFO}
    assert set(failed) == {MOUNT_ORPHAN, BUNDLE_ORPHAN}
    assert "busy" in (failed[MOUNT_ORPHAN].error or "") and report.exit_code == 1
    assert os.path.isdir(rootfs)  # never removed with something mounted on it
    assert all(f.repaired for f in report.findings if f.kind not in failed)


class _BrokenCgroups(FakeHost):
    def cgroup_layout(self):  # type: ignore[no-untyped-def]
        raise FailedPrecondition("no cgroup filesystem is mounted")


def test_an_error_of_the_checker_is_a_finding_and_the_check_goes_on(node: Node) -> None:
    node.host = _BrokenCgroups(root=str(node.tmp))
    os.makedirs(os.path.join(node.state, "exits"))
    with open(os.path.join(node.state, "exits", "1" * 64), "w") as f:
        f.write("0")
    report = node.check()
    assert kinds(report) == sorted([(CHECK_ERROR, "cgroups"),
                                    (EXIT_FILE_ORPHAN, os.path.join(node.state, "exits", "1" * 64))])
    assert "no cgroup filesystem" in (report.findings[0].error or "") and report.exit_code == 1


def test_idmapped_copies_belong_to_their_container(node: Node) -> None:
    """A user-namespaced container's bind copies under state/idmap/<id>/ are its
    own while its record lives, and orphans once it is gone."""
    image = node.add_image()
    live = node.add_container(image)
    orphan = "f" * 64
    for id_ in (live.id, orphan):
        node.mount(os.path.join(node.state, "idmap", id_, "0"))
    report = node.check()
    assert kinds(report) == [(MOUNT_ORPHAN, os.path.join(node.state, "idmap", orphan, "0"))]
    assert all(f.repaired for f in node.check(repair=True).findings)
    assert node.host.calls == [("unmount", os.path.join(node.state, "idmap", orphan, "0"))]
