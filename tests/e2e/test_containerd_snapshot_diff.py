"""containerd's Diff.Diff on hawserd, driven by Debian's real ``ctr``: a
snapshot prepared on a pulled image, mounted with the command ctr prints and
changed, becomes a layer with ``ctr snapshots diff`` (the blob on ctr's
stdout, in the content store with its diff ID label), and that layer applied
with Diff.Apply to a fresh snapshot of the same parent makes the same tree."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shlex
import stat
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hawser.containerd._api.services.diff.v1 import diff_pb2, diff_pb2_grpc
from hawser.containerd._api.services.snapshots.v1 import snapshots_pb2, snapshots_pb2_grpc
from hawser.containerd._api.types import descriptor_pb2
from tests.e2e.test_containerd_snapshots import CTR, chain_ids, listed
from tests.support.hawserd import Hawserd
from tests.support.host import unmount_under
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry

NS = (("containerd-namespace", "default"),)
SN = "overlayfs"
GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
TAR = "application/vnd.oci.image.layer.v1.tar"


def ctr(hawserd: Hawserd, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", "default",
                           "--timeout", "30s", *args], capture_output=True, timeout=90)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr.decode()}")
    return proc


@pytest.fixture
def top(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage]) -> str:
    """The pulled busybox's top chain id."""
    ref, image = busybox
    hawserd.plain_http(registry.host)
    hawserd.cli("pull", "--plain-http", "-q", ref)
    return chain_ids(image)[-1]


@pytest.fixture
def mnts(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """Two mount targets; anything still mounted under them goes at teardown."""
    targets = (tmp_path / "mnt-a", tmp_path / "mnt-b")
    for target in targets:
        target.mkdir()
    yield targets
    unmount_under(str(tmp_path))


def mount(hawserd: Hawserd, key: str, target: Path) -> None:
    for command in ctr(hawserd, "snapshots", "mounts", str(target), key).stdout.decode().splitlines():
        subprocess.run(shlex.split(command), check=True, capture_output=True, timeout=30)


def umount(target: Path) -> None:
    subprocess.run(["umount", str(target)], check=True, timeout=30)


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            body: object = (os.readlink(p) if stat.S_ISLNK(st.st_mode)
                            else hashlib.sha256(p.read_bytes()).hexdigest() if stat.S_ISREG(st.st_mode) else None)
            out[str(p.relative_to(root))] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid,
                                             st.st_gid, int(st.st_mtime) if not stat.S_ISLNK(st.st_mode) else 0,
                                             st.st_rdev, body)
    return out


def change(root: Path) -> None:
    (root / "etc" / "added").write_text("by ctr\n")
    os.symlink("hostname", root / "etc" / "link")
    (root / "etc" / "motd").unlink()
    (root / "opt" / "app" / "config.txt").write_text("changed\n")
    # Removed and made again: overlayfs makes the new directory opaque.
    subprocess.run(["rm", "-rf", str(root / "opt" / "app" / "data")], check=True)
    (root / "opt" / "app" / "data").mkdir()
    (root / "opt" / "app" / "data" / "c.txt").write_text("c\n")


def test_snapshots_diff_makes_the_layer_that_reproduces_the_tree(
        hawserd: Hawserd, top: str, mnts: tuple[Path, Path]) -> None:
    a, b = mnts
    ctr(hawserd, "snapshots", "prepare", "work", top)
    try:
        mount(hawserd, "work", a)
        try:
            change(a)
        finally:
            umount(a)
        blob = ctr(hawserd, "snapshots", "diff", "--keep", "work").stdout  # the blob itself, on stdout
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        assert ctr(hawserd, "content", "get", digest).stdout == blob
        layer = gzip.decompress(blob)
        diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
        row = next(line for line in ctr(hawserd, "content", "ls").stdout.decode().splitlines()
                   if line.startswith(digest))
        assert f"containerd.io/uncompressed={diff_id}" in row and "containerd.io/gc.root=" in row
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            members = {m.name: m for m in tar.getmembers()}
        assert set(members) == {"etc", "etc/added", "etc/link", "etc/.wh.motd", "opt", "opt/app",
                                "opt/app/config.txt", "opt/app/data", "opt/app/data/.wh..wh..opq",
                                "opt/app/data/c.txt"}
        assert members["etc/link"].linkname == "hostname" and members["opt/app"].uid == 1000
        # ctr's views of the parent are gone again; work is still active.
        assert set(listed(hawserd)) - {"work"} == set(chain_ids_of(hawserd))

        # The layer applied to a fresh snapshot of the same parent makes the same tree.
        ctr(hawserd, "snapshots", "prepare", "fresh", top)
        with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                                   options=[("grpc.enable_http_proxy", 0)]) as channel:
            mounts = snapshots_pb2_grpc.SnapshotsStub(channel).Mounts(
                snapshots_pb2.MountsRequest(snapshotter=SN, key="fresh"), metadata=NS).mounts
            applied = diff_pb2_grpc.DiffStub(channel).Apply(diff_pb2.ApplyRequest(
                diff=descriptor_pb2.Descriptor(media_type=GZIP, digest=digest, size=len(blob)),
                mounts=mounts), metadata=NS).applied
        assert applied.digest == diff_id
        mount(hawserd, "work", a)
        mount(hawserd, "fresh", b)
        try:
            want, got = tree(a), tree(b)
            assert "etc/motd" not in got and sorted(os.listdir(b / "opt" / "app" / "data")) == ["c.txt"]
            assert got == want
        finally:
            umount(a)
            umount(b)

        # Committed, the same changes make the same blob (ctr diffs a view of it); uncompressed on request.
        ctr(hawserd, "snapshots", "commit", "mine", "work")
        assert ctr(hawserd, "snapshots", "diff", "--keep", "mine").stdout == blob
        plain = ctr(hawserd, "snapshots", "diff", "--keep", "--media-type", TAR, "mine").stdout
        assert plain == layer
        refused = ctr(hawserd, "snapshots", "diff", "--media-type", "application/x-nope", "mine", check=False)
        assert refused.returncode != 0 and b"not implemented" in refused.stderr
    finally:
        for key in ("fresh", "work", "mine"):
            ctr(hawserd, "snapshots", "rm", key, check=False)
    assert set(listed(hawserd)) == set(chain_ids_of(hawserd))


def chain_ids_of(hawserd: Hawserd) -> list[str]:
    """The committed snapshots of the pulled image (all there are before the test's own)."""
    return [key for key, (_, kind) in listed(hawserd).items() if kind == "Committed" and key != "mine"]


def test_diff_refuses_mounts_outside_the_store(hawserd: Hawserd, top: str) -> None:
    from hawser.containerd._api.types import mount_pb2

    outside = [mount_pb2.Mount(type="bind", source=str(hawserd.base), options=["rbind", "ro"])]
    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        stub = diff_pb2_grpc.DiffStub(channel)
        with pytest.raises(grpc.RpcError) as failed:
            stub.Diff(diff_pb2.DiffRequest(left=[], right=outside), metadata=NS)
        assert failed.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # type: ignore[attr-defined]
        with pytest.raises(grpc.RpcError) as failed:
            stub.Diff(diff_pb2.DiffRequest(right=outside))
        assert failed.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # type: ignore[attr-defined]
