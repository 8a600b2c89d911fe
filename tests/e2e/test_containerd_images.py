"""containerd's images service on hawserd's second socket, driven by Debian's
real ``ctr`` (and the generated stubs for the codes): the images hawser
pulled, listed per namespace; tags made by ctr that hawser lists and runs;
removal, with ``--sync`` collecting what only the image held."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator

import grpc
import pytest

from hawser.containerd._api.services.images.v1 import images_pb2 as pb
from hawser.containerd._api.services.images.v1 import images_pb2_grpc
from hawser.containerd._api.types import descriptor_pb2
from hawser.oci import Digest
from tests.e2e.helpers import small_image, status_code
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage, push_image
from tests.support.registry_fixtures import Registry

CTR = shutil.which("ctr") or "/usr/bin/ctr"
NS = "team"


def ctr(hawserd: Hawserd, *args: str, namespace: str = NS, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", namespace,
                           "--timeout", "20s", *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def human(size: float) -> str:
    """A size as ctr prints one (go-units' CustomSize, "%02.1f %s", base 1024)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    i = 0
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:02.1f} {units[i]}"


def total_size(image: BuiltImage) -> int:
    """What ctr's SIZE column adds up: manifest, config and layers."""
    return image.manifest_desc.size + image.config_desc.size + sum(desc.size for desc, _ in image.layers)


def listed(hawserd: Hawserd, *filters: str, namespace: str = NS) -> dict[str, list[str]]:
    """``ctr images ls`` by name: type, digest, size (two words), platforms, labels."""
    lines = ctr(hawserd, "images", "ls", *filters, namespace=namespace).stdout.splitlines()
    assert lines[0].split() == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def names(hawserd: Hawserd, *filters: str, namespace: str = NS) -> list[str]:
    return ctr(hawserd, "images", "ls", "-q", *filters, namespace=namespace).stdout.split()


def hawser_images(hawserd: Hawserd, namespace: str = NS) -> dict[str, dict[str, object]]:
    """``hawser -n NAMESPACE images``, by name."""
    rows = json.loads(hawserd.cli("-n", namespace, "images", "--format", "json").stdout)
    return {row["name"]: row for row in rows}


def has_blob(hawserd: Hawserd, digest: str) -> bool:
    d = Digest(digest)
    return (hawserd.root / "content" / "blobs" / d.algorithm / d.encoded).exists()


def blobs_of(image: BuiltImage) -> set[str]:
    return {str(image.manifest_desc.digest), str(image.config_desc.digest),
            *(str(desc.digest) for desc, _ in image.layers)}


@pytest.fixture
def pulled(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage]) -> tuple[str, BuiltImage]:
    ref, image = busybox
    hawserd.plain_http(registry.host)
    hawserd.cli("-n", NS, "pull", "--plain-http", "-q", ref)
    return ref, image


@pytest.fixture
def stub(hawserd: Hawserd) -> Iterator[images_pb2_grpc.ImagesStub]:
    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        yield images_pb2_grpc.ImagesStub(channel)


def meta(namespace: str = NS) -> tuple[tuple[str, str], ...]:
    return (("containerd-namespace", namespace),)


def test_images_is_a_plugin(hawserd: Hawserd) -> None:
    rows = [line.split() for line in ctr(hawserd, "plugins", "ls").stdout.splitlines()[1:]]
    assert {(row[0], row[1]): row[-1] for row in rows}[("io.containerd.grpc.v1", "images")] == "ok"


