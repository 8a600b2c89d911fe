"""containerd's Tasks service on hawserd's second socket, driven by Debian's
real ``ctr``: ``ctr run`` prints the container's output and passes its exit
code on; detached tasks are listed, signalled, paused, exec'd into, waited
for and deleted; a task outlives a kill -9 of hawserd with its output and
exit status; invalid requests answer containerd's codes."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hawser.containerd._api.services.tasks.v1 import tasks_pb2 as pb
from hawser.containerd._api.services.tasks.v1 import tasks_pb2_grpc
from tests.e2e.helpers import status_code
from tests.support.cri_pods import Pods
from tests.support.hawserd import Hawserd
from tests.support.images import BuiltImage
from tests.support.registry_fixtures import Registry

CTR = shutil.which("ctr") or "/usr/bin/ctr"
NS = "ctr-tasks"  # not "tasks": a cgroup v1 root has a file of that name, and ctr puts cgroups at /NS/ID


def ctr(hawserd: Hawserd, *args: str, check: bool = True, timeout: float = 60,
        stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", NS, *args],
                          capture_output=True, text=True, timeout=timeout, input=stdin if stdin is not None else "")
    if check and proc.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def tasks(hawserd: Hawserd) -> dict[str, list[str]]:
    """``ctr tasks ls``: TASK -> [PID, STATUS]."""
    lines = ctr(hawserd, "tasks", "ls").stdout.splitlines()
    assert lines[0].split() == ["TASK", "PID", "STATUS"]
    return {line.split()[0]: line.split()[1:] for line in lines[1:]}


def stub(hawserd: Hawserd) -> tuple[tasks_pb2_grpc.TasksStub, list[tuple[str, str]]]:
    channel = grpc.insecure_channel(f"unix:{hawserd.containerd_address}", options=[("grpc.enable_http_proxy", 0)])
    return tasks_pb2_grpc.TasksStub(channel), [("containerd-namespace", NS)]


@pytest.fixture
def image(hawserd: Hawserd, registry: Registry, busybox: tuple[str, BuiltImage]) -> Iterator[str]:
    ref, _ = busybox
    hawserd.plain_http(registry.host)
    hawserd.cli("-n", NS, "pull", "--plain-http", "-q", ref)
    yield ref
    if hawserd.running:
        for task in tasks(hawserd):
            ctr(hawserd, "tasks", "kill", "-s", "SIGKILL", task, check=False)
            ctr(hawserd, "tasks", "rm", "-f", task, check=False)
        for line in ctr(hawserd, "containers", "ls", "-q").stdout.split():
            ctr(hawserd, "containers", "rm", line, check=False)
    # ctr's specs put cgroups at /NAMESPACE/ID: runc removed each task's, the namespace's are left.
    for parent in Path("/sys/fs/cgroup").glob(f"*/{NS}"):
        for child in sorted(parent.rglob("*"), reverse=True):
            if child.is_dir():
                with contextlib.suppress(OSError):
                    child.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()
    with contextlib.suppress(OSError):
        Path(f"/sys/fs/cgroup/{NS}").rmdir()


def test_ctr_run_prints_the_output_and_passes_the_exit_code_on(hawserd: Hawserd, image: str) -> None:
    done = ctr(hawserd, "run", "--rm", image, "hello", "echo", "hi")
    assert done.stdout == "hi\n"
    failed = ctr(hawserd, "run", "--rm", image, "failing", "sh", "-c", "echo out; echo err >&2; exit 7",
                 check=False)
    assert failed.returncode == 7 and failed.stdout == "out\n" and "err\n" in failed.stderr
    # Its stdin is the caller's.
    piped = ctr(hawserd, "run", "--rm", image, "reader", "sh", "-c", "read line; echo got:$line", stdin="abc\n")
    assert piped.stdout == "got:abc\n"
    # --rm removed container, task and snapshot.
    assert tasks(hawserd) == {}
    assert ctr(hawserd, "containers", "ls", "-q").stdout.split() == []
    assert json.loads(hawserd.cli("-n", NS, "ps", "-a", "--format", "json").stdout) == []


def test_ctr_run_options(hawserd: Hawserd, image: str, tmp_path: object) -> None:
    env = ctr(hawserd, "run", "--rm", "--env", "GREETING=hello there", image, "env1", "sh", "-c", "echo $GREETING")
    assert env.stdout == "hello there\n"
    ctr(hawserd, "run", "-d", "--memory-limit", str(64 << 20), image, "mem", "sleep", "1000")
    try:
        # The limit is on the task's cgroup, where ctr's spec puts it (/NAMESPACE/ID).
        v1 = f"/sys/fs/cgroup/memory/{NS}/mem/memory.limit_in_bytes"
        limit = Path(v1).read_text() if os.path.exists(v1) else Path(f"/sys/fs/cgroup/{NS}/mem/memory.max").read_text()
        assert limit.strip() == str(64 << 20)
    finally:
        ctr(hawserd, "tasks", "kill", "-s", "SIGKILL", "mem")
        ctr(hawserd, "tasks", "rm", "-f", "mem", check=False)
        ctr(hawserd, "containers", "rm", "mem")
    host = os.path.realpath(str(tmp_path))
    with open(os.path.join(host, "file.txt"), "w") as f:
        f.write("from the host\n")
    mounted = ctr(hawserd, "run", "--rm", "--mount", f"type=bind,src={host},dst=/data,options=rbind:ro", image,
                  "mnt", "cat", "/data/file.txt")
    assert mounted.stdout == "from the host\n"
    netns = os.readlink("/proc/self/ns/net")
    same = ctr(hawserd, "run", "--rm", "--net-host", image, "net", "readlink", "/proc/self/ns/net")
    assert same.stdout.strip() == netns
    other = ctr(hawserd, "run", "--rm", image, "net2", "readlink", "/proc/self/ns/net")
    assert other.stdout.strip() != netns


def in_terminal(hawserd: Hawserd, *args: str, typed: bytes, until: bytes) -> tuple[bytes, int]:
    """``ctr ARGS`` with a real pty as its terminal: wait for the shell's prompt, type
    ``typed``, read until ``until``; what the terminal showed and ctr's exit status."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: ctr, its terminal the pty
        os.execv(CTR, [CTR, "--address", hawserd.containerd_address, "--namespace", NS, *args])
    seen = b""

    def read_until(wanted: bytes, timeout: float = 20.0) -> None:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while wanted not in seen:
            assert time.monotonic() < deadline, (wanted, seen)
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    seen += os.read(fd, 4096)
                except OSError:  # the pty closed: ctr is gone
                    break

    try:
        read_until(b"# ")
        os.write(fd, typed)
        read_until(until)
        _, status = os.waitpid(pid, 0)
        return seen, os.waitstatus_to_exitcode(status)
    finally:
        os.close(fd)
        with contextlib.suppress(ChildProcessError, ProcessLookupError):  # reaped above, unless it failed
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)


