"""containerd-API benchmark: Debian's `ctr` against hawserd's containerd API and against a private containerd.

In the same run, on the same page-cache state, alternating the daemons round by
round: a cold `ctr images pull --plain-http` of the bench image (ctr fetches
through Content.Write, unpacks through Snapshots and Diff.Apply), then the
latency of `ctr images ls` and `ctr content ls`, then the daemon's RSS idle.
Then the tasks phases, both daemons up at once: `ctr run --rm` of a small
busybox image timed, alternating run by run; 100 idle containers made with
`ctr run -d` on each and what they cost outside themselves (shims or conmons,
the daemon's growth); the daemons' idle RSS before and after.
See bench/README.md. Run through bench/ctr.sh."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
import httpx
from _common import (
    MB,
    MIB,
    REPO,
    WORK,
    Children,
    Registry,
    Scratch,
    ToolError,
    bench_lock,
    check_free_space,
    descendants,
    fmt_bytes,
    free_port,
    install_signal_handlers,
    loadavg,
    loop_available,
    median,
    memory_of,
    mentioning,
    mounts_under,
    processes,
    remove_cgroup,
    remove_tree,
    run_captured,
    run_containerd,
    run_registry,
    safe_env,
    tail,
    tool_version,
)
from _image import BuiltImage, load_or_build, push
from cri import build_image, busybox_layer, kill_leftovers, push_image

REPO_NAME = "bench/image"
TAG = "latest"
NAMESPACE = "default"
TARGET_PULL_RATIO = 1.0
TARGET_IDLE_RSS = 60 * MB
TOOLS = ("containerd", "hawserd")


@dataclass
class Run:
    seconds: float  # the timed `ctr images pull`
    fetch_seconds: float | None  # until ctr printed "unpacking ...": the fetch (Content.Write) phase
    images_ls: list[float]  # seconds per `ctr images ls`
    content_ls: list[float]  # seconds per `ctr content ls`
    rss_fresh: int  # bytes: the daemon's VmRSS once ready, before the pull
    rss_idle: int  # bytes: VmRSS after the pull and the listings, idle for --idle seconds
    pss_idle: int
    hwm: int  # bytes: VmHWM, the daemon's peak RSS over the run
    children_idle: int  # processes below the daemon when idle
    rpcs: dict[str, dict[str, float]] = field(default_factory=dict)  # hawserd: method -> count, sum, max (the pull)


@dataclass
class ToolResult:
    name: str
    runs: list[Run] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.runs)

    @property
    def seconds(self) -> list[float]:
        return [r.seconds for r in self.runs]

    def latency(self, what: str) -> list[float]:
        return [x for r in self.runs for x in getattr(r, what)]

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ok": self.ok, "error": self.error, "notes": sorted(set(self.notes)),
                             "runs": [asdict(r) for r in self.runs]}
        if self.runs:
            s = self.seconds
            d["pull"] = {"median": median(s), "min": min(s), "max": max(s), "runs": s}
            fetch = [r.fetch_seconds for r in self.runs if r.fetch_seconds is not None]
            if fetch:
                d["pull"]["fetch_median"] = median(fetch)
                d["pull"]["unpack_median"] = median([r.seconds - r.fetch_seconds for r in self.runs
                                                     if r.fetch_seconds is not None])
            for what in ("images_ls", "content_ls"):
                xs = self.latency(what)
                d[what] = {"median": median(xs), "min": min(xs), "max": max(xs), "calls": len(xs)}
            d["rss_idle_median"] = median([r.rss_idle for r in self.runs])
            d["rss_idle_max"] = max(r.rss_idle for r in self.runs)
            d["rss_fresh_median"] = median([r.rss_fresh for r in self.runs])
            d["hwm_max"] = max(r.hwm for r in self.runs)
        return d


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return run_captured(argv, timeout)


def _ctr(sock: Path, *args: str, namespace: str = NAMESPACE) -> list[str]:
    return ["ctr", "--address", str(sock), "--namespace", namespace, *args]


def _status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM ... of ``pid`` in bytes, from /proc/PID/status."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key.startswith("Vm") and rest.strip().endswith("kB"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


# --------------------------------------------------------------------------- the daemons


@dataclass
class Daemon:
    name: str
    proc: subprocess.Popen[bytes]
    sock: Path  # the containerd API's socket
    log: Path
    base: Path
    cri_sock: Path | None = None  # hawserd: its CRI socket


def _wait_ready(proc: subprocess.Popen[bytes], sock: Path, log: Path, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise ToolError(f"{name} exited ({proc.returncode}) while starting:\n{tail(log)}")
        if sock.exists() and _run(_ctr(sock, "version"), timeout=10).returncode == 0:
            return
        if time.monotonic() > deadline:
            raise ToolError(f"{name} did not answer `ctr version` in {timeout:.0f} s:\n{tail(log)}")
        time.sleep(0.05)


@contextlib.contextmanager
def start_containerd(children: Children, base: Path, timeout: float) -> Iterator[Daemon]:
    """A private containerd as pull.py runs it (CRI off, everything under ``base``)."""
    with run_containerd(children, base, namespace=NAMESPACE, timeout=timeout) as inst:
        yield Daemon("containerd", inst.proc, inst.sock, inst.log, base)


@contextlib.contextmanager
def start_hawserd(children: Children, hawserd: str, base: Path, *, log_level: str,
                  timeout: float) -> Iterator[Daemon]:
    """A fresh hawserd: its own (empty) config file, root, state, both sockets,
    an empty hosts.toml and CNI directory (ctr fetches; hawserd contacts no registry)."""
    config = base / "config.toml"
    config.write_text("")
    for d in ("certs.d", "net.d"):
        (base / d).mkdir()
    log = base.parent / f"{base.name}.hawserd.log"
    sock, cri_sock = base / "containerd.sock", base / "hawser.sock"
    argv = [hawserd, "--config", str(config), "--root", str(base / "root"), "--state", str(base / "state"),
            "--address", str(cri_sock), "--containerd-address", str(sock),
            "--registry-config-dir", str(base / "certs.d"), "--cni-conf-dir", str(base / "net.d"),
            "--cni-bin-dir", "/usr/lib/cni", "--log-level", log_level,
            # the endpoint on, as by default, but on a port of its own (not another hawserd's 1338)
            "--metrics-address", f"127.0.0.1:{free_port()}"]
    with open(log, "wb") as logf:
        proc = children.start(argv, stdout=logf, stderr=subprocess.STDOUT)
    try:
        _wait_ready(proc, sock, log, "hawserd", timeout)
        yield Daemon("hawserd", proc, sock, log, base, cri_sock)
    finally:
        children.stop(proc, grace=20)


def poke_cri(sock: Path) -> str:
    """One CRI Version and one ListImages on hawserd's CRI socket, so the idle
    RSS is that of a daemon whose two APIs have both answered."""
    from cri_api.v1 import api_pb2, api_pb2_grpc

    with grpc.insecure_channel(f"unix:{sock}", options=[("grpc.enable_http_proxy", 0)]) as channel:
        version = api_pb2_grpc.RuntimeServiceStub(channel).Version(api_pb2.VersionRequest(), timeout=10)
        api_pb2_grpc.ImageServiceStub(channel).ListImages(api_pb2.ListImagesRequest(), timeout=10)
    return f"{version.runtime_name} {version.runtime_version}"


# --------------------------------------------------------------------------- one run


class _Lines(threading.Thread):
    """Copies ctr's output to a file and notes when "unpacking" first appears."""

    def __init__(self, src: IO[bytes], dst: Path, t0: float) -> None:
        super().__init__(daemon=True)
        self.src, self.dst, self.t0 = src, dst, t0
        self.unpacking_at: float | None = None

    def run(self) -> None:
        with open(self.dst, "wb") as out:
            for line in self.src:
                if self.unpacking_at is None and line.startswith(b"unpacking "):
                    self.unpacking_at = time.monotonic() - self.t0
                out.write(line)


