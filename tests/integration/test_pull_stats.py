"""What a pull measures of itself (PullStats), from a real docker-registry:
through hawserd's child process (``pull_in_child``) and in-process through
``ImageService.pull``'s observers; the numbers checked against the image."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hawser._dataclass import replace
from hawser.config import Config, RegistryConfig
from hawser.errors import NotFound
from hawser.images import PULL, ImageEvent, ImageService, PullStats, pull_in_child
from tests.integration.conftest import Env
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry

STAGES = {"resolve", "fetch", "unpack", "commit"}


def plain_http_config(env: Env, registry: Registry, tmp_path: Path) -> Config:
    """The env's config, with a hosts.toml letting it pull from the registry over http."""
    certs = tmp_path / "certs.d"
    (certs / registry.host).mkdir(parents=True)
    (certs / registry.host / "hosts.toml").write_text(f'server = "http://{registry.host}"\n')
    return replace(env.config(), registry=RegistryConfig(config_path=str(certs)))


def compressed_size(image: BuiltImage) -> int:
    return sum(desc.size for desc, _ in image.layers)


def test_the_child_reports_what_the_pull_fetched(env: Env, registry: Registry, busybox: tuple[str, BuiltImage],
                                                  tmp_path: Path) -> None:
    ref, image = busybox
    config = plain_http_config(env, registry, tmp_path)
    layers = len(image.layers)

    first = asyncio.run(pull_in_child(config, ref, namespace="k8s.io"))
    assert isinstance(first, PullStats)
    assert (first.layers_fetched, first.layers_present) == (layers, 0)
    # Layers, config and manifest: every byte came from the registry once.
    assert first.bytes_fetched >= compressed_size(image) + image.config_desc.size + image.manifest_desc.size
    assert set(first.seconds) == STAGES
    assert all(seconds >= 0 for seconds in first.seconds.values())
    assert first.seconds["fetch"] > 0 and first.seconds["unpack"] > 0 and first.seconds["commit"] > 0

    # Again: every layer is there, nothing is fetched but the manifest and config.
    again = asyncio.run(pull_in_child(config, ref, namespace="k8s.io"))
    assert again is not None
    assert (again.layers_fetched, again.layers_present) == (0, layers)
    assert again.bytes_fetched < compressed_size(image)
    assert again.seconds["fetch"] == 0 and again.seconds["unpack"] == 0


def test_a_failed_child_pull_raises_its_kind(env: Env, registry: Registry, busybox: tuple[str, BuiltImage],
                                             tmp_path: Path) -> None:
    ref, _ = busybox
    config = plain_http_config(env, registry, tmp_path)
    with pytest.raises(NotFound):
        asyncio.run(pull_in_child(config, ref.rsplit(":", 1)[0] + ":absent", namespace="k8s.io"))


def test_observers_hear_the_pull_with_its_stats(env: Env, registry: Registry, busybox: tuple[str, BuiltImage],
                                                tmp_path: Path) -> None:
    ref, image = busybox
    config = plain_http_config(env, registry, tmp_path)
    heard: list[ImageEvent] = []
    from hawser.store import Store

    with Store.open(config, namespace="k8s.io") as store:
        images = ImageService(store)
        images.observers.append(heard.append)
        images.pull(ref)
        with pytest.raises(NotFound):
            images.pull(ref.rsplit(":", 1)[0] + ":absent")
    ok, failed = heard
    assert ok.action == PULL and not ok.error and ok.stats is not None
    assert ok.stats.layers_fetched == len(image.layers)
    assert ok.stats.bytes_fetched >= compressed_size(image)
    assert failed.action == PULL and failed.error == "NotFound" and failed.stats is None
