"""In-memory registries behind httpx.MockTransport, and a fake clock.

A FakeNetwork routes requests by host to FakeRegistry / FakeTokenServer
instances; hosts nobody serves refuse connections, as a closed port does.
Tests script misbehaviour with ``registry.hooks``: callables that may answer a
request themselves (return a Response) or let the registry answer (None).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx

from hawser.oci import Descriptor, Digest, media
from hawser.registry import RegistryClient, RegistryOptions

Hook = Callable[[httpx.Request], "httpx.Response | None"]


class FakeClock:
    """A monotonic clock that only moves when told to, or when something sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


class ScriptedStream(httpx.SyncByteStream):
    """A response body that yields ``parts`` then raises ``error`` (if any)."""

    def __init__(self, parts: list[bytes], error: Exception | None = None) -> None:
        self.parts = parts
        self.error = error

    def __iter__(self) -> Iterator[bytes]:
        yield from self.parts
        if self.error is not None:
            raise self.error


def refused(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("[Errno 111] Connection refused", request=request)


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message}]}).encode()


@dataclass
class FakeTokenServer:
    """Issues opaque tokens ``tok-N`` for known users (or anonymously if allowed)."""

    users: dict[str, str] = field(default_factory=dict)
    lifetime: int | None = 300
    allow_anonymous: bool = True
    issued: list[tuple[str, str, tuple[str, ...]]] = field(default_factory=list)  # (token, user, scopes)
    requests: list[httpx.Request] = field(default_factory=list)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        user = ""
        auth = request.headers.get("authorization", "")
        if auth.startswith("Basic "):
            name, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(name) != password:
                return httpx.Response(401, content=error_body("UNAUTHORIZED", "bad credentials"))
            user = name
        elif request.method == "POST":
            form = dict(x.split("=", 1) for x in request.content.decode().split("&"))
            if form.get("refresh_token") != "identity-123":
                return httpx.Response(401, content=error_body("UNAUTHORIZED", "bad refresh token"))
            user = "identity-user"
        elif not self.allow_anonymous:
            return httpx.Response(401, content=error_body("UNAUTHORIZED", "login required"))
        scopes = tuple(request.url.params.get_list("scope"))
        token = f"tok-{len(self.issued) + 1}"
        self.issued.append((token, user, scopes))
        body: dict[str, object] = {"token": token}
        if self.lifetime is not None:
            body["expires_in"] = self.lifetime
        return httpx.Response(200, json=body)


