"""containerd's snapshots service on hawserd's second socket, driven by
Debian's real ``ctr`` (and the generated stubs for the codes): the layers of
an image hawser pulled, their info, usage and tree, a snapshot prepared on
them and mounted with the command ctr prints, commit, labels, removal, and
the codes containerd answers."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hawser.containerd._api.services.leases.v1 import leases_pb2, leases_pb2_grpc
from hawser.containerd._api.services.snapshots.v1 import snapshots_pb2 as pb
from hawser.containerd._api.services.snapshots.v1 import snapshots_pb2_grpc
from hawser.metadata import LABEL_GC_ROOT
from hawser.snapshots import new_snapshotter
from tests.e2e.helpers import status_code
from tests.support.hawserd import Hawserd
from tests.support.host import mounts_under, unmount_under
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry

CTR = shutil.which("ctr") or "/usr/bin/ctr"
NS = (("containerd-namespace", "default"),)
SN = "overlayfs"


def ctr(hawserd: Hawserd, *args: str, namespace: str = "default", check: bool = True
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", namespace,
                           "--timeout", "20s", *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def chain_ids(image: BuiltImage) -> list[str]:
    chain: list[str] = []
    for diff_id in image.diff_ids:
        chain.append(diff_id if not chain else
                     "sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


def listed(hawserd: Hawserd, namespace: str = "default") -> dict[str, tuple[str, str]]:
    """``ctr snapshots ls``: key -> (parent, kind)."""
    lines = ctr(hawserd, "snapshots", "ls", namespace=namespace).stdout.splitlines()
    assert lines[0].split() == ["KEY", "PARENT", "KIND"]
    rows = [line.split() for line in lines[1:]]
    return {row[0]: ("" if len(row) == 2 else row[1], row[-1]) for row in rows}


def info(hawserd: Hawserd, key: str) -> dict[str, object]:
    found = json.loads(ctr(hawserd, "snapshots", "info", key).stdout)
    assert isinstance(found, dict)
    return found


@pytest.fixture
def pulled(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage]) -> list[str]:
    """The pulled busybox's chain ids, bottom first."""
    ref, image = busybox
    hawserd.plain_http(registry.host)
    hawserd.cli("pull", "--plain-http", "-q", ref)
    return chain_ids(image)


@pytest.fixture
def stub(hawserd: Hawserd) -> Iterator[snapshots_pb2_grpc.SnapshotsStub]:
    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        yield snapshots_pb2_grpc.SnapshotsStub(channel)


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    """A mount target; anything still mounted under it goes at teardown."""
    target = tmp_path / "mnt"
    target.mkdir()
    yield target
    if str(target) in {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}:
        subprocess.run(["umount", "-l", str(target)], check=False)
    unmount_under(str(tmp_path))


def mount_printed(hawserd: Hawserd, key: str, target: Path) -> list[str]:
    """Run the mount commands ``ctr snapshots mounts`` prints; returns them."""
    commands = ctr(hawserd, "snapshots", "mounts", str(target), key).stdout.splitlines()
    assert commands and all(c.startswith("mount -t ") for c in commands)
    for command in commands:
        subprocess.run(shlex.split(command), check=True, capture_output=True, timeout=30)
    return commands


def test_ls_info_usage_tree_show_the_pulled_layers(hawserd: Hawserd, pulled: list[str],
                                                   stub: snapshots_pb2_grpc.SnapshotsStub) -> None:
    chain = pulled
    want = {key: (chain[i - 1] if i else "", "Committed") for i, key in enumerate(chain)}
    assert listed(hawserd) == want
    # Keys are the store's, the same in every namespace (a documented deviation from containerd).
    assert listed(hawserd, namespace="other") == want
    top = info(hawserd, chain[-1])
    assert (top["Name"], top["Parent"], top["Kind"]) == (chain[-1], chain[-2], "Committed")
    assert str(top["Created"]).startswith("20") and str(top["Updated"]).startswith("20")
    lines = ctr(hawserd, "snapshots", "usage", "-b").stdout.splitlines()
    assert lines[0].split() == ["KEY", "SIZE", "INODES"]
    usage = {row.split()[0]: (int(row.split()[1]), int(row.split()[2])) for row in lines[1:]}
    assert set(usage) == set(chain) and all(size > 0 and inodes > 0 for size, inodes in usage.values())
    one = ctr(hawserd, "snapshots", "usage", "-b", chain[0]).stdout.splitlines()[1].split()
    assert (int(one[1]), int(one[2])) == usage[chain[0]]
    # busybox's own layer is the biggest: a static busybox binary.
    assert max(usage, key=lambda key: usage[key][0]) == chain[0]
    tree = ctr(hawserd, "snapshots", "tree").stdout.splitlines()
    assert [line.strip().lstrip("\\_ ").strip() for line in tree] == chain
    assert [len(line) - len(line.lstrip()) for line in tree] == sorted(len(line) - len(line.lstrip()) for line in tree)
    # Filters reach the server (ctr ls takes none): containerd's fields.

    def names(*filters: str) -> list[str]:
        request = pb.ListSnapshotsRequest(snapshotter=SN, filters=filters)
        return [i.name for m in stub.List(request, metadata=NS) for i in m.info]

    assert names() == sorted(chain)
    assert names(f"parent=={chain[0]}") == [chain[1]]
    assert names(f"name=={chain[-1]}", f"name=={chain[0]}") == sorted([chain[0], chain[-1]])
    assert names("kind==active") == []
    assert sorted(names("kind==committed")) == sorted(chain)
    assert names("labels.nothing==here") == []
    code, message = status_code(names, "labels.x~=(")
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "invalid" in message