def test_ls_lists_what_hawser_pulled_in_its_namespace(hawserd: Hawserd, pulled: tuple[str, BuiltImage],
                                                      stub: images_pb2_grpc.ImagesStub) -> None:
    ref, image = pulled
    rows = listed(hawserd)
    assert list(rows) == [ref]
    media_type, digest, number, unit, platforms, labels = rows[ref]
    assert (media_type, digest) == (image.manifest_desc.media_type, str(image.manifest_desc.digest))
    assert f"{number} {unit}" == human(total_size(image))
    assert platforms == f"{image.platform.os}/{image.platform.architecture}" and labels == "-"
    assert names(hawserd) == [ref]
    # The exact target, from the API itself.
    got = stub.Get(pb.GetImageRequest(name=ref), metadata=meta()).image
    assert (got.target.digest, got.target.size, got.target.media_type) == (
        str(image.manifest_desc.digest), image.manifest_desc.size, image.manifest_desc.media_type)
    assert got.created_at.seconds > 0 and got.updated_at.seconds >= got.created_at.seconds
    # ctr's filters reach the server.
    assert names(hawserd, f"name=={ref}") == [ref]
    assert names(hawserd, "name==nothing") == []
    assert names(hawserd, f"target.digest=={image.manifest_desc.digest}") == [ref]
    assert names(hawserd, f"target.mediatype=={image.manifest_desc.media_type}", "name~=busybox") == [ref]
    assert names(hawserd, "labels.team") == []
    bad = ctr(hawserd, "images", "ls", "name~=(", check=False)
    assert bad.returncode != 0 and "invalid" in bad.stderr
    # Other namespaces see none of it.
    assert names(hawserd, namespace="default") == []
    assert listed(hawserd, namespace="other") == {}


