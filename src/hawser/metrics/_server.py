"""The HTTP endpoint Prometheus scrapes.

prometheus-client's own threaded WSGI server, bound to the address, rather
than a handler on hawserd's event loop: a scrape lists the records (SQLite) and
reads /proc, blocking work that must stay off the loop, and in the server's
thread it does, with the library's exposition as it is (content negotiation
on Accept: text 0.0.4 or OpenMetrics; gzip on Accept-Encoding).  Binding
happens in ``start``, so a busy address fails hawserd's start-up; ``stop``
shuts the server down and joins its thread.
"""

from __future__ import annotations

import asyncio
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server

from hawser.errors import InvalidArgument, Unavailable


def parse_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:1338"`` or ``"[::1]:1338"`` -> ``(host, port)``; InvalidArgument otherwise."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise InvalidArgument(f"metrics address {address!r} is not HOST:PORT",
                              hint='say e.g. "127.0.0.1:1338" or "[::1]:1338"; "" turns the endpoint off')
    return host, int(port)


class MetricsServer:
    """Serves ``registry`` on ``address`` (HOST:PORT) from a thread of its own."""

    def __init__(self, address: str, registry: CollectorRegistry) -> None:
        self.address = address
        self.registry = registry
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound (the one chosen when the address said 0); 0 before ``start``."""
        return self._server.server_port if self._server is not None else 0

    def start(self) -> None:
        """Bind and serve; Unavailable, with a hint, if the address cannot be bound."""
        host, port = parse_address(self.address)
        try:
            self._server, self._thread = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            raise Unavailable(f"cannot listen on {self.address} for metrics: {exc.strerror or exc}",
                              hint='choose another [metrics] address (--metrics-address), or "" for none') from None

    async def stop(self) -> None:
        """Stop serving and join the thread; idempotent.  ``shutdown`` waits for
        the serve loop's next poll (up to half a second): off the event loop."""
        server, thread, self._server, self._thread = self._server, self._thread, None, None
        if server is None:
            return

        def close() -> None:
            server.shutdown()
            server.server_close()
            if thread is not None:
                thread.join()

        await asyncio.to_thread(close)
