"""Real CNI plugins (Debian's, in /usr/lib/cni) on networks of the tests' own.

``CniEnv`` is a network named ``hwt-<random>`` on a bridge ``hwt<random>``
with a free 10.2xx.x.0/24 subnet and host-local state under a directory of the
test's own, so nothing touches the host's own CNI state.  ``cleanup()`` undoes
everything, also after a failure: pods still recorded are torn down, pin dirs
unmounted, the bridge deleted and any iptables rule naming the network removed.

Also a pytest plugin: tests/conftest.py registers it (``pytest_plugins``) for
the session fixture ``restore_host_network_state``, defined once here for the
integration and e2e tiers alike.  It removes portmap's shared top-level chains
if the session created them (and nothing else uses them) and restores
net.ipv4.ip_forward, which the bridge plugin turns on for gateways.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import random
import re
import secrets
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hawser.host import pin_namespaces, remove_pin_dir, run_in_netns
from hawser.network import CNINetwork, default_conflist

BIN_DIR = "/usr/lib/cni"
SHARED_CHAINS = ("CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ")
IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"


def sh(*argv: str, check: bool = True) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc.stdout


def iptables_save(binary: str = "iptables-save") -> list[str]:
    """Rules and chain declarations, without counters or comments."""
    lines = []
    for line in sh(binary).splitlines():
        if line.startswith("#") or line == "COMMIT":
            continue
        lines.append(re.sub(r" \[\d+:\d+\]$", "", line))
    return lines


def links() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def mounts_under(path: str) -> list[str]:
    """Whole /proc/self/mountinfo lines of ``path`` (resolved) and below; not
    tests.support.host.mounts_under, which gives the mount points strictly below."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    with open("/proc/self/mountinfo") as f:
        return [line for line in f if line.split()[4].startswith(prefix) or line.split()[4] == prefix[:-1]]


def _chain_suffix(network: str, pod_id: str) -> str:
    # the plugins name per-pod chains after sha512(network + container id)
    return hashlib.sha512((network + pod_id).encode()).hexdigest()


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def _used_networks() -> list[ipaddress.IPv4Network]:
    nets = []
    for line in sh("ip", "-4", "route", "show", "table", "all").splitlines():
        first = line.split()[0] if line.split() else ""
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(first, strict=False))
    for line in sh("ip", "-4", "-o", "addr").splitlines():
        with contextlib.suppress(ValueError, IndexError):
            nets.append(ipaddress.ip_interface(line.split()[3]).network)
    return nets


