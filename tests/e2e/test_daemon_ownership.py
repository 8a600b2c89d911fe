"""hawserd's hold on its store, and what it says when it stops (issue 12).

A root has one hawserd at a time: a second one on the same ``--root`` (with
a state dir and socket of its own) refuses to start, naming the root and the
pid of the daemon that holds it, and leaves the first one's containers and
records alone; the ``hawser`` CLI keeps working on that root beside its
daemon.  On SIGTERM the shutdown line counts the CRI requests still running.
"""

from __future__ import annotations

import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from cri_api.v1 import api_pb2

from tests.e2e.helpers import pull_request
from tests.support.cni import CniEnv
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage
from tests.support.registry_faults import Drip, Fault, RegistryFaultProxy
from tests.support.registry_fixtures import Registry

CGROUP_PARENT = f"/hawser-e2e-own-{secrets.token_hex(3)}"
CGROUP_ROOT = Path("/sys/fs/cgroup")


def _start_expecting_refusal(daemon: Hawserd, timeout: float = 30.0) -> int:
    """Start ``daemon`` and wait for it to exit; its exit status.
    AssertionError (the daemon left running for the caller to stop) if it serves."""
    seen = len(daemon.log())
    with open(daemon.log_path, "ab") as log:
        daemon.process = subprocess.Popen(daemon.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = daemon.process.poll()
        if status is not None:
            return status
        if "msg=serving" in daemon.log()[seen:]:
            raise AssertionError(f"a second hawserd serves a root another one owns:\n{daemon.log()}")
        time.sleep(0.05)
    raise AssertionError(f"the second hawserd neither served nor exited within {timeout}s:\n{daemon.log()}")


def _remove_cgroups(parent: str) -> None:
    for hierarchy in CGROUP_ROOT.iterdir():
        top = hierarchy / parent.lstrip("/")
        if top.is_dir():
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                directory.rmdir()
            top.rmdir()


def test_second_daemon_on_the_same_root_is_refused(hawserd: Hawserd, pod_network: CniEnv, registry: Registry,
                                                   busybox: tuple[str, BuiltImage], tmp_path: Path) -> None:
    ref, _ = busybox
    hawserd.plain_http(registry.host)
    rt = hawserd.client().runtime
    image_id = hawserd.client().images.PullImage(pull_request(ref)).image_ref
    uid = secrets.token_hex(8)
    pod_config = api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name="owned", namespace="e2e", uid=uid, attempt=0),
        hostname="owned", log_directory=str(tmp_path / "pod-logs" / uid),
        linux=api_pb2.LinuxPodSandboxConfig(cgroup_parent=f"{CGROUP_PARENT}/{uid}"))
    second = Hawserd(base=tmp_path / "second", socket_dir=Path(tempfile.mkdtemp(prefix="hawserd-")))
    second.root = hawserd.root  # the first one's root; a state dir and a socket of its own
    pod_id = ""
    try:
        pod_id = rt.RunPodSandbox(api_pb2.RunPodSandboxRequest(config=pod_config)).pod_sandbox_id
        container_id = rt.CreateContainer(api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod_id, sandbox_config=pod_config, config=api_pb2.ContainerConfig(
                metadata=api_pb2.ContainerMetadata(name="sleeper"), image=api_pb2.ImageSpec(image=ref),
                command=["sleep", "1000"], log_path="sleeper.log"))).container_id
        rt.StartContainer(api_pb2.StartContainerRequest(container_id=container_id))
        assert hawserd.process is not None

        assert _start_expecting_refusal(second) == 1
        refusal = second.log()
        assert "hawserd cannot start" in refusal
        assert f"another hawserd owns the root {hawserd.root} (pid {hawserd.process.pid})" in refusal
        assert not Path(second.address).exists()

        # The first one's pod and container are as they were, records and all.
        status = rt.ContainerStatus(api_pb2.ContainerStatusRequest(container_id=container_id)).status
        assert status.state == api_pb2.CONTAINER_RUNNING, status
        pod = rt.PodSandboxStatus(api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id)).status
        assert pod.state == api_pb2.SANDBOX_READY
        listed = rt.ListContainers(api_pb2.ListContainersRequest()).containers
        assert [(c.id, c.state) for c in listed] == [(container_id, api_pb2.CONTAINER_RUNNING)]
        answer = rt.ExecSync(api_pb2.ExecSyncRequest(container_id=container_id, cmd=["echo", "still here"],
                                                     timeout=10))
        assert answer.stdout == b"still here\n"

        # The CLI beside its daemon, on the same root (and state), as before.
        assert ref in hawserd.cli("-n", "k8s.io", "images", "--format", "{{.Repository}}:{{.Tag}}").stdout.splitlines()

        rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        pod_id = ""
        assert hawserd.stop() == 0
        # The root is free again: a daemon on it starts, and finds the image.
        second.start()
        images = second.client().images.ListImages(api_pb2.ListImagesRequest()).images
        assert [i.id for i in images] == [image_id]
        assert second.stop() == 0
        assert "Traceback" not in second.log()
    finally:
        if second.running:
            second.stop()
        second.close_clients()
        shutil.rmtree(second.socket_dir, ignore_errors=True)
        if pod_id and hawserd.running:
            rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))
        _remove_cgroups(CGROUP_PARENT)


def test_sigterm_counts_the_requests_running(hawserd: Hawserd, registry: Registry,
                                             busybox: tuple[str, BuiltImage]) -> None:
    with RegistryFaultProxy(registry.host) as proxy:
        # The manifest a byte every half second: the PullImage request stays in flight.
        proxy.add(Fault(r"/manifests/", Drip(chunk=1, interval=0.5)))
        hawserd.plain_http(proxy.host)
        ref = f"{proxy.host}/test/busybox:latest"
        call = hawserd.client().images.PullImage.future(pull_request(ref))
        deadline = time.monotonic() + 20
        while "pull started" not in hawserd.log() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "pull started" in hawserd.log()
        assert hawserd.process is not None and not call.done()

        hawserd.process.send_signal(signal.SIGTERM)
        try:
            deadline = time.monotonic() + 10
            while "shutting down" not in hawserd.log() and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            call.cancel()  # no need to wait out the grace period
            status = hawserd.process.wait(timeout=30)
    log = hawserd.log()
    assert status == 0, log
    assert "msg=stopped" in log
    line = next((line for line in log.splitlines() if "shutting down" in line), "")
    running = re.search(r"\brequests_running=(\d+)", line)
    assert running is not None, log
    assert int(running.group(1)) >= 1, line