_DONE = re.compile(r'msg="request (?:done|failed)"')
_METHOD = re.compile(r"\bmethod=(\S+)")
_DURATION = re.compile(r"\bduration=([0-9.]+)")
_LOGGER = re.compile(r"\blogger=(\S+)")


def rpc_durations(log: Path, start: int, end: int) -> dict[str, dict[str, float]]:
    """Per gRPC method: how many requests hawserd logged between byte offsets
    ``start`` and ``end`` of its log, their summed and largest duration."""
    stats: dict[str, dict[str, float]] = {}
    with open(log, "rb") as f:
        f.seek(start)
        text = f.read(max(0, end - start)).decode(errors="replace")
    for line in text.splitlines():
        if not _DONE.search(line):
            continue
        m, d = _METHOD.search(line), _DURATION.search(line)
        if not m or not d:
            continue
        lg = _LOGGER.search(line)
        name = m.group(1).strip('"')
        if lg and not lg.group(1).startswith("hawser.containerd"):
            name = f"{lg.group(1).rsplit('.', 1)[-1]}:{name}"
        s = stats.setdefault(name, {"count": 0, "sum": 0.0, "max": 0.0})
        s["count"] += 1
        s["sum"] += float(d.group(1))
        s["max"] = max(s["max"], float(d.group(1)))
    return stats


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def measure(children: Children, d: Daemon, ref: str, nlayers: int, *, calls: int, idle: float,
            timeout: float) -> tuple[Run, list[str]]:
    """On a ready daemon: the timed pull, checks, the listings' latency, idle RSS."""
    notes: list[str] = []
    rss_fresh = _status(d.proc.pid).get("VmRSS", 0)
    out = d.base.parent / f"{d.base.name}.ctr.out"
    log_start = _size(d.log)
    t0 = time.monotonic()
    pull = children.start(_ctr(d.sock, "images", "pull", "--plain-http", "--snapshotter", "overlayfs", ref),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert pull.stdout is not None
    reader = _Lines(pull.stdout, out, t0)
    reader.start()
    try:
        rc = pull.wait(timeout)
    except subprocess.TimeoutExpired:
        children.stop(pull, grace=2)
        raise ToolError(f"ctr images pull through {d.name}: timed out after {timeout:.0f} s\n"
                        f"{d.name} log:\n{tail(d.log)}") from None
    elapsed = time.monotonic() - t0
    reader.join(10)
    children.stop(pull)
    if rc != 0:
        raise ToolError(f"ctr images pull through {d.name} failed ({rc}):\n{tail(out)}\n{d.name} log:\n{tail(d.log)}")
    rpcs = rpc_durations(d.log, log_start, _size(d.log)) if d.name == "hawserd" else {}

    # Not timed: one committed overlayfs snapshot per layer, and the image listed.
    snaps = _run(_ctr(d.sock, "snapshots", "--snapshotter", "overlayfs", "ls"))
    committed = [ln for ln in snaps.stdout.splitlines()[1:] if ln.split() and ln.split()[-1] == "Committed"]
    if snaps.returncode != 0 or len(committed) != nlayers:
        raise ToolError(f"{d.name}: expected {nlayers} committed overlayfs snapshots after the pull, "
                        f"`ctr snapshots ls` says:\n{snaps.stdout}{snaps.stderr}")
    listed = _run(_ctr(d.sock, "images", "ls", "-q"))
    if listed.returncode != 0 or ref not in listed.stdout.split():
        raise ToolError(f"{d.name}: `ctr images ls -q` does not list {ref}:\n{listed.stdout}{listed.stderr}")
    notes.append(f"{len(committed)} committed overlayfs snapshots, image listed")

    # Latency: the two listings alternate, call by call.
    lat: dict[str, list[float]] = {"images": [], "content": []}
    for _ in range(calls):
        for what in ("images", "content"):
            argv = _ctr(d.sock, what, "ls")
            t = time.perf_counter()
            r = _run(argv, timeout=30)
            dt = time.perf_counter() - t
            if r.returncode != 0:
                raise ToolError(f"ctr {what} ls against {d.name} failed ({r.returncode}): {r.stderr.strip()[-500:]}")
            lat[what].append(dt)
    if d.cri_sock is not None:
        try:
            notes.append(f"CRI answered on {d.cri_sock.name}: {poke_cri(d.cri_sock)}")
        except grpc.RpcError as e:
            notes.append(f"WARNING: the CRI socket did not answer: {e}")

    time.sleep(idle)
    st = _status(d.proc.pid)
    mem = memory_of(d.proc.pid)
    table = processes()
    below = [p for p in table.values() if p.ppid == d.proc.pid]
    if d.proc.poll() is not None:
        raise ToolError(f"{d.name} exited ({d.proc.returncode}) after the pull:\n{tail(d.log)}")
    run = Run(seconds=elapsed, fetch_seconds=reader.unpacking_at, images_ls=lat["images"],
              content_ls=lat["content"], rss_fresh=rss_fresh, rss_idle=st.get("VmRSS", 0),
              pss_idle=mem[1] if mem else 0, hwm=st.get("VmHWM", 0), children_idle=len(below), rpcs=rpcs)
    return run, notes


def one_run(children: Children, tool: str, args: argparse.Namespace, base: Path, ref: str,
            nlayers: int) -> tuple[Run, list[str]]:
    try:
        if tool == "containerd":
            cm = start_containerd(children, base, args.timeout_start)
        else:
            cm = start_hawserd(children, args.hawserd, base, log_level=args.log_level, timeout=args.timeout_start)
        with cm as d:
            run, notes = measure(children, d, ref, nlayers, calls=args.calls, idle=args.idle, timeout=args.timeout)
        if tool == "hawserd" and d.proc.returncode not in (0, None):
            notes.append(f"hawserd exited with {d.proc.returncode} on SIGTERM")
        mounts = [m for m in mounts_under(base) if m != str(base.resolve())]  # the scratch fs itself aside
        if mounts:
            notes.append(f"{len(mounts)} mounts left after the daemon stopped")
        return run, notes
    finally:
        # The latest run's daemon log and ctr output stay in the work directory.
        for kind, src in (("log", base.parent / f"{base.name}.{tool}.log"), ("ctr.out", base.parent / f"{base.name}.ctr.out")):
            with contextlib.suppress(OSError):
                shutil.copyfile(src, base.parent.parent / f"ctr-{tool}.{kind}")
        remove_tree(base)


# --------------------------------------------------------------------------- the tasks phases

# ctr's specs put a task's cgroup at /NAMESPACE/ID: a namespace of our own per daemon, never one a
# cgroup v1 root has a file of (such as "tasks"), nor the test suite's.
TASK_NS = {"containerd": "hawser-bench-ctr-containerd", "hawserd": "hawser-bench-ctr-hawserd"}
BUSYBOX = ("bench/busybox", "ctr")
TARGET_RUN_RATIO = 1.0
TARGET_PER_CONTAINER = 2 * MB
# The processes that stand beside a task, by comm (containerd-shim-runc-v2 is cut to 15 characters).
HELPER_KINDS = {"conmon": "conmon", "containerd-shim": "containerd-shim-runc-v2"}
SHORT = {"containerd-shim-runc-v2": "shim"}
# containerd 1.6's shims put their sockets in /run/containerd/s whatever the config says: removed
# after the run if it made them and they are empty. ctr's FIFOs and runc's state go under the
# daemon's directory (_place), not /run/containerd/{fifo,runc}.
HOST_DIRS = (Path("/run/containerd/s"), Path("/run/containerd/runc"), Path("/run/containerd"))


@dataclass
class Mem:
    rss: int = 0  # bytes
    pss: int = 0

    @classmethod
    def of(cls, pid: int) -> Mem:
        m = memory_of(pid)
        return cls(*m) if m else cls()

    def __add__(self, other: Mem) -> Mem:
        return Mem(self.rss + other.rss, self.pss + other.pss)

    def __sub__(self, other: Mem) -> Mem:
        return Mem(self.rss - other.rss, self.pss - other.pss)


@dataclass
class TasksResult:
    name: str
    namespace: str
    idle_start: Mem = field(default_factory=Mem)  # the daemon --idle seconds after it answered, nothing done yet
    warmup_seconds: list[float] = field(default_factory=list)
    run_seconds: list[float] = field(default_factory=list)  # one `ctr run --rm IMAGE ID /bin/true` each
    containers: int = 0  # the idle containers made
    start_seconds: float = 0.0  # `ctr run -d` of them, one after the other
    daemon_before: Mem = field(default_factory=Mem)  # before the idle containers (after the ctr runs, --idle s)
    daemon_with: Mem = field(default_factory=Mem)  # with them all running, --idle s after the last one
    helpers: Mem = field(default_factory=Mem)  # summed over every process beside the containers
    helper_kinds: dict[str, int] = field(default_factory=dict)  # comm -> how many
    container_procs: int = 0  # the containers' own processes (in a cgroup below /NAMESPACE), not counted
    container_mem: Mem = field(default_factory=Mem)  # their memory, for scale only
    remove_seconds: float = 0.0
    idle_after: Mem = field(default_factory=Mem)  # --idle s after the idle containers were all removed
    hwm: int = 0  # VmHWM at the end
    rpcs: dict[str, dict[str, float]] = field(default_factory=dict)  # hawserd: its log over the timed runs
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    baseline: set[int] = field(default_factory=set)  # processes beside the daemon before any task (not ours)

    @property
    def ok(self) -> bool:
        return self.error is None

    def per_container(self) -> Mem | None:
        """What one idle container costs outside itself: its helpers' share (their PSS; their RSS)
        plus the daemon's RSS growth, in both. The daemon's RSS, not its PSS: what it holds more is
        its own (anonymous) memory, while its PSS moves with whoever else maps the same files (a
        test suite's Python processes beside hawserd)."""
        if not self.containers:
            return None
        growth = self.daemon_with.rss - self.daemon_before.rss
        return Mem((self.helpers.rss + growth) // self.containers, (self.helpers.pss + growth) // self.containers)

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = asdict(self)
        d["baseline"] = sorted(self.baseline)
        if self.run_seconds:
            s = self.run_seconds
            d["run"] = {"median": median(s), "min": min(s), "max": max(s), "n": len(s)}
        per = self.per_container()
        if per is not None:
            d["per_container"] = asdict(per)
        return d


def _ctr_ok(d: Daemon, ns: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    try:
        r = _run(_ctr(d.sock, *args, namespace=ns), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError(f"ctr {' '.join(args)} against {d.name}: timed out after {timeout:.0f} s\n"
                        f"{d.name} log:\n{tail(d.log)}") from None
    if r.returncode != 0:
        raise ToolError(f"ctr {' '.join(args)} against {d.name} failed ({r.returncode}): "
                        f"{(r.stderr or r.stdout).strip()[-800:]}\n{d.name} log:\n{tail(d.log, 15)}")
    return r


def _place(d: Daemon) -> list[str]:
    """`ctr run` flags that keep its FIFOs (and containerd's runc state) under the daemon's directory."""
    place = ["--fifo-dir", str(d.base / "fifo")]
    return place + (["--runc-root", str(d.base / "runc")] if d.name == "containerd" else [])


def _listed(d: Daemon, ns: str, *what: str) -> list[str]:
    """IDs that `ctr ... ls -q` (or `tasks ls`) lists."""
    if what == ("tasks",):
        lines = _ctr_ok(d, ns, "tasks", "ls").stdout.splitlines()[1:]
        return [ln.split()[0] for ln in lines if ln.split()]
    return _ctr_ok(d, ns, *what, "ls", "-q").stdout.split()


def _in_cgroup_below(pid: int, ns: str) -> bool:
    """Whether ``pid`` is in a cgroup below /NAMESPACE (a container's own process)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return any(f":/{ns}/" in line for line in f)
    except OSError:
        return False


def _beside(d: Daemon, ns: str, baseline: set[int] | frozenset[int] = frozenset()) -> tuple[set[int], set[int]]:
    """(helpers, the containers' processes): every process naming the daemon's
    directory or below the daemon, the daemon itself and ``baseline`` aside, split by cgroup."""
    table = processes()
    found = (mentioning(table, [str(d.base)]) | descendants(table, {d.proc.pid})) - {d.proc.pid}
    found = descendants(table, found) - baseline
    own = {p for p in found if _in_cgroup_below(p, ns)}
    return found - own, own


def _settle(d: Daemon, seconds: float) -> Mem:
    time.sleep(seconds)
    if d.proc.poll() is not None:
        raise ToolError(f"{d.name} exited ({d.proc.returncode}):\n{tail(d.log)}")
    return Mem.of(d.proc.pid)


def _remove_tasks(d: Daemon, ns: str, ids: list[str], batch: int = 10) -> None:
    """SIGKILL and delete the tasks, then the containers (and their snapshots), through ctr."""
    for i in range(0, len(ids), batch):
        chunk = ids[i:i + batch]
        try:
            _ctr_ok(d, ns, "tasks", "rm", "-f", *chunk, timeout=120)
        except ToolError:  # one by one, to know which one failed
            for cid in chunk:
                _run(_ctr(d.sock, "tasks", "kill", "-s", "SIGKILL", cid, namespace=ns))
                _ctr_ok(d, ns, "tasks", "rm", "-f", cid, timeout=60)
    for i in range(0, len(ids), batch):
        _ctr_ok(d, ns, "containers", "rm", *ids[i:i + batch], timeout=120)


def _check_clean(d: Daemon, ns: str, what: str, res: TasksResult) -> None:
    """After ``what``: no task, no container, no active snapshot, no helper left (leaks are notes)."""
    tasks, containers = _listed(d, ns, "tasks"), _listed(d, ns, "containers")
    snaps = _ctr_ok(d, ns, "snapshots", "ls").stdout.splitlines()[1:]
    active = [ln.split()[0] for ln in snaps if ln.split() and ln.split()[-1] != "Committed"]
    for kind, left in (("tasks", tasks), ("containers", containers), ("active snapshots", active)):
        if left:
            res.notes.append(f"LEAK after {what}: {len(left)} {kind} left: {', '.join(left[:5])}")
    deadline = time.monotonic() + 5
    while True:
        helpers, own = _beside(d, ns, res.baseline)
        if not (helpers or own) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if helpers or own:
        table = processes()
        names = sorted({table[p].comm for p in helpers | own if p in table})
        res.notes.append(f"LEAK after {what}: {len(helpers)} helper and {len(own)} container processes left "
                         f"({', '.join(names)})")


def _cleanup_tasks(d: Daemon, ns: str, res: TasksResult) -> None:
    """Whatever tasks and containers are left in ``ns``, through ctr (the daemon still up)."""
    if d.proc.poll() is not None:
        return
    try:
        ids = sorted(set(_listed(d, ns, "tasks")) | set(_listed(d, ns, "containers")))
        if ids:
            _remove_tasks(d, ns, ids)
    except (ToolError, subprocess.TimeoutExpired) as e:
        res.notes.append(f"cleanup through ctr failed: {str(e).splitlines()[0][:200]}")


def tasks_phases(children: Children, args: argparse.Namespace, scratch: Scratch, ref: str,
                 results: dict[str, TasksResult]) -> None:
    """Both daemons up at once, on scratch space of their own: idle RSS; the busybox image
    pulled into each; `ctr run --rm` timed, alternating run by run; then, one daemon at a
    time, ``--containers`` idle containers made with `ctr run -d`, what they cost beside
    themselves, and their removal; idle RSS again."""
    order = [t for t in TOOLS if t in results]
    with contextlib.ExitStack() as stack:
        daemons: dict[str, Daemon] = {}

        def step(tool: str, what: str, fn: Any) -> None:
            res = results[tool]
            if not res.ok or tool not in daemons:
                return
            try:
                fn(daemons[tool], res)
            except (ToolError, subprocess.TimeoutExpired) as e:
                res.error = f"{what}: {e}"
                print(f"   {tool:<11} FAILED ({what}): {str(e).splitlines()[0][:160]}", flush=True)

        for tool in order:
            res = results[tool]
            base = scratch.make(f"{tool}-tasks")
            stack.callback(_keep_logs, base, tool)
            stack.callback(_remove_leftovers, base, res)
            try:
                if tool == "containerd":
                    cm: contextlib.AbstractContextManager[Daemon] = start_containerd(children, base, args.timeout_start)
                else:
                    cm = start_hawserd(children, args.hawserd, base, log_level=args.log_level,
                                       timeout=args.timeout_start)
                daemons[tool] = stack.enter_context(cm)
            except ToolError as e:
                res.error = f"start: {e}"
                print(f"   {tool:<11} FAILED to start: {str(e).splitlines()[0][:160]}", flush=True)
                continue
            stack.callback(_cleanup_tasks, daemons[tool], res.namespace, res)

        time.sleep(args.idle)
        for tool in order:
            def idle_start(d: Daemon, res: TasksResult) -> None:
                res.idle_start = _settle(d, 0)
                res.baseline = _beside(d, res.namespace)[0]
                if res.baseline:
                    res.notes.append(f"{len(res.baseline)} processes beside the daemon before any task, "
                                     "left out of the counts")
            step(tool, "idle RSS", idle_start)
        for tool in order:
            def pull(d: Daemon, res: TasksResult) -> None:
                _ctr_ok(d, res.namespace, "images", "pull", "--plain-http", ref, timeout=args.timeout)
            step(tool, "pull", pull)
        print("   " + ", ".join(f"{t} idle {_mb(results[t].idle_start.rss)} RSS" for t in order
                                 if results[t].ok) + f"; {ref} pulled into each", flush=True)

        # ctr run --rm, alternating run by run (who goes first changes every run).
        n, warm = args.ctr_runs, args.warmup
        log_at: dict[str, int] = {}
        for i in range(warm + n):
            if i == warm:
                log_at = {t: _size(d.log) for t, d in daemons.items()}
            for tool in order if i % 2 == 0 else order[::-1]:
                def one(d: Daemon, res: TasksResult, i: int = i) -> None:
                    t = time.perf_counter()
                    _ctr_ok(d, res.namespace, "run", "--rm", *_place(d), ref, f"run-{i}", "/bin/true")
                    (res.warmup_seconds if i < warm else res.run_seconds).append(time.perf_counter() - t)
                step(tool, f"ctr run --rm (run {i + 1})", one)
        for tool in order:
            def after_runs(d: Daemon, res: TasksResult) -> None:
                if d.name == "hawserd" and d.name in log_at:
                    res.rpcs = rpc_durations(d.log, log_at[d.name], _size(d.log))
                _check_clean(d, res.namespace, f"{warm + n} ctr run --rm", res)
                if res.run_seconds:
                    print(f"   {d.name:<11} ctr run --rm median {_ms(median(res.run_seconds))} "
                          f"({_ms(min(res.run_seconds))}-{_ms(max(res.run_seconds))}, n={len(res.run_seconds)})",
                          flush=True)
            step(tool, "after the runs", after_runs)

        # The idle containers, one daemon at a time.
        for tool in order:
            step(tool, f"{args.containers} idle containers",
                 lambda d, res: idle_containers(d, res, ref, args.containers, args.idle))


def idle_containers(d: Daemon, res: TasksResult, ref: str, count: int, idle: float) -> None:
    ns = res.namespace
    res.daemon_before = _settle(d, idle)
    ids = [f"idle{i}" for i in range(count)]
    t0 = time.monotonic()
    made: list[str] = []
    try:
        for cid in ids:
            _ctr_ok(d, ns, "run", "-d", *_place(d), ref, cid, "sleep", "3600")
            made.append(cid)
        res.start_seconds = time.monotonic() - t0
        res.containers = len(made)
        running = [ln.split()[0] for ln in _ctr_ok(d, ns, "tasks", "ls").stdout.splitlines()[1:]
                   if ln.split() and ln.split()[-1] == "RUNNING"]
        if sorted(running) != sorted(ids):
            raise ToolError(f"{d.name}: {len(running)} of {count} tasks RUNNING after `ctr run -d`")
        res.daemon_with = _settle(d, idle)
        helpers, own = _beside(d, ns, res.baseline)
        table = processes()
        kinds: dict[str, int] = {}
        for pid in helpers:
            comm = table[pid].comm if pid in table else "?"
            kinds[HELPER_KINDS.get(comm, comm)] = kinds.get(HELPER_KINDS.get(comm, comm), 0) + 1
            res.helpers = res.helpers + Mem.of(pid)
        for pid in own:
            res.container_mem = res.container_mem + Mem.of(pid)
        res.helper_kinds, res.container_procs = kinds, len(own)
        res.hwm = _status(d.proc.pid).get("VmHWM", 0)
        per = res.per_container()
        assert per is not None
        print(f"   {d.name:<11} {count} idle containers in {res.start_seconds:.1f} s; beside them: "
              f"{', '.join(f'{v} {k}' for k, v in sorted(kinds.items()))} ({_mb(res.helpers.pss)} PSS), "
              f"daemon {_mb(res.daemon_before.rss)} -> {_mb(res.daemon_with.rss)} RSS: "
              f"{_mb(per.pss)} PSS ({_mb(per.rss)} RSS) per container", flush=True)
    finally:
        t0 = time.monotonic()
        if made:
            _remove_tasks(d, ns, made)
        res.remove_seconds = time.monotonic() - t0
    _check_clean(d, ns, f"removing {count} idle containers", res)
    res.idle_after = _settle(d, idle)
    res.hwm = _status(d.proc.pid).get("VmHWM", 0)
    print(f"   {d.name:<11} removed in {res.remove_seconds:.1f} s; idle RSS {_mb(res.idle_after.rss)}", flush=True)


def _keep_logs(base: Path, tool: str) -> None:
    """The daemon's log stays in the work directory."""
    with contextlib.suppress(OSError):
        shutil.copyfile(base.parent / f"{base.name}.{tool}.log", base.parent.parent / f"ctr-tasks-{tool}.log")


def _remove_leftovers(base: Path, res: TasksResult) -> None:
    """After the daemon stopped: anything still naming its directory (shims, conmons and the
    containers below them), the namespace's cgroups, then the directory with its mounts."""
    res.notes.extend(kill_leftovers([str(base)], f"{res.name} leftovers"))
    left = remove_cgroup(res.namespace)
    if left:
        res.notes.append(f"cgroups that could not be removed: {', '.join(left[:4])}")
    try:
        remove_tree(base)
    except (ToolError, OSError) as e:
        res.notes.append(f"could not remove {base}: {e}")


def report_tasks(results: dict[str, TasksResult], extra: dict[str, Any]) -> dict[str, Any]:
    """Prints the tasks phases' tables; returns their part of the JSON document."""
    ctrd, hwd = results.get("containerd"), results.get("hawserd")
    names = [t for t in TOOLS if t in results]
    print()
    print(f"image  {extra['tasks_image']}  (busybox-static, one layer); namespaces "
          f"{', '.join(r.namespace for r in results.values())}")
    print()
    print(f"  {'ctr run --rm IMAGE ID /bin/true':<34} {'median':>9} {'min':>9} {'max':>9}   n (after {extra['warmup']} "
          "warm-up runs each)")
    for name in names:
        res = results[name]
        s = res.run_seconds
        if not s:
            print(f"  {name:<34} {'FAILED' if res.error else '-':>9}")
            continue
        print(f"  {name:<34} {_ms(median(s)):>9} {_ms(min(s)):>9} {_ms(max(s)):>9}   {len(s)}")
    ratios: dict[str, float | None] = {"ctr_run": None}
    if ctrd and hwd and ctrd.run_seconds and hwd.run_seconds:
        r = ratios["ctr_run"] = _ratio(median(hwd.run_seconds), median(ctrd.run_seconds))
        if r is not None:
            print(f"  hawserd / containerd  {r:.2f}x   (target <= {TARGET_RUN_RATIO:.2f}: "
                  f"{'met' if r <= TARGET_RUN_RATIO else 'MISSED'})")
    if hwd and hwd.rpcs:
        n = len(hwd.run_seconds)
        calls = ", ".join(f"{m} {t['count'] / n:.0f}x {t['sum'] / n * 1000:.1f}" for m, t in
                          sorted(hwd.rpcs.items(), key=lambda kv: -kv[1]["sum"])[:8])
        total = sum(t["sum"] for t in hwd.rpcs.values()) / n
        print(f"  hawserd's handlers per run (its log; method: calls, ms summed): {calls}; all {total * 1000:.1f} ms")
    print()
    count = extra["containers"]
    print(f"  {str(count) + ' idle containers (ctr run -d ... sleep 3600)':<46} {'containerd':>12} {'hawserd':>12}")

    def row(label: str, cell: Any) -> None:
        cells = []
        for name in TOOLS:
            res = results.get(name)
            try:
                cells.append(cell(res) if res is not None and res.containers else "-")
            except (ValueError, ZeroDivisionError):
                cells.append("-")
        print(f"  {label:<46} {cells[0]:>12} {cells[1]:>12}")

    row("started one after another", lambda r: f"{r.start_seconds:.1f} s")
    row("helpers beside them", lambda r: ", ".join(f"{v} {SHORT.get(k, k)}" for k, v in sorted(r.helper_kinds.items())))
    row("helpers' PSS, summed", lambda r: _mb(r.helpers.pss))
    row("helpers' RSS, summed", lambda r: _mb(r.helpers.rss))
    row("daemon PSS before -> with them", lambda r: f"{r.daemon_before.pss / MB:.1f}->{r.daemon_with.pss / MB:.1f}")
    row("daemon RSS before -> with them", lambda r: f"{r.daemon_before.rss / MB:.1f}->{r.daemon_with.rss / MB:.1f}")
    row("per container: helpers' PSS + daemon RSS growth", lambda r: _mb(r.per_container().pss))
    row("per container: helpers' RSS + daemon RSS growth", lambda r: _mb(r.per_container().rss))
    row("containers' own processes: PSS (not counted)", lambda r: f"{r.container_procs}: {_mb(r.container_mem.pss)}")
    row("removed (tasks rm -f, containers rm)", lambda r: f"{r.remove_seconds:.1f} s")
    if hwd and hwd.containers:
        per = hwd.per_container()
        assert per is not None
        print(f"  hawserd per idle container: {_mb(per.pss)} (conmons' PSS + hawserd's RSS growth; target <= "
              f"{_mb(TARGET_PER_CONTAINER)}: {'met' if per.pss <= TARGET_PER_CONTAINER else 'MISSED'}; "
              f"with the conmons' RSS {_mb(per.rss)})")
    print()
    print(f"  {'daemon memory, idle ' + str(extra['idle']) + ' s: RSS (PSS)':<46} {'containerd':>12} {'hawserd':>12}")
    for label, key in (("after start", "idle_start"), (f"after the {count} are gone", "idle_after")):
        cells = []
        for name in TOOLS:
            one = results.get(name)
            m = getattr(one, key) if one is not None else None
            cells.append(f"{m.rss / MB:.1f} ({m.pss / MB:.1f})" if m is not None and m.rss else "-")
        print(f"  {label:<46} {cells[0]:>12} {cells[1]:>12}")
    if hwd and hwd.idle_start.rss:
        worst = max(hwd.idle_start.rss, hwd.idle_after.rss)
        print(f"  hawserd idle RSS {_mb(worst)} at most (target <= {_mb(TARGET_IDLE_RSS)}: "
              f"{'met' if worst <= TARGET_IDLE_RSS else 'MISSED'})")
    for name, res in results.items():
        for note in sorted(set(res.notes)):
            print(f"  note ({name}): {note}")
    for name, res in results.items():
        if res.error:
            print(f"\n{name} FAILED (tasks phases):\n{res.error}")
    return {
        "results": {k: v.summary() for k, v in results.items()},
        "ratios_hawserd_over_containerd": ratios,
        "targets": {"ctr_run_ratio": TARGET_RUN_RATIO, "per_idle_container_pss": TARGET_PER_CONTAINER,
                    "hawserd_idle_rss": TARGET_IDLE_RSS},
        **extra,
    }



# --------------------------------------------------------------------------- report


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def _mb(x: float) -> str:
    return f"{x / MB:.1f} MB"


def _ratio(h: float, c: float) -> float | None:
    return h / c if c else None


def report(img: BuiltImage, ref: str, results: dict[str, ToolResult | None], extra: dict[str, Any]) -> dict[str, Any]:
    """Prints the pull rounds' table; returns their part of the JSON document."""
    ctrd, hwd = results.get("containerd"), results.get("hawserd")
    print()
    print(f"image  {ref}  (manifest {img.manifest_digest[:19]}...)")
    print(f"       {len(img.layers)} layers, {img.files:,} files, {fmt_bytes(img.compressed)} compressed, "
          f"{fmt_bytes(img.uncompressed)} uncompressed")
    print(f"host   {os.cpu_count()} cpus, {platform.release()}, scratch {extra['scratch']}, "
          f"load before {extra['load_before']}, after {extra['load_after']}")
    print(f"       {extra['containerd_version']}; {extra['ctr_version']}; hawserd {extra['hawserd_version']} "
          f"(--log-level {extra['hawserd_log_level']})")
    print()
    print(f"  {'ctr images pull':<16} {'median':>9} {'min':>9} {'max':>9}   n   runs (s)      fetch / unpack (median)")
    for name in TOOLS:
        res = results.get(name)
        if res is None:
            print(f"  {name:<16} {'skipped':>9}")
        elif not res.ok:
            print(f"  {name:<16} {'FAILED':>9}   {(res.error or 'no runs').splitlines()[0][:90]}")
        else:
            s = res.seconds
            summ = res.summary()["pull"]
            split = (f"{summ['fetch_median']:.2f} / {summ['unpack_median']:.2f} s"
                     if "fetch_median" in summ else "")
            runs = " ".join(f"{x:.2f}" for x in s)
            print(f"  {name:<16} {median(s):8.2f}s {min(s):8.2f}s {max(s):8.2f}s   {len(s)}   {runs:<13} {split}")
    both = bool(ctrd and ctrd.ok and hwd and hwd.ok)
    ratios: dict[str, float | None] = {"pull": None, "images_ls": None, "content_ls": None}
    if both:
        assert ctrd is not None and hwd is not None
        r = ratios["pull"] = _ratio(median(hwd.seconds), median(ctrd.seconds))
        if r is not None:
            print(f"  hawserd / containerd  {r:.2f}x   (target <= {TARGET_PULL_RATIO:.2f}: "
                  f"{'met' if r <= TARGET_PULL_RATIO else 'MISSED'})")
    print()
    calls = extra["calls"]
    print(f"  {'latency (median of ' + str(calls) + ' per run)':<34} {'containerd':>11} {'hawserd':>11}   "
          "hawserd/containerd")
    for what, label in (("images_ls", "ctr images ls"), ("content_ls", "ctr content ls")):
        cells = []
        for name in TOOLS:
            res = results.get(name)
            cells.append(_ms(median(res.latency(what))) if res and res.ok else "-")
        line = f"  {label:<34} {cells[0]:>11} {cells[1]:>11}"
        if both:
            assert ctrd is not None and hwd is not None
            r = ratios[what] = _ratio(median(hwd.latency(what)), median(ctrd.latency(what)))
            if r is not None:
                line += f"   {r:.2f}x"
        print(line)
    print()
    print(f"  {'daemon memory (VmRSS)':<34} {'containerd':>11} {'hawserd':>11}")
    for label, key in (("fresh, before the pull (median)", "rss_fresh_median"),
                       (f"idle {extra['idle']:.0f} s after the pull (median)", "rss_idle_median"),
                       ("peak over a run (VmHWM, max)", "hwm_max")):
        cells = []
        for name in TOOLS:
            res = results.get(name)
            cells.append(_mb(res.summary()[key]) if res and res.ok else "-")
        print(f"  {label:<34} {cells[0]:>11} {cells[1]:>11}")
    if hwd and hwd.ok:
        idle = max(r.rss_idle for r in hwd.runs)
        print(f"  hawserd idle RSS, both APIs served: {_mb(idle)} at most "
              f"(target <= {_mb(TARGET_IDLE_RSS)}: {'met' if idle <= TARGET_IDLE_RSS else 'MISSED'}); "
              f"runs: {', '.join(_mb(r.rss_idle) for r in hwd.runs)}")
        # Where hawserd's pull time goes: its request log, summed over the runs.
        total: dict[str, dict[str, float]] = {}
        for run in hwd.runs:
            for method, one in run.rpcs.items():
                t = total.setdefault(method, {"count": 0, "sum": 0.0, "max": 0.0})
                t["count"] += one["count"]
                t["sum"] += one["sum"]
                t["max"] = max(t["max"], one["max"])
        if total:
            n = len(hwd.runs)
            print()
            print(f"  hawserd requests during a pull (its log, per run: mean of {n}; requests overlap)")
            print(f"  {'method':<22} {'count':>6} {'summed':>9} {'largest':>9}")
            for method, t in sorted(total.items(), key=lambda kv: -kv[1]["sum"])[:12]:
                print(f"  {method:<22} {t['count'] / n:6.0f} {t['sum'] / n:8.2f}s {t['max']:8.2f}s")
            if extra["hawserd_log_level"] != "debug":
                print("  (listings ctr polls are logged at debug level only: --log-level debug to see them)")
    for name, res in results.items():
        if res is not None:
            for note in sorted(set(res.notes)):
                print(f"  note ({name}): {note}")
    for name, res in results.items():
        if res is not None and res.error:
            print(f"\n{name} FAILED:\n{res.error}")
    doc = {
        "reference": ref,
        "image": {"manifest": img.manifest_digest, "layer_count": len(img.layers), "files": img.files,
                  "compressed": img.compressed, "uncompressed": img.uncompressed},
        "results": {k: (v.summary() if v else None) for k, v in results.items()},
        "ratios_hawserd_over_containerd": ratios,
        "targets": {"pull_ratio": TARGET_PULL_RATIO, "hawserd_idle_rss": TARGET_IDLE_RSS},
        **extra,
    }
    return doc


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="cold pulls per daemon (median reported) [3]")
    ap.add_argument("--calls", type=int, default=20, help="calls of each `ctr ... ls` per run [20]")
    ap.add_argument("--idle", type=float, default=5, help="seconds idle before a daemon's RSS is read [5]")
    ap.add_argument("--ctr-runs", type=int, default=20, help="timed `ctr run --rm` per daemon [20]")
    ap.add_argument("--warmup", type=int, default=2, help="untimed `ctr run --rm` per daemon first [2]")
    ap.add_argument("--containers", type=int, default=100, help="idle containers per daemon (`ctr run -d`) [100]")
    ap.add_argument("--skip-pull", action="store_true", help="only the tasks phases (ctr run, idle containers)")
    ap.add_argument("--skip-tasks", action="store_true", help="only the pull rounds (pull, listings, memory)")
    ap.add_argument("--skip-hawserd", action="store_true")
    ap.add_argument("--skip-containerd", action="store_true")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the image even if cached")
    ap.add_argument("--hawserd", default=str(REPO / ".venv/bin/hawserd"), help="hawserd executable")
    ap.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                    help="hawserd's log level; its request durations are summarised [info]")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed per pull [600]")
    ap.add_argument("--timeout-start", type=float, default=60, help="seconds allowed for a daemon to start [60]")
    ap.add_argument("--scratch", choices=["loop", "dir"], default="loop",
                    help="where each run writes: a fresh loop-mounted ext4 per run, or plain directories [loop]")
    ap.add_argument("--workdir", type=Path, default=WORK, help="cache and scratch space [bench/.work]")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.calls < 1 or args.ctr_runs < 1 or args.warmup < 0 or args.containers < 1:
        ap.error("--runs, --calls, --ctr-runs and --containers must be >= 1, --warmup >= 0")
    if args.skip_pull and args.skip_tasks:
        ap.error("--skip-pull and --skip-tasks: nothing left to run")
    if os.geteuid() != 0:
        print("ctr.py: needs root (containerd, hawserd, overlayfs)", file=sys.stderr)
        return 2
    needed = ["containerd", "ctr", "docker-registry"]
    if not args.skip_tasks:
        needed += ["runc", "conmon", "containerd-shim-runc-v2", "busybox"]
    for tool in needed:
        if not shutil.which(tool):
            print(f"ctr.py: {tool} not found (run bench/ctr.sh)", file=sys.stderr)
            return 2
    if not args.skip_hawserd and not os.access(args.hawserd, os.X_OK):
        print(f"ctr.py: {args.hawserd} is not executable (run scripts/setup.sh)", file=sys.stderr)
        return 2
    install_signal_handlers()
    os.environ.update(safe_env())  # the proxy safety net for everything, this process included

    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    lockf = bench_lock(work, "ctr.py")
    if lockf is None:
        return 2
    runs_dir = work / "runs"
    # Leftovers of an interrupted run (we hold the lock): processes naming the directory
    # (daemons, shims, conmons and the containers below them), the tasks' cgroups, the directory.
    for note in kill_leftovers([str(runs_dir)], "a previous run's leftovers"):
        print(f"ctr.py: {note}", file=sys.stderr)
    for ns in TASK_NS.values():
        remove_cgroup(ns)
        with contextlib.suppress(OSError):  # where an earlier version of this benchmark left runc's state
            (HOST_DIRS[1] / ns).rmdir()
    remove_tree(runs_dir)
    host_dirs = [d for d in HOST_DIRS if not d.exists()]  # deepest first
    children = Children()
    skipped = {"containerd": args.skip_containerd, "hawserd": args.skip_hawserd}
    results: dict[str, ToolResult | None] = {t: None if skipped[t] or args.skip_pull else ToolResult(t)
                                             for t in TOOLS}
    task_results = {t: TasksResult(t, TASK_NS[t]) for t in TOOLS if not (skipped[t] or args.skip_tasks)}
    doc: dict[str, Any] = {}
    rc = 0
    try:
        scratch_mode = args.scratch
        if scratch_mode == "loop" and (why := loop_available()):
            print(f"   no loop-mounted scratch filesystem ({why}): plain directories instead", flush=True)
            scratch_mode = "dir"
        img: BuiltImage | None = None
        blobdir: Path | None = None
        if not args.skip_pull:
            print("== image", flush=True)
            t0 = time.monotonic()
            img, blobdir = load_or_build(work, rebuild=args.rebuild)
            built = time.monotonic() - t0
            print(f"   {len(img.layers)} layers, {img.files:,} files, {fmt_bytes(img.compressed)} compressed, "
                  f"{fmt_bytes(img.uncompressed)} uncompressed " + (f"(built in {built:.1f} s)" if built > 1 else "(cached)"),
                  flush=True)
            check_free_space(work, 2 * img.uncompressed + 2 * img.compressed + 300 * MB, "the pulls")
        runs_dir.mkdir(parents=True, exist_ok=True)
        scratch = Scratch(runs_dir, scratch_mode, max(4 << 30, 3 * img.uncompressed + (1 << 30)) if img else 4 << 30)
        with run_registry(children, work / "registry", runs_dir) as reg:
            extra: dict[str, Any] = {
                "scratch": scratch_mode, "load_before": loadavg(), "cpus": os.cpu_count(),
                "kernel": platform.release(), "calls": args.calls, "idle": args.idle,
                "containerd_version": tool_version(["containerd", "--version"]),
                "ctr_version": tool_version(["ctr", "--version"]),
                "hawserd_version": tool_version([args.hawserd, "--version"]) if not args.skip_hawserd else None,
                "hawserd_log_level": args.log_level,
            }
            if img is not None and blobdir is not None:
                ref = f"{reg.host}/{REPO_NAME}:{TAG}"
                _push_and_warm(reg, img, blobdir, ref)
                pull_rounds(children, args, scratch, ref, img, results)
                extra["load_after"] = loadavg()
                extra["runs_requested"] = args.runs
                doc = report(img, ref, results, extra)
            if task_results:
                small = push_image(reg, *BUSYBOX, *build_image(busybox_layer(), {
                    "Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                    "WorkingDir": "/"}))
                print(f"== tasks: {small} (busybox-static); ctr run --rm x {args.warmup} + {args.ctr_runs}, "
                      f"alternating; {args.containers} idle containers each", flush=True)
                tasks_phases(children, args, scratch, small, task_results)
                tasks_extra = {"tasks_image": small, "warmup": args.warmup, "ctr_runs": args.ctr_runs,
                               "containers": args.containers, "idle": args.idle, "load_after": loadavg()}
                if not doc:
                    doc = {k: v for k, v in extra.items() if k not in ("calls", "hawserd_log_level")}
                doc["tasks"] = report_tasks(task_results, tasks_extra)
            out = work / "ctr-results.json"
            out.write_text(json.dumps(doc, indent=2) + "\n")
            print(f"\nresults: {out}")
        if any(r is not None and not r.ok for r in results.values()) or any(not r.ok for r in task_results.values()):
            rc = 1
    except ToolError as e:
        print(f"ctr.py: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("\nctr.py: interrupted; cleaning up", file=sys.stderr)
        rc = 130
    finally:
        children.stop_all()
        for note in kill_leftovers([str(runs_dir)], "left after the run"):
            print(f"ctr.py: {note}", file=sys.stderr)
        for ns in TASK_NS.values():
            if left := remove_cgroup(ns):
                print(f"ctr.py: WARNING: cgroups left: {left}", file=sys.stderr)
        with contextlib.suppress(ToolError, OSError):
            remove_tree(runs_dir)
        for d in host_dirs:  # only what this run made, only if empty
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                print(f"ctr.py: WARNING: cannot remove {d}: {e.strerror}", file=sys.stderr)
        left = mounts_under(work)
        if left:
            print(f"ctr.py: WARNING: mounts left under {work}: {left}", file=sys.stderr)
            rc = rc or 1
        lockf.close()
    return rc


def pull_rounds(children: Children, args: argparse.Namespace, scratch: Scratch, ref: str, img: BuiltImage,
                results: dict[str, ToolResult | None]) -> None:
    for i in range(args.runs):
        print(f"== round {i + 1}/{args.runs}", flush=True)
        order = TOOLS if i % 2 == 0 else TOOLS[::-1]  # who goes first alternates
        for tool in order:
            res = results[tool]
            if res is None or res.error is not None:
                continue
            try:
                run, notes = one_run(children, tool, args, scratch.make(f"{tool}-{i}"), ref, len(img.layers))
                res.runs.append(run)
                res.notes.extend(notes)
                split = (f"fetch {run.fetch_seconds:.2f} s, unpack {run.seconds - run.fetch_seconds:.2f} s"
                         if run.fetch_seconds is not None else "")
                print(f"   {tool:<11} {run.seconds:7.2f} s  ({split}); images ls "
                      f"{_ms(median(run.images_ls))}, content ls {_ms(median(run.content_ls))}; "
                      f"RSS idle {_mb(run.rss_idle)}", flush=True)
            except ToolError as e:
                res.error = str(e)
                print(f"   {tool:<11} FAILED: {str(e).splitlines()[0]}", flush=True)
            os.sync()


def _push_and_warm(reg: Registry, img: BuiltImage, blobdir: Path, ref: str) -> None:
    t0 = time.monotonic()
    sent = push(reg, REPO_NAME, TAG, img, blobdir)
    print(f"== registry {reg.host}: pushed {ref} ({fmt_bytes(sent)} uploaded, {time.monotonic() - t0:.1f} s)",
          flush=True)
    # Same page-cache state for both daemons: read every blob once through the registry.
    with httpx.Client(trust_env=False, timeout=300) as client:
        for layer in img.layers:
            with client.stream("GET", reg.url(f"/v2/{REPO_NAME}/blobs/{layer.digest}")) as r:
                r.raise_for_status()
                for _ in r.iter_bytes(MIB):
                    pass


if __name__ == "__main__":
    raise SystemExit(main())
