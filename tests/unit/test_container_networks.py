"""The pure parts of the CLI containers' networking: -p and --add-host
parsing, resolv.conf, and the hosts file with a user network's peers."""

from __future__ import annotations

from pathlib import Path

import pytest

from hawser.errors import InvalidArgument
from hawser.network import Endpoint
from hawser.pods import parse_add_host, parse_port
from hawser.pods._container_networks import ContainerNetworks, resolv_conf
from hawser.runtime import PortRequest


@pytest.mark.parametrize(("spec", "want"), [
    ("80", PortRequest(container_port=80)),
    ("8080:80", PortRequest(container_port=80, host_port=8080)),
    ("127.0.0.1:8080:80/udp", PortRequest(container_port=80, host_port=8080, protocol="udp", host_ip="127.0.0.1")),
    ("127.0.0.1::80", PortRequest(container_port=80, host_ip="127.0.0.1")),
    ("[::1]:8080:80", PortRequest(container_port=80, host_port=8080, host_ip="::1")),
])
def test_parse_port(spec: str, want: PortRequest) -> None:
    assert parse_port(spec) == want


@pytest.mark.parametrize("spec", ["", "x:80", "1:2:3:4", "80/icmp", "70000", "nope:1:80", "8000-8010:80"])
def test_parse_port_refuses(spec: str) -> None:
    with pytest.raises(InvalidArgument):
        parse_port(spec)


def test_add_host() -> None:
    assert parse_add_host("db:10.0.0.2") == ("db", "10.0.0.2")
    assert parse_add_host("db=10.0.0.2") == ("db", "10.0.0.2")
    assert parse_add_host("v6:[::1]") == ("v6", "::1")
    with pytest.raises(InvalidArgument):
        parse_add_host("db:nowhere")
    assert parse_add_host("host.docker.internal:host-gateway") == ("host.docker.internal", "host-gateway")


def test_add_host_gateway_is_the_networks_gateway() -> None:
    own = Endpoint(container_id="a" * 64, network="app", name="web", ip="10.1.0.2", gateway="10.1.0.1",
                   extra_hosts=("host.docker.internal:host-gateway",))
    assert "10.1.0.1\thost.docker.internal\n" in ContainerNetworks._hosts_text(own, [own])


def test_resolv_conf_drops_loopback_resolvers(tmp_path: Path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("# x\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nsearch a.example\noptions edns0\n")
    assert resolv_conf(dns=(), search=(), options=(), host_file=str(host), keep_loopback=False) == \
        "nameserver 192.0.2.1\nsearch a.example\noptions edns0\n"
    assert resolv_conf(dns=("9.9.9.9",), search=("b.example",), options=("ndots:2",), host_file=str(host),
                       keep_loopback=False) == "nameserver 9.9.9.9\nsearch b.example\noptions ndots:2\n"
    host.write_text("nameserver 127.0.0.53\n")
    assert resolv_conf(dns=(), search=(), options=(), host_file=str(host), keep_loopback=False) == \
        "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"  # docker's fallback
    assert resolv_conf(dns=(), search=(), options=(), host_file=str(host), keep_loopback=True) == \
        "nameserver 127.0.0.53\n"  # --network host: the host's own


def test_hosts_lists_the_peers_of_a_user_network_only() -> None:
    def ep(id_: str, name: str, ip: str, network: str = "app") -> Endpoint:
        return Endpoint(container_id=id_ * 64, network=network, name=name, hostname=id_ * 12, ip=ip)

    own = Endpoint(container_id="a" * 64, network="app", name="web", hostname="webhost", ip="10.1.0.2",
                   extra_hosts=("db.example:10.9.9.9",))
    peers = [own, ep("b", "api", "10.1.0.3"), ep("c", "other", "10.2.0.3", network="elsewhere"),
             ep("d", "starting", "")]
    text = ContainerNetworks._hosts_text(own, peers)
    assert text.startswith("127.0.0.1\tlocalhost\n")
    assert text.endswith("10.9.9.9\tdb.example\n10.1.0.2\twebhost web\n10.1.0.3\tapi " + "b" * 12 + "\n")
    on_default = Endpoint(container_id="a" * 64, network="bridge", name="web", hostname="webhost", ip="10.1.0.2")
    assert "api" not in ContainerNetworks._hosts_text(on_default, [ep("b", "api", "10.1.0.3", network="bridge")])
