"""hawserd's /metrics as the rest of the world sees it: a real Prometheus
server (Debian's) scraping it on loopback and answering PromQL with the
container's working set and the count of PullImage calls; and the CRI's stats
calls (ListContainerStats, what ``crictl stats`` calls, and
ListPodSandboxStats) agreeing with the endpoint and with ListPodSandboxMetrics.

test_container_metrics.py already compares the endpoint with the cgroup files
and ListPodSandboxMetrics' container series with the endpoint: this module
adds only what it does not cover."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cri_api.v1 import api_pb2

from tests.e2e.helpers import Samples, free_port, samples, scrape
from tests.e2e.test_container_metrics import working_set
from tests.support.cri_pods import Pods
from tests.support.hawserd import Hawserd
from tests.support.registry_fixtures import Registry

MB = 1 << 20
IMAGES = "runtime.v1.ImageService"
# The shell keeps the string (the echo after sleep stops it exec'ing sleep in its place), then sleeps: idle.
HOLD = 'x=$(yes | head -c {size}); sleep 1000; echo "${{#x}}"'
POLL = 30.0  # seconds: how long Prometheus gets to have a sample


# --- Prometheus ---------------------------------------------------------------------


@dataclass
class Prometheus:
    """A Prometheus server of the test's own, scraping hawserd's endpoint only."""

    process: subprocess.Popen[bytes]
    directory: Path
    port: int
    target: str  # 127.0.0.1:PORT, hawserd's endpoint

    def get(self, path: str, **params: str) -> Any:
        """The JSON answer of GET ``path`` on the server's HTTP API, never through a proxy."""
        url = f"http://127.0.0.1:{self.port}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(url, timeout=10) as answer:
                return json.loads(answer.read())
        except urllib.error.HTTPError as e:  # the API's JSON error says what was wrong
            raise AssertionError(f"GET {url}: {e.code} {e.read().decode(errors='replace')}") from None

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The result of an instant query (a vector, or a matrix for a range selector)."""
        answer = self.get("/api/v1/query", query=promql)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def log(self) -> str:
        try:
            return (self.directory / "prometheus.log").read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def explain(self) -> str:
        """What to show when a query never answers: the targets' health (lastError) and the server's log."""
        try:
            targets = json.dumps(self.get("/api/v1/targets")["data"], indent=1)
        except OSError as e:
            targets = f"(cannot read /api/v1/targets: {e})"
        return f"targets:\n{targets}\nprometheus log (last 4000 chars):\n{self.log()[-4000:]}"

    def wait_ready(self, timeout: float = POLL) -> None:
        deadline = time.monotonic() + timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.process.returncode}:\n{self.log()}")
            try:
                with opener.open(f"http://127.0.0.1:{self.port}/-/ready", timeout=5) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus was not ready within {timeout}s:\n{self.log()}")
            time.sleep(0.2)

    def poll(self, promql: str, done: Any, what: str, timeout: float = POLL) -> list[dict[str, Any]]:
        """Query until ``done(result)`` holds; on timeout fail with the last result and the targets' health."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(promql)
            if done(result):
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"Prometheus never had {what} within {timeout}s: {promql} -> {result}\n"
                                     f"{self.explain()}")
            time.sleep(0.5)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


