"""Containers in pods through CRI: lifecycle, states and reasons, logs, exec,
resources, stats, events, idempotency, invalid requests, a crashed hawserd."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import grpc
from cri_api.v1 import api_pb2

from tests.e2e.helpers import EventStream, kinds, status_code
from tests.support.cri_pods import CGROUP_ROOT, Pods, cgroup_dir

# --- the lifecycle -------------------------------------------------------------------


def test_lifecycle_states_and_reasons(pods: Pods) -> None:
    rt = pods.rt
    pod = pods.pod("life")
    config = pods.config("sleeper", "sleep", "1000")
    container_id = pods.create(pod, config)

    created = pods.status(container_id).status
    assert created.state == api_pb2.CONTAINER_CREATED
    assert created.metadata.name == "sleeper" and created.created_at > 0 and created.started_at == 0
    assert created.image.image == pods.image and created.image_id == pods.image_id
    assert dict(created.labels) == {"container": "sleeper"} and dict(created.annotations) == {"note": "about sleeper"}
    assert created.log_path == os.path.join(pod[1].log_directory, "sleeper/0.log")

    # kubelet retries a CreateContainer that timed out: the same name is taken.
    code, _ = status_code(rt.CreateContainer, api_pb2.CreateContainerRequest(
        pod_sandbox_id=pod[0], config=config, sandbox_config=pod[1]))
    assert code == grpc.StatusCode.ALREADY_EXISTS

    rt.StartContainer(api_pb2.StartContainerRequest(container_id=container_id))
    running = pods.status(container_id).status
    assert running.state == api_pb2.CONTAINER_RUNNING and running.started_at >= running.created_at
    code, _ = status_code(rt.StartContainer, api_pb2.StartContainerRequest(container_id=container_id))
    assert code == grpc.StatusCode.FAILED_PRECONDITION

    listed = rt.ListContainers(api_pb2.ListContainersRequest()).containers
    assert [(c.id, c.pod_sandbox_id, c.state) for c in listed] == [(container_id, pod[0], api_pb2.CONTAINER_RUNNING)]

    started = time.monotonic()
    rt.StopContainer(api_pb2.StopContainerRequest(container_id=container_id, timeout=10))
    assert time.monotonic() - started < 5  # sleep dies of SIGTERM at once
    stopped = pods.status(container_id).status
    assert stopped.state == api_pb2.CONTAINER_EXITED
    assert stopped.finished_at >= stopped.started_at and stopped.exit_code == 128 + signal.SIGTERM
    assert stopped.reason == "Error"
    # api.proto: "must not return an error if the container has already been stopped".
    rt.StopContainer(api_pb2.StopContainerRequest(container_id=container_id, timeout=10))

    for _ in range(2):  # idempotent
        rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container_id))
    code, _ = status_code(rt.ContainerStatus, api_pb2.ContainerStatusRequest(container_id=container_id))
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = status_code(rt.StopContainer, api_pb2.StopContainerRequest(container_id=container_id))
    assert code == grpc.StatusCode.NOT_FOUND


def test_two_containers_share_the_pod_network(pods: Pods) -> None:
    pod = pods.pod("web")
    server = pods.run(pod, pods.config(
        "httpd", "sh", "-c", "mkdir -p /www && echo hello-from-httpd > /www/index.html && exec httpd -f -p 8080 -h /www"))
    client = pods.run(pod, pods.config(
        "client", "sh", "-c",
        "for i in $(seq 100); do wget -q -O - http://127.0.0.1:8080/ && exit 0; sleep 0.1; done; exit 1"))
    done = pods.wait_exit(client)
    assert (done.state, done.exit_code, done.reason) == (api_pb2.CONTAINER_EXITED, 0, "Completed")
    assert pods.log_lines(done.log_path) == ["hello-from-httpd"]
    assert pods.status(server).status.state == api_pb2.CONTAINER_RUNNING
    # Both see the pod's hostname and its files.
    assert pods.exec(server, "hostname").stdout == b"web-host\n"
    assert pods.exec(server, "cat", "/etc/hostname").stdout == b"web-host\n"
    assert pods.exec(server, "sh", "-c", "echo $HOSTNAME").stdout == b"web-host\n"
    code, _ = status_code(pods.rt.ExecSync, api_pb2.ExecSyncRequest(container_id=client, cmd=["true"]))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_exit_codes_reasons_and_logs(pods: Pods) -> None:
    pod = pods.pod("exits")
    ok = pods.run(pod, pods.config("ok", "sh", "-c", "echo out; echo err >&2; printf partial"))
    bad = pods.run(pod, pods.config("bad", "sh", "-c", "exit 3"))
    # No swap: the limit is memory+swap too, so the kernel's OOM killer must act.
    oom = pods.run(pod, pods.config(
        "oom", "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1",
        linux__resources=api_pb2.LinuxContainerResources(memory_limit_in_bytes=16 << 20,
                                                         memory_swap_limit_in_bytes=16 << 20)))
    status = pods.wait_exit(ok)
    assert (status.exit_code, status.reason) == (0, "Completed")
    lines = Path(status.log_path).read_text().splitlines()
    streams = sorted((line.split(" ")[1], line.split(" ")[2], line.split(" ", 3)[3]) for line in lines)
    assert streams == [("stderr", "F", "err"), ("stdout", "F", "out"), ("stdout", "P", "partial")]
    assert Path(status.log_path).parent == Path(pod[1].log_directory, "ok")
    status = pods.wait_exit(bad)
    assert (status.exit_code, status.reason) == (3, "Error")
    status = pods.wait_exit(oom)
    assert (status.exit_code, status.reason) == (137, "OOMKilled"), status


def test_reopen_log_after_rotation_loses_no_line(pods: Pods) -> None:
    pod = pods.pod("rotate")
    total = 6000
    writer = pods.run(pod, pods.config(
        "writer", "sh", "-c",
        f"i=0; while [ $i -lt {total} ]; do i=$((i+1)); echo line-$i; "
        "[ $((i % 100)) = 0 ] && sleep 0.02; done; sleep 1000"))
    path = Path(pods.status(writer).status.log_path)
    deadline = time.monotonic() + 20
    while path.read_text().count("\n") < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    rotated = path.with_name(path.name + ".1")
    path.rename(rotated)  # kubelet's rotation: rename, then ReopenContainerLog
    pods.rt.ReopenContainerLog(api_pb2.ReopenContainerLogRequest(container_id=writer))
    assert path.exists()
    deadline = time.monotonic() + 30
    while (not path.read_text().endswith(f"line-{total}\n")) and time.monotonic() < deadline:
        time.sleep(0.05)
    old, new = pods.log_lines(str(rotated)), pods.log_lines(str(path))
    assert old and new, "the rotation happened while the container wrote"
    assert old + new == [f"line-{i}" for i in range(1, total + 1)]

    # Not running: an error, and no new log file (api.proto).
    pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=writer, timeout=0))
    path.unlink()
    code, _ = status_code(pods.rt.ReopenContainerLog, api_pb2.ReopenContainerLogRequest(container_id=writer))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert not path.exists()


def cmdline(pid: str) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def test_exec_sync(pods: Pods) -> None:
    pod = pods.pod("exec")
    container = pods.run(pod, pods.config("box", "sleep", "1000"))
    result = pods.exec(container, "sh", "-c", "echo out; echo err >&2; exit 7")
    assert (result.stdout, result.stderr, result.exit_code) == (b"out\n", b"err\n", 7)
    assert pods.exec(container, "id", "-u").stdout == b"0\n"

    # Output without a final newline is output too (kubelet's exec probes compare it exactly).
    assert pods.exec(container, "echo", "-n", "hello").stdout == b"hello"
    both = pods.exec(container, "sh", "-c", "printf 'a\\nb'; printf c >&2")
    assert (both.stdout, both.stderr) == (b"a\nb", b"c")

    started = time.monotonic()
    code, _ = status_code(pods.exec, container, "sleep", "4321", timeout=1)
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - started < 10
    # The command it timed out is killed, not left running in the container.
    deadline = time.monotonic() + 5
    while any(cmdline(pid) == b"sleep\x004321\x00" for pid in os.listdir("/proc") if pid.isdigit()):
        assert time.monotonic() < deadline, "the timed-out exec's sleep 4321 still runs"
        time.sleep(0.05)
    # A background process holding stdout open does not make the call outlive its timeout.
    started = time.monotonic()
    try:
        held = pods.exec(container, "sh", "-c", "sleep 30 & echo bg", timeout=2)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    else:
        assert (held.exit_code, held.stdout) == (0, b"bg\n")
    assert time.monotonic() - started < 10

    code, _ = status_code(pods.exec, "0" * 64, "true")
    assert code == grpc.StatusCode.NOT_FOUND
    created = pods.create(pod, pods.config("idle", "sleep", "1000"))
    code, _ = status_code(pods.exec, created, "true")
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_update_resources_reach_the_cgroup(pods: Pods) -> None:
    pod = pods.pod("limits")
    resources = api_pb2.LinuxContainerResources(cpu_period=100000, cpu_quota=50000, cpu_shares=512,
                                                memory_limit_in_bytes=64 << 20, oom_score_adj=500)
    container = pods.run(pod, pods.config("box", "sleep", "1000", linux__resources=resources))
    memory, cpu = cgroup_dir("memory", container, pod[1]), cgroup_dir("cpu", container, pod[1])
    assert int((memory / "memory.limit_in_bytes").read_text()) == 64 << 20
    assert int((cpu / "cpu.cfs_quota_us").read_text()) == 50000
    assert int((cpu / "cpu.shares").read_text()) == 512
    assert pods.exec(container, "cat", "/proc/self/oom_score_adj").stdout == b"500\n"

    pods.rt.UpdateContainerResources(api_pb2.UpdateContainerResourcesRequest(
        container_id=container, linux=api_pb2.LinuxContainerResources(
            cpu_quota=150000, memory_limit_in_bytes=96 << 20, cpuset_cpus="0")))
    assert int((memory / "memory.limit_in_bytes").read_text()) == 96 << 20
    assert int((cpu / "cpu.cfs_quota_us").read_text()) == 150000
    assert int((cpu / "cpu.shares").read_text()) == 512  # not given: kept
    assert Path(CGROUP_ROOT, "cpuset", pod[1].linux.cgroup_parent.lstrip("/"), container,
                "cpuset.cpus").read_text().strip() == "0"
    seen = pods.status(container).status.resources.linux
    assert (seen.cpu_quota, seen.cpu_period, seen.cpu_shares, seen.memory_limit_in_bytes, seen.cpuset_cpus,
            seen.oom_score_adj) == (150000, 100000, 512, 96 << 20, "0", 500)

    code, _ = status_code(pods.rt.UpdateContainerResources, api_pb2.UpdateContainerResourcesRequest(
        container_id=container, linux=api_pb2.LinuxContainerResources(cpu_shares=1)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=container, timeout=0))
    code, _ = status_code(pods.rt.UpdateContainerResources, api_pb2.UpdateContainerResourcesRequest(
        container_id=container, linux=api_pb2.LinuxContainerResources(cpu_quota=20000)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION


def test_stats_move(pods: Pods) -> None:
    pod = pods.pod("stats")
    busy = pods.run(pod, pods.config(
        "busy", "sh", "-c", "dd if=/dev/zero of=/scratch bs=1M count=3 2>/dev/null; while true; do :; done",
        linux__resources=api_pb2.LinuxContainerResources(cpu_period=100000, cpu_quota=20000)))
    idle = pods.run(pod, pods.config("idle", "sleep", "1000"))
    time.sleep(0.5)

    def sample() -> dict[str, api_pb2.ContainerStats]:
        listed = pods.rt.ListContainerStats(api_pb2.ListContainerStatsRequest()).stats
        return {s.attributes.id: s for s in listed}

    first = sample()
    assert set(first) == {busy, idle}
    time.sleep(1.0)
    second = sample()
    before, after = first[busy], second[busy]
    assert after.cpu.usage_core_nano_seconds.value > before.cpu.usage_core_nano_seconds.value
    # The quota is a fifth of a CPU: the rate is about 0.2 cores.
    assert 0.05e9 < after.cpu.usage_nano_cores.value < 0.4e9, after.cpu
    assert after.memory.working_set_bytes.value > 0 and after.memory.usage_bytes.value > 0
    assert after.memory.page_faults.value > 0
    assert after.writable_layer.used_bytes.value >= 3 << 20 and after.writable_layer.inodes_used.value > 0
    assert after.attributes.metadata.name == "busy" and dict(after.attributes.labels) == {"container": "busy"}
    assert after.cpu.timestamp > before.cpu.timestamp

    one = pods.rt.ContainerStats(api_pb2.ContainerStatsRequest(container_id=idle)).stats
    assert one.attributes.id == idle and one.memory.working_set_bytes.value > 0
    by_pod = pods.rt.ListContainerStats(api_pb2.ListContainerStatsRequest(
        filter=api_pb2.ContainerStatsFilter(pod_sandbox_id=pod[0], label_selector={"container": "idle"}))).stats
    assert [s.attributes.id for s in by_pod] == [idle]
    code, _ = status_code(pods.rt.ContainerStats, api_pb2.ContainerStatsRequest(container_id="f" * 64))
    assert code == grpc.StatusCode.NOT_FOUND


def test_list_filters(pods: Pods) -> None:
    pod_a, pod_b = pods.pod("a"), pods.pod("b")
    running = pods.run(pod_a, pods.config("one", "sleep", "1000"))
    created = pods.create(pod_a, pods.config("two", "sleep", "1000"))
    other = pods.run(pod_b, pods.config("one", "sleep", "1000"))

    def ids(**filters: Any) -> list[str]:
        request = api_pb2.ListContainersRequest(filter=api_pb2.ContainerFilter(**filters))
        return sorted(c.id for c in pods.rt.ListContainers(request).containers)

    assert ids() == sorted([running, created, other])
    assert ids(id=running[:12]) == [running]
    assert ids(pod_sandbox_id=pod_a[0]) == sorted([running, created])
    assert ids(pod_sandbox_id=pod_b[0][:12]) == [other]
    assert ids(pod_sandbox_id="0" * 64) == []
    assert ids(state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_CREATED)) == [created]
    assert ids(state=api_pb2.ContainerStateValue(state=api_pb2.CONTAINER_RUNNING),
               label_selector={"container": "one"}) == sorted([running, other])
    assert ids(label_selector={"container": "one", "x": "y"}) == []


def test_events_stream(pods: Pods) -> None:
    pod = pods.pod("events")
    stream, second = EventStream(pods.hawserd), EventStream(pods.hawserd)
    try:
        time.sleep(0.3)  # both subscribed
        container = pods.run(pod, pods.config("box", "sleep", "1000"))
        pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=container, timeout=5))
        pods.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container))
        lifecycle = [api_pb2.CONTAINER_CREATED_EVENT, api_pb2.CONTAINER_STARTED_EVENT,
                     api_pb2.CONTAINER_STOPPED_EVENT, api_pb2.CONTAINER_DELETED_EVENT]
        events = stream.wait_for(lambda ev: kinds(ev, container) == lifecycle)
        started = next(e for e in events if e.container_event_type == api_pb2.CONTAINER_STARTED_EVENT)
        assert started.pod_sandbox_status.id == pod[0]
        assert started.pod_sandbox_status.state == api_pb2.SANDBOX_READY
        assert started.created_at > 0
        assert [(s.id, s.state) for s in started.containers_statuses] == [(container, api_pb2.CONTAINER_RUNNING)]
        second.wait_for(lambda ev: kinds(ev, container) == lifecycle)

        # An exit nobody asked for is noticed too (conmon's exit file).
        quick = pods.run(pod, pods.config("quick", "sh", "-c", "sleep 0.5"))
        events = stream.wait_for(lambda ev: api_pb2.CONTAINER_STOPPED_EVENT in kinds(ev, quick))
        stopped = next(e for e in events if e.container_id == quick
                       and e.container_event_type == api_pb2.CONTAINER_STOPPED_EVENT)
        assert [(s.id, s.state, s.exit_code) for s in stopped.containers_statuses] == [
            (quick, api_pb2.CONTAINER_EXITED, 0)]
        assert kinds(stream.events, quick).count(api_pb2.CONTAINER_STOPPED_EVENT) == 1

        # Removing the pod removes its containers: their events come too.
        pods.rt.RemovePodSandbox(api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod[0]))
        stream.wait_for(lambda ev: api_pb2.CONTAINER_DELETED_EVENT in kinds(ev, quick))
        assert stream.error is None
    finally:
        stream.close()
        second.close()


def test_invalid_requests(pods: Pods, tmp_path: Path) -> None:
    rt = pods.rt
    pod = pods.pod("bad")
    good = pods.config("ok", "sleep", "1000")

    def create(config: api_pb2.ContainerConfig, pod_id: str = pod[0]) -> tuple[grpc.StatusCode, str]:
        return status_code(rt.CreateContainer, api_pb2.CreateContainerRequest(pod_sandbox_id=pod_id, config=config))

    def variant(**fields: Any) -> api_pb2.ContainerConfig:
        return pods.config(f"c{secrets.token_hex(3)}", "sleep", "1000", **fields)

    empty = tmp_path / "empty"
    empty.mkdir()
    bad_profile = tmp_path / "bad-seccomp.json"
    bad_profile.write_text('{"defaultAction": "SCMP_ACT_NOPE"}')
    invalid = {
        "no pod id": create(good, ""),
        "no metadata": create(api_pb2.ContainerConfig(image=good.image)),
        "no image": create(api_pb2.ContainerConfig(metadata=good.metadata)),
        "relative mount": create(variant(mounts=[api_pb2.Mount(container_path="data", host_path=str(tmp_path))])),
        "seccomp type": create(variant(linux__security_context__seccomp=api_pb2.SecurityProfile(profile_type=7))),
        "seccomp missing": create(variant(linux__security_context__seccomp=api_pb2.SecurityProfile(
            profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref=str(tmp_path / "nope.json")))),
        "seccomp malformed": create(variant(linux__security_context__seccomp=api_pb2.SecurityProfile(
            profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref=str(bad_profile)))),
        "group without user": create(variant(linux__security_context__run_as_group=api_pb2.Int64Value(value=5))),
        "unknown user": create(variant(linux__security_context__run_as_username="nosuchuser")),
        "unknown capability": create(variant(linux__security_context__capabilities=api_pb2.Capability(
            add_capabilities=["CAP_NOPE"]))),
        "missing command": create(pods.config("nocmd", "/no/such/program")),
        "not a device": create(variant(devices=[api_pb2.Device(host_path=str(empty), container_path="/dev/x",
                                                               permissions="rwm")])),
        "device perms": create(variant(devices=[api_pb2.Device(host_path="/dev/null", container_path="/dev/x",
                                                               permissions="rwx")])),
        "privileged in a plain pod": create(variant(linux__security_context__privileged=True)),
        "start: no id": status_code(rt.StartContainer, api_pb2.StartContainerRequest()),
        "stop: no id": status_code(rt.StopContainer, api_pb2.StopContainerRequest()),
        "remove: no id": status_code(rt.RemoveContainer, api_pb2.RemoveContainerRequest()),
        "status: no id": status_code(rt.ContainerStatus, api_pb2.ContainerStatusRequest()),
        "exec: no cmd": status_code(rt.ExecSync, api_pb2.ExecSyncRequest(container_id="abc")),
        "stats: no id": status_code(rt.ContainerStats, api_pb2.ContainerStatsRequest()),
        "reopen: no id": status_code(rt.ReopenContainerLog, api_pb2.ReopenContainerLogRequest()),
        "update: no id": status_code(rt.UpdateContainerResources, api_pb2.UpdateContainerResourcesRequest()),
    }
    for what, (code, message) in invalid.items():
        assert code == grpc.StatusCode.INVALID_ARGUMENT, (what, code, message)
        assert message, what

    unknown = "0123456789abcdef" * 4
    not_found = {
        "pod": create(good, unknown),
        "image": create(pods.config("x", "sleep", "1", image=api_pb2.ImageSpec(
            image=pods.image.rsplit(":", 1)[0] + ":missing"))),
        "start": status_code(rt.StartContainer, api_pb2.StartContainerRequest(container_id=unknown)),
        "status": status_code(rt.ContainerStatus, api_pb2.ContainerStatusRequest(container_id=unknown)),
        "exec": status_code(rt.ExecSync, api_pb2.ExecSyncRequest(container_id=unknown, cmd=["true"])),
        "reopen": status_code(rt.ReopenContainerLog, api_pb2.ReopenContainerLogRequest(container_id=unknown)),
        "update": status_code(rt.UpdateContainerResources,
                              api_pb2.UpdateContainerResourcesRequest(container_id=unknown)),
    }
    for what, (code, message) in not_found.items():
        assert code == grpc.StatusCode.NOT_FOUND, (what, code, message)
    rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=unknown))  # idempotent: no error

    # Nothing half-made was left by the failures; a stopped pod takes no new container.
    assert not rt.ListContainers(api_pb2.ListContainersRequest()).containers
    rt.StopPodSandbox(api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod[0]))
    code, _ = create(good)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "with a bug" not in pods.hawserd.log()


def test_hawserd_killed_and_restarted(pods: Pods) -> None:
    pod = pods.pod("survivor")
    running = pods.run(pod, pods.config("running", "sleep", "1000"))
    finishing = pods.run(pod, pods.config("finishing", "sh", "-c", "sleep 2; exit 4"))
    pods.hawserd.stop(signal.SIGKILL)
    time.sleep(2.5)  # "finishing" exits while hawserd is down
    pods.hawserd.start()

    status = pods.status(running).status
    assert status.state == api_pb2.CONTAINER_RUNNING and status.log_path
    done = pods.wait_exit(finishing)
    assert (done.state, done.exit_code, done.reason) == (api_pb2.CONTAINER_EXITED, 4, "Error")
    assert pods.exec(running, "echo", "still here").stdout == b"still here\n"
    pods.rt.StopContainer(api_pb2.StopContainerRequest(container_id=running, timeout=5))
    assert pods.status(running).status.state == api_pb2.CONTAINER_EXITED
    for container in (running, finishing):
        pods.rt.RemoveContainer(api_pb2.RemoveContainerRequest(container_id=container))
    assert not pods.rt.ListContainers(api_pb2.ListContainersRequest()).containers


def _status_field(pods: Pods, container: str, name: str) -> str:
    text = pods.exec(container, "cat", "/proc/self/status").stdout.decode()
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name + ":"))


def test_security_context(pods: Pods, tmp_path: Path) -> None:
    pod = pods.pod("secure")
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(json.dumps({
        "defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                                                         "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}))
    sc = api_pb2.LinuxContainerSecurityContext(
        run_as_user=api_pb2.Int64Value(value=1000), run_as_group=api_pb2.Int64Value(value=1000),
        supplemental_groups=[1234], readonly_rootfs=True, no_new_privs=True,
        capabilities=api_pb2.Capability(drop_capabilities=["ALL"], add_capabilities=["NET_BIND_SERVICE"]),
        masked_paths=["/etc/motd"], readonly_paths=["/proc/sys"],
        seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Localhost, localhost_ref=str(profile)))
    locked = pods.run(pod, pods.config("locked", "sleep", "1000", working_dir="/opt", linux__security_context=sc,
                                       envs=[api_pb2.KeyValue(key="GREETING", value="hi there")]))
    assert pods.exec(locked, "id").stdout == b"uid=1000(app) gid=1000(app) groups=1000(app),1234\n"
    assert pods.exec(locked, "pwd").stdout == b"/opt\n"
    assert pods.exec(locked, "sh", "-c", "echo $GREETING").stdout == b"hi there\n"
    assert int(_status_field(pods, locked, "CapBnd"), 16) == 1 << 10  # CAP_NET_BIND_SERVICE only
    assert int(_status_field(pods, locked, "CapEff"), 16) == 0  # uid 1000: dropped at execve
    assert _status_field(pods, locked, "NoNewPrivs") == "1"
    assert _status_field(pods, locked, "Seccomp") == "2"
    assert pods.exec(locked, "touch", "/opt/x").exit_code != 0  # read-only root
    assert pods.exec(locked, "cat", "/etc/motd").stdout == b""  # masked
    denied = pods.exec(locked, "mkdir", "/tmp/d")
    assert denied.exit_code != 0 and b"Operation not permitted" in denied.stderr
    user = pods.status(locked).status.user.linux
    assert (user.uid, user.gid, list(user.supplemental_groups)) == (1000, 1000, [1000, 1234])

    by_name = pods.run(pod, pods.config("named", "sleep", "1000", linux__security_context=api_pb2.
                                        LinuxContainerSecurityContext(run_as_username="app")))
    assert pods.exec(by_name, "id", "-u").stdout == b"1000\n"
    assert pods.exec(by_name, "mkdir", "/tmp/d").exit_code == 0  # the default profile allows it
    unconfined = pods.run(pod, pods.config("free", "sleep", "1000", linux__security_context=api_pb2.
                                           LinuxContainerSecurityContext(seccomp=api_pb2.SecurityProfile(
                                               profile_type=api_pb2.SecurityProfile.Unconfined))))
    assert _status_field(pods, unconfined, "Seccomp") == "0"
    assert _status_field(pods, by_name, "Seccomp") == "0"  # api.proto: no profile given is unconfined


def test_mounts_devices_and_privileged(pods: Pods, tmp_path: Path) -> None:
    pod = pods.pod("mounts")
    shared = tmp_path / "shared"
    shared.mkdir()
    # Propagation needs a shared mount on the host side (kubelet's pod volume dir is one).
    subprocess.run(["mount", "--bind", str(shared), str(shared)], check=True)
    subprocess.run(["mount", "--make-shared", str(shared)], check=True)
    (shared / "hello.txt").write_text("from the host\n")
    created = tmp_path / "made-by-create"
    mounts = [
        api_pb2.Mount(container_path="/data", host_path=str(shared), propagation=api_pb2.PROPAGATION_HOST_TO_CONTAINER),
        api_pb2.Mount(container_path="/ro/hello.txt", host_path=str(shared / "hello.txt"), readonly=True),
        api_pb2.Mount(container_path="/made", host_path=str(created)),
    ]
    devices = [api_pb2.Device(host_path="/dev/null", container_path="/dev/mynull", permissions="rw")]
    box = pods.run(pod, pods.config("box", "sleep", "1000", mounts=mounts, devices=devices))
    assert created.is_dir()  # a missing host path is made, as containerd does
    assert pods.exec(box, "cat", "/data/hello.txt").stdout == b"from the host\n"
    assert pods.exec(box, "sh", "-c", "echo x > /data/from-container").exit_code == 0
    assert (shared / "from-container").read_text() == "x\n"
    assert pods.exec(box, "sh", "-c", "echo x > /ro/hello.txt").exit_code != 0
    assert pods.exec(box, "sh", "-c", "echo x > /dev/mynull && echo ok").stdout == b"ok\n"
    # HOST_TO_CONTAINER: a mount made on the host afterwards shows up inside.
    (shared / "later").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "later-tmpfs", str(shared / "later")], check=True)
    (shared / "later" / "new.txt").write_text("propagated\n")
    assert pods.exec(box, "cat", "/data/later/new.txt").stdout == b"propagated\n"
    mounts_seen = [(m.container_path, m.readonly) for m in pods.status(box).status.mounts]
    assert mounts_seen == [("/data", False), ("/ro/hello.txt", True), ("/made", False)]

    # Propagation the host mount cannot give is refused, as containerd does, not silently dropped.
    private = tmp_path / "private"
    private.mkdir()
    subprocess.run(["mount", "--bind", str(private), str(private)], check=True)
    subprocess.run(["mount", "--make-private", str(private)], check=True)
    for propagation in (api_pb2.PROPAGATION_BIDIRECTIONAL, api_pb2.PROPAGATION_HOST_TO_CONTAINER):
        code, message = status_code(pods.rt.CreateContainer, api_pb2.CreateContainerRequest(
            pod_sandbox_id=pod[0], config=pods.config(f"p{propagation}", "true", mounts=[
                api_pb2.Mount(container_path="/p", host_path=str(private), propagation=propagation)])))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "private" in message

    priv = pods.pod("priv", privileged=True)
    root = pods.run(priv, pods.config("root", "sleep", "1000", linux__security_context=api_pb2.
                                      LinuxContainerSecurityContext(privileged=True)))
    assert int(_status_field(pods, root, "CapEff"), 16) > 1 << 20
    assert pods.exec(root, "test", "-c", "/dev/kmsg").exit_code == 0  # the host's devices
    assert _status_field(pods, root, "Seccomp") == "0"


def test_pid_namespaces(pods: Pods) -> None:
    shared = pods.pod("pidshare", namespace_options=api_pb2.NamespaceOption(pid=api_pb2.POD))
    first = pods.run(shared, pods.config("first", "sleep", "1001", linux__security_context__namespace_options=
                                         api_pb2.NamespaceOption(pid=api_pb2.POD)))
    second = pods.run(shared, pods.config("second", "sleep", "1002", linux__security_context__namespace_options=
                                          api_pb2.NamespaceOption(pid=api_pb2.POD)))
    seen = pods.exec(second, "ps", "-o", "args").stdout.decode()
    assert "sleep 1001" in seen and "sleep 1002" in seen

    own = pods.pod("pidown")
    alone = pods.run(own, pods.config("alone", "sleep", "1003", linux__security_context__namespace_options=
                                      api_pb2.NamespaceOption(pid=api_pb2.CONTAINER)))
    assert pods.exec(alone, "sh", "-c", "echo $$; ps -o pid,args").stdout.decode().count("sleep") == 1
    target = pods.run(own, pods.config("debug", "sleep", "1004", linux__security_context__namespace_options=
                                       api_pb2.NamespaceOption(pid=api_pb2.TARGET, target_id=alone)))
    seen = pods.exec(target, "ps", "-o", "args").stdout.decode()
    assert "sleep 1003" in seen and "sleep 1004" in seen
    code, _ = status_code(pods.rt.CreateContainer, api_pb2.CreateContainerRequest(
        pod_sandbox_id=shared[0], config=pods.config("stranger", "sleep", "1", linux__security_context__namespace_options=
                                                     api_pb2.NamespaceOption(pid=api_pb2.TARGET, target_id=alone))))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert first
