"""Property tests of hawser's text and JSON parsers: hostile input gives a
HawserError or a result, never another exception (targets.py holds the checks)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hawser import _dataclass as dataclasses
from hawser.config import Config, load_config
from hawser.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from hawser.network import parse_network_config, parse_result
from hawser.oci import parse_config, parse_index, parse_manifest
from hawser.registry._credentials import load_docker_config
from hawser.registry._hosts import _parse_hosts_file
from tests.fuzz import targets
from tests.fuzz.strategies import json_bytes, toml_text

DIGEST = "sha256:" + "a" * 64
REF_PIECES = st.sampled_from(["docker.io", "localhost", "127.0.0.1:5000", "[::1]:5000", "Host.Example", "library",
                              "busybox", "a", "A", "a__b", "a--b", "a..b", "_", "-", "x" * 130, "latest", "v1.0",
                              DIGEST, "sha256:", "sha512:" + "b" * 128, "sha256:" + "G" * 64, "index.docker.io"])
REF_SEPS = st.sampled_from(["/", ":", "@", "", "//", " ", "\t", ".", "\x00", "é"])


@given(st.lists(st.tuples(REF_PIECES, REF_SEPS), max_size=6).map(lambda p: "".join(a + b for a, b in p)))
def test_reference_from_pieces(text: str) -> None:
    targets.reference(text.encode())


@given(st.text(alphabet="abcAB09._-:/@[]", max_size=80))
def test_reference_from_text(text: str) -> None:
    targets.reference(text.encode())


DESCRIPTOR = {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": DIGEST, "size": 12,
              "annotations": {"a": "b"}, "platform": {"architecture": "amd64", "os": "linux", "variant": "v8"},
              "urls": ["https://example.com/l"]}
MANIFEST = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {**DESCRIPTOR, "mediaType": "application/vnd.oci.image.config.v1+json"}, "layers": [DESCRIPTOR],
            "annotations": {"org.opencontainers.image.created": "2024"}}
INDEX = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [DESCRIPTOR]}
CONFIG = {"architecture": "amd64", "os": "linux", "variant": "", "created": "2024-01-01T00:00:00Z",
          "rootfs": {"type": "layers", "diff_ids": [DIGEST]},
          "config": {"Env": ["A=1"], "Entrypoint": ["/bin/sh"], "Cmd": ["-c"], "WorkingDir": "/", "User": "1:1",
                     "Labels": {"a": "b"}, "StopSignal": "SIGTERM", "ExposedPorts": {"80/tcp": {}},
                     "Volumes": {"/data": {}}},
          "history": [{"created_by": "x", "empty_layer": True}]}


@given(json_bytes(MANIFEST) | json_bytes(INDEX) | json_bytes(CONFIG) | json_bytes({"schemaVersion": 1}))
def test_manifest_index_config(data: bytes) -> None:
    targets.manifest(data)


CONFIG_KEYS = ["root", "state", "snapshotter", "config_path", "docker_config", "max_concurrent_downloads",
               "stall_timeout", "max_retries", "pull_lease_ttl", "grace_period", "runc", "conmon", "cgroup_parent",
               "stop_timeout", "log_size_max"]
CONFIG_TABLES = [f.name for f in dataclasses.fields(Config) if f.name in ("registry", "gc", "runtime")]


@given(toml_text(CONFIG_KEYS, [*CONFIG_TABLES, "registry.mirrors", "unknown"]))
def test_hawser_config(text: str) -> None:
    targets.hawser_config(text.encode())


@given(st.binary(max_size=64))
def test_hawser_config_bytes(data: bytes) -> None:
    targets.hawser_config(data)


HOST_KEYS = ["server", "capabilities", "ca", "client", "skip_verify", "header", "override_path", "proxy",
             "dial_timeout", "host"]
HOST_TABLES = ['host."https://mirror.example"', 'host."mirror:5000"', 'host."ftp://x"', 'host."https://u@h/?q"',
               "host", 'host."https://m".header', 'host."http://[::1]"']


@given(toml_text(HOST_KEYS, HOST_TABLES))
def test_hosts_toml(text: str) -> None:
    targets.hosts(text.encode())


@given(st.binary(max_size=64))
def test_hosts_toml_bytes(data: bytes) -> None:
    targets.hosts(data)


DOCKER_CONFIG = {"auths": {"docker.io": {"auth": "dXNlcjpwYXNz"}, "https://index.docker.io/v1/": {"auth": "eDp5"},
                            "[::1]:5000": {"username": "u", "password": "p"}, "r.test": {"identitytoken": "t"}},
                 "credsStore": "desktop", "credHelpers": {"r.test": "ecr-login"}}


@given(json_bytes(DOCKER_CONFIG) | st.dictionaries(st.sampled_from(["https://[x", "https://a/v1/", "[::1", "a:b",
                                                                     "HTTP://X"]), st.just({"auth": "eDp5"}))
       .map(lambda auths: json.dumps({"auths": auths}).encode()))
def test_docker_config(data: bytes) -> None:
    targets.docker_config(data)


REALMS = ['"https://[x/token"', '"https://a\x00b/"', '"https://a b/"', '"https://a:99999/"', '"https://auth.test/t"',
          '"ftp://x"', '""', '"https://[::1]:5000/t"', '"https://a:x/"']
CHALLENGE_PIECES = st.sampled_from(['Bearer', 'Basic', 'bearer', ' ', ',', '=', '"', '\\', 'realm', 'service',
                                    'scope', '"https://auth/token"', '"a\\"b"', 'abc==', '\t', 'Digest', ';', '\n'])


@given(st.lists(CHALLENGE_PIECES, max_size=20).map("".join) | st.text(max_size=60))
def test_www_authenticate(text: str) -> None:
    targets.challenge(text.encode())


@settings(max_examples=100)  # each example runs the registry client over a mock transport
@given(st.lists(CHALLENGE_PIECES | st.sampled_from(REALMS), max_size=12).map("".join).map(str.encode)
       | st.binary(max_size=80))
def test_www_authenticate_through_the_client(data: bytes) -> None:
    targets.challenge_client(data)


CNI_RESULT = {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/x"}],
              "ips": [{"address": "10.88.0.5/16", "gateway": "10.88.0.1", "interface": 0}],
              "routes": [{"dst": "0.0.0.0/0", "gw": "10.88.0.1"}],
              "dns": {"nameservers": ["10.0.0.10"], "domain": "d", "search": ["s"], "options": ["o"]}}
CNI_CONFLIST = {"cniVersion": "1.0.0", "name": "net", "disableCheck": False,
                "plugins": [{"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
                            {"type": "portmap", "capabilities": {"portMappings": True}}]}
CNI_CONF = {"cniVersion": "0.4.0", "name": "net", "type": "bridge", "cniVersions": ["0.3.1", "1.0.0"]}


@given(json_bytes(CNI_RESULT) | json_bytes(CNI_CONFLIST) | json_bytes(CNI_CONF))
def test_cni_result_and_config(data: bytes) -> None:
    targets.cni(data)


# --- crashes the fuzzers found ----------------------------------------------------------------------


def test_hosts_toml_not_utf8_is_invalid_argument(tmp_path: Path) -> None:
    # tomllib.load decodes the bytes first: a latin-1 hosts.toml raised UnicodeDecodeError.
    path = tmp_path / "hosts.toml"
    path.write_bytes(b'server = "https://r\xe9gistry.example"\n')
    with pytest.raises(InvalidArgument, match="not valid TOML"):
        _parse_hosts_file(path, "docker.io", scheme="https", netloc="registry-1.docker.io")


def test_config_file_not_utf8_is_invalid_argument(tmp_path: Path) -> None:
    # read_config_file opened the file as UTF-8 text and let UnicodeDecodeError out.
    path = tmp_path / "config.toml"
    path.write_bytes(b'root = "/var/lib/\xe9"\n')
    with pytest.raises(InvalidArgument, match="not UTF-8"):
        load_config(str(path))


DEEP_JSON = b"[" * 100_000 + b"]" * 100_000  # 200 kB: under the manifest size limit


@pytest.mark.parametrize("parse", [parse_manifest, parse_index, parse_config])
def test_deeply_nested_manifest_is_invalid_argument(parse: Callable[[bytes], object]) -> None:
    # json.loads raised RecursionError: a registry could crash the pull with a 10 kB manifest.
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse(DEEP_JSON)


def test_deeply_nested_cni_result_and_config_are_hawser_errors() -> None:
    with pytest.raises(FailedPrecondition, match="not JSON"):
        parse_result(DEEP_JSON)
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        parse_network_config(DEEP_JSON)


@pytest.mark.parametrize("text", ['[host."http[?q"]\n', 'server = "https://[::1"\n'])
def test_hosts_toml_unbalanced_ipv6_bracket_is_invalid_argument(tmp_path: Path, text: str) -> None:
    # urlsplit raises ValueError("Invalid IPv6 URL"); found by `make fuzz` (fuzz/corpus/hosts/crash-*).
    path = tmp_path / "hosts.toml"
    path.write_text(text)
    with pytest.raises(InvalidArgument, match="is not a URL"):
        _parse_hosts_file(path, "docker.io", scheme="https", netloc="registry-1.docker.io")


@pytest.mark.parametrize("realm", [b"https://[x/token", b"https://a\x00b/token", b"https://a\x7f/token"])
def test_unusable_realm_is_permission_denied(realm: bytes) -> None:
    # urlsplit raised ValueError (unbalanced "[") and httpx InvalidURL (NUL, DEL) out of the token fetch.
    with pytest.raises(PermissionDenied, match="unusable realm"):
        targets.challenge_client(b'Bearer realm="' + realm + b'"', reraise=True)


def test_docker_config_odd_keys_and_deep_json(tmp_path: Path) -> None:
    # normalize_host let urlsplit's ValueError out for a key "https://[x"; json.loads raised RecursionError.
    path = tmp_path / "config.json"
    path.write_text('{"auths": {"https://[x": {"auth": "eDp5"}, "docker.io": {"auth": "eDp5"}}}')
    assert load_docker_config(path).lookup("docker.io") is not None
    path.write_bytes(DEEP_JSON)
    with pytest.raises(InvalidArgument, match="not valid JSON"):
        load_docker_config(path)
