"""What the CRI asks of spec generation beyond the CLI: devices, masked and
read-only path overrides, supplementary groups, Localhost seccomp profiles
(docker's format), rootfs propagation, resource updates."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hawser.errors import InvalidArgument
from hawser.oci import ImageConfig, Platform
from hawser.runtime._options import (
    BindMount,
    ContainerOptions,
    Device,
    HostLimits,
    Resources,
    devices_from_host,
    host_devices,
)
from hawser.runtime._spec import build_spec, seccomp_from_profile, update_spec_resources

IMAGE = ImageConfig(platform=Platform(os="linux", architecture="amd64"), diff_ids=(), cmd=("sh",))
Validate = Callable[[dict[str, Any]], None]


@pytest.fixture
def build(rootfs: Path, host: HostLimits, validate_spec: Validate) -> Callable[..., dict[str, Any]]:
    def run(**options: Any) -> dict[str, Any]:
        spec = build_spec(IMAGE, ContainerOptions(**options), rootfs=str(rootfs), host=host)
        validate_spec(spec)
        return spec
    return run


# --- devices ------------------------------------------------------------------------------


def test_devices_in_the_spec_and_the_cgroup(build: Callable[..., dict[str, Any]]) -> None:
    devices = (Device(path="/dev/fuse", type="c", major=10, minor=229, file_mode=0o666, uid=0, gid=0,
                      permissions="rw"),
               Device(path="/dev/xvda", type="b", major=8, minor=0, permissions="r"),
               Device(path="/dev/pipe", type="p", major=0, minor=0))
    spec = build(devices=devices)
    assert spec["linux"]["devices"] == [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o666, "uid": 0, "gid": 0},
        {"path": "/dev/xvda", "type": "b", "major": 8, "minor": 0},
        {"path": "/dev/pipe", "type": "p", "major": 0, "minor": 0}]
    rules = spec["linux"]["resources"]["devices"]
    assert rules[0] == {"allow": False, "access": "rwm"}
    assert rules[-2:] == [{"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                          {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}]
    privileged = build(devices=devices[:1], privileged=True)
    assert privileged["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert len(privileged["linux"]["devices"]) == 1


def test_duplicate_device_paths(build: Callable[..., dict[str, Any]]) -> None:
    twice = (Device(path="/dev/x", type="c", major=1, minor=3), Device(path="/dev/x", type="c", major=1, minor=5))
    with pytest.raises(InvalidArgument, match="duplicate device"):
        build(devices=twice)


@pytest.mark.parametrize(("fields", "text"), [
    ({"path": "dev/x"}, "absolute"), ({"path": "/dev/../x"}, "normalised"), ({"type": "x"}, "type"),
    ({"permissions": ""}, "permissions"), ({"permissions": "rwx"}, "permissions"),
    ({"permissions": "rr"}, "permissions"), ({"major": -1}, "numbers"),
])
def test_device_validation(fields: dict[str, Any], text: str) -> None:
    base: dict[str, Any] = {"path": "/dev/x", "type": "c", "major": 1, "minor": 3}
    with pytest.raises(InvalidArgument, match=text):
        Device(**{**base, **fields})


def test_devices_from_host(tmp_path: Path) -> None:
    (null,) = devices_from_host("/dev/null", "/dev/mynull", "rw")
    st = os.stat("/dev/null")
    assert (null.path, null.type, null.major, null.minor, null.permissions) == ("/dev/mynull", "c", 1, 3, "rw")
    assert null.file_mode == stat.S_IMODE(st.st_mode) and null.uid == st.st_uid
    # A directory: every node under it, at the same relative path.
    (tmp_path / "snd").mkdir()
    os.mkfifo(tmp_path / "snd" / "pcm")
    (tmp_path / "snd" / "readme").write_text("not a device")
    (fifo,) = devices_from_host(str(tmp_path / "snd"), "/dev/snd")
    assert (fifo.path, fifo.type) == ("/dev/snd/pcm", "p")
    for bad in (str(tmp_path / "snd" / "readme"), str(tmp_path / "missing"), "dev/null"):
        with pytest.raises(InvalidArgument):
            devices_from_host(bad, "/dev/x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgument, match="without device nodes"):
        devices_from_host(str(tmp_path / "empty"), "/dev/x")


def test_host_devices() -> None:
    found = {d.path: d for d in host_devices()}
    assert found["/dev/null"].type == "c" and (found["/dev/null"].major, found["/dev/null"].minor) == (1, 3)
    assert "/dev/console" not in found and not any(p.startswith("/dev/pts/") for p in found)


# --- paths, groups, propagation -----------------------------------------------------------


def test_masked_and_readonly_overrides(build: Callable[..., dict[str, Any]]) -> None:
    spec = build(masked_paths=("/proc/kcore", "/proc/kcore", "/proc/keys"), readonly_paths=())
    assert spec["linux"]["maskedPaths"] == ["/proc/kcore", "/proc/keys"]
    assert spec["linux"]["readonlyPaths"] == []
    with pytest.raises(InvalidArgument, match="masked path"):
        build(masked_paths=("proc/kcore",))


def test_supplementary_groups(build: Callable[..., dict[str, Any]]) -> None:
    spec = build(user="1000", additional_gids=(4000, 1000, 4000))
    assert spec["process"]["user"]["additionalGids"] == [1000, 10, 29, 4000]  # the user's, then the extra ones
    with pytest.raises(InvalidArgument, match="supplementary group"):
        build(additional_gids=(-1,))


def test_rootfs_propagation(build: Callable[..., dict[str, Any]]) -> None:
    def with_mount(propagation: str) -> dict[str, Any]:
        return build(mounts=(BindMount(source="/", destination="/host", propagation=propagation),))

    assert "rootfsPropagation" not in with_mount("rprivate")["linux"]
    assert "rootfsPropagation" not in with_mount("rslave")["linux"]  # runc's default root is rslave already
    assert with_mount("rshared")["linux"]["rootfsPropagation"] == "shared"


# --- Localhost seccomp profiles ---------------------------------------------------------------

DOCKER_PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 1,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
    "syscalls": [
        {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
        {"name": "ptrace", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_PTRACE"]}},
        {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
         "args": [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]},
        {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
        {"names": ["clone"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]},
         "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
    ],
}


def test_docker_profile_for_a_container() -> None:
    spec = seccomp_from_profile(DOCKER_PROFILE, ("CAP_CHOWN",), machine="x86_64")
    assert spec["defaultAction"] == "SCMP_ACT_ERRNO" and spec["defaultErrnoRet"] == 1
    assert spec["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    names = [rule["names"] for rule in spec["syscalls"]]
    assert names == [["read", "write"], ["personality"], ["arch_prctl"], ["clone"], ["mkdir"]]
    assert spec["syscalls"][1]["args"] == [{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]
    assert spec["syscalls"][-1] == {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}

    admin = seccomp_from_profile(DOCKER_PROFILE, ("CAP_SYS_PTRACE", "CAP_SYS_ADMIN"), machine="aarch64")
    assert admin["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert [r["names"] for r in admin["syscalls"]] == [["read", "write"], ["ptrace"], ["personality"], ["mkdir"]]


def test_an_oci_section_is_taken_as_it_is() -> None:
    oci = {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "flags": ["SECCOMP_FILTER_FLAG_LOG"],
           "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}
    assert seccomp_from_profile(oci, (), machine="x86_64") == oci


def test_profile_in_the_spec(build: Callable[..., dict[str, Any]]) -> None:
    spec = build(seccomp_profile=DOCKER_PROFILE, cap_add=("SYS_PTRACE",))
    assert ["ptrace"] in [rule["names"] for rule in spec["linux"]["seccomp"]["syscalls"]]
    assert "seccomp" not in build(seccomp_profile=DOCKER_PROFILE, seccomp=False)["linux"]
    assert "seccomp" not in build(seccomp_profile=DOCKER_PROFILE, privileged=True)["linux"]


@pytest.mark.parametrize(("profile", "text"), [
    ([], "JSON object"),
    ({}, "defaultAction"),
    ({"defaultAction": "SCMP_ACT_NOPE"}, "defaultAction"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}, "defaultErrnoRet"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "architectures": "x86"}, "architectures"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "archMap": {}}, "archMap"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": {}}, "syscalls must be a list"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"action": "SCMP_ACT_ALLOW"}]}, "names no syscall"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "allow"}]}, "action"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "args": [{"index": 6, "op": "SCMP_CMP_EQ"}]}]}, "index"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "args": [{"index": 0, "op": "EQ"}]}]}, "op"),
    ({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                                                       "includes": {"caps": "CAP_X"}}]}, "includes.caps"),
])
def test_bad_profiles(profile: Any, text: str) -> None:
    with pytest.raises(InvalidArgument, match=text):
        seccomp_from_profile(profile, (), machine="x86_64")


# --- resource updates ----------------------------------------------------------------------------


def spec_with(memory: dict[str, int] | None = None, cpu: dict[str, Any] | None = None) -> dict[str, Any]:
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if memory:
        resources["memory"] = memory
    if cpu:
        resources["cpu"] = cpu
    return {"linux": {"resources": resources}}


@pytest.mark.parametrize(("before", "update", "after"), [
    ({}, Resources(memory_limit=64 << 20), {"limit": 64 << 20}),
    ({"limit": 64 << 20, "swap": 64 << 20}, Resources(memory_limit=128 << 20),
     {"limit": 128 << 20, "swap": 128 << 20}),  # no swap stays no swap
    ({"limit": 64 << 20, "swap": -1}, Resources(memory_limit=128 << 20), {"limit": 128 << 20, "swap": -1}),
    ({"limit": 64 << 20, "swap": 256 << 20}, Resources(memory_limit=128 << 20),
     {"limit": 128 << 20, "swap": 256 << 20}),
    ({"limit": 64 << 20, "swap": 96 << 20}, Resources(memory_limit=128 << 20),
     {"limit": 128 << 20, "swap": 128 << 20}),  # swap below the new limit would be refused
    ({"limit": 64 << 20}, Resources(memory_limit=32 << 20, memory_swap=48 << 20),
     {"limit": 32 << 20, "swap": 48 << 20}),
])
def test_memory_updates(before: dict[str, int], update: Resources, after: dict[str, int]) -> None:
    spec = spec_with(memory=before)
    merged = update_spec_resources(spec, update)
    assert merged["memory"] == after and spec["linux"]["resources"]["memory"] == after
    assert spec["linux"]["resources"]["devices"] == [{"allow": False, "access": "rwm"}]  # untouched


def test_cpu_updates_keep_what_is_not_given() -> None:
    spec = spec_with(cpu={"shares": 512, "quota": 50000, "period": 100000})
    update_spec_resources(spec, Resources(cpu_quota=150000, cpuset_cpus="0-1"))
    assert spec["linux"]["resources"]["cpu"] == {"shares": 512, "quota": 150000, "period": 100000, "cpus": "0-1"}
    with pytest.raises(InvalidArgument, match="cpu shares"):
        update_spec_resources(spec, Resources(cpu_shares=1))
    with pytest.raises(InvalidArgument, match="memory"):
        update_spec_resources(spec_with(memory={"limit": 64 << 20, "swap": 64 << 20}), Resources(memory_limit=1))
