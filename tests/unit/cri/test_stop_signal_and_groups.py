"""What kubelet 1.33-1.35 reads from a runtime, without a daemon: the CRI's
stop signals (ContainerStopSignals) both ways, and SupplementalGroupsPolicy
from a request to the runtime spec's groups."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from cri_api.v1 import api_pb2

from hawser._dataclass import replace
from hawser.cri._container_options import cri_signal, plan_container
from hawser.errors import InvalidArgument
from hawser.oci import ImageConfig, Platform
from hawser.runtime._options import ContainerOptions, HostLimits
from hawser.runtime._spec import build_spec, named_stop_signal, parse_signal, stop_signal
from tests.support.cri_fakes import FakeFiles, make_sandbox

IMAGE = ImageConfig(platform=Platform(os="linux", architecture="amd64"), diff_ids=(), cmd=("sh",))
HOST = HostLimits(rlimits={"RLIMIT_NOFILE": (1024, 20000)}, min_oom_score_adj=0, cap_last_cap=40, machine="x86_64")


def request(**security: Any) -> api_pb2.ContainerConfig:
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name="app"), image=api_pb2.ImageSpec(image="127.0.0.1:5000/app:v1"),
        linux=api_pb2.LinuxContainerConfig(security_context=api_pb2.LinuxContainerSecurityContext(**security)))


def plan_options(message: api_pb2.ContainerConfig, **sandbox: Any) -> ContainerOptions:
    """``sandbox``: fields of the pod sandbox (its ``config``: the stored PodSandboxConfig)."""
    return plan_container(message, make_sandbox(**sandbox), files=FakeFiles()).options


# --- stop signals ------------------------------------------------------------------------


@pytest.mark.parametrize("name", [v.name for v in api_pb2.Signal.DESCRIPTOR.values if v.number])
def test_every_cri_signal_reaches_the_runtime_and_comes_back(name: str) -> None:
    config = request()
    config.stop_signal = api_pb2.Signal.Value(name)
    number = parse_signal(plan_options(config).stop_signal or "")
    back = cri_signal(number)
    # Aliases come back by their one name (SIGIOT is SIGABRT, SIGCLD SIGCHLD, SIGPOLL SIGIO).
    assert back == api_pb2.Signal.Value(name) or signal.Signals(number).name == api_pb2.Signal.Name(back)


def test_real_time_signals_by_number() -> None:
    rtmin, rtmax = int(signal.SIGRTMIN), int(signal.SIGRTMAX)
    assert cri_signal(rtmin) == api_pb2.SIGRTMIN and cri_signal(rtmin + 3) == api_pb2.SIGRTMINPLUS3
    assert cri_signal(rtmin + 15) == api_pb2.SIGRTMINPLUS15 and cri_signal(rtmax - 14) == api_pb2.SIGRTMAXMINUS14
    assert cri_signal(rtmax - 1) == api_pb2.SIGRTMAXMINUS1 and cri_signal(rtmax) == api_pb2.SIGRTMAX


@pytest.mark.parametrize("number", [None, "15", True, 0, 99])
def test_no_signal_or_no_name_is_runtime_default(number: object) -> None:
    assert cri_signal(number) == api_pb2.RUNTIME_DEFAULT


def test_no_stop_signal_requested_leaves_it_to_the_image() -> None:
    assert plan_options(request()).stop_signal is None


@pytest.mark.parametrize(("image", "option", "named", "sent"), [
    ("", None, None, signal.SIGTERM),  # neither: nothing named, SIGTERM sent
    ("SIGQUIT", None, signal.SIGQUIT, signal.SIGQUIT),
    ("SIGTERM", None, signal.SIGTERM, signal.SIGTERM),  # named by the image: reported as such
    ("SIGQUIT", "SIGUSR1", signal.SIGUSR1, signal.SIGUSR1),  # the request wins
    ("", "SIGRTMIN+3", int(signal.SIGRTMIN) + 3, int(signal.SIGRTMIN) + 3),
])
def test_named_and_sent_stop_signal(image: str, option: str | None, named: int | None, sent: int) -> None:
    config = ImageConfig(platform=IMAGE.platform, diff_ids=(), stop_signal=image)
    assert named_stop_signal(config, ContainerOptions(stop_signal=option)) == named
    assert stop_signal(config, ContainerOptions(stop_signal=option)) == sent


# --- supplemental groups policy -----------------------------------------------------------


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\nextra:x:2000:app\nother:x:3000:root\n")
    return root


def groups_of(rootfs: Path, message: api_pb2.ContainerConfig, **sandbox: Any) -> tuple[int, int, list[int]]:
    options = replace(plan_options(message, **sandbox), mounts=())  # the pod's files are not on this host
    spec = build_spec(IMAGE, options, rootfs=str(rootfs), host=HOST)
    user = spec["process"]["user"]
    return user["uid"], user["gid"], user["additionalGids"]


def uid(value: int) -> api_pb2.Int64Value:
    return api_pb2.Int64Value(value=value)


def test_merge_adds_the_image_groups(rootfs: Path) -> None:
    assert groups_of(rootfs, request(run_as_user=uid(1000), supplemental_groups=[4000])) == (
        1000, 1000, [1000, 2000, 4000])
    assert groups_of(rootfs, request(run_as_user=uid(1000), supplemental_groups_policy=api_pb2.Merge)) == (
        1000, 1000, [1000, 2000])


def test_strict_keeps_only_the_users_gid_and_the_requested_groups(rootfs: Path) -> None:
    strict = request(run_as_user=uid(1000), supplemental_groups=[4000], supplemental_groups_policy=api_pb2.Strict)
    assert groups_of(rootfs, strict) == (1000, 1000, [1000, 4000])
    with_group = request(run_as_user=uid(1000), run_as_group=uid(3000), supplemental_groups_policy=api_pb2.Strict)
    assert groups_of(rootfs, with_group) == (1000, 3000, [3000])
    # root is in "other" by /etc/group; Strict leaves it out too.
    assert groups_of(rootfs, request(supplemental_groups_policy=api_pb2.Strict)) == (0, 0, [0])
    assert groups_of(rootfs, request()) == (0, 0, [0, 3000])


def test_a_strict_pod_makes_its_containers_strict(rootfs: Path) -> None:
    pod = {"request": {"linux": {"security_context": {"supplemental_groups_policy": "Strict"}}}}
    assert groups_of(rootfs, request(run_as_user=uid(1000)), config=pod) == (1000, 1000, [1000])
    merge_pod: dict[str, Any] = {"request": {"linux": {"security_context": {}}}}
    assert groups_of(rootfs, request(run_as_user=uid(1000)), config=merge_pod) == (1000, 1000, [1000, 2000])


def test_an_unknown_policy_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="supplemental_groups_policy 7"):
        plan_options(request(supplemental_groups_policy=7))
    pod = {"request": {"linux": {"security_context": {"supplemental_groups_policy": 7}}}}
    with pytest.raises(InvalidArgument, match="pod sandbox's supplemental_groups_policy 7"):
        plan_options(request(), config=pod)