def test_tag_makes_an_image_hawser_lists_and_runs(hawserd: Hawserd, pulled: tuple[str, BuiltImage],
                                                   registry: Registry) -> None:
    ref, image = pulled
    dst = f"{registry.host}/test/copy:v1"
    assert ctr(hawserd, "images", "tag", ref, dst).stdout.split() == [dst]
    assert names(hawserd) == sorted([ref, dst])
    assert listed(hawserd)[dst][:2] == [image.manifest_desc.media_type, str(image.manifest_desc.digest)]
    copy = hawser_images(hawserd)[dst]
    assert copy["digest"] == str(image.manifest_desc.digest) and copy["id"] == str(image.config_desc.digest)
    assert dst not in hawser_images(hawserd, "default")
    out = hawserd.cli("-n", NS, "run", "--rm", dst, "echo", "hi").stdout
    assert out.strip() == "hi"
    again = ctr(hawserd, "images", "tag", ref, dst, check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    assert ctr(hawserd, "images", "tag", "--force", ref, dst).stdout.split() == [dst]
    missing = ctr(hawserd, "images", "tag", "nothing:here", dst, check=False)
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_label_sets_and_clears_labels(hawserd: Hawserd, pulled: tuple[str, BuiltImage]) -> None:
    ref, _ = pulled
    out = ctr(hawserd, "images", "label", ref, "team=web", "tier=front").stdout.strip()
    assert set(out.split(",")) == {"team=web", "tier=front"}
    assert listed(hawserd)[ref][-1] == "team=web,tier=front"
    assert names(hawserd, "labels.team==web") == [ref]
    ctr(hawserd, "images", "label", ref, "tier=")
    assert listed(hawserd)[ref][-1] == "team=web"


def test_rm_removes_the_record_and_sync_collects_what_only_it_held(
        hawserd: Hawserd, pulled: tuple[str, BuiltImage], registry: Registry, push_client: object) -> None:
    ref, image = pulled
    own_ref = f"{registry.host}/test/images-own:v1"
    own = small_image("held by one image only")
    push_image(push_client, own_ref, own, tag="v1")
    hawserd.cli("-n", NS, "pull", "--plain-http", "-q", own_ref)
    dst = f"{registry.host}/test/copy:v1"
    ctr(hawserd, "images", "tag", ref, dst)

    # Without --sync: the record goes, the blobs wait for the next GC (the source still names them anyway).
    assert ctr(hawserd, "images", "rm", dst).stdout.split() == [dst]
    assert dst not in names(hawserd) and dst not in hawser_images(hawserd)
    assert all(has_blob(hawserd, d) for d in blobs_of(image))
    gone = ctr(hawserd, "images", "rm", dst, check=False)
    assert "not found" in gone.stderr  # ctr reports NOT_FOUND and carries on

    # --sync: what only the removed image held is collected before ctr's answer.
    assert all(has_blob(hawserd, d) for d in blobs_of(own))
    assert ctr(hawserd, "images", "rm", "--sync", own_ref).stdout.split() == [own_ref]
    assert not any(has_blob(hawserd, d) for d in blobs_of(own) - blobs_of(image))
    assert all(has_blob(hawserd, d) for d in blobs_of(image))
    content = ctr(hawserd, "content", "ls", "-q").stdout.split()
    assert str(own.manifest_desc.digest) not in content and str(image.manifest_desc.digest) in content
    assert names(hawserd) == [ref]


def test_check_reads_the_images_content(hawserd: Hawserd, pulled: tuple[str, BuiltImage]) -> None:
    ref, image = pulled
    lines = ctr(hawserd, "images", "check").stdout.splitlines()
    assert lines[0].split() == ["REF", "TYPE", "DIGEST", "STATUS", "SIZE", "UNPACKED"]
    row = lines[1].split()
    n = 1 + len(image.layers)  # the manifest's children: config and layers
    assert row[:5] == [ref, image.manifest_desc.media_type, str(image.manifest_desc.digest), "complete", f"({n}/{n})"]
    children = human(total_size(image) - image.manifest_desc.size)
    assert " ".join(row[5:-1]) == f"{children}/{children}"
    # Unpacked: ctr stats the config's chain id through the snapshots service: hawser's pull made it.
    assert row[-1] == "true"
    assert ctr(hawserd, "images", "check", "-q").stdout.split() == [ref]
    assert ctr(hawserd, "images", "check", "-q", namespace="other").stdout.split() == []


def test_codes(hawserd: Hawserd, pulled: tuple[str, BuiltImage], stub: images_pb2_grpc.ImagesStub) -> None:
    ref, image = pulled
    target = descriptor_pb2.Descriptor(media_type=image.manifest_desc.media_type,
                                       digest=str(image.manifest_desc.digest), size=image.manifest_desc.size)
    assert status_code(stub.Get, pb.GetImageRequest(name="nothing:here"), metadata=meta())[0] \
        == grpc.StatusCode.NOT_FOUND
    code, message = status_code(stub.Create, pb.CreateImageRequest(image=pb.Image(name=ref, target=target)),
                                metadata=meta())
    assert code == grpc.StatusCode.ALREADY_EXISTS and ref in message
    for bad in (pb.Image(name="", target=target), pb.Image(name="has space", target=target),
                pb.Image(name="r.io/x:1"),
                pb.Image(name="r.io/x:1", target=descriptor_pb2.Descriptor(media_type="m", digest="sha256:x", size=1)),
                pb.Image(name="r.io/x:1", target=descriptor_pb2.Descriptor(media_type="", digest=target.digest,
                                                                           size=1))):
        assert status_code(stub.Create, pb.CreateImageRequest(image=bad), metadata=meta())[0] \
            == grpc.StatusCode.INVALID_ARGUMENT, bad
    assert status_code(stub.Get, pb.GetImageRequest(name=ref))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code(stub.List, pb.ListImagesRequest())[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code(stub.Delete, pb.DeleteImageRequest(name="nothing:here"), metadata=meta())[0] \
        == grpc.StatusCode.NOT_FOUND
    # Created through the API, in another namespace: there only.
    made = stub.Create(pb.CreateImageRequest(image=pb.Image(name=ref, target=target, labels={"a": "b"})),
                       metadata=meta("other")).image
    assert made.name == ref and dict(made.labels) == {"a": "b"}
    assert names(hawserd, namespace="other") == [ref]
