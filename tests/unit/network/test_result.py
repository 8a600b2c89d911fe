"""CNI results (1.0.0 and 0.4.0/0.3.x) and plugin error objects."""

from __future__ import annotations

import ipaddress
import json

import pytest

from hawser.errors import DeadlineExceeded, FailedPrecondition, Internal, NotFound, Unavailable
from hawser.network import CNIError, PluginFailure, parse_result
from hawser.network._errors import cni_error, parse_failure

# What Debian's bridge plugin (1.1.1) printed for a 1.0.0 network.
BRIDGE_1_0 = {
    "cniVersion": "1.0.0",
    "interfaces": [
        {"name": "hwtry0", "mac": "96:a0:a4:94:83:5c"},
        {"name": "vethf4c51b08", "mac": "66:3a:90:eb:27:0a"},
        {"name": "eth0", "mac": "32:9c:5d:c2:55:65", "sandbox": "/run/netns/hwtry"},
    ],
    "ips": [{"interface": 2, "address": "10.251.7.2/24", "gateway": "10.251.7.1"}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "dns": {},
}

# The 0.4.0 shape: "version" on each IP; dual stack, IPv6 listed first.
BRIDGE_0_4 = {
    "cniVersion": "0.4.0",
    "interfaces": [{"name": "cni0", "mac": "aa:aa:aa:aa:aa:aa"},
                   {"name": "eth0", "mac": "bb:bb:bb:bb:bb:bb", "sandbox": "/var/run/netns/x"}],
    "ips": [{"version": "6", "interface": 1, "address": "fd00::5/64", "gateway": "fd00::1"},
            {"version": "4", "interface": 1, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
            {"version": "4", "interface": 0, "address": "10.1.0.1/16"}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0"}],
    "dns": {"nameservers": ["10.1.0.1"], "domain": "cluster.local", "search": ["a.svc", "svc"],
            "options": ["ndots:5"]},
}


def test_result_1_0() -> None:
    result = parse_result(json.dumps(BRIDGE_1_0))
    assert result.cni_version == "1.0.0"
    assert [i.name for i in result.interfaces] == ["hwtry0", "vethf4c51b08", "eth0"]
    assert result.interfaces[2].sandbox == "/run/netns/hwtry" and result.interfaces[0].sandbox == ""
    (ip,) = result.ips
    assert ip.address == ipaddress.ip_interface("10.251.7.2/24") and ip.ip == "10.251.7.2"
    assert ip.gateway == ipaddress.ip_address("10.251.7.1") and ip.interface == 2
    assert result.routes[0].dst == ipaddress.ip_network("0.0.0.0/0") and result.routes[0].gw is None
    assert result.dns.nameservers == ()
    assert json.loads(result.raw) == BRIDGE_1_0


def test_result_0_4_dual_stack_ipv4_first_and_host_ips_left_out() -> None:
    result = parse_result(json.dumps(BRIDGE_0_4).encode())
    assert result.cni_version == "0.4.0"
    assert [ip.ip for ip in result.sandbox_ips("eth0")] == ["10.1.0.5", "fd00::5"]
    assert [ip.ip for ip in result.sandbox_ips("eth1")] == []
    assert result.routes[0].gw == ipaddress.ip_address("10.1.0.1")
    assert result.dns.domain == "cluster.local" and result.dns.search == ("a.svc", "svc")
    assert result.dns.options == ("ndots:5",)


def test_ipam_style_result_without_interfaces() -> None:
    result = parse_result('{"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.0.0.9/8"}]}')
    assert [ip.ip for ip in result.sandbox_ips("eth0")] == ["10.0.0.9"]
    assert result.interfaces == ()


def test_extension_fields_survive_in_raw() -> None:
    doc = {**BRIDGE_1_0, "x-vendor": {"k": 1}}
    assert json.loads(parse_result(json.dumps(doc)).raw)["x-vendor"] == {"k": 1}


@pytest.mark.parametrize("doc, why", [
    ("nope", "not JSON"),
    ([], "not an object"),
    ({"ips": []}, "'cniVersion' is missing"),
    ({"cniVersion": "0.2.0", "ip4": {}}, "is not one of"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.300/24"}]}, "not an IP with a prefix"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3"}]}, "lacks a prefix length"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3/24", "gateway": "x"}]}, "gateway 'x'"),
    ({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.3/24", "interface": -1}]}, "interface index"),
    ({"cniVersion": "1.0.0", "ips": {}}, "'ips' is not a list"),
    ({"cniVersion": "1.0.0", "interfaces": [{"mac": "x"}]}, "'name' is missing"),
    ({"cniVersion": "1.0.0", "routes": [{"dst": "nowhere"}]}, "not a CIDR"),
    ({"cniVersion": "1.0.0", "dns": {"nameservers": [1]}}, "non-string"),
])
def test_invalid_results(doc: object, why: str) -> None:
    text = doc if isinstance(doc, str) else json.dumps(doc)
    with pytest.raises(FailedPrecondition) as info:
        parse_result(text, source="CNI plugin bridge")
    assert why in str(info.value) and "CNI plugin bridge" in str(info.value)


def failure(stdout: bytes, stderr: bytes = b"", status: int = 1) -> PluginFailure:
    return parse_failure(plugin="bridge", command="ADD", network="net", exit_status=status, stdout=stdout,
                         stderr=stderr)


def test_error_object_on_stdout() -> None:
    f = failure(b'{"cniVersion":"1.0.0","code":7,"msg":"Invalid Configuration",'
                b'"details":"Network 192.168.0.0/31 too small to allocate from."}', b"log line\n")
    assert (f.code, f.msg, f.details, f.exit_status) == (7, "Invalid Configuration",
                                                         "Network 192.168.0.0/31 too small to allocate from.", 1)
    assert f.stderr == "log line"
    assert f.describe() == ("bridge ADD (code 7, invalid network config): Invalid Configuration: "
                            "Network 192.168.0.0/31 too small to allocate from.")


def test_error_object_on_stderr_and_plain_text_fallbacks() -> None:
    assert failure(b"", b'{"code":11,"msg":"busy"}').code == 11
    f = failure(b"", b"first\nfailed to set bridge addr: permission denied\n\n", status=2)
    assert (f.code, f.msg, f.exit_status) == (None, "failed to set bridge addr: permission denied", 2)
    assert failure(b"not json", b"").msg == "exited with status 1 and no message"
    assert failure(b'{"code": true, "msg": "odd"}').code is None


@pytest.mark.parametrize("code, kind", [
    (1, FailedPrecondition), (2, FailedPrecondition), (7, FailedPrecondition), (3, NotFound), (4, Internal),
    (6, Internal), (5, Unavailable), (11, Unavailable), (50, Unavailable), (999, Unavailable), (123, Unavailable),
    (None, Unavailable),
])
def test_codes_map_to_error_kinds(code: int | None, kind: type[Exception]) -> None:
    f = PluginFailure(plugin="bridge", command="ADD", network="net", msg="m", code=code)
    err = cni_error("CNI ADD of pod p failed", [f])
    assert isinstance(err, kind) and isinstance(err, CNIError)
    assert err.failures == (f,)
    assert str(err).startswith("CNI ADD of pod p failed: bridge ADD")


def test_timeout_maps_to_deadline_and_all_failures_are_listed() -> None:
    slow = PluginFailure(plugin="portmap", command="DEL", network="n", msg="killed", timed_out=True)
    broken = PluginFailure(plugin="bridge", command="DEL", network="n", msg="boom", code=5)
    err = cni_error("DEL failed", [slow, broken])
    assert isinstance(err, DeadlineExceeded)
    assert "portmap DEL: killed" in str(err) and "bridge DEL (code 5, I/O failure): boom" in str(err)
