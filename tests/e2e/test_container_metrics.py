"""cAdvisor's container families on hawserd's /metrics, and the CRI's
ListMetricDescriptors and ListPodSandboxMetrics: a pod whose container holds
~20 MB, its working set and CPU time as the cgroup itself has them, and the
same names and values over the CRI socket."""

from __future__ import annotations

import time
from pathlib import Path

from cri_api.v1 import api_pb2

from tests.e2e.helpers import samples, scrape
from tests.support.cri_pods import CGROUP_ROOT, Pods, cgroup_dir
from tests.support.hawserd import Hawserd

MB = 1 << 20
FAMILIES = {
    "container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_memory_rss",
    "container_memory_usage_bytes", "container_oom_events_total", "container_processes",
    "container_fs_reads_bytes_total", "container_fs_writes_bytes_total",
}
NETWORK = {"container_network_receive_bytes_total", "container_network_transmit_bytes_total",
           "container_network_receive_errors_total", "container_network_transmit_errors_total"}
V2 = Path(CGROUP_ROOT, "cgroup.controllers").exists()


def stat_of(directory: Path) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in (directory / "memory.stat").read_text().splitlines())}


def working_set(container_id: str, pod_config: api_pb2.PodSandboxConfig) -> int:
    """The cgroup's own: usage - inactive_file (kubelet's and cAdvisor's definition)."""
    if V2:
        directory = cgroup_dir("", container_id, pod_config)
        usage = int((directory / "memory.current").read_text())
        return max(0, usage - stat_of(directory)["inactive_file"])
    directory = cgroup_dir("memory", container_id, pod_config)
    usage = int((directory / "memory.usage_in_bytes").read_text())
    return max(0, usage - stat_of(directory)["total_inactive_file"])


def cpu_seconds(container_id: str, pod_config: api_pb2.PodSandboxConfig) -> float:
    if V2:
        text = (cgroup_dir("", container_id, pod_config) / "cpu.stat").read_text()
        return dict((k, int(v)) for k, v in (line.split() for line in text.splitlines()))["usage_usec"] / 1e6
    return int((cgroup_dir("cpuacct", container_id, pod_config) / "cpuacct.usage").read_text()) / 1e9


def series(port: int, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples of ``name`` whose labels include ``labels``."""
    return {key: value for (sample, key), value in samples(scrape(port)[1]).items()
            if sample == name and set(labels.items()) <= key}


def one(port: int, name: str, **labels: str) -> float:
    found = series(port, name, **labels)
    assert len(found) == 1, (name, labels, found)
    return next(iter(found.values()))


def test_container_metrics_agree_with_the_cgroup_and_the_cri(hawserd: Hawserd, metrics_port: int,
                                                              pods: Pods) -> None:
    pod = pods.pod("metered")
    # The shell keeps the 20 MB string (the echo after sleep stops it exec'ing sleep in its place).
    hog = pods.run(pod, pods.config("hog", "sh", "-c", 'x=$(yes | head -c 20000000); sleep 1000; echo "${#x}"'))
    deadline = time.monotonic() + 30
    previous = -1
    while time.monotonic() < deadline:  # until the string is built and the working set holds still
        now = working_set(hog, pod[1])
        if now >= 10 * MB and abs(now - previous) < MB // 2:
            break
        previous = now
        time.sleep(0.3)
    assert working_set(hog, pod[1]) >= 10 * MB

    mine = {"namespace": "e2e", "pod": "metered", "container": "hog"}
    before = working_set(hog, pod[1])
    scraped = one(metrics_port, "container_memory_working_set_bytes", **mine)
    after = working_set(hog, pod[1])
    assert scraped >= 10 * MB
    assert min(before, after) - 2 * MB <= scraped <= max(before, after) + 2 * MB

    cpu_before = cpu_seconds(hog, pod[1])
    cpu = one(metrics_port, "container_cpu_usage_seconds_total", **mine)
    cpu_after = cpu_seconds(hog, pod[1])
    assert cpu > 0 and cpu_before - 0.05 <= cpu <= cpu_after + 0.05

    everything = samples(scrape(metrics_port)[1])
    labels = next(dict(key) for (name, key) in everything
                  if name == "container_processes" and ("container", "hog") in key)
    assert labels["image"] == pods.image and labels["id"].endswith(hog)
    assert {name for name, key in everything if ("container", "hog") in key} == FAMILIES
    assert one(metrics_port, "container_processes", **mine) == 2  # sh and sleep
    # The pod: its cgroup with container="", its network with container="POD", as cAdvisor has them.
    pod_level = one(metrics_port, "container_memory_working_set_bytes", pod="metered", container="")
    assert pod_level >= scraped - 2 * MB
    network = {name for name, key in everything
               if ("pod", "metered") in key and ("container", "POD") in key}
    assert network == NETWORK

    # The CRI: the same names, values near the endpoint's.
    rt = pods.rt
    descriptors = rt.ListMetricDescriptors(api_pb2.ListMetricDescriptorsRequest()).descriptors
    assert {d.name for d in descriptors} == FAMILIES | NETWORK
    keys = {d.name: list(d.label_keys) for d in descriptors}
    assert {"namespace", "pod", "container", "image", "id"} <= set(keys["container_memory_working_set_bytes"])

    answer = rt.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest())
    mine_pod = next(p for p in answer.pod_metrics if p.pod_sandbox_id == pod[0])
    assert {m.name for m in mine_pod.metrics} == FAMILIES | NETWORK
    (container,) = [c for c in mine_pod.container_metrics if c.container_id == hog]
    by_name = {m.name: m for m in container.metrics}
    assert set(by_name) == FAMILIES
    for metric in container.metrics:
        named = dict(zip(keys[metric.name], metric.label_values, strict=True))
        assert named["container"] == "hog" and named["pod"] == "metered" and named["namespace"] == "e2e"
        assert metric.timestamp > 0
    assert by_name["container_cpu_usage_seconds_total"].metric_type == api_pb2.COUNTER
    assert by_name["container_memory_working_set_bytes"].metric_type == api_pb2.GAUGE
    endpoint_ws = one(metrics_port, "container_memory_working_set_bytes", **mine)
    assert abs(by_name["container_memory_working_set_bytes"].value.value - endpoint_ws) <= 2 * MB
    endpoint_cpu = one(metrics_port, "container_cpu_usage_seconds_total", **mine)
    assert abs(by_name["container_cpu_usage_seconds_total"].value.value - endpoint_cpu) < 1.01
    assert by_name["container_processes"].value.value == one(metrics_port, "container_processes", **mine)
