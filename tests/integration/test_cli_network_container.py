"""``run/create --network container:NAME`` (issue 18) with the real CNI
plugins: the joined container reaches the other's services on 127.0.0.1,
shares its /etc/hosts, resolv.conf and host name, refuses docker's
conflicting flags, and its removal (or the owner's, first) leaves nothing.
``network connect/disconnect``: a container on two networks, one interface
each, resolved by its peers on both, torn down whole by rm.
The fixtures are test_cli_network's (a store with a bridge of its own)."""

from __future__ import annotations

import json
import secrets

import pytest

from tests.integration import test_cli_network as base
from tests.integration.conftest import system_check
from tests.integration.test_cli_network import HTTPD, NOTHING, NetEnv, _free_subnet, _leftovers

pytestmark = pytest.mark.integration
net = base.net  # the fixture: a store whose default network has a subnet and bridge of its own


def _user_network(net: NetEnv, name: str = "appnet") -> str:
    bridge = f"hwt-{secrets.token_hex(5)}"
    net.bridges.append(bridge)
    net.cli("network", "create", "--subnet", _free_subnet(), "-o", f"com.docker.network.bridge.name={bridge}", name)
    return name


def test_joins_a_containers_network_and_rm_of_either_leaves_nothing(net: NetEnv) -> None:
    network = _user_network(net)
    a_id = net.cli("run", "-d", "--name", "a", "--hostname", "ahost", "--network", network, net.ref,
                   "sh", "-c", HTTPD).stdout.strip()
    b_id = net.cli("run", "-d", "--name", "b", "--network", "container:a", net.ref, "sleep", "60").stdout.strip()
    assert net.cli("exec", "b", "wget", "-qO-", "http://127.0.0.1/").stdout == "hello from ahost\n"
    for path in ("/etc/hosts", "/etc/resolv.conf", "/etc/hostname"):
        assert net.cli("exec", "b", "cat", path).stdout == net.cli("exec", "a", "cat", path).stdout, path
    assert net.cli("exec", "b", "hostname").stdout == "ahost\n"
    (doc,) = json.loads(net.cli("inspect", "b").stdout)
    assert doc["HostConfig"]["NetworkMode"] == f"container:{a_id}"
    assert net.cli("ps", "--filter", "name=b", "--format", "{{.Networks}}").stdout == f"container:{a_id}\n"
    assert system_check(net.env) == (0, [])
    net.cli("stop", "-t", "0", "b")
    net.cli("start", "b")  # its own pin of a's namespace: joined again
    assert net.cli("exec", "b", "wget", "-qO-", "http://127.0.0.1/").stdout == "hello from ahost\n"
    # by id too, and a --rm one: its removal leaves a's networking as it was
    assert net.cli("run", "--rm", "--network", f"container:{a_id[:12]}", net.ref,
                   "wget", "-qO-", "http://127.0.0.1/").stdout == "hello from ahost\n"
    net.cli("rm", "-f", "b")
    assert net.cli("run", "--rm", "--network", network, net.ref, "wget", "-qO-", "http://a/").stdout \
        == "hello from ahost\n"
    assert "\tahost a" in net.cli("exec", "a", "cat", "/etc/hosts").stdout
    # the owner removed first (docker allows it): b keeps the namespace (loopback only) until its own rm
    net.cli("run", "-d", "--name", "b", "--network", "container:a", net.ref, "sleep", "60")
    net.cli("rm", "-f", "a")
    assert net.cli("exec", "b", "cat", "/etc/hostname").stdout == "ahost\n"
    links = net.cli("exec", "b", "ip", "-o", "link").stdout.splitlines()
    assert len(links) == 1 and links[0].startswith("1: lo:"), links  # eth0 went with a's CNI DEL
    net.cli("stop", "-t", "0", "b")
    refused = net.cli("start", "b", check=False)  # a's files went with a: docker refuses it too
    assert refused.returncode == 1 and "cannot start again: the source of its mount at /etc/" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr  # one line, not runc's
    net.cli("rm", "-f", "b")
    assert net.cli("network", "rm", network).stdout == f"{network}\n"
    assert _leftovers(net) == NOTHING
    assert b_id not in net.cli("ps", "-a", "-q", "--no-trunc").stdout


