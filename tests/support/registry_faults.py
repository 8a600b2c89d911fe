"""A fault-injecting HTTP reverse proxy in front of a real registry, in process.

    with RegistryFaultProxy(registry.host) as proxy:
        proxy.add(Fault(r"/blobs/", Drip(chunk=16, interval=0.2)))          # every blob GET drips
        proxy.add(Fault(r"/manifests/", Status(429, {"Retry-After": "1"}), attempts={1}))
        ref = f"{proxy.host}/test/busybox:latest"                          # pull through it

A request is matched against the faults in the order they were added: the
first whose ``path`` regex is found in the request path (query excluded),
whose ``method`` agrees and whose ``attempts`` holds the request's attempt
number gets its ``action``; every other request is forwarded unchanged.  The
attempt number counts requests with the same method and path, from 1, whether
or not they were faulted: ``attempts={1}`` fails each blob's first GET and
lets its retry through.

Actions: ``Drip`` (the body a few bytes at a time), ``WrongLength`` (a
Content-Length shorter or longer than the body sent), ``WrongBody`` (the
declared Content-Length, a body longer or shorter), ``Status`` (an answer
of its own: 429 with Retry-After, 5xx, ...), ``Reset`` (RST, no answer),
``Close`` (FIN, no answer), ``Cut`` (part of the body, then RST).

``token_uses``: each of the first ``token_count`` bearer tokens the proxy
sees may be used that many times; after that its requests get a 401 with
the registry's own Bearer challenge (``error="invalid_token"``), as a
registry answers a token that expired mid-pull.  (Tokens cannot be made to
expire at the real registry: distribution allows 60 s of clock skew.)

``proxy.seen`` records every request (method, path, attempt, action, status).
Everything runs in threads of this process; ``stop()`` (or leaving the
``with``) closes every connection, ends dripping answers and joins the
threads.  Only 127.0.0.1 is used.
"""

from __future__ import annotations

import http.client
import re
import socket
import socketserver
import struct
import threading
import time
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType

# Hop-by-hop headers and the ones the proxy sets itself.
_DROP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "te",
                   "trailer", "upgrade"})


@dataclass(frozen=True)
class Drip:
    """Forward the answer, but its body ``chunk`` bytes every ``interval`` seconds
    (after the first ``after`` bytes, sent at once)."""

    chunk: int = 1
    interval: float = 0.5
    after: int = 0


@dataclass(frozen=True)
class WrongLength:
    """Forward the answer with its Content-Length off by ``delta``, the body
    intact (so the body is longer than declared for a negative delta, shorter
    for a positive one).  Then the connection is closed, or kept open with
    ``keep_open`` (the client waits for the missing bytes, or finds the extra
    ones where its next answer should be)."""

    delta: int
    keep_open: bool = False


@dataclass(frozen=True)
class WrongBody:
    """Forward the answer with the registry's Content-Length but a body
    ``delta`` bytes longer (junk appended) or shorter (cut off).  ``chunked``:
    no Content-Length at all, the altered body in chunked encoding.  Then the
    connection is closed, or kept open with ``keep_open``."""

    delta: int
    chunked: bool = False
    keep_open: bool = False


@dataclass(frozen=True)
class Status:
    """Answer ``code`` with ``headers`` (or what a function of no arguments
    returns when the answer is sent: an HTTP-date relative to then) and
    ``body``; the registry is not asked."""

    code: int
    headers: Mapping[str, str] | Callable[[], Mapping[str, str]] = field(default_factory=dict)
    body: bytes = b""


@dataclass(frozen=True)
class Reset:
    """Close the connection with a TCP RST instead of answering."""


@dataclass(frozen=True)
class Close:
    """Close the connection (FIN) instead of answering."""


@dataclass(frozen=True)
class Cut:
    """Send the headers and the first ``after`` body bytes, then reset the connection."""

    after: int


Action = Drip | WrongLength | WrongBody | Status | Reset | Close | Cut


