"""A real hawserd subprocess, driven over its CRI socket.

A pytest plugin: tests/conftest.py registers it (``pytest_plugins``), so the
``hawserd`` fixture serves the e2e tier and the integration tests that need a
running daemon (its socket's permissions) alike.

    def test_x(hawserd: Hawserd, registry: Registry) -> None:
        cri = hawserd.client()
        cri.images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)))

``hawserd`` runs on a fresh root, state and socket per test, with its own
hosts.toml directory (``hawserd.plain_http(host)`` lets it pull from a test
registry over http).  On teardown it gets SIGTERM and must exit 0, remove its
socket, and have logged no bug.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from cri_api.v1 import api_pb2_grpc

from tests.support.host import remove_store_cgroups, unmount_under

HAWSERD = [sys.executable, "-m", "hawser.daemon"]
HAWSER = [sys.executable, "-m", "hawser.cli._run"]
# Tests prune right after removals: nothing is young enough to need the grace period.
# The CLI's containers join no network (a store's default bridge would outlive the test's store).
TEST_CONFIG = "[gc]\ngrace_period = 0\n[runtime]\ndefault_network = \"none\"\n"


@dataclass
class Cri:
    """A CRI client: both services' stubs over one channel."""

    channel: grpc.Channel
    runtime: api_pb2_grpc.RuntimeServiceStub
    images: api_pb2_grpc.ImageServiceStub

    def close(self) -> None:
        self.channel.close()


@dataclass
class Hawserd:
    base: Path
    # unix socket paths are limited to 107 bytes: the socket lives in a short temp dir.
    socket_dir: Path
    process: subprocess.Popen[bytes] | None = None
    clients: list[Cri] = field(default_factory=list)
    # More flags for every start (after the fixed ones: they win), e.g. ["--metrics-address", "127.0.0.1:PORT"].
    extra_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = self.base / "root"
        self.state = self.base / "state"
        self.certs = self.base / "certs.d"
        self.cni_conf = self.base / "net.d"
        self.config_file = self.base / "config.toml"
        self.log_path = self.base / "hawserd.log"
        self.address = str(self.socket_dir / "hawser.sock")
        self.containerd_address = str(self.socket_dir / "containerd.sock")
        for d in (self.certs, self.cni_conf):
            d.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(TEST_CONFIG)

    def argv(self, *extra: str) -> list[str]:
        return [*HAWSERD, "--config", str(self.config_file), "--root", str(self.root), "--state", str(self.state),
                "--address", self.address, "--containerd-address", self.containerd_address,
                "--registry-config-dir", str(self.certs),
                "--cni-conf-dir", str(self.cni_conf), "--log-level", "debug",
                # No metrics endpoint unless a test asks: the default port is one per host, and test daemons are many.
                "--metrics-address", "", *self.extra_args, *extra]

    # --- the process --------------------------------------------------------------

    def start(self, timeout: float = 20.0, *, env: dict[str, str] | None = None) -> None:
        """Start hawserd and wait until it serves; ``env``: added to its
        environment only (a failpoint armed for the daemon, say)."""
        assert self.process is None or self.process.poll() is not None, "hawserd is running already"
        seen = len(self.log())
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            env=None if env is None else {**os.environ, **env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"hawserd exited with {self.process.returncode}:\n{self.log()}")
            if "msg=serving" in self.log()[seen:]:
                return
            time.sleep(0.05)
        raise AssertionError(f"hawserd did not serve {self.address} within {timeout}s:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait; returns the exit status."""
        self.close_clients()
        proc = self.process
        assert proc is not None
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"hawserd did not exit within {timeout}s of signal {sig}:\n{self.log()}") from None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # --- clients ------------------------------------------------------------------

    def client(self) -> Cri:
        channel = grpc.insecure_channel(f"unix:{self.address}", options=[("grpc.enable_http_proxy", 0)])
        cri = Cri(channel, api_pb2_grpc.RuntimeServiceStub(channel), api_pb2_grpc.ImageServiceStub(channel))
        self.clients.append(cri)
        return cri

    def close_clients(self) -> None:
        while self.clients:
            self.clients.pop().close()

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The hawser CLI on this daemon's store."""
        cmd = [*HAWSER, "--config", str(self.config_file), "--root", str(self.root), "--state", str(self.state),
               *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise AssertionError(f"hawser {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def plain_http(self, host: str) -> None:
        """Let hawserd pull from ``host`` (127.0.0.1:PORT) over http, as containerd's hosts.toml says."""
        directory = self.certs / host
        directory.mkdir(exist_ok=True)
        (directory / "hosts.toml").write_text(f'server = "http://{host}"\n')


@pytest.fixture
def hawserd(tmp_path: Path) -> Iterator[Hawserd]:
    with running_hawserd(tmp_path) as daemon:
        yield daemon


@contextlib.contextmanager
def running_hawserd(base: Path) -> Iterator[Hawserd]:
    """A hawserd on a fresh root and state under ``base``, stopped (and
    checked for a clean exit and no logged bug) and cleaned up after."""
    tmp_path = base
    socket_dir = Path(tempfile.mkdtemp(prefix="hawserd-"))
    daemon = Hawserd(base=tmp_path, socket_dir=socket_dir)
    daemon.start()
    try:
        yield daemon
        if daemon.running:
            status = daemon.stop()
            assert status == 0, f"hawserd exited with {status} on SIGTERM:\n{daemon.log()}"
            assert not os.path.exists(daemon.address), "hawserd left its socket behind"
        log = daemon.log()
        assert "with a bug" not in log and "Traceback" not in log, f"hawserd logged a bug:\n{log}"
    finally:
        if daemon.running:
            daemon.stop(signal.SIGKILL)
        daemon.close_clients()
        unmount_under(str(tmp_path))
        shutil.rmtree(socket_dir, ignore_errors=True)
        remove_store_cgroups(str(daemon.root))
