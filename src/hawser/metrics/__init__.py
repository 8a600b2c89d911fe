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
- pulls (``hawser_image_pulls_total{result}``, ``hawser_image_pull_failures_total{kind}``,
  ``hawser_image_pull_bytes_total``, ``hawser_image_pull_layers_total{how}``,
  ``hawser_image_pull_stage_seconds{stage}``) and garbage collections
  (``hawser_gc_runs_total``, ``hawser_gc_duration_seconds``,
  ``hawser_gc_removed_total{kind}``, ``hawser_gc_freed_bytes_total``,
  ``hawser_gc_errors_total``), heard from the CRI's ImageService
  (``ImageMetrics.observe``); ``hawser_image_pulls_merged_total`` from the
  CRI's merged pulls (``MergedPulls``);
- ``hawser_store_content_bytes`` and ``hawser_store_snapshots_bytes``, cached
  (``StoreSizeCollector``);
- ``hawser_container_starts_total`` and ``hawser_container_exits_total{reason}``,
  heard from the ContainerManager (``ContainerMetrics.observe``);
- ``hawser_daemon_start_time_seconds``, ``hawser_daemon_starts_total`` (kept in
  ``state/daemon-starts``) and ``hawser_recovered_total{kind,outcome}``
  (``DaemonCollector``);
- the process's RSS, fds, threads and Python GC (prometheus-client's own collectors);
- ``hawser_build_info{version}`` = 1.

``MetricsServer`` serves the registry on ``host:port``.
"""

from __future__ import annotations

from hawser._lazy import lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from hawser.metrics._cadvisor import CgroupCollector, CgroupSource, cgroup_source
    from hawser.metrics._images import ImageMetrics, MergedPulls
    from hawser.metrics._lifecycle import ContainerMetrics, DaemonCollector
    from hawser.metrics._registry import Metrics, new_metrics
    from hawser.metrics._requests import RequestMetrics, split_method
    from hawser.metrics._server import MetricsServer, parse_address
    from hawser.metrics._starts import record_start
    from hawser.metrics._states import StateCollector, container_states, pod_states
    from hawser.metrics._store import SnapshotUsage, StoreSizeCollector, content_bytes, store_sizes

# prometheus-client (and the http.server, email and urllib it imports) is ~3 MB of
# a daemon's memory: loaded with the first name that needs it, so that hawserd with
# the endpoint off, which still counts its starts (``record_start``), never holds it.
_EXPORTS = {
    "CgroupCollector": "_cadvisor", "CgroupSource": "_cadvisor", "cgroup_source": "_cadvisor",
    "ImageMetrics": "_images", "MergedPulls": "_images",
    "ContainerMetrics": "_lifecycle", "DaemonCollector": "_lifecycle",
    "Metrics": "_registry", "new_metrics": "_registry",
    "RequestMetrics": "_requests", "split_method": "_requests",
    "MetricsServer": "_server", "parse_address": "_server",
    "record_start": "_starts",
    "StateCollector": "_states", "container_states": "_states", "pod_states": "_states",
    "SnapshotUsage": "_store", "StoreSizeCollector": "_store", "content_bytes": "_store", "store_sizes": "_store",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "CgroupCollector",
    "CgroupSource",
    "ContainerMetrics",
    "DaemonCollector",
    "ImageMetrics",
    "MergedPulls",
    "Metrics",
    "MetricsServer",
    "RequestMetrics",
    "SnapshotUsage",
    "StateCollector",
    "StoreSizeCollector",
    "cgroup_source",
    "container_states",
    "content_bytes",
    "new_metrics",
    "parse_address",
    "pod_states",
    "record_start",
    "split_method",
    "store_sizes",
]
