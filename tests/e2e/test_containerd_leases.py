"""containerd's leases service on hawserd's second socket, driven by Debian's
real ``ctr`` (and by the API's stubs for what ctr does not send): leases are
hawser's own, and hawser's GC honours them, their resources and their expiry."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from hawser.containerd._api.services.leases.v1 import leases_pb2 as pb
from hawser.containerd._api.services.leases.v1 import leases_pb2_grpc
from hawser.content import LocalStore
from hawser.metadata import Metadata
from hawser.oci import Digest
from tests.e2e.test_containerd_api import ctr
from tests.support.hawserd import Hawserd

# containerd's random lease ids: nanoseconds, a dash, three bytes of URL-safe base64.
GENERATED_ID = re.compile(r"\d+-[A-Za-z0-9_-]{4}")


def rows(out: str) -> list[list[str]]:
    """``ctr leases ls``'s rows under its header: id, created at, labels."""
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "CREATED", "AT", "LABELS"]
    return [line.split() for line in lines[1:]]


def ids(hawserd: Hawserd, *filters: str, namespace: str = "default") -> list[str]:
    return ctr(hawserd, "leases", "ls", "-q", *filters, namespace=namespace).stdout.split()


def put_blob(hawserd: Hawserd, data: bytes) -> Digest:
    digest = Digest.of(data)
    with LocalStore(hawserd.root / "content").writer(f"test-{digest.encoded}", expected=digest, total=len(data)) as w:
        w.write(data)
        w.commit()
    return digest


def has_blob(hawserd: Hawserd, digest: Digest) -> bool:
    return (hawserd.root / "content" / "blobs" / digest.algorithm / digest.encoded).exists()


@pytest.fixture
def stub(hawserd: Hawserd) -> Iterator[leases_pb2_grpc.LeasesStub]:
    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        yield leases_pb2_grpc.LeasesStub(channel)


def meta(namespace: str) -> list[tuple[str, str]]:
    return [("containerd-namespace", namespace)]


def add(stub: leases_pb2_grpc.LeasesStub, lease: str, type_: str, id_: str, namespace: str) -> None:
    stub.AddResource(pb.AddResourceRequest(id=lease, resource=pb.Resource(id=id_, type=type_)),
                     metadata=meta(namespace))


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as failed:
        call()
    return failed.value.code()


def test_leases_is_a_plugin(hawserd: Hawserd) -> None:
    listed = {(row.split()[0], row.split()[1]): row.split()[-1]
              for row in ctr(hawserd, "plugins", "ls").stdout.splitlines()[1:]}
    assert listed[("io.containerd.grpc.v1", "leases")] == "ok"


