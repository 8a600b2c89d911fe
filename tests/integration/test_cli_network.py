"""Networking of CLI containers (issue 18) with the real CNI plugins
(Debian's containernetworking-plugins) and iptables: published ports answered
from the host, /etc/hosts and resolv.conf, user networks whose containers
reach each other by name, ``hawser port`` and ``hawser network ...``, and a
teardown that leaves nothing (rm, and rm -f after a crash mid-create).

Each store gets a subnet and bridge of its own (``[cni] bridge_subnet`` and
``bridge_name``), away from podman's and hawserd's 10.88.0.0/16; the bridges
are deleted at the end."""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import Env, container_env, system_check
from tests.support.registry_fixtures import BuiltImage

pytestmark = pytest.mark.integration

HTTPD = "mkdir -p /www && echo hello from $(hostname) > /www/index.html && exec busybox httpd -f -p 80 -h /www"


def _host_routes() -> list[ipaddress.IPv4Network]:
    out = []
    for line in subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout.splitlines():
        word = line.split()[0]
        if word != "default":
            out.append(ipaddress.ip_network(word if "/" in word else f"{word}/32", strict=False))
    return out


def _free_subnet() -> str:
    routes = _host_routes()
    for _ in range(100):
        net = ipaddress.ip_network(f"10.{secrets.choice(range(120, 127))}.{secrets.randbelow(250)}.0/24")
        if not any(net.overlaps(r) for r in routes):
            return str(net)
    raise AssertionError("no free subnet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _get(url: str, timeout: float = 15) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                body: bytes = r.read()
                return body.decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class NetEnv:
    def __init__(self, env: Env, ref: str, subnet: str, bridge: str) -> None:
        self.env, self.ref, self.subnet, self.bridge = env, ref, subnet, bridge
        self.bridges = [bridge]
        self.ids: set[str] = set()

    def cli(self, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        proc = self.env.cli(*args, check=check, env=env)
        if args[0] in ("run", "create"):
            self.ids.update(w for w in proc.stdout.split() if len(w) == 64)
        return proc


def _leftovers(net: NetEnv) -> dict[str, object]:
    """What the store's networking may have left on the host."""
    root = net.env.root
    state_dir = os.path.join(net.env.state, "networks")
    ipam = os.path.join(root, "networks", "ipam")
    leases = []
    for directory, _, files in os.walk(ipam):
        leases += [os.path.join(directory, f) for f in files if f not in ("lock",) and not f.startswith("last_reserved")]
    ids = os.listdir(os.path.join(root, "networks", "endpoints")) if os.path.isdir(
        os.path.join(root, "networks", "endpoints")) else []
    results = os.listdir(os.path.join(root, "networks", "results")) if os.path.isdir(
        os.path.join(root, "networks", "results")) else []
    ports = [b for b in net.bridges if os.path.isdir(f"/sys/class/net/{b}/brif") and os.listdir(f"/sys/class/net/{b}/brif")]
    iptables = subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    # the per-container rules (portmap's, by the container's id in their comments); a network's own
    # egress rules ("hawser network ID") stay while it exists, as docker's per-bridge rules do
    rules = [line for line in iptables.splitlines()
             if (net.subnet.rsplit(".", 1)[0] + "." in line or ("id: \"" in line and net.ids & set(line.split("\"")))
                 ) and "hawser network" not in line]
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        pins = [line for line in f if state_dir in line]
    return {"state": [n for n in os.listdir(state_dir) if not n.startswith(".")] if os.path.isdir(state_dir) else [], "leases": leases, "endpoints": ids,
            "results": results, "veths": ports, "iptables": rules, "pins": pins}


NOTHING = {"state": [], "leases": [], "endpoints": [], "results": [], "veths": [], "iptables": [], "pins": []}


@pytest.fixture
def net(tmp_path: Path, busybox: tuple[str, BuiltImage]) -> Iterator[NetEnv]:
    ref, _ = busybox
    subnet, bridge = _free_subnet(), f"hwt-{secrets.token_hex(5)}"
    with container_env(tmp_path, ref, "/hawser-test") as env:
        with open(env.config_file, encoding="utf-8") as f:
            text = f.read().replace('default_network = "none"', 'default_network = "bridge"')
        with open(env.config_file, "w", encoding="utf-8") as f:  # the default network, on a subnet of its own
            f.write(text + f'[cni]\nbridge_subnet = "{subnet}"\nbridge_name = "{bridge}"\n')
        n = NetEnv(env, ref, subnet, bridge)
        try:
            yield n
        finally:
            for id_ in env.cli("ps", "-a", "-q", "--no-trunc", check=False).stdout.split():
                env.cli("rm", "-f", id_, check=False)
            for name in env.cli("network", "ls", "-q", check=False).stdout.split():
                env.cli("network", "rm", name, check=False)
            from hawser.network import UserNetworks, remove_rules

            networks = UserNetworks(env.root)
            for network in networks.all_networks():
                remove_rules(network)
            leaked = [line for line in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
                      .splitlines() if any(f"hawser network {x.id[:12]}" in line for x in networks.all_networks())]
            for b in n.bridges:
                subprocess.run(["ip", "link", "del", b], capture_output=True)
            assert leaked == []


def test_published_port_hosts_and_resolv_conf(net: NetEnv) -> None:
    port = _free_port()
    id_ = net.cli("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:80", "--add-host", "db.example:10.1.2.3",
                  "--dns", "192.0.2.53", "--dns-search", "example.com", "--hostname", "webhost", net.ref,
                  "sh", "-c", HTTPD).stdout.strip()
    assert _get(f"http://127.0.0.1:{port}/") == "hello from webhost\n"
    assert net.cli("port", "web").stdout == f"80/tcp -> 127.0.0.1:{port}\n"
    assert net.cli("port", "web", "80").stdout == f"127.0.0.1:{port}\n"
    assert net.cli("port", "web", "81", check=False).returncode != 0
    hosts = net.cli("exec", "web", "cat", "/etc/hosts").stdout
    ip = net.cli("exec", "web", "sh", "-c", "ip -4 -o addr show eth0 || ifconfig eth0", check=False).stdout
    assert "127.0.0.1\tlocalhost" in hosts and "10.1.2.3\tdb.example" in hosts
    own = [line for line in hosts.splitlines() if "webhost" in line]
    assert len(own) == 1 and own[0].split()[1:] == ["webhost", "web"], hosts
    assert ipaddress.ip_address(own[0].split()[0]) in ipaddress.ip_network(net.subnet), (hosts, ip)
    resolv = net.cli("exec", "web", "cat", "/etc/resolv.conf").stdout
    assert resolv.splitlines()[0] == "nameserver 192.0.2.53" and "search example.com" in resolv
    assert net.cli("exec", "web", "cat", "/etc/hostname").stdout == "webhost\n"
    # the network survives a stop and a start of the container (its pin and attachment stay until rm)
    inspect = net.cli("network", "inspect", "bridge").stdout
    (doc,) = json.loads(inspect)
    assert doc["Name"] == "bridge" and doc["IPAM"]["Config"][0]["Subnet"] == net.subnet
    assert doc["Containers"][id_]["Name"] == "web"
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert f"-A POSTROUTING -s {net.subnet} ! -d {net.subnet} -m comment --comment \"hawser network {doc['Id'][:12]}\"" \
        " -j MASQUERADE" in nat
    net.cli("rm", "-f", "web")
    assert _leftovers(net) == NOTHING


def test_publish_all_and_free_host_port(net: NetEnv) -> None:
    net.cli("create", "--name", "base", net.ref, "true")
    net.cli("commit", "--change", "EXPOSE 80/tcp", "base", "exposed:1")
    net.cli("rm", "base")
    net.cli("run", "-d", "--name", "all", "-P", "exposed:1", "sh", "-c", HTTPD)
    line = net.cli("port", "all").stdout.strip()
    assert line.startswith("80/tcp -> 0.0.0.0:"), line
    assert _get(f"http://127.0.0.1:{line.rsplit(':', 1)[1]}/").startswith("hello from")
    net.cli("run", "-d", "--name", "any", "-p", "127.0.0.1::80", net.ref, "sh", "-c", HTTPD)
    host = net.cli("port", "any", "80/tcp").stdout.strip()
    assert host.startswith("127.0.0.1:") and _get(f"http://{host}/").startswith("hello from")
    net.cli("rm", "-f", "all", "any")
    assert _leftovers(net) == NOTHING


def test_user_network_names_and_network_commands(net: NetEnv) -> None:
    subnet, bridge = _free_subnet(), f"hwt-{secrets.token_hex(5)}"
    net.bridges.append(bridge)
    nid = net.cli("network", "create", "--subnet", subnet, "--label", "team=a", "-o",
                  f"com.docker.network.bridge.name={bridge}", "appnet").stdout.strip()
    assert len(nid) == 64
    assert net.cli("network", "create", "appnet", check=False).returncode != 0
    assert net.cli("network", "ls", "-q", "--filter", "label=team=a").stdout.split() == [nid[:12]]
    assert "appnet" in net.cli("network", "ls").stdout
    net.cli("run", "-d", "--name", "alpha", "--network", "appnet", net.ref, "sh", "-c", HTTPD)
    net.cli("run", "-d", "--name", "beta", "--network", "appnet", net.ref, "sleep", "60")
    # by name, both ways: beta's join rewrote alpha's hosts file in place
    assert net.cli("exec", "beta", "wget", "-qO-", "http://alpha/").stdout.startswith("hello from")
    assert "beta" in net.cli("exec", "alpha", "cat", "/etc/hosts").stdout
    assert net.cli("run", "--rm", "--network", "appnet", net.ref, "wget", "-qO-", "http://alpha/").stdout \
        .startswith("hello from")
    (doc,) = json.loads(net.cli("network", "inspect", "appnet").stdout)
    assert doc["Id"] == nid and doc["Labels"] == {"team": "a"} and doc["IPAM"]["Config"][0]["Subnet"] == subnet
    assert sorted(c["Name"] for c in doc["Containers"].values()) == ["alpha", "beta"]
    refused = net.cli("network", "rm", "appnet", check=False)
    assert refused.returncode == 1 and "active endpoints" in refused.stderr
    net.cli("rm", "-f", "beta")
    assert "beta" not in net.cli("exec", "alpha", "cat", "/etc/hosts").stdout
    net.cli("rm", "-f", "alpha")
    assert net.cli("network", "rm", "appnet").stdout == "appnet\n"
    assert not os.path.exists(f"/sys/class/net/{bridge}")
    assert f"hawser network {nid[:12]}" not in subprocess.run(["iptables-save"], capture_output=True, text=True).stdout
    assert _leftovers(net) == NOTHING


def test_none_and_host_get_hosts_and_resolv_conf(net: NetEnv) -> None:
    out = net.cli("run", "--rm", "--network", "none", "--add-host", "h:10.9.9.9", net.ref,
                  "sh", "-c", "cat /etc/hosts /etc/resolv.conf").stdout
    assert "127.0.0.1\tlocalhost" in out and "10.9.9.9\th" in out and "nameserver" in out
    out = net.cli("run", "--rm", "--network", "host", net.ref, "cat", "/etc/resolv.conf").stdout
    with open("/etc/resolv.conf", encoding="utf-8") as f:
        host_servers = [line for line in f if line.startswith("nameserver")]
    assert [line + "\n" for line in out.splitlines() if line.startswith("nameserver")] == host_servers
    assert _leftovers(net) == NOTHING


def test_crash_mid_create_is_cleaned_by_rm_and_check(net: NetEnv) -> None:
    port = _free_port()
    killed = net.cli("run", "-d", "--name", "crash", "-p", f"127.0.0.1:{port}:80", net.ref, "sleep", "60",
                     check=False, env={"HAWSER_FAILPOINTS": "cni.add.after-plugin=kill@2"})
    assert killed.returncode == -9, killed.stderr
    assert _leftovers(net) != NOTHING  # the pin, the endpoint and half a CNI chain
    net.cli("rm", "-f", "crash")
    assert _leftovers(net) == NOTHING
    # a removal by a front end without the CLI's networking (hawserd's, containerd's API) leaves the
    # network state without a record: system check reports it and --repair undoes it
    net.cli("run", "-d", "--name", "other", "-p", f"127.0.0.1:{port}:80", net.ref, "sleep", "60")
    from hawser.images import ImageService
    from hawser.runtime import ContainerManager

    store = net.env.store()
    try:
        ContainerManager.of(store, ImageService(store)).remove("other", force=True)
    finally:
        store.close()
    assert _leftovers(net) != NOTHING
    code, findings = system_check(net.env)
    assert code == 1 and [f["kind"] for f in findings] == ["container-network"], findings
    code, findings = system_check(net.env, "--repair")
    assert [f["kind"] for f in findings] == ["container-network"] and findings[0]["repaired"], findings
    assert _leftovers(net) == NOTHING
    assert system_check(net.env) == (0, [])


def test_network_survives_stop_and_start_and_detached_rm_cleans_up(net: NetEnv) -> None:
    port = _free_port()
    net.cli("run", "-d", "--name", "again", "-p", f"127.0.0.1:{port}:80", net.ref, "sh", "-c", HTTPD)
    assert _get(f"http://127.0.0.1:{port}/").startswith("hello from")
    net.cli("stop", "-t", "1", "again")
    net.cli("start", "again")  # the same namespace, address and published port
    assert _get(f"http://127.0.0.1:{port}/").startswith("hello from")
    net.cli("rm", "-f", "again")
    id_ = net.cli("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:80", net.ref, "sleep", "0.3").stdout.strip()
    deadline = time.monotonic() + 30
    while id_ in net.cli("ps", "-a", "-q", "--no-trunc").stdout.split() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _leftovers(net) == NOTHING
