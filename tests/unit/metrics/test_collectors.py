"""The metrics part's collectors, registry and endpoint, without a daemon."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from hawser.config import Config as HawserConfig
from hawser.config import apply_overrides, parse_config
from hawser.errors import InvalidArgument, Unavailable
from hawser.metrics import (
    MetricsServer,
    RequestMetrics,
    StateCollector,
    container_states,
    new_metrics,
    parse_address,
    pod_states,
    split_method,
)
from hawser.metrics._registry import process_threads


def values(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


def test_state_collector_reports_every_known_state_and_new_ones() -> None:
    registry = CollectorRegistry()
    registry.register(StateCollector(containers=lambda: ["running", "running", "exited", "weird"],
                                     pods=lambda: ["ready"]))
    got = values(registry)
    assert got[key("hawser_containers", state="running")] == 2
    assert got[key("hawser_containers", state="exited")] == 1
    assert got[key("hawser_containers", state="created")] == 0
    assert got[key("hawser_containers", state="unknown")] == 0
    assert got[key("hawser_containers", state="weird")] == 1
    assert got[key("hawser_pods", state="ready")] == 1
    assert got[key("hawser_pods", state="notready")] == 0


def test_state_collector_counts_at_scrape_time_not_at_registration() -> None:
    calls: list[str] = []

    def pods() -> list[str]:
        calls.append("pods")
        return ["notready"]

    registry = CollectorRegistry(auto_describe=True)
    registry.register(StateCollector(containers=list, pods=pods))
    assert calls == []
    assert values(registry)[key("hawser_pods", state="notready")] == 1
    assert values(registry)[key("hawser_pods", state="notready")] == 1
    assert calls == ["pods", "pods"]


def test_container_states_from_exit_files_and_bundles(tmp_path: Path) -> None:
    exits, containers = tmp_path / "exits", tmp_path / "containers"
    exits.mkdir()
    for id_ in ("created", "running", "exited"):
        (containers / id_).mkdir(parents=True)
    (containers / "running" / "started").write_text("1.0")
    (containers / "exited" / "started").write_text("1.0")
    (exits / "exited").write_text("0")
    records = [SimpleNamespace(id=i) for i in ("created", "running", "exited", "gone")]
    manager = SimpleNamespace(records=SimpleNamespace(list=lambda: records), exits_dir=str(exits),
                              bundle=lambda id_: str(containers / id_))
    assert list(container_states(cast(Any, manager))()) == ["created", "running", "exited", "unknown"]


def test_pod_states_from_records() -> None:
    records = SimpleNamespace(list=lambda: [SimpleNamespace(state="ready"), SimpleNamespace(state="notready")])
    assert list(pod_states(cast(Any, records))()) == ["ready", "notready"]


def test_request_metrics_per_method_and_code() -> None:
    registry = CollectorRegistry()
    requests = RequestMetrics(registry)
    requests.observe("/runtime.v1.RuntimeService/Version", "OK", 0.002)
    requests.observe("/runtime.v1.RuntimeService/Version", "OK", 0.004)
    requests.observe("/runtime.v1.RuntimeService/ContainerStatus", "NOT_FOUND", 0.5)
    got = values(registry)
    version = {"service": "runtime.v1.RuntimeService", "method": "Version"}
    assert got[key("hawser_grpc_requests_total", code="OK", **version)] == 2
    assert got[key("hawser_grpc_requests_total", code="NOT_FOUND", service="runtime.v1.RuntimeService",
                   method="ContainerStatus")] == 1
    assert got[key("hawser_grpc_request_duration_seconds_count", **version)] == 2
    assert got[key("hawser_grpc_request_duration_seconds_sum", **version)] == pytest.approx(0.006)
    assert got[key("hawser_grpc_request_duration_seconds_bucket", le="0.0025", **version)] == 1


def test_split_method() -> None:
    assert split_method("/containerd.services.images.v1.Images/List") == ("containerd.services.images.v1.Images",
                                                                          "List")
    assert split_method("nonsense") == ("unknown", "nonsense")


def test_new_metrics_has_every_family_of_the_slice() -> None:
    metrics = new_metrics("9.9.9", containers=lambda: ["created"], pods=list)
    got = values(metrics.registry)
    assert got[key("hawser_build_info", version="9.9.9")] == 1
    assert got[key("hawser_containers", state="created")] == 1
    assert got[key("process_resident_memory_bytes")] > 0
    assert got[key("process_open_fds")] > 0
    assert got[key("hawser_process_threads")] >= 1
    assert key("python_gc_collections_total", generation="2") in got


def test_process_threads_reads_past_a_command_with_parens(tmp_path: Path) -> None:
    stat = tmp_path / "stat"
    fields = ["S"] + [str(n) for n in range(1, 50)]
    fields[17] = "7"  # num_threads: the 20th field, the 18th after "pid (comm)"
    stat.write_text("42 (odd) (name)) " + " ".join(fields))
    assert process_threads(str(stat)) == 7
    assert process_threads(str(tmp_path / "missing")) != process_threads(str(tmp_path / "missing"))  # NaN


@pytest.mark.parametrize(("address", "parsed"), [("127.0.0.1:1338", ("127.0.0.1", 1338)),
                                                 ("[::1]:9000", ("::1", 9000)), ("localhost:0", ("localhost", 0))])
def test_parse_address(address: str, parsed: tuple[str, int]) -> None:
    assert parse_address(address) == parsed


@pytest.mark.parametrize("address", ["1338", ":1338", "host:", "host:http", "host:70000"])
def test_parse_address_refuses(address: str) -> None:
    with pytest.raises(InvalidArgument, match="HOST:PORT"):
        parse_address(address)


def test_config_metrics_address_default_rule_and_flag() -> None:
    assert HawserConfig().metrics.address == "127.0.0.1:1338"
    assert parse_config('[metrics]\naddress = ""\n').metrics.address == ""
    assert apply_overrides(HawserConfig(), {"metrics.address": "[::1]:9"}).metrics.address == "[::1]:9"
    with pytest.raises(InvalidArgument, match=r"metrics.address must be HOST:PORT"):
        parse_config('[metrics]\naddress = "1338"\n')


def test_server_serves_negotiates_and_stops() -> None:
    metrics = new_metrics("1.2.3", containers=list, pods=list)
    server = MetricsServer("127.0.0.1:0", metrics.registry)
    server.start()
    port = server.port
    assert port
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        assert b'hawser_build_info{version="1.2.3"} 1.0' in answer.read()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics",
                                     headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with opener.open(request, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
        assert answer.read().endswith(b"# EOF\n")
    asyncio.run(server.stop())
    asyncio.run(server.stop())  # idempotent
    with pytest.raises(OSError):
        opener.open(f"http://127.0.0.1:{port}/metrics", timeout=2)


def test_server_on_a_busy_address_is_unavailable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        server = MetricsServer(address, CollectorRegistry())
        with pytest.raises(Unavailable, match=f"cannot listen on {address} for metrics") as caught:
            server.start()
    assert caught.value.hint and "--metrics-address" in caught.value.hint
