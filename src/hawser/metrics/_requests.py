"""The gRPC request families, observed once per call by hawserd's interceptor."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

# Kubelet's calls take from well under a millisecond (Version, ListContainers)
# to minutes (PullImage): the default buckets stop at 10 s.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 120.0, 300.0)


def split_method(full: str) -> tuple[str, str]:
    """``"/runtime.v1.RuntimeService/Version"`` -> ``("runtime.v1.RuntimeService", "Version")``."""
    service, _, method = full.lstrip("/").rpartition("/")
    return service or "unknown", method or "unknown"


class RequestMetrics:
    """``hawser_grpc_requests_total{service,method,code}`` and
    ``hawser_grpc_request_duration_seconds{service,method}``.

    The label children are looked up once per method (and code) and kept:
    ``labels()`` takes a lock and builds a tuple each call, and this runs on
    every request.  The set is bounded by the methods the server registers and
    the 17 status codes."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._requests = Counter("hawser_grpc_requests", "gRPC requests handled, by method and status code.",
                                 ["service", "method", "code"], registry=registry)
        self._duration = Histogram("hawser_grpc_request_duration_seconds",
                                   "Time to handle a gRPC request, by method.", ["service", "method"],
                                   buckets=DURATION_BUCKETS, registry=registry)
        self._counters: dict[tuple[str, str], Counter] = {}
        self._histograms: dict[str, Histogram] = {}

    def observe(self, full_method: str, code: str, seconds: float) -> None:
        """One finished call of ``full_method`` ("/service/Method") with status ``code`` ("OK", "NOT_FOUND")."""
        histogram = self._histograms.get(full_method)
        if histogram is None:
            histogram = self._histograms[full_method] = self._duration.labels(*split_method(full_method))
        histogram.observe(seconds)
        counter = self._counters.get((full_method, code))
        if counter is None:
            counter = self._counters[full_method, code] = self._requests.labels(*split_method(full_method), code)
        counter.inc()
