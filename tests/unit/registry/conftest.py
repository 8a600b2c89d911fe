"""Fixtures for the registry client's unit tests: fake network, registry and clock."""

from __future__ import annotations

import pytest
from registry_fakes import FakeClock, FakeNetwork, FakeRegistry, FakeTokenServer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def network() -> FakeNetwork:
    return FakeNetwork()


@pytest.fixture
def registry(network: FakeNetwork) -> FakeRegistry:
    reg = FakeRegistry(host="registry.test")
    network.add("registry.test", reg.handle)
    return reg


@pytest.fixture
def token_server(network: FakeNetwork) -> FakeTokenServer:
    ts = FakeTokenServer()
    network.add("auth.test", ts.handle)
    return ts
