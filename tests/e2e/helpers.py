"""Small helpers for driving hawserd's CRI services in tests."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
from cri_api.v1 import api_pb2
from prometheus_client.parser import text_string_to_metric_families

from tests.support.images import BuiltImage, build_image
from tests.support.layers import LayerBuilder

if TYPE_CHECKING:
    from tests.support.hawserd import Hawserd


def spec(image: str) -> api_pb2.ImageSpec:
    return api_pb2.ImageSpec(image=image)


def pull_request(image: str, **auth: str) -> api_pb2.PullImageRequest:
    request = api_pb2.PullImageRequest(image=spec(image))
    if auth:
        request.auth.CopyFrom(api_pb2.AuthConfig(**auth))
    return request


def status_code(call: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[grpc.StatusCode, str]:
    """The status code and message an RPC fails with (AssertionError if it succeeds)."""
    try:
        call(*args, **kwargs)
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""  # type: ignore[attr-defined]
    raise AssertionError(f"{call} succeeded; an error was expected")


def small_image(text: str) -> BuiltImage:
    """A one-layer image whose content (and so whose ID) depends on ``text``."""
    layer = LayerBuilder().add_dir("etc").add_file("etc/hello.txt", text.encode()).build()
    return build_image([layer])


class EventStream:
    """GetContainerEvents read in a thread."""

    def __init__(self, hawserd: Hawserd) -> None:
        self.call = hawserd.client().runtime.GetContainerEvents(api_pb2.GetEventsRequest())
        self.events: list[api_pb2.ContainerEventResponse] = []
        self.error: grpc.RpcError | None = None
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.append(event)
        except grpc.RpcError as exc:
            self.error = exc

    def wait_for(self, predicate: Callable[[list[api_pb2.ContainerEventResponse]], bool],
                 timeout: float = 15.0) -> list[api_pb2.ContainerEventResponse]:
        deadline = time.monotonic() + timeout
        while not predicate(self.events) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert predicate(self.events), [(e.container_id[:12], e.container_event_type) for e in self.events]
        return self.events

    def close(self) -> None:
        self.call.cancel()
        self.thread.join(5)


def kinds(events: list[api_pb2.ContainerEventResponse], container_id: str) -> list[int]:
    return [e.container_event_type for e in events if e.container_id == container_id]


# --- hawserd's metrics endpoint -----------------------------------------------------------

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int, accept: str | None = None) -> tuple[str, str]:
    """(content type, body) of http://127.0.0.1:PORT/metrics, never through a proxy."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Accept": accept} if accept else {})
    with opener.open(request, timeout=10) as answer:
        return answer.headers["Content-Type"], answer.read().decode()


def samples(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}
