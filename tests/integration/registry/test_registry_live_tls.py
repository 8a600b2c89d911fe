"""Against a real docker-registry over https: CAs, skip_verify and client certificates from hosts.toml."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from live_images import push_image
from tests.support.registry_server import RegistryHandle, start_registry

from hawser.errors import Unavailable
from hawser.oci import parse_reference
from hawser.registry import RegistryClient, RegistryOptions

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[RegistryHandle]:
    with start_registry(tmp_path, tls=True, client_auth=True) as reg:
        yield reg


def hosts_dir(tmp_path: Path, reg: RegistryHandle, text: str) -> Path:
    config_dir = tmp_path / "certs.d"
    (config_dir / reg.host).mkdir(parents=True, exist_ok=True)
    (config_dir / reg.host / "hosts.toml").write_text(text)
    return config_dir


def client_for(config_dir: Path) -> RegistryClient:
    return RegistryClient(RegistryOptions(config_dir=config_dir, docker_config=None))


def test_ca_and_client_certificate_from_hosts_toml(tls_registry: RegistryHandle, tmp_path: Path) -> None:
    assert tls_registry.ca_path and tls_registry.client_cert and tls_registry.client_key
    directory = tmp_path / "certs.d" / tls_registry.host
    directory.mkdir(parents=True)
    # Relative paths are relative to hosts.toml.
    shutil.copy(tls_registry.ca_path, directory / "ca.pem")
    config_dir = hosts_dir(tmp_path, tls_registry, f'''
server = "https://{tls_registry.host}"
ca = "ca.pem"
client = [["{tls_registry.client_cert}", "{tls_registry.client_key}"]]
''')
    ref = parse_reference(f"{tls_registry.host}/hawser/tls:v1")
    with client_for(config_dir) as client:
        image = push_image(client, ref, layer_sizes=(5000,))
        assert client.resolve(ref).descriptor == image.manifest


def test_docker_certs_d_layout(tls_registry: RegistryHandle, tmp_path: Path) -> None:
    assert tls_registry.ca_path and tls_registry.client_cert and tls_registry.client_key
    directory = tmp_path / "certs.d" / tls_registry.host
    directory.mkdir(parents=True)
    shutil.copy(tls_registry.ca_path, directory / "ca.crt")
    shutil.copy(tls_registry.client_cert, directory / "client.cert")
    shutil.copy(tls_registry.client_key, directory / "client.key")
    ref = parse_reference(f"{tls_registry.host}/hawser/tls:v1")
    with client_for(tmp_path / "certs.d") as client:
        image = push_image(client, ref, layer_sizes=(10,))
        assert client.fetch_blob_bytes(ref, image.config) == image.config_bytes


def test_untrusted_certificate_is_unavailable_with_hint(tls_registry: RegistryHandle, tmp_path: Path) -> None:
    config_dir = hosts_dir(tmp_path, tls_registry, f'server = "https://{tls_registry.host}"\n')
    ref = parse_reference(f"{tls_registry.host}/hawser/tls:v1")
    with client_for(config_dir) as client, pytest.raises(Unavailable) as info:
        client.resolve(ref)
    assert "not trusted" in str(info.value) and tls_registry.host in str(info.value)
    assert "ca =" in (info.value.hint or "")


def test_skip_verify_still_needs_the_client_certificate(tls_registry: RegistryHandle, tmp_path: Path) -> None:
    ref = parse_reference(f"{tls_registry.host}/hawser/tls:v1")
    config_dir = hosts_dir(tmp_path, tls_registry, "skip_verify = true\n")
    with client_for(config_dir) as client, pytest.raises(Unavailable):
        client.resolve(ref)  # the registry demands a client certificate
    config_dir = hosts_dir(tmp_path, tls_registry, f'''
skip_verify = true
client = [["{tls_registry.client_cert}", "{tls_registry.client_key}"]]
''')
    with client_for(config_dir) as client:
        image = push_image(client, ref, layer_sizes=(10,))
        assert client.resolve(ref).descriptor == image.manifest


def test_missing_ca_file_is_invalid_argument(tls_registry: RegistryHandle, tmp_path: Path) -> None:
    from hawser.errors import InvalidArgument

    config_dir = hosts_dir(tmp_path, tls_registry, 'ca = "no-such-ca.pem"\n')
    with client_for(config_dir) as client, pytest.raises(InvalidArgument, match=r"hosts\.toml|TLS"):
        client.resolve(parse_reference(f"{tls_registry.host}/hawser/tls:v1"))
