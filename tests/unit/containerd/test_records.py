"""containerd's Container messages as hawser's records and back (``_records``),
the Update field paths as containerd's metadata applies them, and the
containers service over a real store in a temporary directory, called with a
fake gRPC context: the codes containerd answers."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import any_pb2, field_mask_pb2

from hawser.config import Config
from hawser.containerd._api.services.containers.v1 import containers_pb2 as pb
from hawser.containerd._deps import ContainerdDeps
from hawser.containerd._filters import parse_filters
from hawser.containerd._records import (
    SPEC_TYPE_URL,
    from_proto,
    is_client_stdio,
    oci_spec,
    runtime_name,
    to_proto,
)
from hawser.containerd.containers import Containers, adaptor, container_update
from hawser.errors import FailedPrecondition, InvalidArgument
from hawser.metadata import Container
from hawser.store import Store
from tests.support.containerd_fakes import FakeContext, blocking, call, code_of

T = TypeVar("T")

SPEC = {"ociVersion": "1.0.2", "process": {"args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"}}
OPTIONS = any_pb2.Any(type_url="containerd.runc.v1.Options", value=b"\x0a\x04runc")


def spec_any(spec: dict[str, Any] | None = None) -> any_pb2.Any:
    return any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps(spec or SPEC).encode())


def message(id_: str = "web", **fields: Any) -> pb.Container:
    base: dict[str, Any] = dict(id=id_, image="r.io/app:1", snapshotter="native", snapshot_key=id_,
                                runtime=pb.Container.Runtime(name="io.containerd.runc.v2", options=OPTIONS),
                                spec=spec_any(), labels={"team": "web", "empty": ""})
    base.update(fields)
    return pb.Container(**base)


def hawser_made(id_: str = "a" * 64) -> Container:
    return Container(namespace="k8s.io", id=id_, name="nginx", image="r.io/app:1", image_id="sha256:" + "b" * 64,
                     snapshotter="overlayfs", snapshot_key=f"container-{id_}", config={"args": ["nginx"]},
                     labels={"io.kubernetes.pod.name": "p"}, created_at=5.0)


# --- the record contract --------------------------------------------------------------


def test_a_message_as_a_record() -> None:
    c = message(extensions={"ext": any_pb2.Any(type_url="t", value=b"\x01")})
    record = from_proto("team", c, 12.5)
    assert (record.namespace, record.id, record.name, record.image, record.image_id) == (
        "team", "web", "web", "r.io/app:1", "")
    assert (record.snapshotter, record.snapshot_key, record.created_at) == ("native", "web", 12.5)
    assert dict(record.labels) == {"team": "web"}
    assert dict(record.config) == {"containerd": {
        "runtime": {"name": "io.containerd.runc.v2",
                    "options": {"type_url": "containerd.runc.v1.Options",
                                "value": base64.b64encode(b"\x0a\x04runc").decode()}},
        "spec": SPEC, "spec_type_url": SPEC_TYPE_URL,
        "extensions": {"ext": {"type_url": "t", "value": "AQ=="}},
        "updated_at": 12.5}}
    # Plain JSON: what the metadata store writes.
    assert json.loads(json.dumps(dict(record.config))) == dict(record.config)
    assert is_client_stdio(record) and runtime_name(record) == "io.containerd.runc.v2"
    assert oci_spec(record) == SPEC


def test_a_record_back_as_the_message() -> None:
    c = message(runtime=pb.Container.Runtime(name="io.containerd.runc.v1"))
    back = to_proto(from_proto("team", c, 12.5))
    assert back.id == "web" and back.image == "r.io/app:1" and dict(back.labels) == {"team": "web"}
    assert back.runtime.name == "io.containerd.runc.v1" and not back.runtime.HasField("options")
    assert back.spec.type_url == SPEC_TYPE_URL and json.loads(back.spec.value) == SPEC
    assert (back.snapshotter, back.snapshot_key) == ("native", "web")
    assert back.created_at.ToNanoseconds() == back.updated_at.ToNanoseconds() == 12_500_000_000
    with_options = to_proto(from_proto("team", message(), 1.0))
    assert with_options.runtime.options == OPTIONS


def test_a_container_hawser_made(tmp_path: Path) -> None:
    record = hawser_made()
    assert not is_client_stdio(record) and runtime_name(record) == "io.containerd.runc.v2"
    assert oci_spec(record) is None and oci_spec(record, bundle=str(tmp_path)) is None
    (tmp_path / "config.json").write_text(json.dumps(SPEC))
    assert oci_spec(record, bundle=str(tmp_path)) == SPEC
    shown = to_proto(record, bundle=str(tmp_path))
    assert json.loads(shown.spec.value) == SPEC and shown.spec.type_url == SPEC_TYPE_URL
    assert shown.runtime.name == "io.containerd.runc.v2" and shown.updated_at == shown.created_at
    assert dict(shown.labels) == {"io.kubernetes.pod.name": "p"} and shown.snapshotter == "overlayfs"
    assert not to_proto(record).HasField("spec")


@pytest.mark.parametrize(("c", "match"), [
    (message(""), "identifier '' must not be empty"),
    (message("bad id"), "container.ID"),
    (message("x" * 77), "container.ID"),
    (message(runtime=pb.Container.Runtime()), "Runtime.Name must be set"),
    (message(runtime=pb.Container.Runtime(name="io.containerd.kata.v2")), "io.containerd.runc.v2"),
    (pb.Container(id="x", runtime=pb.Container.Runtime(name="io.containerd.runc.v2")), "Spec must be set"),
    (message(spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=b"\x00not json")), "not JSON"),
    (message(spec=any_pb2.Any(type_url=SPEC_TYPE_URL, value=b"[1]")), "not an OCI runtime spec"),
    (message(snapshotter=""), "Snapshotter must be set"),
    (message(extensions={"": any_pb2.Any()}), "Extension keys"),
])
def test_invalid_containers(c: pb.Container, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        from_proto("default", c, 1.0)


@pytest.mark.parametrize(("text", "found"), [
    ("id==web", True), ("id==db", False), ("image==r.io/app:1", True), ("runtime.name==io.containerd.runc.v2", True),
    ("runtime.name~=kata", False), ("labels.team==web", True), ("labels.team", True), ("labels.empty", False),
    ("snapshotter==native", True), ("id==web,labels.team==db", False),
])
def test_filters_over_containerds_fields(text: str, found: bool) -> None:
    assert parse_filters([text]).matches(adaptor(to_proto(from_proto("default", message(), 1.0)))) is found


# --- Update's field paths -------------------------------------------------------------


def current() -> Container:
    return from_proto("default", message(extensions={"keep": any_pb2.Any(type_url="k", value=b"1")}), 1.0)


def test_no_paths_replace_labels_spec_extensions_image_and_key() -> None:
    new = message(image="r.io/app:2", snapshot_key="other", labels={"x": "1", "e": ""}, spec=spec_any({"a": 1}))
    change = container_update([], new, current(), now=9.0)
    assert (change.image, change.snapshot_key, change.labels, change.merge) == ("r.io/app:2", "other", {"x": "1"},
                                                                                False)
    assert change.containerd == {"spec": {"a": 1}, "spec_type_url": SPEC_TYPE_URL, "extensions": {},
                                 "updated_at": 9.0}


@pytest.mark.parametrize(("new", "match"), [
    (message(snapshotter="overlayfs"), "Snapshotter field is immutable"),
    (message(runtime=pb.Container.Runtime(name="io.containerd.runc.v1")), "Runtime.Name field is immutable"),
    (message(spec=any_pb2.Any()), "Spec must be set"),
])
def test_no_paths_refuse_immutable_fields_and_no_spec(new: pb.Container, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        container_update([], new, current(), now=9.0)


def test_label_paths() -> None:
    new = message(labels={"a": "1", "b": ""})
    change = container_update(["labels.a", "labels.b", "labels.c"], new, current(), now=9.0)
    assert (change.labels, change.merge) == ({"a": "1", "b": "", "c": ""}, True)
    assert change.image is None and change.snapshot_key is None and change.containerd == {"updated_at": 9.0}
    whole = container_update(["labels", "labels.a"], new, current(), now=9.0)
    assert (whole.labels, whole.merge) == ({"a": "1"}, False)


def test_one_path_each() -> None:
    new = message(image="r.io/app:3", snapshot_key="k2", spec=spec_any({"b": 2}),
                  extensions={"new": any_pb2.Any(type_url="n", value=b"2")})
    assert container_update(["image"], new, current(), now=9.0).image == "r.io/app:3"
    assert container_update(["snapshotkey"], new, current(), now=9.0).snapshot_key == "k2"
    spec = container_update(["spec"], new, current(), now=9.0).containerd
    assert spec is not None and spec["spec"] == {"b": 2}
    ext = container_update(["extensions.new", "extensions.keep"], new, current(), now=9.0).containerd
    assert ext is not None and ext["extensions"] == {"new": {"type_url": "n", "value": "Mg=="}}
    ext = container_update(["extensions.new"], new, current(), now=9.0).containerd
    assert ext is not None and set(ext["extensions"]) == {"keep", "new"}
    with pytest.raises(InvalidArgument, match="Snapshotter must be set"):
        container_update(["snapshotkey"], new, replace_snapshotter(current(), ""), now=9.0)


def replace_snapshotter(record: Container, snapshotter: str) -> Container:
    from hawser._dataclass import replace

    return replace(record, snapshotter=snapshotter)


@pytest.mark.parametrize("path", ["runtime", "snapshotter", "id", "created_at", "labels_", "spec.process"])
def test_other_paths_are_invalid(path: str) -> None:
    with pytest.raises(InvalidArgument, match=f"cannot update '{path}' field"):
        container_update([path], message(), current(), now=9.0)


def test_a_container_hawser_made_keeps_its_bundle() -> None:
    record = hawser_made()
    same = message(record.id, snapshotter="overlayfs", snapshot_key=record.snapshot_key, spec=spec_any(SPEC),
                   image="r.io/app:2", labels={"x": "y"})
    change = container_update([], same, record, now=9.0, current_spec=SPEC)
    # Never a "containerd" config: that would make it look made through the API.
    assert change.containerd is None and change.snapshot_key is None
    assert (change.image, change.labels) == ("r.io/app:2", {"x": "y"})
    with pytest.raises(FailedPrecondition, match="its spec is its bundle's"):
        container_update(["spec"], message(spec=spec_any({"other": 1})), record, now=9.0, current_spec=SPEC)
    with pytest.raises(FailedPrecondition, match="snapshot key"):
        container_update(["snapshotkey"], message(), record, now=9.0)


# --- the service, with a fake context ---------------------------------------------------


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[SimpleNamespace]:
    store = Store.open(Config(root=str(tmp_path / "root"), state=str(tmp_path / "state"), snapshotter="native"))
    try:
        yield SimpleNamespace(store=store, service=Containers(ContainerdDeps(store=store, blocking=blocking)))
    finally:
        store.close()




def create(parts: SimpleNamespace, c: pb.Container, namespace: str = "default") -> pb.Container:
    return call(parts.service.Create(pb.CreateContainerRequest(container=c), FakeContext(namespace))).container


def test_create_get_list_delete_per_namespace(parts: SimpleNamespace) -> None:
    made = create(parts, message("web"))
    assert made.id == "web" and json.loads(made.spec.value) == SPEC and dict(made.labels) == {"team": "web"}
    record = parts.store.metadata.containers.get("web")
    assert record.name == "web" and record.config["containerd"]["spec"] == SPEC
    assert call(parts.service.Get(pb.GetContainerRequest(id="web"), FakeContext())).container == made
    create(parts, message("db", labels={"team": "db"}), namespace="other")
    listed = call(parts.service.List(pb.ListContainersRequest(), FakeContext())).containers
    assert [c.id for c in listed] == ["web"]
    context = FakeContext("other")
    call(parts.service.ListStream(pb.ListContainersRequest(filters=["labels.team==db"]), context))
    assert [m.container.id for m in context.written] == ["db"]
    assert code_of(parts.service.Get(pb.GetContainerRequest(id="db"), FakeContext())) == grpc.StatusCode.NOT_FOUND
    call(parts.service.Delete(pb.DeleteContainerRequest(id="web"), FakeContext()))
    assert code_of(parts.service.Delete(pb.DeleteContainerRequest(id="web"), FakeContext())) \
        == grpc.StatusCode.NOT_FOUND


def test_codes(parts: SimpleNamespace) -> None:
    create(parts, message("web"))
    service = parts.service
    assert code_of(service.Create(pb.CreateContainerRequest(container=message("web")), FakeContext())) \
        == grpc.StatusCode.ALREADY_EXISTS
    for bad in (message(""), message(runtime=pb.Container.Runtime(name="io.containerd.kata.v2")),
                pb.Container(id="x")):
        assert code_of(service.Create(pb.CreateContainerRequest(container=bad), FakeContext())) \
            == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(service.Create(pb.CreateContainerRequest(container=message("x")), FakeContext(None))) \
        == grpc.StatusCode.FAILED_PRECONDITION
    assert code_of(service.List(pb.ListContainersRequest(filters=['labels."unterminated']), FakeContext())) \
        == grpc.StatusCode.INVALID_ARGUMENT
    update = pb.UpdateContainerRequest(container=message("nope"))
    assert code_of(service.Update(update, FakeContext())) == grpc.StatusCode.NOT_FOUND
    update = pb.UpdateContainerRequest(container=message(""))
    assert code_of(service.Update(update, FakeContext())) == grpc.StatusCode.INVALID_ARGUMENT
    update = pb.UpdateContainerRequest(container=message("web"), update_mask=field_mask_pb2.FieldMask(paths=["runtime"]))
    assert code_of(service.Update(update, FakeContext())) == grpc.StatusCode.INVALID_ARGUMENT


def test_update_labels_and_spec(parts: SimpleNamespace) -> None:
    made = create(parts, message("web"))
    request = pb.UpdateContainerRequest(container=pb.Container(id="web", labels={"x": "1", "team": ""}),
                                        update_mask=field_mask_pb2.FieldMask(paths=["labels.x", "labels.team"]))
    updated = call(parts.service.Update(request, FakeContext())).container
    assert dict(updated.labels) == {"x": "1"} and updated.updated_at.ToNanoseconds() > made.updated_at.ToNanoseconds()
    assert updated.created_at == made.created_at and json.loads(updated.spec.value) == SPEC
    request = pb.UpdateContainerRequest(container=pb.Container(id="web", spec=spec_any({"new": True})),
                                        update_mask=field_mask_pb2.FieldMask(paths=["spec"]))
    updated = call(parts.service.Update(request, FakeContext())).container
    assert json.loads(updated.spec.value) == {"new": True} and dict(updated.labels) == {"x": "1"}
    record = parts.store.metadata.containers.get("web")
    assert record.config["containerd"]["spec"] == {"new": True}
    assert record.config["containerd"]["runtime"]["name"] == "io.containerd.runc.v2"


def test_a_container_with_a_task_is_not_deleted(parts: SimpleNamespace) -> None:
    create(parts, message("web"))
    bundle = Path(parts.store.config.state, "containers", "web")
    os.makedirs(bundle)
    assert code_of(parts.service.Delete(pb.DeleteContainerRequest(id="web"), FakeContext())) \
        == grpc.StatusCode.FAILED_PRECONDITION
    bundle.rmdir()
    call(parts.service.Delete(pb.DeleteContainerRequest(id="web"), FakeContext()))


def test_a_container_hawser_made_is_shown_with_its_bundles_spec(parts: SimpleNamespace) -> None:
    record = hawser_made()
    parts.store.metadata.containers.create(record)
    bundle = Path(parts.store.config.state, "containers", record.id)
    bundle.mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(SPEC))
    shown = call(parts.service.Get(pb.GetContainerRequest(id=record.id), FakeContext("k8s.io"))).container
    assert json.loads(shown.spec.value) == SPEC and shown.runtime.name == "io.containerd.runc.v2"
    # Labels change; the record stays hawser's (no "containerd" config).
    request = pb.UpdateContainerRequest(container=pb.Container(id=record.id, labels={"k": "v"}),
                                        update_mask=field_mask_pb2.FieldMask(paths=["labels.k"]))
    assert dict(call(parts.service.Update(request, FakeContext("k8s.io"))).container.labels)["k"] == "v"
    assert "containerd" not in parts.store.metadata.containers.get(record.id, namespace="k8s.io").config
