"""A reverse proxy in front of a real registry that injects faults on demand.

Tests use it to serve a blob whose bytes do not match its digest, to cut a
connection in the middle of a blob, or to replace a manifest with a hostile
one, while everything else comes from the real docker-registry.
"""

from __future__ import annotations

import http.client
import http.server
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Fault:
    """What to do to responses whose path contains ``match``."""

    match: str
    body: bytes | None = None          # replace the body
    content_type: str | None = None    # replace the Content-Type
    corrupt: bool = False              # flip a byte in the middle of the body
    cut_after: int | None = None       # close the connection after this many body bytes
    status: int | None = None          # answer with this status and no body
    times: int = 1 << 30               # how many responses to affect
    hits: int = 0


@dataclass
class FaultProxy:
    host: str
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)

    def add(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    def _fault_for(self, path: str) -> Fault | None:
        for fault in self.faults:
            if fault.match in path and fault.hits < fault.times:
                fault.hits += 1
                return fault
        return None


def _handler(proxy: FaultProxy) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _forward(self) -> None:
            proxy.requests.append(f"{self.command} {self.path}")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            fault = proxy._fault_for(self.path) if resp.status < 300 or resp.status == 307 else None
            status = resp.status
            out_headers = [(k, v) for k, v in resp.getheaders()
                           if k.lower() not in ("content-length", "connection", "transfer-encoding")]
            if fault is not None:
                if fault.status is not None:
                    status, data = fault.status, b""
                if fault.body is not None:
                    data = fault.body
                if fault.corrupt and data:
                    mid = len(data) // 2
                    data = data[:mid] + bytes([data[mid] ^ 0xFF]) + data[mid + 1:]
                if fault.content_type is not None:
                    out_headers = [(k, v) for k, v in out_headers if k.lower() != "content-type"]
                    out_headers.append(("Content-Type", fault.content_type))
                if fault.body is not None:
                    out_headers = [(k, v) for k, v in out_headers if k.lower() != "docker-content-digest"]
            self.send_response(status)
            for k, v in out_headers:
                self.send_header(k, v)
            range_header = self.headers.get("Range")
            del range_header
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command == "HEAD":
                return
            if fault is not None and fault.cut_after is not None:
                self.wfile.write(data[: fault.cut_after])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

    return Handler


@contextmanager
def fault_proxy(upstream: str) -> Iterator[FaultProxy]:
    """A proxy on 127.0.0.1 (random port) forwarding to ``upstream`` (host:port)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    proxy = FaultProxy(host=f"127.0.0.1:{server.server_address[1]}", upstream=upstream)
    server.RequestHandlerClass = _handler(proxy)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


Hook = Callable[[str], None]
