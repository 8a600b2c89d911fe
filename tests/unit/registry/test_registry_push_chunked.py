"""Blob uploads in chunks, resumed after drops, and cross-repository mounts
(registry._upload), against an in-memory registry that keeps upload sessions
as the distribution spec describes them."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from registry_fakes import FakeClock, FakeNetwork, FakeRegistry, error_body, make_client

from hawser.errors import NotFound, Unavailable
from hawser.oci import Descriptor, Digest, media, parse_reference
from hawser.registry import UploadOptions

REF = parse_reference("registry.test/team/app:v1")
DATA = bytes(range(256)) * 40  # 10240 bytes
DESC = Descriptor(media.OCI_LAYER_GZIP, Digest.of(DATA), len(DATA))
CHUNKS = UploadOptions(chunk_size=4096)


@dataclass
class Sessions:
    """Upload sessions with PATCH, GET, PUT, DELETE and mounts, as a FakeRegistry hook.
    ``holdings`` are (repository, digest) pairs a mount may link from."""

    registry: FakeRegistry
    min_chunk: int = 0
    data: dict[str, bytearray] = field(default_factory=dict)
    holdings: set[tuple[str, str]] = field(default_factory=set)
    patches: list[tuple[str, int]] = field(default_factory=list)  # (Content-Range, body length)
    opened: int = 0

    def _answer(self, status: int, repo: str, uid: str) -> httpx.Response:
        held = len(self.data[uid])
        return httpx.Response(status, headers={"Location": f"/v2/{repo}/blobs/uploads/{uid}?_state={held}",
                                               "Range": f"0-{max(held - 1, 0)}"})

    def __call__(self, request: httpx.Request) -> httpx.Response | None:
        m = re.fullmatch(r"/v2/(.+)/blobs/uploads/(.*)", request.url.path)
        if m is None:
            return None
        repo, uid = m.groups()
        if request.method == "POST":
            digest, source = request.url.params.get("mount"), request.url.params.get("from")
            if digest and (source, digest) in self.holdings:
                self.registry.blobs.setdefault(digest, b"mounted")
                return httpx.Response(201, headers={"Docker-Content-Digest": digest})
            self.opened += 1
            uid = f"s{self.opened}"
            self.data[uid] = bytearray()
            answer = self._answer(202, repo, uid)
            if self.min_chunk:
                answer.headers["OCI-Chunk-Min-Length"] = str(self.min_chunk)
            return answer
        if uid not in self.data:
            return httpx.Response(404, content=error_body("BLOB_UPLOAD_UNKNOWN", "unknown upload"))
        if request.method == "GET":
            return self._answer(204, repo, uid)
        if request.method == "DELETE":
            del self.data[uid]
            return httpx.Response(204)
        body = request.read()
        if request.method == "PATCH":
            crange = request.headers["content-range"]
            self.patches.append((crange, len(body)))
            start, _, end = crange.partition("-")
            if int(start) != len(self.data[uid]) or int(end) - int(start) + 1 != len(body):
                return self._answer(416, repo, uid)
            self.data[uid] += body
            return self._answer(202, repo, uid)
        if request.method == "PUT":
            whole = bytes(self.data.pop(uid)) + body
            digest = request.url.params["digest"]
            if "sha256:" + hashlib.sha256(whole).hexdigest() != digest:
                return httpx.Response(400, content=error_body("DIGEST_INVALID", "digest did not match"))
            self.registry.blobs[digest] = whole
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        return httpx.Response(405)


@pytest.fixture
def sessions(registry: FakeRegistry) -> Sessions:
    hook = Sessions(registry)
    registry.hooks.append(hook)
    return hook


def methods(registry: FakeRegistry) -> list[str]:
    return [r.method for r in registry.requests]


def test_small_blob_in_one_put(network: FakeNetwork, registry: FakeRegistry, sessions: Sessions,
                               clock: FakeClock) -> None:
    with make_client(network, clock) as client:
        pushed = client.push_blob(REF, DATA, DESC, options=UploadOptions(chunk_size=len(DATA)))
    assert (pushed.how, pushed.sent, pushed.chunks) == ("uploaded", len(DATA), 0)
    assert methods(registry) == ["HEAD", "POST", "PUT"]


def test_big_blob_in_chunks(tmp_path: Path, network: FakeNetwork, registry: FakeRegistry, sessions: Sessions,
                            clock: FakeClock) -> None:
    path = tmp_path / "blob"
    path.write_bytes(DATA)
    positions: list[int] = []
    with make_client(network, clock) as client:
        pushed = client.push_blob(REF, path, DESC, options=CHUNKS, progress=positions.append)
    assert registry.blobs[str(DESC.digest)] == DATA
    assert sessions.patches == [("0-4095", 4096), ("4096-8191", 4096), ("8192-10239", 2048)]
    assert methods(registry) == ["HEAD", "POST", "PATCH", "PATCH", "PATCH", "PUT"]
    # The closing PUT names the digest on the latest Location, with no body.
    put = registry.requests[-1]
    assert put.url.params["digest"] == DESC.digest and put.url.params["_state"] == str(len(DATA))
    assert put.headers["content-length"] == "0"
    assert (pushed.how, pushed.sent, pushed.chunks, pushed.resumes) == ("uploaded", len(DATA), 3, 0)
    assert positions == sorted(positions) and positions[-1] == len(DATA)


def test_registry_minimum_chunk_length_is_honoured(network: FakeNetwork, registry: FakeRegistry,
                                                   sessions: Sessions, clock: FakeClock) -> None:
    sessions.min_chunk = 6000
    with make_client(network, clock) as client:
        client.push_blob(REF, DATA, DESC, options=CHUNKS)
    assert sessions.patches == [("0-5999", 6000), ("6000-10239", 4240)]
    assert registry.blobs[str(DESC.digest)] == DATA


def _drop_patch(sessions: Sessions, *, nth: int, keep: bool, times: int = 1):  # type: ignore[no-untyped-def]
    """A hook breaking the connection on the ``nth`` PATCH (and ``times - 1``
    more): after the registry kept its bytes (``keep``: only the answer is
    lost) or before."""
    count = [0]

    def hook(request: httpx.Request) -> httpx.Response | None:
        if request.method != "PATCH":
            return None
        count[0] += 1
        if nth <= count[0] < nth + times:
            if keep:
                sessions(request)
            else:
                request.read()
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return None

    return hook


def test_answer_lost_after_the_chunk_landed_resumes_without_resending(
        network: FakeNetwork, registry: FakeRegistry, sessions: Sessions, clock: FakeClock) -> None:
    registry.hooks.insert(0, _drop_patch(sessions, nth=2, keep=True))
    with make_client(network, clock) as client:
        pushed = client.push_blob(REF, DATA, DESC, options=CHUNKS)
    assert registry.blobs[str(DESC.digest)] == DATA
    # The GET said 8192 bytes were there: the third chunk follows, the second is not sent again.
    assert methods(registry) == ["HEAD", "POST", "PATCH", "PATCH", "GET", "PATCH", "PUT"]
    assert (pushed.resumes, pushed.restarts, pushed.chunks) == (1, 0, 2)
    assert pushed.sent == len(DATA)
    assert clock.sleeps == [0.5]


def test_drops_before_the_chunk_landed_resend_it_with_backoff(
        network: FakeNetwork, registry: FakeRegistry, sessions: Sessions, clock: FakeClock) -> None:
    registry.hooks.insert(0, _drop_patch(sessions, nth=2, keep=False, times=2))
    with make_client(network, clock) as client:
        pushed = client.push_blob(REF, DATA, DESC, options=CHUNKS)
    assert registry.blobs[str(DESC.digest)] == DATA
    assert methods(registry) == ["HEAD", "POST", "PATCH", "PATCH", "GET", "PATCH", "GET", "PATCH", "PATCH", "PUT"]
    assert clock.sleeps == [0.5, 1.0]
    assert (pushed.resumes, pushed.restarts) == (2, 0)
    assert pushed.sent == len(DATA) + 2 * 4096


def test_registry_down_for_a_while(network: FakeNetwork, registry: FakeRegistry, sessions: Sessions,
                                   clock: FakeClock) -> None:
    """Refused connections (a registry restarting) are waited out with backoff, then the upload goes on."""
    down = [0]

    def refuse_after_first_chunk(request: httpx.Request) -> httpx.Response | None:
        if len(sessions.patches) == 1 and down[0] < 3:
            down[0] += 1
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return None

    registry.hooks.insert(0, refuse_after_first_chunk)
    with make_client(network, clock) as client:
        pushed = client.push_blob(REF, DATA, DESC, options=CHUNKS)
    assert registry.blobs[str(DESC.digest)] == DATA
    assert clock.sleeps == [0.5, 1.0, 2.0]
    # (MockTransport reads a request's body before its handler refuses: only the PATCHes that reached it count.)
    assert pushed.resumes == 1 and [p[0] for p in sessions.patches] == ["0-4095", "4096-8191", "8192-10239"]


def test_lost_session_begins_again(network: FakeNetwork, registry: FakeRegistry, sessions: Sessions,
                                   clock: FakeClock) -> None:
    def forget(request: httpx.Request) -> httpx.Response | None:
        if request.method == "PATCH" and len(sessions.patches) == 1 and "s1" in sessions.data:
            del sessions.data["s1"]  # the registry purged the session
        return None

    registry.hooks.insert(0, forget)
    with make_client(network, clock) as client:
        pushed = client.push_blob(REF, DATA, DESC, options=CHUNKS)
    assert registry.blobs[str(DESC.digest)] == DATA
    # PATCH -> 404: where does it stand? GET -> 404 too: HEAD (not there), a new session from byte 0.
    assert methods(registry) == ["HEAD", "POST", "PATCH", "PATCH", "GET", "HEAD", "POST", "PATCH", "PATCH", "PATCH",
                                 "PUT"]
    assert (pushed.restarts, pushed.resumes) == (1, 0)


def test_out_of_step_chunk_416_asks_where_to_go_on(network: FakeNetwork, registry: FakeRegistry,
                                                   sessions: Sessions, clock: FakeClock) -> None:
    def sneak(request: httpx.Request) -> httpx.Response | None:
        if request.method == "PATCH" and len(sessions.patches) == 1 and len(sessions.data["s1"]) == 4096:
            sessions.data["s1"] += DATA[4096:5000]  # bytes the client does not know arrived
        return None

    registry.hooks.insert(0, sneak)
    with make_client(network, clock) as client:
        pushed = client.push_blob(REF, DATA, DESC, options=CHUNKS)
    assert registry.blobs[str(DESC.digest)] == DATA
    assert [p[0] for p in sessions.patches] == ["0-4095", "4096-8191", "5000-9095", "9096-10239"]
    assert pushed.resumes == 1 and clock.sleeps == []


def test_retries_are_bounded(network: FakeNetwork, registry: FakeRegistry, sessions: Sessions,
                             clock: FakeClock) -> None:
    registry.hooks.insert(0, _drop_patch(sessions, nth=2, keep=False, times=100))
    with make_client(network, clock, max_retries=3) as client, pytest.raises(Unavailable) as info:
        client.push_blob(REF, DATA, DESC, options=CHUNKS)
    assert "gave up at byte 4096 of 10240 after 4 tries" in str(info.value)
    assert clock.sleeps == [0.5, 1.0, 2.0]


def test_mount_from_a_repository_that_has_it(network: FakeNetwork, registry: FakeRegistry, sessions: Sessions,
                                             clock: FakeClock) -> None:
    sessions.holdings.add(("team/base", str(DESC.digest)))
    with make_client(network, clock) as client:
        pushed = client.push_blob(REF, DATA, DESC, mount_from=["team/base"])
    assert (pushed.how, pushed.mounted_from, pushed.sent) == ("mounted", "team/base", 0)
    post = registry.requests[-1]
    assert post.method == "POST" and post.url.params["mount"] == DESC.digest and post.url.params["from"] == "team/base"
    assert methods(registry) == ["HEAD", "POST"]


def test_mount_refused_falls_back_to_the_session_it_opened(network: FakeNetwork, registry: FakeRegistry,
                                                           sessions: Sessions, clock: FakeClock) -> None:
    sessions.holdings.add(("team/third", str(DESC.digest)))
    with make_client(network, clock) as client:
        # The first source lacks it (202: a session, dropped for the next source), the second has it.
        assert client.push_blob(REF, DATA, DESC, mount_from=["team/other", "team/third"]).how == "mounted"
        assert methods(registry) == ["HEAD", "POST", "DELETE", "POST"]
        registry.requests.clear()
        registry.blobs.clear()
        # No source has it: the last 202's session carries the upload.
        pushed = client.push_blob(REF, DATA, DESC, mount_from=["team/nowhere"])
    assert (pushed.how, pushed.mounted_from) == ("uploaded", "")
    assert methods(registry) == ["HEAD", "POST", "PUT"]
    assert registry.blobs[str(DESC.digest)] == DATA


def test_progress_may_abort_the_upload(network: FakeNetwork, registry: FakeRegistry, sessions: Sessions,
                                       clock: FakeClock) -> None:
    class Stop(Exception):
        pass

    def progress(position: int) -> None:
        if position >= 4096:
            raise Stop()

    with make_client(network, clock) as client, pytest.raises(Stop):
        client.push_blob(REF, DATA, DESC, options=CHUNKS, progress=progress)
    assert str(DESC.digest) not in registry.blobs


def test_unknown_repository_is_one_clear_error(network: FakeNetwork, registry: FakeRegistry, clock: FakeClock) -> None:
    registry.hooks.append(lambda r: httpx.Response(404, content=error_body("NAME_UNKNOWN", "repository name not known "
                                                                           "to registry"))
                          if r.method == "POST" else None)
    with make_client(network, clock) as client, pytest.raises(NotFound) as info:
        client.push_blob(REF, DATA, DESC)
    assert "NAME_UNKNOWN" in str(info.value) and "team/app" in str(info.value)
    assert methods(registry) == ["HEAD", "POST"]