def pick_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    for _ in range(200):
        net = ipaddress.ip_network(f"10.{random.randint(200, 254)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise AssertionError("no free 10.2xx.x.0/24 subnet")


@dataclass
class Server:
    """A TCP server listening inside a pod's netns, answering "<name> <peer>"."""

    sock: socket.socket
    name: str
    thread: threading.Thread | None = None

    def start(self) -> Server:
        def serve() -> None:
            while True:
                try:
                    conn, peer = self.sock.accept()
                except OSError:
                    return
                with conn:
                    conn.sendall(f"{self.name} {peer[0]}".encode())

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        return self

    def close(self) -> None:
        # shutdown wakes the accept(); the socket held a reference on the netns
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        if self.thread is not None:
            self.thread.join(5)


def ask(host: str, port: int, timeout: float = 5.0) -> str:
    with socket.create_connection((host, port), timeout=timeout) as conn:
        return conn.recv(200).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class CniEnv:
    root: Path
    tag: str = field(default_factory=lambda: secrets.token_hex(3))

    def __post_init__(self) -> None:
        self.name = f"hwt-{self.tag}"
        self.bridge = f"hwt{self.tag}"
        self.subnet = pick_subnet()
        self.conf_dir = self.root / "net.d"
        self.cache_dir = self.root / "cache"
        self.ipam_dir = self.root / "ipam"
        self.pin_root = self.root / "pods"
        self.extra_bin = self.root / "bin"
        for d in (self.conf_dir, self.extra_bin, self.pin_root):
            d.mkdir(parents=True)
        self.pods: set[str] = set()
        self.servers: list[Server] = []
        self.write_conflist()

    # -- config ------------------------------------------------------------------

    def conflist(self) -> dict[str, Any]:
        """hawser's default network, with this test's names, subnet and IPAM dir."""
        doc = default_conflist(name=self.name, bridge=self.bridge, subnet=str(self.subnet))
        doc["plugins"][0]["ipam"]["dataDir"] = str(self.ipam_dir)
        return doc

    def write_conflist(self, doc: dict[str, Any] | None = None, filename: str = "10-test.conflist") -> Path:
        path = self.conf_dir / filename
        path.write_text(json.dumps(doc or self.conflist()))
        return path

    def network(self, **kwargs: Any) -> CNINetwork:
        kwargs.setdefault("plugin_timeout", 60.0)
        return CNINetwork(str(self.conf_dir), [str(self.extra_bin), BIN_DIR], str(self.cache_dir), **kwargs)

    def fake_plugin(self, name: str, script: str) -> None:
        path = self.extra_bin / name
        path.write_text("#!/bin/sh\n" + script)
        path.chmod(0o755)

    # -- pods ----------------------------------------------------------------------

    def pin(self, pod_id: str) -> dict[str, str]:
        self.pods.add(pod_id)
        return pin_namespaces(str(self.pin_root / pod_id), hostname=pod_id)

    def unpin(self, pod_id: str) -> None:
        remove_pin_dir(str(self.pin_root / pod_id))

    def serve(self, netns: str, port: int, name: str) -> Server:
        sock = run_in_netns(netns, lambda: socket.create_server(("0.0.0.0", port), reuse_port=False))
        server = Server(sock, name).start()
        self.servers.append(server)
        return server

    # -- what the network holds on the host ------------------------------------------

    def footprint(self) -> dict[str, Any]:
        """Everything of this network on the host, besides the bridge itself."""
        prefix = ".".join(str(self.subnet.network_address).split(".")[:3]) + "."
        marks = [self.name, prefix] + [_chain_suffix(self.name, p)[:16] for p in self.pods]
        rules = sorted(line for line in iptables_save() + iptables_save("ip6tables-save")
                       if any(m in line for m in marks))
        ipam = self.ipam_dir / self.name
        reserved = sorted(n for n in os.listdir(ipam) if _is_ip(n)) if ipam.exists() else []
        brif = f"/sys/class/net/{self.bridge}/brif"
        return {"rules": rules, "reserved_ips": reserved,
                "bridge_ports": sorted(os.listdir(brif)) if os.path.exists(brif) else [],
                "cache": sorted(os.listdir(self.cache_dir)) if self.cache_dir.exists() else [],
                "mounts": mounts_under(str(self.root))}

    def assert_clean(self, *, pins: bool = True) -> None:
        """Nothing of the network left (and, with ``pins``, no pinned namespace)."""
        footprint = self.footprint()
        if not pins:
            del footprint["mounts"]
        assert footprint == {"rules": [], "reserved_ips": [], "bridge_ports": [], "cache": [],
                             **({"mounts": []} if pins else {})}

    # -- cleanup -----------------------------------------------------------------------

    def cleanup(self) -> None:
        for server in self.servers:
            server.close()
        with contextlib.suppress(Exception):
            net = self.network()
            for pod_id in self.pods:
                with contextlib.suppress(Exception):
                    asyncio.run(net.teardown(pod_id))
        for pod_id in self.pods:
            with contextlib.suppress(OSError):
                self.unpin(pod_id)
        sh("ip", "link", "del", self.bridge, check=False)
        # anything still naming this network (a failed test's rules)
        for binary in ("iptables", "ip6tables"):
            self._drop_rules(binary)

    def _drop_rules(self, binary: str) -> None:
        save = sh(f"{binary}-save", "-t", "nat", check=False)
        chains = set()
        for line in save.splitlines():
            if line.startswith("-A ") and self.name in line:
                args = line[3:]
                chain = args.split()[0]
                subprocess.run(f"{binary} -t nat -D {args}", shell=True, capture_output=True, check=False)
                target = re.search(r"-j (CNI-\S+)", line)
                if target and target.group(1) not in SHARED_CHAINS:
                    chains.add(target.group(1))
                if chain not in SHARED_CHAINS and chain.startswith("CNI-"):
                    chains.add(chain)
        for chain in chains:
            sh(binary, "-t", "nat", "-F", chain, check=False)
            sh(binary, "-t", "nat", "-X", chain, check=False)


def _shared_chains(binary: str) -> set[str]:
    return {c for c in SHARED_CHAINS if f":{c} " in sh(f"{binary}-save", "-t", "nat", check=False)}


def _remove_shared_chains(binary: str) -> None:
    """portmap's top-level chains, when no pod of anyone uses them any more."""
    save = sh(f"{binary}-save", "-t", "nat", check=False)
    if any(line.startswith("-A CNI-HOSTPORT-DNAT ") for line in save.splitlines()):
        return
    for line in save.splitlines():
        if line.startswith("-A ") and re.search(r"-j (CNI-HOSTPORT-DNAT|CNI-HOSTPORT-MASQ)$", line):
            subprocess.run(f"{binary} -t nat -D {line[3:]}", shell=True, capture_output=True, check=False)
    for chain in SHARED_CHAINS:
        sh(binary, "-t", "nat", "-F", chain, check=False)
        sh(binary, "-t", "nat", "-X", chain, check=False)


@pytest.fixture(scope="session")
def restore_host_network_state() -> Iterator[None]:
    """Once per session: portmap's shared chains go at the end if this session
    created them, and net.ipv4.ip_forward gets back what it was.  The network
    and e2e tiers' conftests make it autouse for their tests."""
    if os.geteuid() != 0:
        yield
        return
    with open(IP_FORWARD) as f:
        forward = f.read().strip()
    before = {b: _shared_chains(b) for b in ("iptables", "ip6tables")}
    yield
    for binary, chains in before.items():
        if not chains:
            _remove_shared_chains(binary)
    if forward == "0":
        with open(IP_FORWARD, "w") as f:
            f.write("0")


def wait_until(condition: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)