def test_none_owner_and_refusals(net: NetEnv) -> None:
    net.cli("create", "--name", "idle", "--network", "none", net.ref, "sh", "-c", HTTPD)
    refused = net.cli("run", "--rm", "--network", "container:idle", net.ref, "true", check=False)
    assert refused.returncode == 125 and "cannot join network of a non running container: idle" in refused.stderr
    net.cli("start", "idle")  # its own namespace, made by runc: joined through its init
    assert net.cli("run", "--rm", "--network", "container:idle", net.ref,
                   "wget", "-qO-", "http://127.0.0.1/").stdout.startswith("hello from")
    for flags, what in ((["-p", "8080:80"], "port publishing"), (["-P"], "port publishing"),
                        (["--add-host", "x:10.0.0.1"], "custom host-to-IP mapping"), (["--dns", "10.0.0.53"], "dns"),
                        (["--hostname", "h"], "hostname")):
        refused = net.cli("run", "--rm", *flags, "--network", "container:idle", net.ref, "true", check=False)
        assert refused.returncode == 125 and f"conflicting options: {what}" in refused.stderr, (flags, refused.stderr)
    refused = net.cli("run", "--rm", "--network", "container:nosuch", net.ref, "true", check=False)
    assert refused.returncode == 125 and "nosuch" in refused.stderr
    assert net.cli("ps", "-a", "--format", "{{.Names}}").stdout == "idle\n"
    net.cli("rm", "-f", "idle")
    assert _leftovers(net) == NOTHING


def test_connect_and_disconnect_a_second_network(net: NetEnv) -> None:
    first, second = _user_network(net, "first"), _user_network(net, "second")
    net.cli("run", "-d", "--name", "a", "--hostname", "ahost", "--network", first, net.ref, "sh", "-c", HTTPD)
    net.cli("run", "-d", "--name", "c", "--hostname", "chost", "--network", second, net.ref, "sh", "-c", HTTPD)
    assert net.cli("exec", "a", "wget", "-qO-", "http://c/", check=False).returncode != 0
    net.cli("network", "connect", "--alias", "web2", second, "a")
    links = net.cli("exec", "a", "ip", "-o", "link").stdout
    assert "eth0@" in links and "eth1@" in links, links
    assert net.cli("exec", "a", "wget", "-qO-", "http://c/").stdout == "hello from chost\n"
    assert net.cli("exec", "c", "wget", "-qO-", "http://web2/").stdout == "hello from ahost\n"
    assert net.cli("exec", "c", "wget", "-qO-", "http://a/").stdout == "hello from ahost\n"
    (doc,) = json.loads(net.cli("inspect", "a").stdout)
    assert sorted(doc["NetworkSettings"]["Networks"]) == [first, second]
    assert system_check(net.env) == (0, [])
    net.cli("stop", "-t", "0", "a")
    net.cli("start", "a")  # both interfaces stay in its pinned namespace
    assert net.cli("exec", "c", "wget", "-qO-", "http://web2/").stdout == "hello from ahost\n"
    (ndoc,) = json.loads(net.cli("network", "inspect", second).stdout)
    assert sorted(c["Name"] for c in ndoc["Containers"].values()) == ["a", "c"]
    again = net.cli("network", "connect", second, "a", check=False)
    assert again.returncode != 0 and "already exists in network second" in again.stderr
    assert net.cli("network", "rm", second, check=False).returncode != 0  # a and c are on it
    net.cli("network", "disconnect", second, "a")
    assert "eth1" not in net.cli("exec", "a", "ip", "-o", "link").stdout
    assert "web2" not in net.cli("exec", "c", "cat", "/etc/hosts").stdout
    assert "chost" not in net.cli("exec", "a", "cat", "/etc/hosts").stdout
    (doc,) = json.loads(net.cli("inspect", "a").stdout)
    assert sorted(doc["NetworkSettings"]["Networks"]) == [first]
    refused = net.cli("network", "disconnect", second, "a", check=False)
    assert refused.returncode != 0 and "is not connected to network second" in refused.stderr
    net.cli("network", "disconnect", "-f", second, "a")
    # connected again, then rm: every attachment goes, and c's hosts forgets a
    net.cli("network", "connect", second, "a")
    assert "\ta ahost" in net.cli("exec", "c", "cat", "/etc/hosts").stdout
    net.cli("rm", "-f", "a")
    assert "ahost" not in net.cli("exec", "c", "cat", "/etc/hosts").stdout
    net.cli("run", "-d", "--name", "lonely", "--network", "none", net.ref, "sleep", "60")
    refused = net.cli("network", "connect", first, "lonely", check=False)
    assert refused.returncode != 0 and "private (none) mode" in refused.stderr
    net.cli("rm", "-f", "c", "lonely")
    assert net.cli("network", "rm", first, second).stdout == f"{first}\n{second}\n"
    assert _leftovers(net) == NOTHING
