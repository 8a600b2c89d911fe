"""CheckpointContainer (kubelet's ContainerCheckpoint) over hawserd's CRI
socket: the request is checked first (INVALID_ARGUMENT, NOT_FOUND), then the
call answers UNIMPLEMENTED with why: on this machine, where Debian's criu
cannot run on the kernel, criu's own error lines, exactly what ``criu check``
prints when the test runs it itself."""

from __future__ import annotations

import shutil
import subprocess

import grpc
from cri_api.v1 import api_pb2

from tests.e2e.helpers import status_code
from tests.support.cri_pods import Pods


def expected_reason() -> str:
    """What hawserd must answer on this machine, from the test's own ``criu check``."""
    criu = shutil.which("criu", path="/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin")
    if criu is None:
        return "CheckpointContainer: criu is not installed"
    check = subprocess.run([criu, "check"], capture_output=True, timeout=60, check=False)
    if check.returncode == 0:
        return "CheckpointContainer: checkpoint is not built yet although criu works"
    said = (check.stderr or check.stdout).decode().strip()
    assert said, "criu check failed without a word"
    return f"CheckpointContainer: {criu} check failed (exit status {check.returncode}):\n{said}"


def checkpoint(pods: Pods, container_id: str) -> tuple[grpc.StatusCode, str]:
    request = api_pb2.CheckpointContainerRequest(container_id=container_id, location="/tmp/never.tar", timeout=10)
    return status_code(pods.rt.CheckpointContainer, request)


def test_checkpoint_says_why_it_cannot(pods: Pods) -> None:
    assert checkpoint(pods, "") == (grpc.StatusCode.INVALID_ARGUMENT, "CheckpointContainer: container_id is empty")
    code, message = checkpoint(pods, "f" * 64)
    assert code == grpc.StatusCode.NOT_FOUND and "f" * 64 in message

    pod = pods.pod("checkpointed")
    running = pods.run(pod, pods.config("sleeper", "sleep", "1000"))
    expected = expected_reason()
    assert checkpoint(pods, running) == (grpc.StatusCode.UNIMPLEMENTED, expected)
    # Asked once per process, answered the same the second time.
    assert checkpoint(pods, running[:12]) == (grpc.StatusCode.UNIMPLEMENTED, expected)
    # The container was left alone.
    assert pods.status(running).status.state == api_pb2.CONTAINER_RUNNING
