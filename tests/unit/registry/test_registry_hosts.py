"""containerd hosts.toml: directory lookup, _default, mirrors, capabilities, ports."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from registry_fakes import FakeClock, FakeNetwork, FakeRegistry, make_client

from hawser.errors import FailedPrecondition, InvalidArgument, NotFound
from hawser.oci import parse_reference
from hawser.registry import resolve_hosts
from hawser.registry._hosts import namespace_dirs, parse_duration, split_port


def write_hosts(config_dir: Path, namespace: str, text: str) -> Path:
    directory = config_dir / namespace
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.toml").write_text(text)
    return directory


def urls(hosts: list) -> list[str]:  # type: ignore[type-arg]
    return [h.base_url for h in hosts]


def test_no_config_docker_hub_and_others() -> None:
    assert urls(resolve_hosts(None, "docker.io")) == ["https://registry-1.docker.io/v2"]
    assert urls(resolve_hosts(None, "quay.io")) == ["https://quay.io/v2"]
    assert urls(resolve_hosts(None, "127.0.0.1:5000")) == ["https://127.0.0.1:5000/v2"]
    assert urls(resolve_hosts(None, "localhost:5000")) == ["https://localhost:5000/v2"]


def test_plain_http_changes_the_default_server(tmp_path: Path) -> None:
    assert urls(resolve_hosts(None, "127.0.0.1:5000", plain_http=True)) == ["http://127.0.0.1:5000/v2"]
    assert urls(resolve_hosts(tmp_path, "127.0.0.1:5000", plain_http=True)) == ["http://127.0.0.1:5000/v2"]


def test_empty_config_dir_is_like_no_config(tmp_path: Path) -> None:
    assert urls(resolve_hosts(tmp_path, "docker.io")) == ["https://registry-1.docker.io/v2"]


def test_mirrors_in_file_order_then_server(tmp_path: Path) -> None:
    write_hosts(tmp_path, "docker.io", '''
server = "https://registry-1.docker.io"

[host."https://zeta-mirror.test"]
  capabilities = ["pull"]

[host."http://alpha-mirror.test:5000/prefix"]
  capabilities = ["pull", "resolve"]
''')
    hosts = resolve_hosts(tmp_path, "docker.io")
    assert urls(hosts) == ["https://zeta-mirror.test/v2", "http://alpha-mirror.test:5000/prefix/v2",
                           "https://registry-1.docker.io/v2"]
    assert [h.mirror for h in hosts] == [True, True, False]
    assert hosts[0].capabilities == {"pull"}
    assert hosts[1].capabilities == {"pull", "resolve"}
    assert hosts[2].capabilities == {"pull", "resolve", "push"}
    assert hosts[0].namespace == "docker.io" and hosts[2].namespace == ""


def test_server_defaults_to_the_namespace_when_absent(tmp_path: Path) -> None:
    write_hosts(tmp_path, "registry.test", '[host."https://mirror.test"]\n')
    assert urls(resolve_hosts(tmp_path, "registry.test")) == ["https://mirror.test/v2", "https://registry.test/v2"]
    write_hosts(tmp_path, "docker.io", '[host."https://mirror.test"]\n')
    assert urls(resolve_hosts(tmp_path, "docker.io"))[-1] == "https://registry-1.docker.io/v2"


def test_plain_http_does_not_touch_an_explicit_server(tmp_path: Path) -> None:
    write_hosts(tmp_path, "registry.test", 'server = "https://registry.test"\n')
    assert urls(resolve_hosts(tmp_path, "registry.test", plain_http=True)) == ["https://registry.test/v2"]


def test_default_dir_serves_every_namespace_without_its_own(tmp_path: Path) -> None:
    write_hosts(tmp_path, "_default", '[host."https://everything-mirror.test"]\n  capabilities = ["pull"]\n')
    write_hosts(tmp_path, "own.test", 'server = "https://own-server.test"\n')
    assert urls(resolve_hosts(tmp_path, "quay.io")) == ["https://everything-mirror.test/v2", "https://quay.io/v2"]
    assert urls(resolve_hosts(tmp_path, "own.test")) == ["https://own-server.test/v2"]


def test_default_dir_server_replaces_upstream(tmp_path: Path) -> None:
    write_hosts(tmp_path, "_default", 'server = "https://only-this.test"\n')
    assert urls(resolve_hosts(tmp_path, "quay.io")) == ["https://only-this.test/v2"]


def test_port_directory_forms(tmp_path: Path) -> None:
    assert namespace_dirs("reg.test:5000") == ["reg.test_5000_", "reg.test:5000", "_default"]
    assert namespace_dirs("reg.test") == ["reg.test", "_default"]
    write_hosts(tmp_path, "127.0.0.1:5000", 'server = "http://127.0.0.1:5000"\n')
    assert urls(resolve_hosts(tmp_path, "127.0.0.1:5000")) == ["http://127.0.0.1:5000/v2"]
    # host_port_ is looked for first.
    write_hosts(tmp_path, "127.0.0.1_5000_", 'server = "http://underscore.test:5000"\n')
    assert urls(resolve_hosts(tmp_path, "127.0.0.1:5000")) == ["http://underscore.test:5000/v2"]
    # Another port does not match either.
    assert urls(resolve_hosts(tmp_path, "127.0.0.1:6000")) == ["https://127.0.0.1:6000/v2"]


def test_split_port() -> None:
    assert split_port("127.0.0.1:5000") == ("127.0.0.1", "5000")
    assert split_port("[::1]:5000") == ("[::1]", "5000")
    assert split_port("[::1]") == ("[::1]", "")
    assert split_port("docker.io") == ("docker.io", "")


def test_override_path(tmp_path: Path) -> None:
    write_hosts(tmp_path, "registry.test", '''
[host."https://odd-mirror.test/v2/upstream"]
  override_path = true
[host."https://prefixed.test/v2"]
''')
    assert urls(resolve_hosts(tmp_path, "registry.test"))[:2] == ["https://odd-mirror.test/v2/upstream",
                                                                  "https://prefixed.test/v2"]


def test_tls_fields_and_relative_paths(tmp_path: Path) -> None:
    directory = write_hosts(tmp_path, "registry.test", '''
ca = "root.pem"
[host."https://m1.test"]
  ca = ["/etc/certs/a.pem", "b.pem"]
  client = [["/etc/certs/c.cert", "/etc/certs/c.key"], ["both.pem", ""]]
  skip_verify = true
[host."https://m2.test"]
  client = "single.pem"
''')
    m1, m2, server = resolve_hosts(tmp_path, "registry.test")
    assert m1.tls.ca_files == (Path("/etc/certs/a.pem"), directory / "b.pem")
    assert m1.tls.client_certs == ((Path("/etc/certs/c.cert"), Path("/etc/certs/c.key")), (directory / "both.pem", None))
    assert m1.tls.skip_verify and not m2.tls.skip_verify
    assert m2.tls.client_certs == ((directory / "single.pem", None),)
    assert server.tls.ca_files == (directory / "root.pem",)


def test_headers_proxy_and_dial_timeout(tmp_path: Path) -> None:
    write_hosts(tmp_path, "registry.test", '''
proxy = "http://proxy.test:3128"
dial_timeout = "1m30s"
[header]
  x-one = "1"
[host."https://m.test"]
  dial_timeout = "500ms"
  [host."https://m.test".header]
    x-many = ["a", "b"]
''')
    mirror, server = resolve_hosts(tmp_path, "registry.test")
    assert mirror.headers == (("x-many", "a"), ("x-many", "b"))
    assert mirror.dial_timeout == 0.5 and mirror.proxy is None
    assert server.headers == (("x-one", "1"),)
    assert server.proxy == "http://proxy.test:3128" and server.dial_timeout == 90.0


def test_docker_cert_pattern_without_hosts_toml(tmp_path: Path) -> None:
    directory = tmp_path / "registry.test:5000"
    directory.mkdir()
    for name in ("ca.crt", "client.cert", "client.key"):
        (directory / name).write_text("x")
    (server,) = resolve_hosts(tmp_path, "registry.test:5000")
    assert server.base_url == "https://registry.test:5000/v2"
    assert server.tls.ca_files == (directory / "ca.crt",)
    assert server.tls.client_certs == ((directory / "client.cert", directory / "client.key"),)


@pytest.mark.parametrize("text, match", [
    ("server = [", "not valid TOML"),
    ("server = 5", "server"),
    ('server = "ftp://x"', "http"),
    ('[host."https://m"]\ncapabilities = ["pull", "fly"]', "unknown capabilities"),
    ('[host."https://m"]\ncapabilities = "pull"', "capabilities"),
    ('[host."https://m"]\nskip_verify = "yes"', "skip_verify"),
    ('[host."https://m"]\nca = 5', "ca"),
    ('[host."https://m"]\nclient = [["a", "b", "c"]]', "client"),
    ('[host."https://m"]\nheader = {x = 5}', "header"),
    ('[host."https://m"]\ndial_timeout = "soon"', "duration"),
    ('[host."https://m"]\noverride_path = "true"', "override_path"),
    ('[host."https://user:pw@m"]', "user info"),
])
def test_malformed_files_name_the_file(tmp_path: Path, text: str, match: str) -> None:
    write_hosts(tmp_path, "registry.test", text)
    with pytest.raises(InvalidArgument, match=match) as info:
        resolve_hosts(tmp_path, "registry.test")
    assert "hosts.toml" in str(info.value)


def test_unknown_fields_are_ignored(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_hosts(tmp_path, "registry.test", 'future_field = 1\n[host."https://m.test"]\nshiny = true\n')
    assert len(resolve_hosts(tmp_path, "registry.test")) == 2
    assert "future_field" in caplog.text


def test_parse_duration() -> None:
    assert parse_duration("1s", "x") == 1.0
    assert parse_duration("1h2m3.5s", "x") == 3723.5
    assert parse_duration(3, "x") == 3.0
    for bad in ("", "1", "s", "1x", "-1s", True):
        with pytest.raises(InvalidArgument):
            parse_duration(bad, "x")


# --- the client walks the hosts ------------------------------------------------


def test_mirror_is_tried_first_with_ns_param(tmp_path: Path, network: FakeNetwork, registry: FakeRegistry,
                                             clock: FakeClock) -> None:
    mirror = FakeRegistry(host="mirror.test")
    network.add("mirror.test", mirror.handle)
    desc, _, _ = mirror.add_image()
    write_hosts(tmp_path, "registry.test", '[host."https://mirror.test"]\n  capabilities = ["pull", "resolve"]\n')
    with make_client(network, clock, config_dir=tmp_path) as client:
        resolved = client.resolve(parse_reference("registry.test/team/app:v1"))
    assert resolved.descriptor.digest == desc.digest
    assert mirror.requests[0].url.params["ns"] == "registry.test"
    assert registry.requests == []


def test_fallback_past_refused_404_and_5xx_mirrors(tmp_path: Path, network: FakeNetwork, registry: FakeRegistry,
                                                   clock: FakeClock) -> None:
    empty = FakeRegistry(host="empty.test")
    broken = FakeRegistry(host="broken.test")
    broken.hooks.append(lambda request: httpx.Response(503))
    network.add("empty.test", empty.handle)
    network.add("broken.test", broken.handle)
    desc, _, _ = registry.add_image()
    write_hosts(tmp_path, "registry.test", '''
[host."https://closed.test"]
[host."https://empty.test"]
[host."https://broken.test"]
''')
    with make_client(network, clock, config_dir=tmp_path) as client:
        assert client.resolve(parse_reference("registry.test/team/app:v1")).descriptor == desc
    assert len(empty.requests) == 1
    assert len(broken.requests) == 1  # mirrors get no retries: the server is asked instead
    assert clock.sleeps == []


def test_all_hosts_failing_names_them(tmp_path: Path, network: FakeNetwork, registry: FakeRegistry,
                                      clock: FakeClock) -> None:
    write_hosts(tmp_path, "registry.test", '[host."https://closed.test"]\n')
    with make_client(network, clock, config_dir=tmp_path) as client, pytest.raises(NotFound) as info:
        client.resolve(parse_reference("registry.test/team/app:v1"))
    assert "closed.test" in str(info.value) and "registry.test" in str(info.value)


def test_resolve_skips_pull_only_mirror_but_digest_uses_it(tmp_path: Path, network: FakeNetwork,
                                                           registry: FakeRegistry, clock: FakeClock) -> None:
    mirror = FakeRegistry(host="mirror.test")
    network.add("mirror.test", mirror.handle)
    desc, _, _ = mirror.add_image()
    registry.add_image()
    write_hosts(tmp_path, "registry.test", '[host."https://mirror.test"]\n  capabilities = ["pull"]\n')
    with make_client(network, clock, config_dir=tmp_path) as client:
        client.resolve(parse_reference("registry.test/team/app:v1"))
        assert mirror.requests == []
        client.resolve(parse_reference(f"registry.test/team/app@{desc.digest}"))
        assert len(mirror.requests) == 1


def test_no_host_with_capability(tmp_path: Path, network: FakeNetwork, clock: FakeClock) -> None:
    write_hosts(tmp_path, "registry.test", 'capabilities = ["pull"]\n')
    with make_client(network, clock, config_dir=tmp_path) as client, pytest.raises(FailedPrecondition,
                                                                                   match="resolve"):
        client.resolve(parse_reference("registry.test/team/app:v1"))


def test_configured_headers_are_sent(tmp_path: Path, network: FakeNetwork, registry: FakeRegistry,
                                     clock: FakeClock) -> None:
    registry.add_image()
    write_hosts(tmp_path, "registry.test", '[header]\n  x-tenant = "blue"\n')
    with make_client(network, clock, config_dir=tmp_path) as client:
        client.resolve(parse_reference("registry.test/team/app:v1"))
    assert registry.requests[0].headers["x-tenant"] == "blue"


def test_capabilities_are_case_insensitive_and_cert_may_hold_its_key(tmp_path: Path) -> None:
    write_hosts(tmp_path, "registry.test", '[host."https://m.test"]\n  capabilities = ["PULL", "Resolve"]\n')
    assert resolve_hosts(tmp_path, "registry.test")[0].capabilities == {"pull", "resolve"}
    directory = tmp_path / "other.test"
    directory.mkdir()
    (directory / "combined.cert").write_text("cert and key")
    (server,) = resolve_hosts(tmp_path, "other.test")
    assert server.tls.client_certs == ((directory / "combined.cert", None),)


def test_hosts_toml_proxy_failure_names_the_proxy(tmp_path: Path, network: FakeNetwork, clock: FakeClock) -> None:
    write_hosts(tmp_path, "registry.test", 'proxy = "http://proxy.test:3128"\n')
    with make_client(network, clock, config_dir=tmp_path) as client, pytest.raises(Exception) as info:
        client.resolve(parse_reference("registry.test/team/app:v1"))
    assert "proxy.test:3128" in str(info.value) and "hosts.toml" in (getattr(info.value, "hint", "") or "")
