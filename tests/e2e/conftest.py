"""Fixtures of the e2e tier: a real hawserd subprocess, driven over its CRI socket,
and pod networks of the tests' own.

    def test_x(hawserd: Hawserd, registry: Registry) -> None:
        cri = hawserd.client()
        cri.images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)))

``hawserd`` runs on a fresh root, state and socket per test, with its own
hosts.toml directory (``hawserd.plain_http(host)`` lets it pull from a test
registry over http).  On teardown it gets SIGTERM and must exit 0, remove its
socket, and have logged no bug.  ``hawserd`` (tests/support/hawserd.py), the
registry fixtures (tests/support/registry_fixtures.py) and
``restore_host_network_state`` (tests/support/cni.py) are defined once for the
session in tests/support, registered by tests/conftest.py, and shared with the
integration tier; this conftest holds what only the e2e tier uses.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cni import CniEnv
from tests.support.hawserd import Hawserd


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="e2e tests need root"))


@pytest.fixture
def pod_network(hawserd: Hawserd, tmp_path: Path) -> Iterator[CniEnv]:
    """A CNI network of the test's own (bridge, subnet, IPAM dir) in hawserd's
    config dir.  At teardown every pod left is removed through CRI, then the
    network's bridge and rules go."""
    from cri_api.v1 import api_pb2

    env = CniEnv(tmp_path / "cni")
    (hawserd.cni_conf / "10-test.conflist").write_text(json.dumps(env.conflist()))
    try:
        yield env
    finally:
        if hawserd.running:
            cri = hawserd.client()
            for pod in cri.runtime.ListPodSandbox(api_pb2.ListPodSandboxRequest()).items:
                cri.runtime.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id))
        env.cleanup()


@pytest.fixture(scope="session", autouse=True)
def _e2e_tests_restore_host_network_state(restore_host_network_state: None) -> None:
    """The session's one ``restore_host_network_state``, for every e2e test."""


# Where ctr makes its FIFOs (containerd's cio default); it leaves those of a task it did not delete itself.
CTR_FIFOS = Path("/run/containerd/fifo")


@pytest.fixture(autouse=True)
def ctr_fifos_removed() -> Iterator[None]:
    """What ``ctr`` leaves under /run/containerd/fifo during a test is removed after it."""
    before = set(os.listdir(CTR_FIFOS)) if CTR_FIFOS.is_dir() else set()
    yield
    if CTR_FIFOS.is_dir():
        import shutil

        for name in set(os.listdir(CTR_FIFOS)) - before:
            shutil.rmtree(CTR_FIFOS / name, ignore_errors=True)


@pytest.fixture
def metrics_port(hawserd: Hawserd) -> Iterator[int]:
    """hawserd restarted with its metrics endpoint on a free port."""
    from tests.e2e.helpers import free_port

    assert hawserd.stop() == 0
    port = free_port()
    hawserd.extra_args = ["--metrics-address", f"127.0.0.1:{port}"]
    hawserd.start()
    yield port