@dataclass
class Fault:
    """Apply ``action`` to requests whose path matches ``path`` (a regex)."""

    path: str
    action: Action
    method: str | None = "GET"
    attempts: Container[int] | None = None  # None: every attempt
    hits: int = 0

    def matches(self, method: str, path: str, attempt: int) -> bool:
        return ((self.method is None or self.method == method) and re.search(self.path, path) is not None
                and (self.attempts is None or attempt in self.attempts))


@dataclass(frozen=True)
class Seen:
    method: str
    path: str
    attempt: int
    action: str  # the action's class name, "" when forwarded untouched
    status: int  # 0 when no answer was sent
    range: str  # the request's Range header, "" without one
    at: float  # time.monotonic() when the request arrived


class RegistryFaultProxy:
    """See the module docstring."""

    def __init__(self, upstream: str, *, token_uses: int | None = None, token_count: int = 1) -> None:
        self.upstream = upstream
        self.token_uses = token_uses
        self.token_count = token_count
        self.faults: list[Fault] = []
        self.seen: list[Seen] = []
        self.token_refusals = 0
        self._attempts: dict[tuple[str, str], int] = {}
        self._token_use: dict[str, int] = {}
        self._challenge: tuple[str, str] | None = None  # (realm, service) of the registry's Bearer challenge
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._server = _Server(("127.0.0.1", 0), _handler(self), self)
        self.port: int = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="registry-fault-proxy", daemon=True)
        self._thread.start()

    def __enter__(self) -> RegistryFaultProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear(self) -> None:
        """Drop every fault (and the token limit): from now on, a plain proxy."""
        with self._lock:
            self.faults.clear()
            self.token_uses = None

    def stop(self) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            open_sockets = list(self._sockets)
        for sock in open_sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._server.server_close()  # joins the handler threads (block_on_close)
        self._thread.join(timeout=5)

    def requests(self, pattern: str = "", *, method: str | None = None) -> list[Seen]:
        """The requests seen whose path matches ``pattern``."""
        with self._lock:
            return [s for s in self.seen if re.search(pattern, s.path) and (method is None or s.method == method)]

    # --- used by the handler --------------------------------------------------

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._lock:
            (self._sockets.add if add else self._sockets.discard)(sock)

    def _classify(self, method: str, path: str, authorization: str) -> tuple[int, Action | None, bool]:
        """(attempt, the action to take, whether the bearer token is used up)."""
        with self._lock:
            key = (method, path)
            attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
            expired = False
            if self.token_uses is not None and authorization.startswith("Bearer "):
                token = authorization[len("Bearer "):]
                if token in self._token_use or len(self._token_use) < self.token_count:
                    uses = self._token_use[token] = self._token_use.get(token, 0) + 1
                    expired = uses > self.token_uses
            for fault in self.faults:
                if fault.matches(method, path, attempt):
                    fault.hits += 1
                    return attempt, fault.action, expired
            return attempt, None, expired

    def _learn(self, header: str) -> None:
        realm = re.search(r'realm="([^"]*)"', header)
        service = re.search(r'service="([^"]*)"', header)
        if header.lower().startswith("bearer") and realm:
            with self._lock:
                self._challenge = (realm.group(1), service.group(1) if service else "")

    def _expired_challenge(self, path: str) -> str:
        with self._lock:
            realm, service = self._challenge or ("", "")
            self.token_refusals += 1
        match = re.match(r"/v2/(.+)/(?:manifests|blobs)/", path)
        scope = f"repository:{match.group(1)}:pull" if match else ""
        return (f'Bearer realm="{realm}",service="{service}",scope="{scope}",error="invalid_token"')

    def _record(self, seen: Seen) -> None:
        with self._lock:
            self.seen.append(seen)


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    allow_reuse_address = True
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler],
                 proxy: RegistryFaultProxy) -> None:
        self.proxy = proxy
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        self.proxy._track(request, True)
        super().process_request(request, client_address)  # type: ignore[arg-type]

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        self.proxy._track(request, False)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that went away mid-answer is what these tests are about