@dataclass
class FakeRegistry:
    """The parts of the distribution API the client uses, kept in dicts."""

    host: str = "registry.test"
    auth: str | None = None  # None, "basic" or "bearer"
    users: dict[str, str] = field(default_factory=dict)
    realm: str = "https://auth.test/token"
    token_server: FakeTokenServer | None = None
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[tuple[str, str], tuple[bytes, str]] = field(default_factory=dict)
    hooks: list[Hook] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    uploads: dict[str, bytearray] = field(default_factory=dict)
    revoked: set[str] = field(default_factory=set)

    # --- content helpers ------------------------------------------------------

    def add_blob(self, data: bytes, media_type: str = media.OCI_LAYER_GZIP) -> Descriptor:
        digest = Digest.of(data)
        self.blobs[digest] = data
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    def add_manifest(self, repo: str, tag: str | None, data: bytes, media_type: str) -> Descriptor:
        digest = Digest.of(data)
        self.manifests[(repo, digest)] = (data, media_type)
        if tag:
            self.manifests[(repo, tag)] = (data, media_type)
        return Descriptor(media_type=media_type, digest=digest, size=len(data))

    def add_image(self, repo: str = "team/app", tag: str = "v1", layer: bytes = b"layer-bytes" * 100,
                  ) -> tuple[Descriptor, Descriptor, Descriptor]:
        """A one-layer OCI image; returns (manifest, config, layer) descriptors."""
        layer_desc = self.add_blob(layer)
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": [str(layer_desc.digest)]}}).encode()
        config_desc = self.add_blob(config, media.OCI_CONFIG)
        manifest = json.dumps({"schemaVersion": 2, "mediaType": media.OCI_MANIFEST,
                               "config": config_desc.to_json(), "layers": [layer_desc.to_json()]}).encode()
        return self.add_manifest(repo, tag, manifest, media.OCI_MANIFEST), config_desc, layer_desc

    # --- HTTP ---------------------------------------------------------------

    def _challenge(self, repo: str, push: bool) -> httpx.Response:
        if self.auth == "basic":
            header = 'Basic realm="fake registry"'
        else:
            actions = "pull,push" if push else "pull"
            header = f'Bearer realm="{self.realm}",service="{self.host}",scope="repository:{repo}:{actions}"'
        return httpx.Response(401, headers={"WWW-Authenticate": header},
                              content=error_body("UNAUTHORIZED", "authentication required"))

    def _authorized(self, request: httpx.Request) -> bool:
        auth = request.headers.get("authorization", "")
        if self.auth == "basic":
            if not auth.startswith("Basic "):
                return False
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            return self.users.get(user) == password and user in self.users
        if not auth.startswith("Bearer "):
            return False
        token = auth[7:]
        assert self.token_server is not None
        return token not in self.revoked and any(t == token for t, _, _ in self.token_server.issued)

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        for hook in list(self.hooks):
            answer = hook(request)
            if answer is not None:
                return answer
        return self.route(request)

    def route(self, request: httpx.Request) -> httpx.Response:
        """The registry's own answer, without hooks (hooks use it to distort it)."""
        path = request.url.path
        m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/(.+)", path)
        if m is None:
            return httpx.Response(404, content=error_body("NAME_UNKNOWN", "unknown"))
        repo, kind, obj = m.groups()
        if self.auth and not self._authorized(request):
            return self._challenge(repo, push=request.method in ("POST", "PUT", "PATCH"))
        if kind == "blobs" and obj.startswith("uploads/"):
            return self._upload(request, path)
        if kind == "manifests":
            return self._manifest(request, repo, obj)
        return self._blob(request, obj)

    def _manifest(self, request: httpx.Request, repo: str, obj: str) -> httpx.Response:
        if request.method == "PUT":
            data = request.read()
            media_type = request.headers.get("content-type", "")
            digest = Digest.of(data)
            self.manifests[(repo, digest)] = (data, media_type)
            if ":" not in obj:
                self.manifests[(repo, obj)] = (data, media_type)
            return httpx.Response(201, headers={"Docker-Content-Digest": digest,
                                                "Location": f"/v2/{repo}/manifests/{digest}"})
        found = self.manifests.get((repo, obj))
        if found is None:
            return httpx.Response(404, content=error_body("MANIFEST_UNKNOWN", "manifest unknown"))
        data, media_type = found
        return httpx.Response(200, content=data, headers={
            "Content-Type": media_type, "Docker-Content-Digest": Digest.of(data)})

    def _blob(self, request: httpx.Request, digest: str) -> httpx.Response:
        data = self.blobs.get(digest)
        if data is None:
            return httpx.Response(404, content=error_body("BLOB_UNKNOWN", "blob unknown to registry"))
        if request.method == "HEAD":
            return httpx.Response(200, headers={"Content-Length": str(len(data))})
        rng = request.headers.get("range")
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return httpx.Response(416)
            return httpx.Response(206, content=data[start:], headers={
                "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        return httpx.Response(200, content=data)

    def _upload(self, request: httpx.Request, path: str) -> httpx.Response:
        if request.method == "POST":
            uid = f"u{len(self.uploads) + 1}"
            self.uploads[uid] = bytearray()
            # A relative Location, as distribution may send one.
            return httpx.Response(202, headers={"Location": f"{path.rstrip('/')}/{uid}?_state=abc"})
        if request.method == "PUT":
            uid = path.rsplit("/", 1)[1]
            if request.url.params.get("_state") != "abc":
                return httpx.Response(400, content=error_body("BLOB_UPLOAD_INVALID", "lost state"))
            data = bytes(self.uploads.pop(uid)) + request.read()
            digest = request.url.params.get("digest", "")
            if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
                return httpx.Response(400, content=error_body("DIGEST_INVALID", "digest did not match"))
            self.blobs[digest] = data
            return httpx.Response(201, headers={"Docker-Content-Digest": digest})
        return httpx.Response(405)


class FakeNetwork:
    """Routes requests by ``host[:port]``; unknown hosts refuse the connection."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[httpx.Request], httpx.Response]] = {}
        self.log: list[httpx.Request] = []

    def add(self, netloc: str, handler: Callable[[httpx.Request], httpx.Response]) -> None:
        self.routes[netloc] = handler

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.log.append(request)
        netloc = request.url.netloc.decode("ascii")
        handler = self.routes.get(netloc)
        if handler is None:
            return refused(request)
        return handler(request)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)


def make_client(network: FakeNetwork, clock: FakeClock, **overrides: object) -> RegistryClient:
    options: dict[str, object] = {"transport": network.transport(), "clock": clock, "sleep": clock.sleep,
                                  "docker_config": None}
    options.update(overrides)
    return RegistryClient(RegistryOptions(**options))  # type: ignore[arg-type]