def test_create_list_filter_and_remove(hawserd: Hawserd) -> None:
    assert ctr(hawserd, "leases", "create", "--id", "build-1", "--expires", "0", "team=a", "purpose=test"
               ).stdout.strip() == "build-1"
    before = datetime.now(UTC)
    made = ctr(hawserd, "leases", "create", "team=b").stdout.strip()  # ctr's default: expires in 24h
    assert GENERATED_ID.fullmatch(made), made

    listed = {row[0]: row for row in rows(ctr(hawserd, "leases", "ls").stdout)}
    assert set(listed) == {"build-1", made}
    assert listed["build-1"][2] == "purpose=test,team=a"
    expire, team = listed[made][2].split(",")
    assert team == "team=b" and expire.startswith("containerd.io/gc.expire=")
    expires = datetime.fromisoformat(expire.split("=", 1)[1].replace("Z", "+00:00"))
    assert abs(expires - (before + timedelta(hours=24))) < timedelta(minutes=1)
    created = datetime.fromisoformat(listed["build-1"][1].replace("Z", "+00:00"))
    assert abs(created - before) < timedelta(minutes=1)

    # Filters, as ctr sends them: each argument an alternative, selectors ANDed within one.
    assert ids(hawserd, "labels.team==a") == ["build-1"]
    assert ids(hawserd, "id==build-1") == ["build-1"]
    assert ids(hawserd, "labels.purpose") == ["build-1"]
    assert sorted(ids(hawserd, "labels.team==a", "labels.team==b")) == sorted(["build-1", made])
    assert ids(hawserd, "labels.team==b,id==build-1") == []
    assert ids(hawserd, 'labels."containerd.io/gc.expire"') == [made]
    assert sorted(ids(hawserd, "labels.team~=^[ab]$")) == sorted(["build-1", made])
    assert ids(hawserd, "labels.team~=^[ab]$,id~=^build") == ["build-1"]
    bad = ctr(hawserd, "leases", "ls", "labels.team==a junk,", check=False)
    assert bad.returncode != 0 and "invalid" in bad.stderr

    again = ctr(hawserd, "leases", "create", "--id", "build-1", check=False)
    assert again.returncode != 0 and "already exists" in again.stderr
    invalid = ctr(hawserd, "leases", "create", "--id", "Not Valid", check=False)
    assert invalid.returncode != 0 and "invalid lease id" in invalid.stderr

    # Leases belong to their namespace.
    assert ids(hawserd, namespace="other") == []
    assert ctr(hawserd, "leases", "rm", "build-1", namespace="other", check=False).returncode != 0

    assert ctr(hawserd, "leases", "rm", "build-1", made).stdout.split() == ["build-1", made]
    assert ids(hawserd) == []
    gone = ctr(hawserd, "leases", "rm", "build-1", check=False)
    assert gone.returncode != 0 and "not found" in gone.stderr


def test_content_held_by_a_lease_survives_gc_until_the_lease_goes(hawserd: Hawserd, stub: leases_pb2_grpc.LeasesStub) -> None:
    ctr(hawserd, "leases", "create", "--id", "hold", "--expires", "0", namespace="builds")
    held = put_blob(hawserd, b"held only by the lease\n")
    loose = put_blob(hawserd, b"held by nothing\n")
    add(stub, "hold", "content", str(held), "builds")
    listed = stub.ListResources(pb.ListResourcesRequest(id="hold"), metadata=meta("builds"))
    assert [(r.type, r.id) for r in listed.resources] == [("content", str(held))]

    out = hawserd.cli("system", "prune").stdout
    assert f"blob {loose}" in out and f"blob {held}" not in out
    assert has_blob(hawserd, held) and not has_blob(hawserd, loose)
    hawserd.cli("system", "prune")
    assert has_blob(hawserd, held)

    # --sync: the lease's content is collected before ctr gets its answer, no prune needed.
    assert ctr(hawserd, "leases", "rm", "--sync", "hold", namespace="builds").stdout.split() == ["hold"]
    assert not has_blob(hawserd, held)
    assert ids(hawserd, namespace="builds") == []


def test_a_lease_without_sync_leaves_collection_to_the_next_gc(hawserd: Hawserd, stub: leases_pb2_grpc.LeasesStub) -> None:
    ctr(hawserd, "leases", "create", "--id", "hold", namespace="builds")
    held = put_blob(hawserd, b"held until the next gc\n")
    add(stub, "hold", "content", str(held), "builds")
    ctr(hawserd, "leases", "rm", "hold", namespace="builds")
    assert has_blob(hawserd, held)
    hawserd.cli("system", "prune")
    assert not has_blob(hawserd, held)


def test_an_expired_lease_holds_nothing(hawserd: Hawserd, stub: leases_pb2_grpc.LeasesStub) -> None:
    """``ctr leases create --expires`` writes containerd's gc.expire label: hawser's GC honours it."""
    ctr(hawserd, "leases", "create", "--id", "brief", "--expires", "2s", namespace="builds")
    ctr(hawserd, "leases", "create", "--id", "lasting", "--expires", "1h", namespace="builds")
    brief = put_blob(hawserd, b"held for two seconds\n")
    lasting = put_blob(hawserd, b"held for an hour\n")
    add(stub, "brief", "content", str(brief), "builds")
    add(stub, "lasting", "content", str(lasting), "builds")
    hawserd.cli("system", "prune")
    assert has_blob(hawserd, brief) and has_blob(hawserd, lasting)

    label = dict(row[0::2] for row in rows(ctr(hawserd, "leases", "ls", namespace="builds").stdout))["brief"]
    expires = datetime.fromisoformat(label.split("=", 1)[1].replace("Z", "+00:00"))
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1.0)
    out = hawserd.cli("system", "prune").stdout
    assert "lease brief: expired lease" in out
    assert not has_blob(hawserd, brief) and has_blob(hawserd, lasting)
    assert ids(hawserd, namespace="builds") == ["lasting"]


