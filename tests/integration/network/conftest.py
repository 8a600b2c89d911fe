"""Real CNI plugins (Debian's, in /usr/lib/cni) on networks of the tests' own.

Every test gets a network named ``hwt-<random>`` on a bridge ``hwt<random>``
with a free 10.2xx.x.0/24 subnet and host-local state under its tmp dir, so
nothing touches the host's own CNI state (``CniEnv``, in tests/support/cni.py,
with the helpers these tests use).  The finalizers undo everything, also after
a failure: pods still recorded are torn down, pin dirs unmounted, the bridge
deleted and any iptables rule naming the network removed.  The session fixture
``restore_host_network_state`` (tests/support/cni.py, one per session for every
tier) removes portmap's shared top-level chains if it created them (and nothing
else uses them) and restores net.ipv4.ip_forward, which the bridge plugin turns
on for gateways; every test here uses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cni import CniEnv

pytestmark = pytest.mark.integration


@pytest.fixture
def cni(tmp_path: Path) -> Iterator[CniEnv]:
    env = CniEnv(tmp_path)
    try:
        yield env
    finally:
        env.cleanup()


@pytest.fixture(scope="session", autouse=True)
def _network_tests_restore_host_network_state(restore_host_network_state: None) -> None:
    """The session's one ``restore_host_network_state``, for every test here."""
