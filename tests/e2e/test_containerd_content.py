"""containerd's content service on hawserd's second socket, driven by
Debian's real ``ctr`` (and the generated stubs where ctr has no command):
the blobs of an image hawser pulled, their labels, reads, removal, ingests,
and the codes containerd answers."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator

import grpc
import pytest

from hawser.containerd._api.services.content.v1 import content_pb2 as pb
from hawser.containerd._api.services.content.v1 import content_pb2_grpc
from hawser.content import LocalStore
from hawser.metadata import LABEL_GC_ROOT, Metadata
from hawser.oci import Digest
from tests.e2e.helpers import status_code
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry

CTR = shutil.which("ctr") or "/usr/bin/ctr"
NS = (("containerd-namespace", "default"),)


def ctr(hawserd: Hawserd, *args: str, namespace: str = "default", check: bool = True
        ) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", namespace,
                           "--timeout", "20s", *args], capture_output=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout!r}\n"
                             f"{proc.stderr.decode(errors='replace')}")
    return proc


def rows(hawserd: Hawserd, *args: str, namespace: str = "default") -> dict[str, list[str]]:
    """``ctr content ls`` by digest: its size, age and labels columns."""
    out = ctr(hawserd, "content", "ls", *args, namespace=namespace).stdout.decode()
    lines = out.splitlines()
    assert lines[0].split() == ["DIGEST", "SIZE", "AGE", "LABELS"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def labels_of(row: list[str]) -> dict[str, str]:
    text = row[-1]
    return {} if text == "-" else dict(pair.split("=", 1) for pair in text.split(","))


def blobs_of(image: BuiltImage) -> dict[str, bytes]:
    found = {str(image.manifest_desc.digest): image.manifest, str(image.config_desc.digest): image.config}
    found.update((str(desc.digest), data) for desc, data in image.layers)
    return found


@pytest.fixture
def pulled(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage]) -> tuple[str, BuiltImage]:
    ref, image = busybox
    hawserd.plain_http(registry.host)
    hawserd.cli("pull", "--plain-http", "-q", ref)
    return ref, image


@pytest.fixture
def stub(hawserd: Hawserd) -> Iterator[content_pb2_grpc.ContentStub]:
    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        yield content_pb2_grpc.ContentStub(channel)


def test_ls_lists_the_images_blobs_with_gc_labels(hawserd: Hawserd, pulled: tuple[str, BuiltImage],
                                                  stub: content_pb2_grpc.ContentStub) -> None:
    _, image = pulled
    blobs = blobs_of(image)
    listed = rows(hawserd)
    assert set(listed) == set(blobs)
    manifest, config = str(image.manifest_desc.digest), str(image.config_desc.digest)
    # hawser's GC references, under the names containerd's own pull writes.
    want = {"containerd.io/gc.ref.content.config": config}
    want.update((f"containerd.io/gc.ref.content.l.{i}", str(desc.digest)) for i, (desc, _) in enumerate(image.layers))
    assert labels_of(listed[manifest]) == want
    assert any(key.startswith("containerd.io/gc.ref.snapshot.") for key in labels_of(listed[config]))
    assert ctr(hawserd, "content", "ls", "-q").stdout.decode().split() == sorted(blobs)
    # Exact sizes and times, from the stream itself.
    infos = {i.digest: i for m in stub.List(pb.ListContentRequest(), metadata=NS) for i in m.info}
    assert {d: i.size for d, i in infos.items()} == {d: len(b) for d, b in blobs.items()}
    assert all(i.created_at.seconds > 0 and i.updated_at.seconds > 0 for i in infos.values())
    # ctr's filters reach the server.
    assert set(rows(hawserd, f"digest=={config}")) == {config}
    assert set(rows(hawserd, "labels.containerd.io/gc.ref.content.config")) == {manifest}
    assert set(rows(hawserd, f"digest=={config}", f"digest=={manifest}")) == {config, manifest}
    assert set(rows(hawserd, f"size=={len(image.config)}")) == {config}
    assert rows(hawserd, "labels.nothing==here") == {}
    bad = ctr(hawserd, "content", "ls", "labels.x~=(", check=False)
    assert bad.returncode != 0 and b"invalid" in bad.stderr
    # Another namespace has no record of them.
    assert rows(hawserd, namespace="other") == {}


def test_get_answers_the_registrys_bytes(hawserd: Hawserd, pulled: tuple[str, BuiltImage]) -> None:
    _, image = pulled
    for digest, data in blobs_of(image).items():
        got = ctr(hawserd, "content", "get", digest).stdout
        assert got == data and f"sha256:{hashlib.sha256(got).hexdigest()}" == digest
    layer = str(image.layers[0][0].digest)
    elsewhere = ctr(hawserd, "content", "get", layer, namespace="other", check=False)
    assert elsewhere.returncode != 0 and b"not found" in elsewhere.stderr


def test_read_with_offset_and_size(hawserd: Hawserd, pulled: tuple[str, BuiltImage],
                                   stub: content_pb2_grpc.ContentStub) -> None:
    _, image = pulled
    desc, data = max(image.layers, key=lambda layer: len(layer[1]))
    digest = str(desc.digest)

    def read(offset: int, size: int) -> list[pb.ReadContentResponse]:
        return list(stub.Read(pb.ReadContentRequest(digest=digest, offset=offset, size=size), metadata=NS))

    part = read(5, 10)
    assert b"".join(m.data for m in part) == data[5:15] and part[0].offset == 5
    assert b"".join(m.data for m in read(0, 0)) == data
    assert b"".join(m.data for m in read(-3, 4)) == data[:4]
    tail = read(len(data) - 3, 1000)
    assert b"".join(m.data for m in tail) == data[-3:]
    assert read(len(data), 0) == []
    assert all(len(m.data) <= 1 << 20 for m in read(0, 0))
    code, message = status_code(read, len(data) + 1, 0)
    assert code == grpc.StatusCode.OUT_OF_RANGE and f"{len(data)} bytes" in message


def test_label_then_ls_shows_it(hawserd: Hawserd, pulled: tuple[str, BuiltImage]) -> None:
    _, image = pulled
    config = str(image.config_desc.digest)
    before = labels_of(rows(hawserd)[config])
    out = ctr(hawserd, "content", "label", config, "team=web", "tier=front").stdout.decode().strip()
    assert {"team=web", "tier=front"} <= set(out.split(","))
    assert labels_of(rows(hawserd)[config]) == {**before, "team": "web", "tier": "front"}
    assert set(rows(hawserd, "labels.team==web")) == {config}
    ctr(hawserd, "content", "label", config, "tier=")
    assert labels_of(rows(hawserd)[config]) == {**before, "team": "web"}
    missing = ctr(hawserd, "content", "label", str(Digest.of(b"nothing")), "a=b", check=False)
    assert missing.returncode != 0 and b"not found" in missing.stderr


def test_a_gc_root_label_set_by_ctr_keeps_the_blob_through_hawsers_gc(hawserd: Hawserd,
                                                                      pulled: tuple[str, BuiltImage]) -> None:
    ref, image = pulled
    layer = str(image.layers[0][0].digest)
    ctr(hawserd, "content", "label", layer, "containerd.io/gc.root=2024-01-01T00:00:00Z")
    md = Metadata(str(hawserd.root / "metadata.db"))
    try:
        assert LABEL_GC_ROOT in md.blobs.get(layer, namespace="default").labels  # what hawser's GC follows
    finally:
        md.close()
    hawserd.cli("rmi", ref)  # removes the image, then collects
    assert list(rows(hawserd)) == [layer]
    assert ctr(hawserd, "content", "get", layer).stdout == image.layers[0][1]


def test_rm_removes_the_namespaces_record(hawserd: Hawserd, pulled: tuple[str, BuiltImage]) -> None:
    _, image = pulled
    layer = str(image.layers[0][0].digest)
    assert ctr(hawserd, "content", "rm", layer).stdout.decode().split() == [layer]
    assert layer not in rows(hawserd)
    assert len(rows(hawserd)) == len(blobs_of(image)) - 1
    gone = ctr(hawserd, "content", "get", layer, check=False)
    assert gone.returncode != 0 and b"not found" in gone.stderr
    # The file stays for GC to decide (the image still names it).
    assert os.path.exists(hawserd.root / "content" / "blobs" / "sha256" / Digest(layer).encoded)
    # ctr takes NOT_FOUND as done, printing nothing.
    again = ctr(hawserd, "content", "rm", layer)
    assert again.returncode == 0 and again.stdout == b""


def test_active_lists_ingests_in_progress(hawserd: Hawserd, stub: content_pb2_grpc.ContentStub) -> None:
    assert ctr(hawserd, "content", "active").stdout.decode().split() == ["REF", "SIZE", "AGE"]
    data = b"0123456789" * 100
    expected = Digest.of(data)
    with LocalStore(hawserd.root / "content").writer("fetch-blob-1", expected=expected, total=len(data)) as w:
        w.write(data[:300])  # closed, not committed: an interrupted ingest, waiting to be resumed
    lines = ctr(hawserd, "content", "active").stdout.decode().splitlines()
    assert lines[1].split()[:2] == ["fetch-blob-1", "300B"]
    assert ctr(hawserd, "content", "active", "ref~=^other").stdout.decode().split() == ["REF", "SIZE", "AGE"]
    status = stub.Status(pb.StatusRequest(ref="fetch-blob-1"), metadata=NS).status
    assert (status.offset, status.total, status.expected) == (300, len(data), expected)
    assert status.started_at.seconds > 0 and status.updated_at.seconds > 0
    stub.Abort(pb.AbortRequest(ref="fetch-blob-1"), metadata=NS)
    assert ctr(hawserd, "content", "active").stdout.decode().split() == ["REF", "SIZE", "AGE"]
    assert status_code(stub.Status, pb.StatusRequest(ref="fetch-blob-1"), metadata=NS)[0] \
        == grpc.StatusCode.NOT_FOUND
    assert status_code(stub.Abort, pb.AbortRequest(ref="fetch-blob-1"), metadata=NS)[0] == grpc.StatusCode.NOT_FOUND


def test_errors_are_containerds_codes(hawserd: Hawserd, pulled: tuple[str, BuiltImage],
                                      stub: content_pb2_grpc.ContentStub) -> None:
    _, image = pulled
    unknown, malformed = str(Digest.of(b"nothing here")), "sha256:not-a-digest"
    config = str(image.config_desc.digest)
    calls = {
        "Info": lambda digest, **kw: stub.Info(pb.InfoRequest(digest=digest), **kw),
        "Delete": lambda digest, **kw: stub.Delete(pb.DeleteContentRequest(digest=digest), **kw),
        "Read": lambda digest, **kw: list(stub.Read(pb.ReadContentRequest(digest=digest), **kw)),
        "Update": lambda digest, **kw: stub.Update(pb.UpdateRequest(info=pb.Info(digest=digest)), **kw),
    }
    for name, call in calls.items():
        assert status_code(call, unknown, metadata=NS)[0] == grpc.StatusCode.NOT_FOUND, name
        code, message = status_code(call, malformed, metadata=NS)
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "failed validation" in message, name
        code, message = status_code(call, config)  # no namespace header
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "namespace is required" in message, name
    assert status_code(lambda: list(stub.List(pb.ListContentRequest())))[0] == grpc.StatusCode.FAILED_PRECONDITION
    assert status_code(stub.ListStatuses, pb.ListStatusesRequest())[0] == grpc.StatusCode.FAILED_PRECONDITION
    bad_mask = pb.UpdateRequest(info=pb.Info(digest=config, size=1))
    bad_mask.update_mask.paths.append("size")
    assert status_code(stub.Update, bad_mask, metadata=NS)[0] == grpc.StatusCode.INVALID_ARGUMENT
    code, message = status_code(lambda: list(stub.Write(iter([pb.WriteContentRequest(ref="x")]), metadata=NS)))
    assert code == grpc.StatusCode.UNIMPLEMENTED and "Write is not implemented" in message
    # ctr's words for them.
    proc = ctr(hawserd, "content", "get", unknown, check=False)
    assert proc.returncode != 0 and b"not found" in proc.stderr
    assert ctr(hawserd, "version").returncode == 0  # the daemon keeps serving
