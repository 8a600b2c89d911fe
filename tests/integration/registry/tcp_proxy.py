"""A TCP proxy on 127.0.0.1 that can cut or stall the download side once.

    with TcpProxy(("127.0.0.1", reg.port), cut_after=300_000) as proxy:
        ...  # talk to 127.0.0.1:proxy.port

``cut_after``: the first connection whose downstream bytes would pass this
count gets that many bytes and is then closed (once per proxy).
``stall_after``: every connection stops forwarding downstream after this many
bytes, holding the socket open until the proxy stops.
"""

from __future__ import annotations

import select
import socket
import threading
from types import TracebackType


class TcpProxy:
    def __init__(self, target: tuple[str, int], *, cut_after: int | None = None,
                 stall_after: int | None = None) -> None:
        self.target = target
        self.cut_after = cut_after
        self.stall_after = stall_after
        self.cuts = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._accepter = threading.Thread(target=self._accept, name="tcp-proxy", daemon=True)
        self._accepter.start()

    def __enter__(self) -> TcpProxy:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._accepter.join(timeout=5)
        self._listener.close()
        for t in self._threads:
            t.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            t = threading.Thread(target=self._pump, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _take_cut(self, down: int, incoming: int) -> int | None:
        """How many of ``incoming`` bytes to pass before cutting, or None for no cut."""
        with self._lock:
            if self.cut_after is None or self.cuts or down + incoming <= self.cut_after:
                return None
            self.cuts += 1
            return self.cut_after - down

    def _pump(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        down = 0
        stalled = False
        try:
            while not self._stop.is_set():
                watch = [client] if stalled else [client, upstream]
                readable, _, _ = select.select(watch, [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        upstream.sendall(data)
                        continue
                    keep = self._take_cut(down, len(data))
                    if keep is not None:
                        client.sendall(data[:max(keep, 0)])
                        return
                    if self.stall_after is not None and down + len(data) > self.stall_after:
                        client.sendall(data[:self.stall_after - down])
                        down = self.stall_after
                        stalled = True
                        continue
                    client.sendall(data)
                    down += len(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()
