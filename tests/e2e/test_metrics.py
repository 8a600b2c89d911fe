"""hawserd's Prometheus endpoint: the gRPC request families per method and
code, both exposition formats, promtool's lint, a busy address, and none."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time

import grpc
import pytest
from cri_api.v1 import api_pb2

from hawser import __version__
from tests.e2e.helpers import samples, scrape, spec, status_code
from tests.support.hawserd import Hawserd

RUNTIME = "runtime.v1.RuntimeService"
IMAGES = "runtime.v1.ImageService"
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on (its sockets' inodes in /proc/net/tcp{,6}, state 0A)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with_target = os.readlink(f"/proc/{pid}/fd/{fd}") if os.path.exists(f"/proc/{pid}/fd/{fd}") else ""
        if with_target.startswith("socket:["):
            inodes.add(with_target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def test_requests_are_counted_per_method_and_code(hawserd: Hawserd, metrics_port: int) -> None:
    cri = hawserd.client()
    for _ in range(3):
        cri.runtime.Version(api_pb2.VersionRequest())
    cri.images.ListImages(api_pb2.ListImagesRequest())
    cri.images.ImageStatus(api_pb2.ImageStatusRequest(image=spec("docker.io/library/absent:1")))  # OK, empty
    code, _ = status_code(cri.runtime.ContainerStatus, api_pb2.ContainerStatusRequest(container_id="absent"))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = status_code(cri.runtime.CheckpointContainer, api_pb2.CheckpointContainerRequest(container_id="x"))
    assert code == grpc.StatusCode.NOT_FOUND  # no such container, before any word on criu

    content_type, text = scrape(metrics_port)
    assert content_type.startswith("text/plain; version=0.0.4")
    got = samples(text)

    def count(service: str, method: str, code: str) -> float:
        key = frozenset({"service": service, "method": method, "code": code}.items())
        return got.get(("hawser_grpc_requests_total", key), 0.0)

    assert count(RUNTIME, "Version", "OK") == 3
    assert count(IMAGES, "ListImages", "OK") == 1
    assert count(IMAGES, "ImageStatus", "OK") == 1
    assert count(RUNTIME, "ContainerStatus", "NOT_FOUND") == 1
    assert count(RUNTIME, "ContainerStatus", "OK") == 0
    assert count(RUNTIME, "CheckpointContainer", "NOT_FOUND") == 1
    duration = frozenset({"service": RUNTIME, "method": "Version"}.items())
    assert got[("hawser_grpc_request_duration_seconds_count", duration)] == 3
    assert got[("hawser_build_info", frozenset({"version": __version__}.items()))] == 1
    assert got[("hawser_pods", frozenset({"state": "ready"}.items()))] == 0
    assert got[("hawser_containers", frozenset({"state": "running"}.items()))] == 0
    assert got[("process_resident_memory_bytes", frozenset())] > 0
    assert got[("process_open_fds", frozenset())] > 0
    assert got[("hawser_process_threads", frozenset())] > 1
    assert ("python_gc_collections_total", frozenset({"generation": "0"}.items())) in got

    # Debian's promtool lints the exposition as Prometheus would ingest it (setup installs it: no skip).
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/setup.sh installs Debian's prometheus package"
    lint = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_streams_are_counted_too(hawserd: Hawserd, metrics_port: int) -> None:
    events = hawserd.client().runtime.GetContainerEvents(api_pb2.GetEventsRequest())
    cancel = threading.Timer(0.5, events.cancel)  # no event comes: the client hangs up, as kubelet does on exit
    cancel.start()
    try:
        with pytest.raises(grpc.RpcError) as caught:
            next(events)
        assert caught.value.code() == grpc.StatusCode.CANCELLED
    finally:
        cancel.cancel()
    key = ("hawser_grpc_requests_total",
           frozenset({"service": RUNTIME, "method": "GetContainerEvents", "code": "CANCELLED"}.items()))
    deadline = time.monotonic() + 10
    while samples(scrape(metrics_port)[1]).get(key) != 1:
        assert time.monotonic() < deadline, "the cancelled stream was not counted"
        time.sleep(0.05)


def test_containerd_api_streams_are_counted(hawserd: Hawserd, metrics_port: int) -> None:
    from hawser.containerd._api.services.content.v1 import content_pb2, content_pb2_grpc

    with grpc.insecure_channel(f"unix:{hawserd.containerd_address}",
                               options=[("grpc.enable_http_proxy", 0)]) as channel:
        content = content_pb2_grpc.ContentStub(channel)
        namespace = (("containerd-namespace", "default"),)
        missing = "sha256:" + "0" * 64
        with pytest.raises(grpc.RpcError) as caught:
            list(content.Read(content_pb2.ReadContentRequest(digest=missing), metadata=namespace))
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert list(content.List(content_pb2.ListContentRequest(), metadata=namespace)) == []
    got = samples(scrape(metrics_port)[1])
    service = "containerd.services.content.v1.Content"

    def count(method: str, code: str) -> float | None:
        return got.get(("hawser_grpc_requests_total",
                        frozenset({"service": service, "method": method, "code": code}.items())))

    assert count("Read", "NOT_FOUND") == 1
    assert count("List", "OK") == 1


def test_openmetrics_when_asked(hawserd: Hawserd, metrics_port: int) -> None:
    hawserd.client().runtime.Version(api_pb2.VersionRequest())
    content_type, text = scrape(metrics_port, accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith(OPENMETRICS)
    assert text.endswith("# EOF\n")
    assert "# TYPE hawser_grpc_requests counter" in text
    assert f'hawser_grpc_requests_total{{code="OK",method="Version",service="{RUNTIME}"}} 1.0' in text


def test_metrics_port_is_served_and_closed_with_the_daemon(hawserd: Hawserd, metrics_port: int) -> None:
    assert hawserd.process is not None
    ports = listening_ports(hawserd.process.pid)
    assert metrics_port in ports and len(ports) == 2  # and the streaming server's
    assert hawserd.stop() == 0
    with pytest.raises(OSError):
        scrape(metrics_port)


def test_empty_address_serves_nothing(hawserd: Hawserd) -> None:
    assert hawserd.process is not None
    assert hawserd.argv()[-2:] == ["--metrics-address", ""]  # the fixture's default: off
    assert len(listening_ports(hawserd.process.pid)) == 1  # the streaming server's only


def test_busy_address_fails_start_up(hawserd: Hawserd) -> None:
    assert hawserd.stop() == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(hawserd.argv("--metrics-address", f"127.0.0.1:{port}"),
                              capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1, proc.stderr
    assert f"cannot listen on 127.0.0.1:{port} for metrics" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not os.path.exists(hawserd.address)  # it let go of its sockets


def test_bad_address_is_a_configuration_error(hawserd: Hawserd) -> None:
    proc = subprocess.run(hawserd.argv("--metrics-address", "1338"), capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "metrics.address must be HOST:PORT" in proc.stderr
