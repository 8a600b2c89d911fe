"""One store, three views: ``ctr images pull`` through hawserd's containerd
API (ctr resolves and fetches itself, writing through Content.Write, and
unpacks through Snapshots and Diff.Apply), then hawser lists and runs the
image; what hawser pulled, ctr lists."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry

CTR = shutil.which("ctr") or "/usr/bin/ctr"


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The OCI image spec's ChainIDs of a layer stack."""
    chain = [diff_ids[0]]
    for diff_id in diff_ids[1:]:
        chain.append("sha256:" + hashlib.sha256(f"{chain[-1]} {diff_id}".encode()).hexdigest())
    return chain


def ctr(hawserd: Hawserd, *args: str, namespace: str = "default",
        check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", namespace,
                           "--timeout", "60s", *args], capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_ctr_pulls_hawser_runs(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage]) -> None:
    ref, built = busybox
    ctr(hawserd, "images", "pull", "--plain-http", ref)
    listed = {line.split()[0]: line.split() for line in ctr(hawserd, "images", "ls").stdout.splitlines()[1:]}
    assert ref in listed and str(built.manifest_desc.digest) in listed[ref]
    ctr(hawserd, "images", "check")
    # Unpacked through Snapshots and Diff.Apply: one committed snapshot per layer, named by chain id.
    assert len(built.diff_ids) == 3
    committed = {line.split()[0] for line in ctr(hawserd, "snapshots", "ls").stdout.splitlines()[1:]}
    assert set(chain_ids(built.diff_ids)) <= committed

    images = json.loads(hawserd.cli("images", "--format", "json").stdout)
    assert [i["name"] for i in images] == [ref] and images[0]["digest"] == str(built.manifest_desc.digest)
    assert hawserd.cli("run", "--rm", ref, "echo", "pulled by ctr").stdout == "pulled by ctr\n"

    ctr(hawserd, "images", "rm", "--sync", ref)
    assert json.loads(hawserd.cli("images", "--format", "json").stdout) == []


def test_ctr_export_and_import_round_trip(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage],
                                          tmp_path: Path) -> None:
    """``ctr images export`` reads through Images and Content; ``ctr images
    import`` writes through Content.Write and Images.Create and unpacks: the
    same digests come back, and hawser runs the imported image."""
    ref, built = busybox
    hawserd.plain_http(registry.host)
    hawserd.cli("pull", "--plain-http", "-q", ref)  # pulled by hawser, exported by ctr
    archive = tmp_path / "busybox.tar"
    ctr(hawserd, "images", "export", str(archive), ref)
    with tarfile.open(archive) as tar:
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
        names = tar.getnames()
    assert index["manifests"][0]["digest"] == str(built.manifest_desc.digest)
    assert {f"blobs/sha256/{d.digest.encoded}" for d, _ in built.layers} <= set(names)

    ctr(hawserd, "images", "import", "--index-name", "127.0.0.1/imported/busybox:1", str(archive), namespace="other")
    listed = ctr(hawserd, "images", "ls", namespace="other").stdout
    assert str(built.manifest_desc.digest) in listed
    assert hawserd.cli("-n", "other", "run", "--rm", ref, "echo", "imported").stdout == "imported\n"
    ctr(hawserd, "images", "rm", "--sync", ref, "127.0.0.1/imported/busybox:1", namespace="other")


def test_what_the_cri_pulled_ctr_lists_in_k8s_io(hawserd: Hawserd, registry: Registry,
                                                 busybox: tuple[str, BuiltImage]) -> None:
    from cri_api.v1 import api_pb2

    ref, built = busybox
    hawserd.plain_http(registry.host)
    hawserd.client().images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)))
    assert ref in ctr(hawserd, "images", "ls", "-q", namespace="k8s.io").stdout.split()
    assert ref not in ctr(hawserd, "images", "ls", "-q").stdout.split()
    # GC keeps what any front end references: a prune leaves the CRI's image whole.
    hawserd.cli("system", "prune")
    ctr(hawserd, "images", "check", namespace="k8s.io")
    assert str(built.layers[0][0].digest) in ctr(hawserd, "content", "ls", "-q", namespace="k8s.io").stdout


def test_removing_an_image_another_images_index_uses(hawserd: Hawserd, registry: Registry,
                                                     busybox: tuple[str, BuiltImage], push_client: object) -> None:
    """As in containerd: the record goes (``rm --sync`` answers OK), and GC keeps
    the manifest and layers, which the index image still reaches."""
    from tests.support.images import push_index

    ref, built = busybox
    indexed = f"{registry.host}/e2e/indexed:v1"
    push_index(push_client, indexed, [built], tag="v1")
    ctr(hawserd, "images", "pull", "--plain-http", indexed)
    ctr(hawserd, "images", "pull", "--plain-http", ref)
    ctr(hawserd, "images", "rm", "--sync", ref)
    assert ref not in ctr(hawserd, "images", "ls", "-q").stdout.split()
    check = ctr(hawserd, "images", "check").stdout
    assert indexed in check and "complete" in check
    assert hawserd.cli("run", "--rm", indexed, "echo", "still whole").stdout == "still whole\n"
    ctr(hawserd, "images", "rm", "--sync", indexed)
