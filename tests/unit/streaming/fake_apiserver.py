"""Just enough of a Kubernetes API server for the real kubectl to exec, attach and
port-forward through: discovery, one running pod, and the streaming subresources,
which it splices to a URL of the streaming server (as the API server and the
kubelet do with the CRI URL)."""

from __future__ import annotations

import asyncio
import json
from contextlib import suppress
from typing import Any
from urllib.parse import urlsplit

POD = "p1"
NAMESPACE = "default"
CONTAINER = "c1"

_API_RESOURCES = {
    "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1",
    "resources": [
        {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
         "verbs": ["get", "list"], "shortNames": ["po"]},
        {"name": "pods/exec", "singularName": "", "namespaced": True, "kind": "PodExecOptions", "verbs": ["create",
                                                                                                         "get"]},
        {"name": "pods/attach", "singularName": "", "namespaced": True, "kind": "PodAttachOptions",
         "verbs": ["create", "get"]},
        {"name": "pods/portforward", "singularName": "", "namespaced": True, "kind": "PodPortForwardOptions",
         "verbs": ["create", "get"]},
    ],
}


def _pod(tty: bool) -> dict[str, Any]:
    return {
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": POD, "namespace": NAMESPACE, "uid": "0c0c0c0c-1111-2222-3333-444444444444"},
        "spec": {"containers": [{"name": CONTAINER, "image": "busybox", "stdin": True, "tty": tty}]},
        "status": {"phase": "Running", "containerStatuses": [
            {"name": CONTAINER, "ready": True, "restartCount": 0, "image": "busybox", "imageID": "",
             "state": {"running": {"startedAt": "2024-01-01T00:00:00Z"}}}]},
    }


class FakeApiServer:
    def __init__(self) -> None:
        self.targets: dict[str, list[str]] = {"exec": [], "attach": [], "portforward": []}
        self.upgrades: list[tuple[str, str, str]] = []  # (subresource, method, Upgrade header)
        self.tty = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def route(self, subresource: str, streaming_url: str) -> None:
        """The next ``subresource`` upgrade goes to ``streaming_url``."""
        self.targets[subresource].append(streaming_url)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            method, target, _version = head.split(b"\r\n", 1)[0].decode().split(" ")
            headers = {line.split(":", 1)[0].strip().lower(): line.split(":", 1)[1].strip()
                       for line in head.decode("latin-1").split("\r\n")[1:] if ":" in line}
            path = urlsplit(target).path
            subresource = path.rsplit("/", 1)[-1]
            if path.startswith(f"/api/v1/namespaces/{NAMESPACE}/pods/{POD}/") and subresource in self.targets:
                self.upgrades.append((subresource, method, headers.get("upgrade", "")))
                if not self.targets[subresource]:
                    await self._json(writer, 404, {"kind": "Status", "status": "Failure", "reason": "NotFound"})
                    return
                await self._splice(self.targets[subresource].pop(0), head, reader, writer)
                return
            body: Any
            if path == "/api":
                body = {"kind": "APIVersions", "versions": ["v1"],
                        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}
            elif path == "/apis":
                body = {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
            elif path == "/api/v1":
                body = _API_RESOURCES
            elif path == f"/api/v1/namespaces/{NAMESPACE}/pods/{POD}":
                body = _pod(self.tty)
            else:
                await self._json(writer, 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                               "reason": "NotFound", "code": 404, "message": f"{path} not found"})
                return
            await self._json(writer, 200, body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)

    async def _json(self, writer: asyncio.StreamWriter, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(raw)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + raw)
        await writer.drain()

    async def _splice(self, streaming_url: str, head: bytes, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        # Like the kubelet's proxy: same method, headers and query, the CRI URL's path.
        parts = urlsplit(streaming_url)
        assert parts.hostname is not None and parts.port is not None
        first, rest = head.split(b"\r\n", 1)
        method, target, version = first.split(b" ")
        query = urlsplit(target.decode()).query
        new_target = parts.path + (f"?{query}" if query else "")
        up_reader, up_writer = await asyncio.open_connection(parts.hostname, parts.port)
        up_writer.write(b" ".join([method, new_target.encode(), version]) + b"\r\n" + rest)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with suppress(ConnectionError, OSError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
                if sink.can_write_eof():
                    sink.write_eof()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            up_writer.close()


def kubeconfig(server_url: str) -> str:
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server_url}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake", "namespace": NAMESPACE}}],
    })
