"""Fixtures for the registry client's integration tests: a real docker-registry.

The helpers live in tests/support so that other parts' tests (the pull
pipeline) start registries the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from live_images import USERS
from tests.support.registry_server import RegistryHandle, free_port, start_registry


@pytest.fixture(autouse=True)
def proxy_safety_net(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the project's test runs do: a dead proxy for everything but loopback."""
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.delenv("all_proxy", raising=False)


@pytest.fixture
def plain_registry(tmp_path: Path) -> Iterator[RegistryHandle]:
    """A registry of its own per test, without auth (tests/integration's
    session-wide ``registry`` is shared by the pull tests)."""
    with start_registry(tmp_path) as reg:
        yield reg


@pytest.fixture
def htpasswd_registry(tmp_path: Path) -> Iterator[RegistryHandle]:
    with start_registry(tmp_path, auth="htpasswd", users=USERS) as reg:
        yield reg


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[RegistryHandle]:
    with start_registry(tmp_path, auth="token", users=USERS, refresh_tokens={"identity-abc": "alice"}) as reg:
        yield reg