def test_resources_are_named_as_containerd_names_them(hawserd: Hawserd, stub: leases_pb2_grpc.LeasesStub) -> None:
    ctr(hawserd, "leases", "create", "--id", "work", namespace="builds")
    digest = Digest.of(b"x")
    add(stub, "work", "snapshots/overlayfs", "sha256-chain", "builds")
    add(stub, "work", "ingests", "ingest-ref-1", "builds")
    add(stub, "work", "content", str(digest), "builds")
    add(stub, "work", "content", str(digest), "builds")  # idempotent

    def listed() -> list[tuple[str, str]]:
        found = stub.ListResources(pb.ListResourcesRequest(id="work"), metadata=meta("builds"))
        return [(r.type, r.id) for r in found.resources]

    assert listed() == [("content", str(digest)), ("ingests", "ingest-ref-1"), ("snapshots/overlayfs", "sha256-chain")]
    # hawser's own names underneath, the ones its GC reads.
    md = Metadata(str(hawserd.root / "metadata.db"))
    try:
        kinds = [(r.kind, r.key) for r in md.leases.list_resources("work", namespace="builds")]
    finally:
        md.close()
    assert kinds == [("content", str(digest)), ("ingest", "ingest-ref-1"), ("snapshot/overlayfs", "sha256-chain")]

    stub.DeleteResource(pb.DeleteResourceRequest(id="work", resource=pb.Resource(
        id="ingest-ref-1", type="ingests")), metadata=meta("builds"))
    assert listed() == [("content", str(digest)), ("snapshots/overlayfs", "sha256-chain")]


def test_errors_carry_containerds_codes(hawserd: Hawserd, stub: leases_pb2_grpc.LeasesStub) -> None:
    ctr(hawserd, "leases", "create", "--id", "work", namespace="builds")

    def add_call(lease: str, type_: str, id_: str) -> Callable[[], None]:
        return lambda: add(stub, lease, type_, id_, "builds")

    assert code_of(add_call("missing", "content", str(Digest.of(b"x")))) == grpc.StatusCode.NOT_FOUND
    assert code_of(add_call("work", "content", "not-a-digest")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(add_call("work", "content/x", str(Digest.of(b"x")))) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(add_call("work", "snapshots", "key")) == grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(add_call("work", "images", "docker.io/library/x:1")) == grpc.StatusCode.UNIMPLEMENTED
    assert code_of(lambda: stub.ListResources(pb.ListResourcesRequest(id="missing"),
                                              metadata=meta("builds"))) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stub.Delete(pb.DeleteRequest(id="missing"),
                                       metadata=meta("builds"))) == grpc.StatusCode.NOT_FOUND
    assert code_of(lambda: stub.Create(pb.CreateRequest(id="work"),
                                       metadata=meta("builds"))) == grpc.StatusCode.ALREADY_EXISTS
    bad_expiry = pb.CreateRequest(id="later", labels={"containerd.io/gc.expire": "tomorrow"})
    assert code_of(lambda: stub.Create(bad_expiry, metadata=meta("builds"))
                   ) == grpc.StatusCode.INVALID_ARGUMENT
    # containerd requires a namespace: a request naming none is refused.
    assert code_of(lambda: stub.List(pb.ListRequest())) == grpc.StatusCode.FAILED_PRECONDITION
    assert ctr(hawserd, "version").returncode == 0  # the daemon keeps serving