def test_prepare_mount_commit_view_and_remove(hawserd: Hawserd, pulled: list[str], mnt: Path) -> None:
    top = pulled[-1]
    out = ctr(hawserd, "snapshots", "prepare", "--target", str(mnt), "work", top).stdout
    assert out.startswith("mount -t overlay overlay ")
    assert listed(hawserd)["work"] == (top, "Active")
    # ctr's gc.root label reached hawser as the root its GC honours.
    assert "containerd.io/gc.root" in info(hawserd, "work")["Labels"]  # type: ignore[operator]
    snap = new_snapshotter(SN, str(hawserd.root / "snapshots" / SN))
    try:
        assert LABEL_GC_ROOT in snap.stat("work").labels
    finally:
        snap.close()
    hawserd.cli("system", "prune")
    assert "work" in listed(hawserd)
    # The printed command mounts the image's tree, whiteouts applied.
    mount_printed(hawserd, "work", mnt)
    try:
        assert (mnt / "bin" / "busybox").is_file() and (mnt / "etc" / "layer3").exists()
        assert (mnt / "opt" / "app" / "run.sh").exists() and not (mnt / "opt" / "app" / "old.txt").exists()
        (mnt / "etc" / "added").write_text("by ctr\n")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    assert not any(p == str(mnt) for p in mounts_under(str(mnt.parent)))
    # Committed, the change is a layer: a view of it shows it on top of the image.
    ctr(hawserd, "snapshots", "commit", "mine", "work")
    now = listed(hawserd)
    assert now["mine"] == (top, "Committed") and "work" not in now
    assert "containerd.io/gc.root" in info(hawserd, "mine")["Labels"]  # type: ignore[operator]
    view = ctr(hawserd, "snapshots", "view", "--target", str(mnt), "look", "mine").stdout
    assert view.startswith("mount -t overlay overlay ") and "upperdir" not in view
    assert listed(hawserd)["look"] == ("mine", "View")
    mount_printed(hawserd, "look", mnt)
    try:
        assert (mnt / "etc" / "added").read_text() == "by ctr\n" and (mnt / "bin" / "busybox").is_file()
        assert subprocess.run(["touch", str(mnt / "etc" / "ro")], capture_output=True).returncode != 0
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    # A parent with children stays; children first.
    refused = ctr(hawserd, "snapshots", "rm", "mine", check=False)
    assert refused.returncode != 0 and "failed precondition" in refused.stderr
    refused = ctr(hawserd, "snapshots", "rm", top, check=False)
    assert refused.returncode != 0 and "child" in refused.stderr
    ctr(hawserd, "snapshots", "rm", "look", "mine")
    assert listed(hawserd) == {key: (pulled[i - 1] if i else "", "Committed") for i, key in enumerate(pulled)}
    gone = ctr(hawserd, "snapshots", "rm", "mine", check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr


def test_a_parentless_snapshot_mounts_with_a_bind_mount(hawserd: Hawserd, pulled: list[str], mnt: Path) -> None:
    out = ctr(hawserd, "snapshots", "prepare", "--target", str(mnt), "scratch").stdout
    assert out.startswith("mount -t bind ") and out.rstrip().endswith("-o rbind,rw")
    mount_printed(hawserd, "scratch", mnt)
    try:
        (mnt / "hello").write_text("hi")
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    usage = ctr(hawserd, "snapshots", "usage", "-b", "scratch").stdout.splitlines()[1].split()
    assert int(usage[2]) == 2  # the dir and its file
    ctr(hawserd, "snapshots", "rm", "scratch")
    assert "scratch" not in listed(hawserd)


def test_labels_set_replace_and_remove(hawserd: Hawserd, pulled: list[str],
                                       stub: snapshots_pb2_grpc.SnapshotsStub) -> None:
    top = pulled[-1]
    before = dict(info(hawserd, top).get("Labels") or {})  # type: ignore[call-overload]
    out = ctr(hawserd, "snapshots", "label", top, "team=web", "containerd.io/gc.root=now").stdout.strip()
    assert {"team=web", "containerd.io/gc.root=now"} <= set(out.split(","))
    assert info(hawserd, top)["Labels"] == {**before, "team": "web", "containerd.io/gc.root": "now"}
    snap = new_snapshotter(SN, str(hawserd.root / "snapshots" / SN))
    try:
        assert snap.stat(top).labels[LABEL_GC_ROOT] == "now"  # hawser's name for containerd's label
    finally:
        snap.close()
    ctr(hawserd, "snapshots", "label", top, "team=")
    assert info(hawserd, top)["Labels"] == {**before, "containerd.io/gc.root": "now"}
    # No mask: the request's labels replace them all.
    got = stub.Update(pb.UpdateSnapshotRequest(snapshotter=SN, info=pb.Info(name=top, labels={"only": "this"})),
                      metadata=NS).info
    assert dict(got.labels) == {"only": "this"} and got.kind == pb.COMMITTED and got.parent == pulled[-2]
    found = [i for m in stub.List(pb.ListSnapshotsRequest(snapshotter=SN, filters=["labels.only==this"]),
                                  metadata=NS) for i in m.info]
    assert [i.name for i in found] == [top]
    bad = pb.UpdateSnapshotRequest(snapshotter=SN, info=pb.Info(name=top, parent="x"))
    bad.update_mask.paths.append("parent")
    code, message = status_code(stub.Update, bad, metadata=NS)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "only labels change" in message
    missing = ctr(hawserd, "snapshots", "label", "nothing", "a=b", check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_a_lease_header_leases_what_the_request_makes(hawserd: Hawserd, pulled: list[str],
                                                      stub: snapshots_pb2_grpc.SnapshotsStub) -> None:
    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        leases = leases_pb2_grpc.LeasesStub(channel)
        leases.Create(leases_pb2.CreateRequest(id="unpack"), metadata=NS)
        leased = (*NS, ("containerd-lease", "unpack"))
        stub.Prepare(pb.PrepareSnapshotRequest(snapshotter=SN, key="held", parent=pulled[-1]), metadata=leased)
        resources = leases.ListResources(leases_pb2.ListResourcesRequest(id="unpack"), metadata=NS).resources
        assert [(r.id, r.type) for r in resources] == [("held", f"snapshots/{SN}")]
        hawserd.cli("system", "prune")
        assert "held" in listed(hawserd)  # no gc.root label: the lease alone keeps it
        code, _ = status_code(stub.Prepare, pb.PrepareSnapshotRequest(snapshotter=SN, key="x"),
                              metadata=(*NS, ("containerd-lease", "nope")))
        assert code == grpc.StatusCode.NOT_FOUND and "x" not in listed(hawserd)
        leases.Delete(leases_pb2.DeleteRequest(id="unpack", sync=True), metadata=NS)
    assert "held" not in listed(hawserd)


def test_errors_are_containerds_codes(hawserd: Hawserd, pulled: list[str],
                                      stub: snapshots_pb2_grpc.SnapshotsStub) -> None:
    top = pulled[-1]
    code, message = status_code(stub.Stat, pb.StatSnapshotRequest(snapshotter="btrfs", key=top), metadata=NS)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "snapshotter not loaded: btrfs" in message
    code, message = status_code(stub.Stat, pb.StatSnapshotRequest(key=top), metadata=NS)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "snapshotter argument missing" in message
    code, message = status_code(stub.Stat, pb.StatSnapshotRequest(snapshotter=SN, key=top))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "namespace is required" in message
    code, _ = status_code(lambda: list(stub.List(pb.ListSnapshotsRequest(snapshotter=SN))))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    for call, request in [
        (stub.Stat, pb.StatSnapshotRequest(snapshotter=SN, key="nothing")),
        (stub.Usage, pb.UsageRequest(snapshotter=SN, key="nothing")),
        (stub.Mounts, pb.MountsRequest(snapshotter=SN, key="nothing")),
        (stub.Remove, pb.RemoveSnapshotRequest(snapshotter=SN, key="nothing")),
        (stub.Commit, pb.CommitSnapshotRequest(snapshotter=SN, name="n", key="nothing")),
        (stub.Prepare, pb.PrepareSnapshotRequest(snapshotter=SN, key="k", parent="nothing")),
    ]:
        assert status_code(call, request, metadata=NS)[0] == grpc.StatusCode.NOT_FOUND, request
    prepare = pb.PrepareSnapshotRequest(snapshotter=SN, key=top, parent=pulled[0])
    assert status_code(stub.Prepare, prepare, metadata=NS)[0] == grpc.StatusCode.ALREADY_EXISTS
    assert status_code(stub.Mounts, pb.MountsRequest(snapshotter=SN, key=top), metadata=NS)[0] \
        == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code(stub.Remove, pb.RemoveSnapshotRequest(snapshotter=SN, key=pulled[0]), metadata=NS)[0] \
        == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code(stub.Prepare, pb.PrepareSnapshotRequest(snapshotter=SN), metadata=NS)[0] \
        == grpc.StatusCode.INVALID_ARGUMENT
    stub.Cleanup(pb.CleanupRequest(snapshotter=SN), metadata=NS)
    assert len(listed(hawserd)) == len(pulled)
    other = ctr(hawserd, "snapshots", "--snapshotter", "native", "ls", check=False)
    assert other.returncode != 0 and "snapshotter not loaded: native" in other.stderr
    assert ctr(hawserd, "version").returncode == 0  # the daemon keeps serving