def test_ctr_run_and_exec_with_a_terminal(hawserd: Hawserd, image: str) -> None:
    """``ctr run -t`` and ``ctr tasks exec -t`` through a real pty: type into the shell,
    read its answer, exit with a code."""
    seen, code = in_terminal(hawserd, "run", "-t", "--rm", image, "tty", "sh",
                             typed=b"echo answer-$((40+2)); tty; exit 3\r", until=b"/dev/pts/")
    assert b"answer-42" in seen and code == 3
    assert "tty" not in tasks(hawserd)

    ctr(hawserd, "run", "-d", image, "shell-host", "sleep", "1000")
    seen, code = in_terminal(hawserd, "tasks", "exec", "-t", "--exec-id", "term", "shell-host", "sh",
                             typed=b"echo inside-$((6*7)); tty; exit 5\r", until=b"/dev/pts/")
    assert b"inside-42" in seen and code == 5


def test_detached_tasks(hawserd: Hawserd, image: str) -> None:
    ctr(hawserd, "run", "-d", image, "bg", "sh", "-c", "trap 'echo bye; exit 3' TERM; while :; do sleep 0.1; done")
    listed = tasks(hawserd)
    assert listed["bg"][1] == "RUNNING" and int(listed["bg"][0]) > 0
    # system check knows a task's bundle, mount and conmon as the container's (its id is the client's).
    findings = json.loads(hawserd.cli("system", "check", "--format", "json", check=False).stdout)
    assert [f for f in findings if f["severity"] != "info"] == [], findings
    pids = ctr(hawserd, "tasks", "ps", "bg").stdout.splitlines()
    assert pids[0].split()[0] == "PID" and listed["bg"][0] in {line.split()[0] for line in pids[1:]}

    done = ctr(hawserd, "tasks", "exec", "--exec-id", "x1", "bg", "sh", "-c", "echo in-exec; exit 4", check=False)
    assert done.returncode == 4 and done.stdout == "in-exec\n"
    code, _ = status_code(stub(hawserd)[0].Get, pb.GetRequest(container_id="bg", exec_id="x1"),
                          metadata=stub(hawserd)[1])
    assert code == grpc.StatusCode.NOT_FOUND  # ctr deleted the exec once it ended

    metrics = ctr(hawserd, "tasks", "metrics", "bg").stdout
    assert "ID" in metrics and "bg" in metrics
    values = {line.split()[0]: line.split()[-1] for line in metrics.splitlines() if line.strip()}
    assert int(values["pids.current"]) >= 2 and int(values["memory.usage_in_bytes"]) > 0
    assert int(values["cpuacct.usage"]) > 0

    ctr(hawserd, "tasks", "pause", "bg")
    assert tasks(hawserd)["bg"][1] == "PAUSED"
    ctr(hawserd, "tasks", "resume", "bg")
    assert tasks(hawserd)["bg"][1] == "RUNNING"

    ctr(hawserd, "tasks", "kill", "-s", "SIGTERM", "bg")
    deadline = time.monotonic() + 20
    while tasks(hawserd)["bg"][1] != "STOPPED":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    rt, md = stub(hawserd)
    waited = rt.Wait(pb.WaitRequest(container_id="bg"), metadata=md)
    assert waited.exit_status == 3 and waited.exited_at.seconds > 0
    deleted = rt.Delete(pb.DeleteTaskRequest(container_id="bg"), metadata=md)
    assert deleted.exit_status == 3
    assert "bg" not in tasks(hawserd)
    # The container stays, without a task: hawser sees it as created.
    assert ctr(hawserd, "containers", "ls", "-q").stdout.split() == ["bg"]
    (listed_bg,) = json.loads(hawserd.cli("-n", NS, "ps", "-a", "--format", "json").stdout)
    assert listed_bg["State"]["Status"] == "created", listed_bg
    ctr(hawserd, "containers", "rm", "bg")
    # Nothing of the task or its execs is left for system check to find.
    assert json.loads(hawserd.cli("system", "check", "--format", "json", check=False).stdout) == []