@pytest.fixture
def prometheus(metrics_port: int) -> Iterator[Prometheus]:
    """Debian's Prometheus, its config, TSDB and log in a temp dir of its own, listening on
    127.0.0.1 only and scraping one static loopback target every second: no service
    discovery, no alerting, no remote read or write, nothing it could reach off-host."""
    binary = shutil.which("prometheus")
    assert binary, "prometheus is missing: scripts/setup.sh installs Debian's prometheus package"
    directory = Path(tempfile.mkdtemp(prefix="hawser-prometheus-"))
    process: subprocess.Popen[bytes] | None = None
    try:
        target = f"127.0.0.1:{metrics_port}"
        (directory / "prometheus.yml").write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  scrape_timeout: 1s\n"
            "  evaluation_interval: 1m\n"
            "scrape_configs:\n"
            "  - job_name: hawserd\n"
            "    static_configs:\n"
            f"      - targets: ['{target}']\n")
        port = free_port()
        # No proxy for anything (the target is loopback); one core is plenty and the machine is shared.
        env = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "no_proxy")}
        env["GOMAXPROCS"] = "1"
        with open(directory / "prometheus.log", "wb") as log:
            process = subprocess.Popen(
                [binary, f"--config.file={directory / 'prometheus.yml'}",
                 f"--storage.tsdb.path={directory / 'data'}", "--storage.tsdb.retention.time=1h",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=directory, env=env)
        server = Prometheus(process=process, directory=directory, port=port, target=target)
        server.wait_ready()
        yield server
    finally:
        if process is not None:
            stop_process(process)
        shutil.rmtree(directory, ignore_errors=True)


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An address of /proc/net/{tcp,udp}[6]: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    ordered = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    return ipaddress.ip_address(ordered)


def _local(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or address.is_unspecified


def peers(pid: int) -> set[tuple[str, str, str]]:
    """(table, local, remote) of every inet socket process ``pid`` holds."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/{pid}/net/{table}") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[9] in inodes:
                    found.add((table, fields[1], fields[2]))
    return found


def test_prometheus_scrapes_hawserd(hawserd: Hawserd, metrics_port: int, pods: Pods,
                                    prometheus: Prometheus, registry: Registry) -> None:
    pod = pods.pod("scraped")
    hog = pods.run(pod, pods.config("hog", "sh", "-c", HOLD.format(size=20_000_000)))
    settle_working_set(hog, pod[1], at_least=10 * MB)
    settled_ms = time.time() * 1000

    # (b) A known number of PullImage calls: the pods fixture's one (on this daemon: metrics_port restarted
    # it first), then two more of the same image and one of a tag the registry does not have.
    images = hawserd.client().images
    baseline = sum(v for (name, labels), v in samples(scrape(metrics_port)[1]).items()
                   if name == "hawser_grpc_requests_total" and ("method", "PullImage") in labels)
    assert baseline == 1, "the pods fixture pulls its image once"
    for _ in range(2):
        images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=pods.image)))
    with pytest.raises(grpc.RpcError) as failed:
        images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=f"{registry.host}/test/absent:1")))
    assert failed.value.code() == grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
    pulls = 1 + 2 + 1

    # (a) The container's working set, as Prometheus scraped it after the string was built.
    selector = 'container_memory_working_set_bytes{namespace="e2e",pod="scraped",container="hog"}'

    def fresh(result: list[dict[str, Any]]) -> bool:
        return len(result) == 1 and any(float(t) * 1000 >= settled_ms for t, _ in result[0]["values"])

    (scraped,) = prometheus.poll(f"{selector}[10s]", fresh, "the hog's working set")
    assert scraped["metric"]["job"] == "hawserd" and scraped["metric"]["instance"] == prometheus.target
    assert scraped["metric"]["image"] == pods.image and scraped["metric"]["id"].endswith(hog)
    before = working_set(hog, pod[1])
    value = float(max(scraped["values"], key=lambda tv: float(tv[0]))[1])
    after = working_set(hog, pod[1])
    assert value >= 10 * MB
    assert min(before, after) - 2 * MB <= value <= max(before, after) + 2 * MB, (value, before, after)
    (instant,) = prometheus.query(selector)  # the plain instant query answers the same series
    assert abs(float(instant["value"][1]) - value) <= 2 * MB

    # (b) The request counter, summed over codes by PromQL, is the number of calls made.
    promql = 'sum(hawser_grpc_requests_total{method="PullImage"})'
    prometheus.poll(promql, lambda r: len(r) == 1 and float(r[0]["value"][1]) >= pulls, f"{pulls} PullImage calls")
    (total,) = prometheus.query(promql)
    assert float(total["value"][1]) == pulls
    # Per code, Prometheus has what the endpoint says (and only the image service has a PullImage).
    by_code = {r["metric"]["code"]: float(r["value"][1]) for r in prometheus.query(
        f'sum by (code) (hawser_grpc_requests_total{{method="PullImage",service="{IMAGES}"}})')}
    direct = {dict(labels)["code"]: v for (name, labels), v in samples(scrape(metrics_port)[1]).items()
              if name == "hawser_grpc_requests_total" and ("method", "PullImage") in labels}
    assert by_code == direct and by_code == {"OK": 3, "NOT_FOUND": 1}, (by_code, direct)

    (up,) = prometheus.query('up{job="hawserd"}')
    assert up["metric"]["instance"] == prometheus.target and up["value"][1] == "1"
    # It scrapes the one loopback target and nothing else, and every socket it holds is on loopback.
    active = prometheus.get("/api/v1/targets")["data"]["activeTargets"]
    assert [t["scrapeUrl"] for t in active] == [f"http://{prometheus.target}/metrics"]
    assert prometheus.get("/api/v1/alertmanagers")["data"]["activeAlertmanagers"] == []
    sockets = peers(prometheus.process.pid)
    assert any(int(local.rsplit(":", 1)[1], 16) == prometheus.port for _, local, _ in sockets), sockets
    off_host = {s for s in sockets
                if not (_local(_address(s[1].split(":")[0])) and _local(_address(s[2].split(":")[0])))}
    assert not off_host, f"prometheus holds sockets off loopback: {off_host}"


# --- The CRI's stats calls against the endpoint --------------------------------------


def settle_working_set(container_id: str, pod_config: api_pb2.PodSandboxConfig, *, at_least: int) -> None:
    """Until the container's working set is at least ``at_least`` and holds still."""
    deadline = time.monotonic() + POLL
    previous = -1
    while time.monotonic() < deadline:
        now = working_set(container_id, pod_config)
        if now >= at_least and abs(now - previous) < MB // 2:
            return
        previous = now
        time.sleep(0.3)
    assert working_set(container_id, pod_config) >= at_least


def pick(got: Samples, name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [v for (n, key), v in got.items() if n == name and set(labels.items()) <= key]
    assert len(found) == 1, (name, labels, found)
    return found[0]


def between(value: float, bounds: list[float], slack: float) -> bool:
    return min(bounds) - slack <= value <= max(bounds) + slack


def test_cri_stats_agree_with_the_endpoint(hawserd: Hawserd, metrics_port: int, pods: Pods) -> None:
    pod = pods.pod("stated")
    hog = pods.run(pod, pods.config("hog", "sh", "-c", HOLD.format(size=8_000_000)))
    idle = pods.run(pod, pods.config("idle", "sleep", "1000"))
    settle_working_set(hog, pod[1], at_least=4 * MB)
    rt = pods.rt
    ids = {hog: "hog", idle: "idle"}

    # The endpoint, the CRI's calls, the endpoint again: each CRI value lies between the two
    # scrapes (counters only grow), or near them (gauges).
    first = samples(scrape(metrics_port)[1])
    listed = rt.ListContainerStats(api_pb2.ListContainerStatsRequest()).stats
    by_pod = rt.ListContainerStats(api_pb2.ListContainerStatsRequest(
        filter=api_pb2.ContainerStatsFilter(pod_sandbox_id=pod[0]))).stats
    by_id = rt.ListContainerStats(api_pb2.ListContainerStatsRequest(
        filter=api_pb2.ContainerStatsFilter(id=hog))).stats
    (pod_stats,) = rt.ListPodSandboxStats(api_pb2.ListPodSandboxStatsRequest(
        filter=api_pb2.PodSandboxStatsFilter(id=pod[0]))).stats
    (pod_metrics,) = [p for p in rt.ListPodSandboxMetrics(api_pb2.ListPodSandboxMetricsRequest()).pod_metrics
                      if p.pod_sandbox_id == pod[0]]
    second = samples(scrape(metrics_port)[1])

    # ListContainerStats: the pod's two running containers, whichever way crictl filters.
    assert {s.attributes.id for s in listed} == set(ids)
    assert {s.attributes.id for s in by_pod} == set(ids)
    assert [s.attributes.id for s in by_id] == [hog]
    assert by_id[0].attributes.metadata.name == "hog"

    keys = {d.name: list(d.label_keys)
            for d in rt.ListMetricDescriptors(api_pb2.ListMetricDescriptorsRequest()).descriptors}

    def cri_metrics(metrics: Any) -> dict[str, float]:
        return {m.name: float(m.value.value) for m in metrics
                if dict(zip(keys[m.name], m.label_values, strict=True))["container"] != "POD"}

    container_metrics = {c.container_id: cri_metrics(c.metrics) for c in pod_metrics.container_metrics}

    for stats in listed:
        name = ids[stats.attributes.id]
        mine = {"namespace": "e2e", "pod": "stated", "container": name}
        assert stats.attributes.metadata.name == name
        assert stats.cpu.timestamp > 0 and stats.memory.timestamp > 0
        cpu = stats.cpu.usage_core_nano_seconds.value / 1e9
        endpoint = [pick(got, "container_cpu_usage_seconds_total", **mine) for got in (first, second)]
        assert between(cpu, endpoint, slack=0.001), (name, cpu, endpoint)
        for field, family in (("working_set_bytes", "container_memory_working_set_bytes"),
                              ("usage_bytes", "container_memory_usage_bytes"),
                              ("rss_bytes", "container_memory_rss")):
            value = getattr(stats.memory, field).value
            endpoint = [pick(got, family, **mine) for got in (first, second)]
            assert between(value, endpoint, slack=2 * MB), (name, field, value, endpoint)
        # ListPodSandboxMetrics' integers (CPU in whole seconds) for the same container.
        other = container_metrics[stats.attributes.id]
        assert abs(other["container_memory_working_set_bytes"] - stats.memory.working_set_bytes.value) <= 2 * MB
        assert abs(other["container_cpu_usage_seconds_total"] - cpu) < 1.01
    hog_stats = next(s for s in listed if s.attributes.id == hog)
    assert hog_stats.memory.working_set_bytes.value >= 4 * MB

    # ListPodSandboxStats: the pod's cgroup is the endpoint's container="" series.
    assert pod_stats.attributes.id == pod[0] and pod_stats.attributes.metadata.name == "stated"
    linux = pod_stats.linux
    at_pod = {"namespace": "e2e", "pod": "stated", "container": ""}
    cpu = linux.cpu.usage_core_nano_seconds.value / 1e9
    endpoint = [pick(got, "container_cpu_usage_seconds_total", **at_pod) for got in (first, second)]
    assert cpu > 0 and between(cpu, endpoint, slack=0.001), (cpu, endpoint)
    for field, family in (("working_set_bytes", "container_memory_working_set_bytes"),
                          ("usage_bytes", "container_memory_usage_bytes"),
                          ("rss_bytes", "container_memory_rss")):
        value = getattr(linux.memory, field).value
        endpoint = [pick(got, family, **at_pod) for got in (first, second)]
        assert between(value, endpoint, slack=2 * MB), (field, value, endpoint)
    assert linux.memory.working_set_bytes.value >= hog_stats.memory.working_set_bytes.value - 2 * MB
    processes = linux.process.process_count.value
    assert processes >= 3  # sh and sleep of the hog, sleep of the idle one
    assert processes == pick(first, "container_processes", **at_pod) == pick(second, "container_processes", **at_pod)
    # Its running containers too, as containerd answers (kubelet reads them from here).
    inside = {c.attributes.id: c for c in linux.containers}
    assert set(inside) == set(ids)
    for container_id, name in ids.items():
        endpoint = [pick(got, "container_memory_working_set_bytes", namespace="e2e", pod="stated", container=name)
                    for got in (first, second)]
        assert between(inside[container_id].memory.working_set_bytes.value, endpoint, slack=2 * MB)

    # ... and ListPodSandboxMetrics' pod-level (container="") series.
    pod_level = cri_metrics(pod_metrics.metrics)
    assert pod_level["container_processes"] == processes
    assert abs(pod_level["container_memory_working_set_bytes"] - linux.memory.working_set_bytes.value) <= 2 * MB
    assert abs(pod_level["container_cpu_usage_seconds_total"] - cpu) < 1.01

    # The pod's network: per interface, the endpoint's container="POD" counters.
    interfaces = {i.name: i for i in linux.network.interfaces}
    assert interfaces and linux.network.default_interface.name in interfaces
    scraped = {dict(key)["interface"] for (n, key), _ in first.items()
               if n == "container_network_receive_bytes_total" and ("pod", "stated") in key}
    assert scraped == set(interfaces)
    for name, usage in interfaces.items():
        at_interface = {"pod": "stated", "container": "POD", "interface": name}
        for field, family in (("rx_bytes", "container_network_receive_bytes_total"),
                              ("tx_bytes", "container_network_transmit_bytes_total"),
                              ("rx_errors", "container_network_receive_errors_total"),
                              ("tx_errors", "container_network_transmit_errors_total")):
            value = getattr(usage, field).value
            endpoint = [pick(got, family, **at_interface) for got in (first, second)]
            assert endpoint[0] <= value <= endpoint[1], (name, field, value, endpoint)
