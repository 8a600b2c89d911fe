"""Against a real docker-registry: mirrors, resumed and stalled downloads, proxies."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from live_images import push_image
from tcp_proxy import TcpProxy
from tests.support.registry_server import RegistryHandle, free_port

from hawser.errors import DeadlineExceeded, Unavailable
from hawser.oci import parse_reference
from hawser.registry import RegistryClient, RegistryOptions

pytestmark = pytest.mark.integration


def client_for(**options: object) -> RegistryClient:
    options.setdefault("plain_http", True)
    return RegistryClient(RegistryOptions(docker_config=None, **options))  # type: ignore[arg-type]


def write_hosts(config_dir: Path, namespace: str, text: str) -> None:
    (config_dir / namespace).mkdir(parents=True, exist_ok=True)
    (config_dir / namespace / "hosts.toml").write_text(text)


@pytest.mark.parametrize("namespace_dir", ["{host}", "{host_}", "_default"])
def test_mirror_fallback_past_a_closed_port(plain_registry: RegistryHandle, tmp_path: Path, namespace_dir: str) -> None:
    ref = parse_reference(f"{plain_registry.host}/hawser/mirrored:v1")
    with client_for() as client:
        image = push_image(client, ref)
    closed = free_port()
    config_dir = tmp_path / "certs.d"
    name = namespace_dir.format(host=plain_registry.host, host_=plain_registry.host.replace(":", "_") + "_")
    write_hosts(config_dir, name, f'''
server = "http://{plain_registry.host}"

[host."http://127.0.0.1:{closed}"]
  capabilities = ["pull", "resolve"]
''')
    # Without plain_http: the server line alone says http.
    with client_for(config_dir=config_dir, plain_http=False) as client:
        assert client.resolve(ref).descriptor == image.manifest
        desc, data = image.layers[1]
        with client.fetch_blob(ref, desc) as stream:
            assert b"".join(stream) == data


def test_mirror_serves_before_the_server(plain_registry: RegistryHandle, tmp_path: Path) -> None:
    """A second registry as the mirror answers; the real one is never asked."""
    from tests.support.registry_server import start_registry

    ref = parse_reference(f"{plain_registry.host}/hawser/mirrored:v1")
    with start_registry(tmp_path) as mirror:
        mirror_ref = parse_reference(f"{mirror.host}/hawser/mirrored:v1")
        with client_for() as client:
            image = push_image(client, mirror_ref, layer_sizes=(10,))
        config_dir = tmp_path / "certs.d"
        write_hosts(config_dir, plain_registry.host, f'[host."http://{mirror.host}"]\n  capabilities = ["pull", "resolve"]\n')
        with client_for(config_dir=config_dir) as client:
            assert client.resolve(ref).descriptor == image.manifest
        plain_registry.stop()  # proves the server was not needed
        with client_for(config_dir=config_dir) as client:
            assert client.fetch_blob_bytes(ref, image.config) == image.config_bytes


def test_blob_resumes_after_the_connection_is_cut(plain_registry: RegistryHandle) -> None:
    push_ref = parse_reference(f"{plain_registry.host}/hawser/big:v1")
    with client_for() as client:
        image = push_image(client, push_ref, layer_sizes=(3_000_000,))
    desc, data = image.layers[0]
    with TcpProxy(("127.0.0.1", plain_registry.port), cut_after=1_000_000) as proxy:
        ref = parse_reference(f"127.0.0.1:{proxy.port}/hawser/big:v1")
        with client_for(chunk_size=256 * 1024) as client:
            assert client.resolve(ref).descriptor == image.manifest
            hasher = hashlib.sha256()
            with client.fetch_blob(ref, desc) as stream:
                for chunk in stream:
                    hasher.update(chunk)
                assert stream.resumes == 1
            assert f"sha256:{hasher.hexdigest()}" == desc.digest
        assert proxy.cuts == 1 and proxy.connections >= 2
    assert len(data) == desc.size


def test_stalled_download_hits_the_stall_timeout(plain_registry: RegistryHandle) -> None:
    push_ref = parse_reference(f"{plain_registry.host}/hawser/stall:v1")
    with client_for() as client:
        image = push_image(client, push_ref, layer_sizes=(500_000,))
    desc, _ = image.layers[0]
    with TcpProxy(("127.0.0.1", plain_registry.port), stall_after=100_000) as proxy:
        ref = parse_reference(f"127.0.0.1:{proxy.port}/hawser/stall:v1")
        with client_for(stall_timeout=0.5) as client, client.fetch_blob(ref, desc) as stream, \
                pytest.raises(DeadlineExceeded, match="stall"):
            for _ in stream:
                pass


def test_no_proxy_bypasses_a_dead_http_proxy(plain_registry: RegistryHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    monkeypatch.setenv("http_proxy", dead)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    ref = parse_reference(f"{plain_registry.host}/hawser/proxied:v1")
    with client_for() as client:
        image = push_image(client, ref, layer_sizes=(10,))
        assert client.resolve(ref).descriptor == image.manifest


def test_http_proxy_is_honoured(plain_registry: RegistryHandle, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without NO_PROXY the dead proxy is used, and the error says so."""
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(name, dead)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    ref = parse_reference(f"{plain_registry.host}/hawser/proxied:v1")
    with client_for() as client, pytest.raises(Unavailable) as info:
        client.resolve(ref)
    assert "proxy" in str(info.value).lower() or "proxy" in (info.value.hint or "").lower()
