"""hawserd's Prometheus metrics: the registry, its collectors, and the HTTP
endpoint that serves them (issue 14, Observability).

``new_metrics`` builds one ``Metrics``: a ``CollectorRegistry`` of hawserd's
own (never prometheus-client's global one, so that tests and a second daemon
in one process see only their own series) with

- ``hawser_grpc_requests_total{service,method,code}`` and
  ``hawser_grpc_request_duration_seconds{service,method}``, observed by the
  daemon's server interceptor through ``RequestMetrics.observe``;
- ``hawser_containers{state}`` and ``hawser_pods{state}``, counted at scrape
  time from the records (``StateCollector``);
- cAdvisor's container families (``container_cpu_usage_seconds_total``,
  ``container_memory_working_set_bytes``, ... by namespace, pod, container,
  image, id), read from the CRI's containers' and pods' cgroups at scrape
  time (``CgroupCollector``);
- the process's RSS, fds, threads and Python GC (prometheus-client's own collectors);
- ``hawser_build_info{version}`` = 1.

``MetricsServer`` serves the registry on ``host:port``.
"""

from __future__ import annotations

from hawser.metrics._cadvisor import CgroupCollector, CgroupSource, cgroup_source
from hawser.metrics._registry import Metrics, new_metrics
from hawser.metrics._requests import RequestMetrics, split_method
from hawser.metrics._server import MetricsServer, parse_address
from hawser.metrics._states import StateCollector, container_states, pod_states

__all__ = [
    "CgroupCollector",
    "CgroupSource",
    "Metrics",
    "MetricsServer",
    "RequestMetrics",
    "StateCollector",
    "cgroup_source",
    "container_states",
    "new_metrics",
    "parse_address",
    "pod_states",
    "split_method",
]
