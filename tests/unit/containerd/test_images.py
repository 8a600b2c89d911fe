"""containerd's images service over a real metadata database in a temporary
directory, called with a fake gRPC context: the conversions of records and
targets, field masks, filters, namespaces, and the codes containerd answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar

import grpc
import pytest
from google.protobuf import field_mask_pb2

from hawser.config import Config
from hawser.containerd._api.services.images.v1 import images_pb2 as pb
from hawser.containerd._api.types import descriptor_pb2
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._filters import parse_filters
from hawser.containerd.images import ImageChange, Images, adaptor, image_update, to_descriptor, to_message
from hawser.errors import InvalidArgument
from hawser.metadata import LABEL_GC_ROOT, Image, Metadata
from hawser.oci import Descriptor, Digest
from tests.support.containerd_fakes import FakeContext, blocking, call, code_of

T = TypeVar("T")

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
D1 = Digest.of(b"one")
D2 = Digest.of(b"two")


def wire(digest: Digest = D1, size: int = 100, media_type: str = MANIFEST, **annotations: str
         ) -> descriptor_pb2.Descriptor:
    return descriptor_pb2.Descriptor(media_type=media_type, digest=str(digest), size=size, annotations=annotations)


# --- pure logic ---------------------------------------------------------------------


def test_a_target_from_the_wire() -> None:
    assert to_descriptor(wire()) == Descriptor(media_type=MANIFEST, digest=D1, size=100)
    # An empty annotation stores nothing: accepted.
    assert to_descriptor(wire(note="")) == Descriptor(media_type=MANIFEST, digest=D1, size=100)


@pytest.mark.parametrize(("target", "match"), [
    (descriptor_pb2.Descriptor(media_type=MANIFEST, digest="sha256:abc", size=1), "Target.Digest"),
    (descriptor_pb2.Descriptor(media_type=MANIFEST, digest="", size=1), "Target.Digest"),
    (descriptor_pb2.Descriptor(media_type=MANIFEST, digest=str(D1), size=0), "Target.Size"),
    (descriptor_pb2.Descriptor(media_type=MANIFEST, digest=str(D1), size=-1), "Target.Size"),
    (descriptor_pb2.Descriptor(media_type="", digest=str(D1), size=1), "Target.MediaType"),
])
def test_bad_targets_are_invalid_arguments(target: descriptor_pb2.Descriptor, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        to_descriptor(target)


def test_target_annotations_are_kept() -> None:
    assert to_descriptor(wire(note="x", empty="")).annotations == {"note": "x"}
    record = Image(namespace="default", name="r.io/a:1", target=Descriptor(MANIFEST, D1, 42, annotations={"n": "1"}),
                   labels={}, created_at=1, updated_at=1)
    assert dict(to_message(record).target.annotations) == {"n": "1"}


def test_a_record_as_containerd_shows_it() -> None:
    record = Image(namespace="default", name="r.io/a:1", target=Descriptor(MANIFEST, D1, 42),
                   labels={LABEL_GC_ROOT: "x", "team": "web"}, created_at=1.5, updated_at=2.25)
    message = to_message(record)
    assert message.name == "r.io/a:1"
    assert (message.target.media_type, message.target.digest, message.target.size) == (MANIFEST, str(D1), 42)
    assert dict(message.labels) == {"containerd.io/gc.root": "x", "team": "web"}
    assert message.created_at.ToNanoseconds() == 1_500_000_000
    assert message.updated_at.ToNanoseconds() == 2_250_000_000


@pytest.mark.parametrize(("text", "found"), [
    ("name==r.io/a:1", True), ("name~=^r\\.io/", True), ("name==r.io/b", False),
    (f"target.digest=={D1}", True), (f"target.digest=={D2}", False),
    (f"target.mediatype=={MANIFEST}", True), (f"target.mediatype=={INDEX}", False),
    ("labels.team==web", True), ("labels.team", True), ("labels.tier", False),
    ("labels.\"containerd.io/gc.root\"==x", True), ("annotations.x", False), ("target", False),
    ("name==r.io/a:1,labels.team!=web", False),
])
def test_filters_over_containerds_fields(text: str, found: bool) -> None:
    message = to_message(Image(namespace="default", name="r.io/a:1", target=Descriptor(MANIFEST, D1, 42),
                               labels={LABEL_GC_ROOT: "x", "team": "web"}, created_at=1, updated_at=1))
    assert parse_filters([text]).matches(adaptor(message)) is found


CURRENT = Image(namespace="default", name="a", target=Descriptor(MANIFEST, D1, 42, annotations={"a": "1"}),
                labels={}, created_at=1, updated_at=1)


def test_no_mask_replaces_labels_and_target() -> None:
    image = pb.Image(name="a", labels={"containerd.io/gc.root": "1", "k": "v", "gone": ""}, target=wire(D2))
    assert image_update([], image, CURRENT) == ImageChange(target=Descriptor(MANIFEST, D2, 100),
                                                  labels={LABEL_GC_ROOT: "1", "k": "v"}, merge=False)
    with pytest.raises(InvalidArgument, match="Target"):
        image_update([], pb.Image(name="a"), CURRENT)  # a full replace needs a whole target


def test_mask_paths() -> None:
    image = pb.Image(name="a", labels={"k": "v"}, target=wire(D2))
    assert image_update(["labels"], image, CURRENT) == ImageChange(labels={"k": "v"})
    assert image_update(["labels.k", "labels.gone"], image, CURRENT) == ImageChange(labels={"k": "v", "gone": ""}, merge=True)
    assert image_update(["target"], image, CURRENT) == ImageChange(target=Descriptor(MANIFEST, D2, 100))
    assert image_update(["target", "labels.k"], image, CURRENT) == ImageChange(
        target=Descriptor(MANIFEST, D2, 100), labels={"k": "v"}, merge=True)
    # Annotations are the target's: all of them, or one key (an empty value removing it).
    assert image_update(["annotations"], pb.Image(name="a", target=wire(x="1")), CURRENT) == ImageChange(
        target=Descriptor(MANIFEST, D1, 42, annotations={"x": "1"}))
    assert image_update(["annotations.x", "annotations.a"], pb.Image(name="a", target=wire(x="1")),
                        CURRENT) == ImageChange(target=Descriptor(MANIFEST, D1, 42, annotations={"x": "1"}))
    # The target is only checked when it is written.
    assert image_update(["labels.k"], pb.Image(name="a", labels={"k": "v"}), CURRENT) == ImageChange(
        labels={"k": "v"}, merge=True)


@pytest.mark.parametrize("path", ["name", "created_at", "target.digest", "labelsx", "labels."])
def test_other_paths_are_invalid(path: str) -> None:
    with pytest.raises(InvalidArgument, match="cannot update"):
        image_update(["labels.k", path], pb.Image(name="a", target=wire()), CURRENT)


# --- the service, with a fake context -------------------------------------------------


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[SimpleNamespace]:
    metadata = Metadata(tmp_path / "metadata.db")
    store = SimpleNamespace(metadata=metadata, config=Config())  # no signature policy
    try:
        yield SimpleNamespace(store=store, service=Images(ContainerdDeps(store=store, blocking=blocking)))  # type: ignore[arg-type]
    finally:
        metadata.close()




def create(parts: SimpleNamespace, name: str, *, namespace: str = "default", **labels: str) -> pb.Image:
    request = pb.CreateImageRequest(image=pb.Image(name=name, labels=labels, target=wire()))
    return call(parts.service.Create(request, FakeContext(namespace))).image


def test_create_get_list_delete_per_namespace(parts: SimpleNamespace) -> None:
    made = create(parts, "r.io/a:1", **{"containerd.io/gc.root": "x", "empty": ""})
    assert dict(made.labels) == {"containerd.io/gc.root": "x"}
    assert made.created_at == made.updated_at and made.created_at.seconds > 0
    # Stored under hawser's GC label, as hawser's GC reads it.
    assert dict(parts.store.metadata.images.get("r.io/a:1").labels) == {LABEL_GC_ROOT: "x"}
    got = call(parts.service.Get(pb.GetImageRequest(name="r.io/a:1"), FakeContext())).image
    assert got == made
    create(parts, "r.io/b:1", namespace="other")
    listed = call(parts.service.List(pb.ListImagesRequest(), FakeContext())).images
    assert [i.name for i in listed] == ["r.io/a:1"]
    assert code_of(parts.service.Get(pb.GetImageRequest(name="r.io/b:1"), FakeContext())) \
        == grpc.StatusCode.NOT_FOUND
    call(parts.service.Delete(pb.DeleteImageRequest(name="r.io/a:1"), FakeContext()))
    assert code_of(parts.service.Delete(pb.DeleteImageRequest(name="r.io/a:1"), FakeContext())) \
        == grpc.StatusCode.NOT_FOUND
    assert [i.name for i in call(parts.service.List(pb.ListImagesRequest(), FakeContext("other"))).images] \
        == ["r.io/b:1"]


def test_list_filters(parts: SimpleNamespace) -> None:
    create(parts, "r.io/a:1", team="web")
    create(parts, "r.io/b:1", team="db")

    def names(*filters: str) -> list[str]:
        return [i.name for i in call(parts.service.List(pb.ListImagesRequest(filters=filters), FakeContext())).images]

    assert names("labels.team==web") == ["r.io/a:1"]
    assert names("labels.team==web", "name==r.io/b:1") == ["r.io/a:1", "r.io/b:1"]
    assert names(f"target.digest=={D1}") == ["r.io/a:1", "r.io/b:1"]
    assert code_of(parts.service.List(pb.ListImagesRequest(filters=["name~=("]), FakeContext())) \
        == grpc.StatusCode.INVALID_ARGUMENT


def test_codes(parts: SimpleNamespace) -> None:
    create(parts, "r.io/a:1")
    again = pb.CreateImageRequest(image=pb.Image(name="r.io/a:1", target=wire()))
    assert code_of(parts.service.Create(again, FakeContext())) == grpc.StatusCode.ALREADY_EXISTS
    for image in (pb.Image(name="", target=wire()), pb.Image(name="has space", target=wire()),
                  pb.Image(name="r.io/c:1", target=wire(size=0)), pb.Image(name="r.io/c:1")):
        assert code_of(parts.service.Create(pb.CreateImageRequest(image=image), FakeContext())) \
            == grpc.StatusCode.INVALID_ARGUMENT, image
    annotated = pb.CreateImageRequest(image=pb.Image(name="r.io/c:1", target=wire(note="x")))
    made = call(parts.service.Create(annotated, FakeContext()))
    assert dict(made.image.target.annotations) == {"note": "x"}
    for request in (parts.service.Get(pb.GetImageRequest(name="r.io/a:1"), FakeContext(None)),
                    parts.service.List(pb.ListImagesRequest(), FakeContext(None)),
                    parts.service.Create(again, FakeContext(None)),
                    parts.service.Delete(pb.DeleteImageRequest(name="r.io/a:1"), FakeContext(None))):
        assert code_of(request) == grpc.StatusCode.FAILED_PRECONDITION
    missing = pb.UpdateImageRequest(image=pb.Image(name="r.io/none:1", target=wire()))
    assert code_of(parts.service.Update(missing, FakeContext())) == grpc.StatusCode.NOT_FOUND
    nameless = pb.UpdateImageRequest(image=pb.Image(target=wire()))
    assert code_of(parts.service.Update(nameless, FakeContext())) == grpc.StatusCode.INVALID_ARGUMENT


def test_update_by_field_mask(parts: SimpleNamespace) -> None:
    made = create(parts, "r.io/a:1", team="web", tier="front")

    def update(image: pb.Image, *paths: str) -> pb.Image:
        request = pb.UpdateImageRequest(image=image, update_mask=field_mask_pb2.FieldMask(paths=paths))
        return call(parts.service.Update(request, FakeContext())).image

    one = update(pb.Image(name="r.io/a:1", labels={"team": "db", "containerd.io/gc.root": "y"}),
                 "labels.team", "labels.tier", "labels.containerd.io/gc.root")
    assert dict(one.labels) == {"team": "db", "containerd.io/gc.root": "y"}
    assert one.target == made.target and one.created_at == made.created_at
    assert dict(parts.store.metadata.images.get("r.io/a:1").labels) == {"team": "db", LABEL_GC_ROOT: "y"}
    moved = update(pb.Image(name="r.io/a:1", target=wire(D2, 7, INDEX)), "target")
    assert (moved.target.digest, moved.target.size, moved.target.media_type) == (str(D2), 7, INDEX)
    assert dict(moved.labels) == dict(one.labels)
    replaced = update(pb.Image(name="r.io/a:1", labels={"only": "this"}), "labels")
    assert dict(replaced.labels) == {"only": "this"} and replaced.target == moved.target
    # No mask: everything the request holds, as containerd replaces it.
    whole = update(pb.Image(name="r.io/a:1", target=wire(D1, 9)))
    assert dict(whole.labels) == {} and (whole.target.digest, whole.target.size) == (str(D1), 9)
    bad = pb.UpdateImageRequest(image=pb.Image(name="r.io/a:1", target=wire(size=0)),
                                update_mask=field_mask_pb2.FieldMask(paths=["target"]))
    assert code_of(parts.service.Update(bad, FakeContext())) == grpc.StatusCode.INVALID_ARGUMENT
    other = pb.UpdateImageRequest(image=pb.Image(name="r.io/a:1"), update_mask=field_mask_pb2.FieldMask(paths=["name"]))
    assert code_of(parts.service.Update(other, FakeContext())) == grpc.StatusCode.INVALID_ARGUMENT


def test_records_merge_labels_in_one_update(parts: SimpleNamespace) -> None:
    records = parts.store.metadata.images
    records.create("r.io/a:1", Descriptor(MANIFEST, D1, 1), {"a": "1", "b": "2"})
    assert dict(records.update("r.io/a:1", labels={"b": "", "c": "3"}, merge=True).labels) == {"a": "1", "c": "3"}
    assert dict(records.update("r.io/a:1", labels={"z": "9"}).labels) == {"z": "9"}
