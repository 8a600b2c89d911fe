"""containerd's Containers service on hawserd's second socket, driven by
Debian's real ``ctr`` (and the generated stubs for the codes): containers
``ctr containers create`` makes (ctr prepares the snapshot through the
snapshots service and sends the spec) are listed, filtered, shown, labelled
and removed; hawser sees them in the same namespace (created, no task; no
logs of its own); a CRI container is listed in ``k8s.io`` with its spec."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator

import grpc
import pytest
from cri_api.v1 import api_pb2
from google.protobuf import any_pb2, field_mask_pb2

from hawser.containerd._api.services.containers.v1 import containers_pb2 as pb
from hawser.containerd._api.services.containers.v1 import containers_pb2_grpc
from tests.e2e.helpers import status_code
from tests.support.cri_pods import Pods
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry

CTR = shutil.which("ctr") or "/usr/bin/ctr"
NS = "boxes"
SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec"


def ctr(hawserd: Hawserd, *args: str, namespace: str = NS, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", namespace,
                           "--timeout", "20s", *args], capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def listed(hawserd: Hawserd, *filters: str, namespace: str = NS) -> dict[str, list[str]]:
    """``ctr containers ls``: CONTAINER -> [IMAGE, RUNTIME]."""
    lines = ctr(hawserd, "containers", "ls", *filters, namespace=namespace).stdout.splitlines()
    assert lines[0].split() == ["CONTAINER", "IMAGE", "RUNTIME"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def info(hawserd: Hawserd, id_: str, namespace: str = NS) -> dict[str, object]:
    data: dict[str, object] = json.loads(ctr(hawserd, "containers", "info", id_, namespace=namespace).stdout)
    return data


@pytest.fixture
def image(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage]) -> Iterator[str]:
    ref, _ = busybox
    hawserd.plain_http(registry.host)
    hawserd.cli("-n", NS, "pull", "--plain-http", "-q", ref)
    yield ref
    if hawserd.running:
        for id_ in ctr(hawserd, "containers", "ls", "-q", check=False).stdout.split():
            ctr(hawserd, "containers", "rm", id_, check=False)


@pytest.fixture
def stub(hawserd: Hawserd) -> Iterator[containers_pb2_grpc.ContainersStub]:
    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        yield containers_pb2_grpc.ContainersStub(channel)


def meta(namespace: str = NS) -> tuple[tuple[str, str], ...]:
    return (("containerd-namespace", namespace),)


def test_containers_is_a_plugin(hawserd: Hawserd) -> None:
    rows = [line.split() for line in ctr(hawserd, "plugins", "ls").stdout.splitlines()[1:]]
    assert {(row[0], row[1]): row[-1] for row in rows}[("io.containerd.grpc.v1", "containers")] == "ok"


def test_create_list_info_label_remove(hawserd: Hawserd, image: str) -> None:
    ctr(hawserd, "containers", "create", "--label", "tier=web", image, "web", "echo", "hi")
    ctr(hawserd, "containers", "create", image, "db")
    assert listed(hawserd) == {"web": [image, "io.containerd.runc.v2"], "db": [image, "io.containerd.runc.v2"]}
    assert listed(hawserd, namespace="default") == {}
    # ctr's filters reach the server.
    assert list(listed(hawserd, "labels.tier==web")) == ["web"]
    assert sorted(listed(hawserd, f"image=={image}")) == ["db", "web"]
    assert list(listed(hawserd, "id==db")) == ["db"]
    assert list(listed(hawserd, "labels.tier==web", "id==db")) == ["web", "db"] or \
        sorted(listed(hawserd, "labels.tier==web", "id==db")) == ["db", "web"]
    assert listed(hawserd, "runtime.name==io.containerd.kata.v2") == {}

    shown = info(hawserd, "web")
    assert shown["ID"] == "web" and shown["Image"] == image
    assert shown["Runtime"]["Name"] == "io.containerd.runc.v2"  # type: ignore[index]
    assert shown["Labels"]["tier"] == "web"  # type: ignore[index]
    assert shown["Snapshotter"] == "overlayfs" and shown["SnapshotKey"] == "web"
    spec = shown["Spec"]
    assert spec["process"]["args"] == ["echo", "hi"] and spec["root"]["path"] == "rootfs"  # type: ignore[index]
    # ctr prepared the snapshot the record names.
    assert "web" in ctr(hawserd, "snapshots", "ls").stdout.split()

    # Update, by field path.
    ctr(hawserd, "containers", "label", "web", "color=blue", "tier=")
    labels = info(hawserd, "web")["Labels"]
    assert labels.get("color") == "blue" and "tier" not in labels  # type: ignore[union-attr]
    assert list(listed(hawserd, "labels.color==blue")) == ["web"]

    # The record hawser keeps, as the record contract says.
    rows = {row["Name"]: row for row in json.loads(hawserd.cli("-n", NS, "ps", "-a", "--format", "json").stdout)}
    assert set(rows) == {"web", "db"}
    web = rows["web"]
    assert web["State"]["Status"] == "created" and web["State"]["Pid"] == 0
    assert web["Image"] == image and web["ImageId"].startswith("sha256:")
    assert web["Config"]["containerd"]["spec"]["process"]["args"] == ["echo", "hi"]
    assert web["Config"]["containerd"]["runtime"]["name"] == "io.containerd.runc.v2"
    table = hawserd.cli("-n", NS, "ps", "-a").stdout
    assert "Created" in table and "Unknown" not in table

    logs = hawserd.cli("-n", NS, "logs", "web", check=False)
    assert logs.returncode != 0
    assert logs.stderr.strip().splitlines() == [
        "hawser: container web: its output goes to the client's FIFOs (made through containerd's API); "
        "hawser logs cannot show it"]

    ctr(hawserd, "containers", "rm", "web")
    assert list(listed(hawserd)) == ["db"]
    # ctr removed the snapshot it made.
    assert "web" not in ctr(hawserd, "snapshots", "ls").stdout.split()
    gone = ctr(hawserd, "containers", "info", "web", check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr


def test_hawser_rm_removes_a_container_made_through_the_api(hawserd: Hawserd, image: str) -> None:
    ctr(hawserd, "containers", "create", image, "gone")
    start = time.monotonic()
    hawserd.cli("-n", NS, "rm", "gone")
    took = time.monotonic() - start
    assert listed(hawserd) == {}
    assert "gone" not in ctr(hawserd, "snapshots", "ls").stdout.split()
    assert took < 30


def test_a_cri_container_is_listed_in_k8s_io_with_its_spec(pods: Pods) -> None:
    hawserd = pods.hawserd
    pod = pods.pod("web")
    container_id = pods.create(pod, pods.config("app", "sleep", "60"))
    try:
        rows = listed(hawserd, namespace="k8s.io")
        assert rows[container_id] == [pods.image, "io.containerd.runc.v2"]
        shown = info(hawserd, container_id, namespace="k8s.io")
        assert shown["Spec"]["process"]["args"] == ["sleep", "60"]  # type: ignore[index]
        assert shown["Labels"]  # the CRI's labels, as hawser keeps them
        assert list(listed(hawserd, f"id=={container_id}", namespace="k8s.io")) == [container_id]
        # Its task is hawser's: the container is not deleted under it.
        refused = ctr(hawserd, "containers", "rm", container_id, namespace="k8s.io", check=False)
        assert refused.returncode != 0
        assert container_id in listed(hawserd, namespace="k8s.io")
    finally:
        pods.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container_id))


def spec_any() -> any_pb2.Any:
    return any_pb2.Any(type_url=SPEC_TYPE_URL, value=json.dumps({"ociVersion": "1.0.2"}).encode())


def container(id_: str, runtime: str = "io.containerd.runc.v2") -> pb.Container:
    return pb.Container(id=id_, image="r.io/x:1", runtime=pb.Container.Runtime(name=runtime), spec=spec_any())


def test_invalid_requests_get_containerds_codes(hawserd: Hawserd, stub: containers_pb2_grpc.ContainersStub) -> None:
    made = stub.Create(pb.CreateContainerRequest(container=container("one")), metadata=meta()).container
    assert made.id == "one" and made.created_at.seconds > 0
    cases = [
        (stub.Create, pb.CreateContainerRequest(container=container("one")), grpc.StatusCode.ALREADY_EXISTS),
        (stub.Create, pb.CreateContainerRequest(container=container("")), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.Create, pb.CreateContainerRequest(container=container("a b")), grpc.StatusCode.INVALID_ARGUMENT),
        (stub.Create, pb.CreateContainerRequest(container=container("two", "io.containerd.kata.v2")),
         grpc.StatusCode.INVALID_ARGUMENT),
        (stub.Create, pb.CreateContainerRequest(container=pb.Container(id="three")),
         grpc.StatusCode.INVALID_ARGUMENT),
        (stub.Get, pb.GetContainerRequest(id="nothing"), grpc.StatusCode.NOT_FOUND),
        (stub.Delete, pb.DeleteContainerRequest(id="nothing"), grpc.StatusCode.NOT_FOUND),
        (stub.Update, pb.UpdateContainerRequest(container=container("nothing")), grpc.StatusCode.NOT_FOUND),
        (stub.Update, pb.UpdateContainerRequest(container=container("one"),
                                                update_mask=field_mask_pb2.FieldMask(paths=["runtime"])),
         grpc.StatusCode.INVALID_ARGUMENT),
        (stub.Update, pb.UpdateContainerRequest(container=container("one", "io.containerd.runc.v1")),
         grpc.StatusCode.INVALID_ARGUMENT),
        (stub.List, pb.ListContainersRequest(filters=['labels."open']), grpc.StatusCode.INVALID_ARGUMENT),
    ]
    for call, request, code in cases:
        got, message = status_code(call, request, metadata=meta())
        assert got == code, (request, got, message)
    code, message = status_code(stub.Create, pb.CreateContainerRequest(container=container("two", "io.kata")),
                                metadata=meta())
    assert "io.containerd.runc.v2" in message
    assert status_code(stub.Get, pb.GetContainerRequest(id="one"))[0] == grpc.StatusCode.FAILED_PRECONDITION
    # The daemon carries on: the container is there, unchanged.
    assert stub.Get(pb.GetContainerRequest(id="one"), metadata=meta()).container == made
    stub.Delete(pb.DeleteContainerRequest(id="one"), metadata=meta())
