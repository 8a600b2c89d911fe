"""A real docker-registry for the session, with the standard test image pushed.

A pytest plugin: tests/conftest.py registers it (``pytest_plugins``), so the
integration and e2e tiers share one registry per session.  Tests import
``Registry`` from here for their annotations.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from hawser.registry import RegistryClient, RegistryOptions
from tests.support.images import BuiltImage, build_image, push_image
from tests.support.layers import busybox_layers
from tests.support.registry_server import start_registry


@dataclass
class Registry:
    host: str


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    with start_registry(str(tmp_path_factory.mktemp("registry"))) as handle:
        yield Registry(host=handle.host)


@pytest.fixture(scope="session")
def push_client() -> Iterator[RegistryClient]:
    client = RegistryClient(RegistryOptions(plain_http=True))
    yield client
    client.close()


@pytest.fixture(scope="session")
def busybox(registry: Registry, push_client: RegistryClient) -> tuple[str, BuiltImage]:
    """The standard test image: several layers, whiteouts, an opaque dir,
    hardlinks, symlinks, a device node, xattrs."""
    image = build_image(busybox_layers())
    ref = f"{registry.host}/test/busybox:latest"
    push_image(push_client, ref, image, tag="latest")
    return ref, image