def test_a_task_outlives_a_kill_of_hawserd(hawserd: Hawserd, image: str, tmp_path: object) -> None:
    out = os.path.join(str(tmp_path), "out.fifo")
    os.mkfifo(out)
    reader = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
    try:
        rt, md = stub(hawserd)
        ctr(hawserd, "containers", "create", image, "lives", "--", "sh", "-c",
            "i=0; while [ $i -lt 30 ]; do echo line$i; i=$((i+1)); sleep 0.1; done; exit 5")
        rt.Create(pb.CreateTaskRequest(container_id="lives", stdout=out), metadata=md)
        rt.Start(pb.StartRequest(container_id="lives"), metadata=md)
        time.sleep(0.5)
        assert hawserd.stop(signal.SIGKILL) == -signal.SIGKILL
        time.sleep(2.5)  # the task goes on and ends while hawserd is down
        hawserd.start()
        rt, md = stub(hawserd)
        waited = rt.Wait(pb.WaitRequest(container_id="lives"), metadata=md)
        assert waited.exit_status == 5
        got = b""
        while True:
            try:
                chunk = os.read(reader, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            got += chunk
        assert got.decode().split() == [f"line{i}" for i in range(30)]
        assert rt.Get(pb.GetRequest(container_id="lives"), metadata=md).process.status == 3  # STOPPED
        rt.Delete(pb.DeleteTaskRequest(container_id="lives"), metadata=md)
    finally:
        os.close(reader)


def test_invalid_requests(hawserd: Hawserd, image: str) -> None:
    rt, md = stub(hawserd)
    missing = status_code(rt.Create, pb.CreateTaskRequest(container_id="nope"), metadata=md)
    assert missing[0] == grpc.StatusCode.NOT_FOUND
    assert status_code(rt.Get, pb.GetRequest(container_id="nope"), metadata=md)[0] == grpc.StatusCode.NOT_FOUND
    ctr(hawserd, "run", "-d", image, "twice", "sleep", "1000")
    again = status_code(rt.Create, pb.CreateTaskRequest(container_id="twice"), metadata=md)
    assert again[0] == grpc.StatusCode.ALREADY_EXISTS
    running = status_code(rt.Delete, pb.DeleteTaskRequest(container_id="twice"), metadata=md)
    assert running[0] == grpc.StatusCode.FAILED_PRECONDITION
    spec = '{"args": ["true"], "cwd": "/"}'
    from google.protobuf import any_pb2

    process = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Process", value=spec.encode())
    rt.Exec(pb.ExecProcessRequest(container_id="twice", exec_id="e", spec=process), metadata=md)
    used = status_code(rt.Exec, pb.ExecProcessRequest(container_id="twice", exec_id="e", spec=process), metadata=md)
    assert used[0] == grpc.StatusCode.ALREADY_EXISTS
    rt.DeleteProcess(pb.DeleteProcessRequest(container_id="twice", exec_id="e"), metadata=md)
    no_ns = status_code(rt.List, pb.ListTasksRequest())
    assert no_ns[0] == grpc.StatusCode.FAILED_PRECONDITION
    # Absurd input: a rootfs that cannot be mounted, stdio that is no FIFO, a signal that is none.
    from hawser.containerd._api.types import mount_pb2

    ctr(hawserd, "containers", "create", image, "odd", "true")
    bad_mount = pb.CreateTaskRequest(container_id="odd", rootfs=[mount_pb2.Mount(type="nosuchfs", source="none")])
    assert status_code(rt.Create, bad_mount, metadata=md)[0] == grpc.StatusCode.INVALID_ARGUMENT
    not_fifo = pb.CreateTaskRequest(container_id="odd", stdout="/etc/hostname")
    assert status_code(rt.Create, not_fifo, metadata=md)[0] == grpc.StatusCode.INVALID_ARGUMENT
    relative = pb.CreateTaskRequest(container_id="odd", stdout="out.fifo")
    assert status_code(rt.Create, relative, metadata=md)[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert status_code(rt.Kill, pb.KillRequest(container_id="twice", signal=999), metadata=md)[0] == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert "odd" not in tasks(hawserd)  # nothing half-made is left
    ctr(hawserd, "containers", "rm", "odd")
    assert hawserd.running


def test_cri_containers_through_containerds_eyes(pods: Pods) -> None:
    """As with containerd: ``ctr -n k8s.io`` lists what the CRI made, and execs into it."""
    pod = pods.pod("seen")
    container = pods.run(pod, pods.config("box", "sleep", "1000"))
    hawserd = pods.hawserd

    def k8s(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([CTR, "--address", hawserd.containerd_address, "--namespace", "k8s.io", *args],
                              capture_output=True, text=True, timeout=60, input="")
        assert not check or proc.returncode == 0, proc.stderr
        return proc

    assert container in k8s("containers", "ls", "-q").stdout.split()
    info = json.loads(k8s("containers", "info", container).stdout)
    assert info["Runtime"]["Name"] == "io.containerd.runc.v2" and info["Spec"]["process"]["args"] == ["sleep", "1000"]
    listed = {line.split()[0]: line.split()[1:] for line in k8s("tasks", "ls").stdout.splitlines()[1:]}
    assert listed[container][1] == "RUNNING"
    done = k8s("tasks", "exec", "--exec-id", "probe", container, "sh", "-c", "echo in-pod; hostname", check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["in-pod", "seen-host"]  # the pod's UTS namespace


def test_an_exec_streams_through_a_kill_of_hawserd(hawserd: Hawserd, image: str, tmp_path: Path) -> None:
    """An exec's output goes to the client's FIFO without passing through hawserd: kill -9 of
    hawserd while it streams loses none of it, and its exit status is there after the restart.
    (ctr itself gives up when its Wait call breaks, as it does with containerd.)"""
    from google.protobuf import any_pb2

    ctr(hawserd, "run", "-d", image, "host", "sleep", "1000")
    out = str(tmp_path / "exec-out")
    os.mkfifo(out)
    reader = os.open(out, os.O_RDONLY | os.O_NONBLOCK)
    try:
        rt, md = stub(hawserd)
        script = "i=0; while [ $i -lt 40 ]; do echo tick$i; i=$((i+1)); sleep 0.1; done; exit 6"
        process = any_pb2.Any(type_url="types.containerd.io/opencontainers/runtime-spec/1/Process",
                              value=json.dumps({"args": ["sh", "-c", script], "cwd": "/",
                                                "env": ["PATH=/bin:/usr/bin"]}).encode())
        rt.Exec(pb.ExecProcessRequest(container_id="host", exec_id="stream", stdout=out, spec=process), metadata=md)
        rt.Start(pb.StartRequest(container_id="host", exec_id="stream"), metadata=md)
        got = b""
        while b"tick3" not in got:
            with contextlib.suppress(BlockingIOError):
                got += os.read(reader, 65536)
            time.sleep(0.02)
        assert hawserd.stop(signal.SIGKILL) == -signal.SIGKILL
        deadline = time.monotonic() + 30
        while b"tick39" not in got:  # the exec goes on writing with hawserd gone
            assert time.monotonic() < deadline, got
            with contextlib.suppress(BlockingIOError):
                got += os.read(reader, 65536)
            time.sleep(0.02)
        assert got.decode().split() == [f"tick{i}" for i in range(40)]
        hawserd.start()
        rt, md = stub(hawserd)
        assert rt.Wait(pb.WaitRequest(container_id="host", exec_id="stream"), metadata=md).exit_status == 6
        rt.DeleteProcess(pb.DeleteProcessRequest(container_id="host", exec_id="stream"), metadata=md)
    finally:
        os.close(reader)


def test_ctr_tasks_start_and_attach(hawserd: Hawserd, image: str) -> None:
    ctr(hawserd, "containers", "create", image, "made", "--", "sh", "-c", "echo started-by-ctr; exit 2")
    started = ctr(hawserd, "tasks", "start", "made", check=False)
    assert started.returncode == 2 and started.stdout == "started-by-ctr\n"
    ctr(hawserd, "containers", "rm", "made")

    # attach to a detached task: it follows the task to its end and passes its status on.
    ctr(hawserd, "run", "-d", image, "later", "sh", "-c", "trap 'exit 9' TERM; while :; do sleep 0.1; done")
    attached = subprocess.Popen([CTR, "--address", hawserd.containerd_address, "--namespace", NS, "tasks",
                                 "attach", "later"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1)
        assert attached.poll() is None
        ctr(hawserd, "tasks", "kill", "-s", "SIGTERM", "later")
        attached.communicate(timeout=30)
        assert attached.returncode == 9
    finally:
        if attached.poll() is None:
            attached.kill()
            attached.wait()


def test_a_running_task_is_driven_after_a_kill_of_hawserd(hawserd: Hawserd, image: str) -> None:
    ctr(hawserd, "run", "-d", image, "steady", "sh", "-c", "trap 'exit 8' TERM; while :; do sleep 0.1; done")
    before = tasks(hawserd)["steady"]
    assert hawserd.stop(signal.SIGKILL) == -signal.SIGKILL
    hawserd.start()
    assert tasks(hawserd)["steady"] == before  # same pid, RUNNING
    rt, md = stub(hawserd)
    waiting = rt.Wait.future(pb.WaitRequest(container_id="steady"), metadata=md)
    ctr(hawserd, "tasks", "kill", "-s", "SIGTERM", "steady")
    assert waiting.result(timeout=30).exit_status == 8
    ctr(hawserd, "tasks", "rm", "steady")
    assert "steady" not in tasks(hawserd)
    ctr(hawserd, "containers", "rm", "steady")
