"""containerd's content service on hawserd's second socket, driven by
Debian's real ``ctr`` (and the generated stubs where ctr has no command):
the blobs of an image hawser pulled, their labels, reads, removal, ingests,
and the codes containerd answers."""

from __future__ import annotations

import hashlib
import http.client
import http.server
import io
import os
import queue
import shutil
import signal
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hawser.containerd._api.services.content.v1 import content_pb2 as pb
from hawser.containerd._api.services.content.v1 import content_pb2_grpc
from hawser.content import LocalStore
from hawser.metadata import LABEL_GC_ROOT, Metadata
from hawser.oci import Digest
from hawser.registry import RegistryClient
from tests.e2e.helpers import status_code
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage, build_image, push_image
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


def fetch(hawserd: Hawserd, ref: str) -> None:
    """``ctr content fetch --plain-http REF``."""
    proc = ctr(hawserd, "content", "fetch", "--plain-http", ref, check=False)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")


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
    code, message = status_code(lambda: list(stub.Write(iter([pb.WriteContentRequest(ref="")]), metadata=NS)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "first message must have a reference" in message
    # ctr's words for them.
    proc = ctr(hawserd, "content", "get", unknown, check=False)
    assert proc.returncode != 0 and b"not found" in proc.stderr
    assert ctr(hawserd, "version").returncode == 0  # the daemon keeps serving


# --- Write ----------------------------------------------------------------------------


def test_fetch_writes_the_images_blobs(hawserd: Hawserd, registry: Registry,
                                       busybox: tuple[str, BuiltImage]) -> None:
    ref, image = busybox
    fetch(hawserd, ref)
    blobs = blobs_of(image)
    listed = rows(hawserd)
    assert set(blobs) <= set(listed)
    for digest, data in blobs.items():
        assert ctr(hawserd, "content", "get", digest).stdout == data
        assert listed[digest][0] == f"{len(data)}B" or len(data) >= 1024  # ctr shows large sizes in KiB, MiB
    manifest = labels_of(listed[str(image.manifest_desc.digest)])
    assert manifest[f"containerd.io/gc.ref.content.l.{len(image.layers) - 1}"] == str(image.layers[-1][0].digest)
    assert ctr(hawserd, "content", "active").stdout.decode().split() == ["REF", "SIZE", "AGE"]
    # hawser sees them as its own: verified in its store, recorded in the namespace.
    store = LocalStore(hawserd.root / "content")
    assert all(store.read_all(Digest(d)) == data for d, data in blobs.items())
    # Fetching again finds everything there: ALREADY_EXISTS, which ctr takes as done.
    fetch(hawserd, ref)


def test_ingest_from_stdin_then_ls_lists_it(hawserd: Hawserd, tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    path = tmp_path / "blob"
    path.write_bytes(data)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    with path.open("rb") as stdin:
        proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", "default",
                               "--timeout", "20s", "content", "ingest", "my-ingest"],
                              stdin=stdin, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert digest in rows(hawserd)
    assert ctr(hawserd, "content", "get", digest).stdout == data
    assert ctr(hawserd, "content", "active").stdout.decode().split() == ["REF", "SIZE", "AGE"]
    # With the digest named, in another namespace that does not have it yet: shared, no bytes needed.
    with path.open("rb") as stdin:
        proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", "other",
                               "--timeout", "20s", "content", "ingest", "--expected-digest", digest,
                               "--expected-size", str(len(data)), "other-ingest"],
                              stdin=stdin, capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert digest in rows(hawserd, namespace="other")


def test_write_codes_and_locks_through_the_stubs(hawserd: Hawserd, stub: content_pb2_grpc.ContentStub) -> None:
    data = os.urandom(1 << 16)
    digest = str(Digest.of(data))
    stat = pb.WriteContentRequest(action=pb.STAT, ref="stub-1", total=len(data), expected=digest)
    # Corrupt bytes: containerd's "unexpected commit digest", FAILED_PRECONDITION.
    bad = [stat, pb.WriteContentRequest(action=pb.WRITE, offset=0, data=b"x" * len(data)),
           pb.WriteContentRequest(action=pb.COMMIT, offset=len(data), total=len(data), expected=digest)]
    code, message = status_code(lambda: list(stub.Write(iter(bad), metadata=NS)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "unexpected commit digest" in message
    # A write at the wrong offset: OUT_OF_RANGE.
    skip = [stat, pb.WriteContentRequest(action=pb.WRITE, offset=7, data=data[:10])]
    code, message = status_code(lambda: list(stub.Write(iter(skip), metadata=NS)))
    assert code == grpc.StatusCode.OUT_OF_RANGE and "must occur at current offset 0" in message
    # A ref a live stream holds: UNAVAILABLE, "locked"; never two writers.
    requests: queue.Queue[pb.WriteContentRequest | None] = queue.Queue()
    requests.put(stat)
    responses = stub.Write(iter(requests.get, None), metadata=NS)
    assert next(responses).offset == 0
    code, message = status_code(lambda: list(stub.Write(iter([stat]), metadata=NS)))
    assert code == grpc.StatusCode.UNAVAILABLE and "locked" in message
    requests.put(pb.WriteContentRequest(action=pb.WRITE, offset=0, data=data[:100]))
    assert next(responses).offset == 100
    requests.put(None)  # the client goes away: the ingest stays, for a resume
    assert list(responses) == []
    deadline = time.monotonic() + 10
    while True:
        resumed = list(stub.Write(iter([stat]), metadata=NS))
        if resumed or time.monotonic() > deadline:
            break
    assert resumed[0].offset == 100
    rest = [stat, pb.WriteContentRequest(action=pb.WRITE, offset=100, data=data[100:]),
            pb.WriteContentRequest(action=pb.COMMIT, offset=len(data), total=len(data), expected=digest,
                                   labels={"containerd.io/gc.root": "yes"})]
    done = list(stub.Write(iter(rest), metadata=NS))
    assert (done[-1].action, done[-1].offset, done[-1].digest) == (pb.COMMIT, len(data), digest)
    assert labels_of(rows(hawserd)[digest]) == {"containerd.io/gc.root": "yes"}
    assert Metadata(hawserd.root / "metadata.db").blobs.get(digest, namespace="default").labels \
        == {LABEL_GC_ROOT: "yes"}
    # Committing it again: ALREADY_EXISTS, as containerd answers.
    code, _ = status_code(lambda: list(stub.Write(iter(rest), metadata=NS)))
    assert code == grpc.StatusCode.ALREADY_EXISTS
    assert ctr(hawserd, "version").returncode == 0  # the daemon keeps serving


class _Throttle:
    """A registry proxy that sends blob bodies slowly (while ``slow``) and
    counts the body bytes it sent per path, answering Range requests as the
    registry does (the headers go through)."""

    def __init__(self, upstream: str) -> None:
        self.upstream, self.slow = upstream, True
        self.sent: dict[str, int] = {}
        throttle = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                conn = http.client.HTTPConnection(throttle.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                conn.close()
                self.send_response(resp.status)
                for k, v in resp.getheaders():
                    if k.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(k, v)
                self.send_header("Content-Length", resp.getheader("Content-Length", "0") if self.command == "HEAD"
                                 else str(len(data)))
                self.end_headers()
                if self.command == "HEAD":
                    return
                try:
                    for at in range(0, len(data), 1 << 16):
                        self.wfile.write(data[at:at + (1 << 16)])
                        throttle.sent[self.path] = throttle.sent.get(self.path, 0) + min(1 << 16, len(data) - at)
                        if throttle.slow and "/blobs/" in self.path:
                            time.sleep(0.01)
                except OSError:
                    self.close_connection = True

            do_HEAD = do_GET

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Throttle:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def _big_image() -> BuiltImage:
    buffer = io.BytesIO()
    payload = os.urandom(30 << 20)
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        member = tarfile.TarInfo("big.bin")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    return build_image([buffer.getvalue()], compression="none")


def test_a_killed_fetch_resumes_where_it_stopped(hawserd: Hawserd, registry: Registry,
                                                 push_client: RegistryClient,
                                                 stub: content_pb2_grpc.ContentStub, tmp_path: Path) -> None:
    image = _big_image()
    push_image(push_client, f"{registry.host}/test/big:latest", image, tag="latest")
    layer, blob = image.layers[0]
    with _Throttle(registry.host) as throttle:
        argv = [CTR, "--address", hawserd.containerd_address, "--namespace", "default", "content", "fetch",
                "--plain-http", f"{throttle.host}/test/big:latest"]
        errors = tmp_path / "ctr.err"
        with errors.open("wb") as err:
            first = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 30
            offset = 0
            while offset < (4 << 20) and time.monotonic() < deadline:
                statuses = stub.ListStatuses(pb.ListStatusesRequest(), metadata=NS).statuses
                offset = max((s.offset for s in statuses if s.expected == str(layer.digest)), default=0)
                time.sleep(0.05)
            assert offset >= 4 << 20, f"the fetch never got going: {errors.read_text()}"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
        # The ingest outlives its client, unlocked once hawserd sees it gone.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ingest = next(s for s in stub.ListStatuses(pb.ListStatusesRequest(), metadata=NS).statuses
                          if s.expected == str(layer.digest))
            if not LocalStore(hawserd.root / "content").in_use(ingest.ref):
                break
            time.sleep(0.05)
        assert 0 < ingest.offset < len(blob)
        active = ctr(hawserd, "content", "active").stdout.decode()
        assert ingest.ref in active
        blob_path = f"/v2/test/big/blobs/{layer.digest}"
        before = throttle.sent.get(blob_path, 0)
        throttle.slow = False
        fetch(hawserd, f"{throttle.host}/test/big:latest")
        again = throttle.sent.get(blob_path, 0) - before
    assert 0 < again <= len(blob) - ingest.offset  # resumed with a Range request, not from zero
    assert ctr(hawserd, "content", "get", str(layer.digest)).stdout == blob
    assert str(layer.digest) in rows(hawserd)
    assert ctr(hawserd, "content", "active").stdout.decode().split() == ["REF", "SIZE", "AGE"]