def _handler(proxy: RegistryFaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _serve(self) -> None:
            at = time.monotonic()
            path = self.path.split("?", 1)[0]
            range_ = self.headers.get("Range", "")

            def seen(action: str, status: int) -> Seen:
                return Seen(self.command, path, attempt, action, status, range_, at)

            attempt, action, expired = proxy._classify(self.command, path, self.headers.get("Authorization", ""))
            name = type(action).__name__ if action is not None else ""
            length = int(self.headers.get("Content-Length") or 0)
            request_body = self.rfile.read(length) if length else None
            if expired:
                body = b'{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}'
                self._answer(401, [("Content-Type", "application/json"),
                                   ("WWW-Authenticate", proxy._expired_challenge(path))], body)
                proxy._record(seen("TokenExpired", 401))
                return
            if isinstance(action, (Reset, Close)):
                proxy._record(seen(name, 0))
                self._drop(reset=isinstance(action, Reset))
                return
            if isinstance(action, Status):
                own = action.headers() if callable(action.headers) else action.headers
                self._answer(action.code, list(own.items()), action.body)
                proxy._record(seen(name, action.code))
                return
            status, headers, body = self._upstream(request_body)
            proxy._record(seen(name, status))
            if action is None or status >= 300:
                self._answer(status, headers, body, head=self.command == "HEAD")
            elif isinstance(action, Drip):
                self._drip(status, headers, body, action)
            elif isinstance(action, WrongLength):
                self._send_head(status, headers, max(len(body) + action.delta, 0))
                self._write(body)
                if not action.keep_open:
                    self._drop(reset=False)
            elif isinstance(action, WrongBody):
                if action.delta >= 0:
                    sent = body + (b"junk" * action.delta)[:action.delta]
                else:
                    sent = body[:max(len(body) + action.delta, 0)]
                if action.chunked:
                    self._send_head(status, [*headers, ("Transfer-Encoding", "chunked")], None)
                    self._write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(sent), sent) if sent else b"0\r\n\r\n")
                else:
                    self._send_head(status, headers, len(body))
                    self._write(sent)
                if not action.keep_open:
                    self._drop(reset=False)
            elif isinstance(action, Cut):
                self._send_head(status, headers, len(body))
                self._write(body[:action.after])
                self._drop(reset=True)

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _serve

        def _upstream(self, body: bytes | None) -> tuple[int, list[tuple[str, str]], bytes]:
            conn = http.client.HTTPConnection(proxy.upstream, timeout=30)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROP}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                out = [(k, v) for k, v in resp.getheaders() if k.lower() not in _DROP]
                if self.command == "HEAD":
                    out += [(k, v) for k, v in resp.getheaders() if k.lower() == "content-length"]
                for k, v in out:
                    if k.lower() == "www-authenticate":
                        proxy._learn(v)
                return resp.status, out, data
            finally:
                conn.close()

        def _send_head(self, status: int, headers: list[tuple[str, str]], length: int | None) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            if length is not None:
                self.send_header("Content-Length", str(length))
            self.end_headers()

        def _answer(self, status: int, headers: list[tuple[str, str]], body: bytes, *, head: bool = False) -> None:
            self._send_head(status, headers, None if head else len(body))
            if not head:
                self._write(body)

        def _write(self, data: bytes) -> bool:
            try:
                self.wfile.write(data)
                self.wfile.flush()
                return True
            except OSError:
                self.close_connection = True
                return False

        def _drip(self, status: int, headers: list[tuple[str, str]], body: bytes, drip: Drip) -> None:
            self._send_head(status, headers, len(body))
            if not self._write(body[:drip.after]):
                return
            pos = drip.after
            while pos < len(body):
                if proxy._stopping.wait(drip.interval):
                    self._drop(reset=True)
                    return
                if not self._write(body[pos:pos + drip.chunk]):
                    return
                pos += drip.chunk

        def _drop(self, *, reset: bool) -> None:
            self.close_connection = True
            try:
                if reset:
                    # SO_LINGER 0: close() sends RST, the peer sees "connection reset".
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                else:
                    self.connection.shutdown(socket.SHUT_WR)
                # rfile holds a reference to the socket: close both, or the fd stays open.
                self.rfile.close()
                self.connection.close()
            except OSError:
                pass

    return Handler
