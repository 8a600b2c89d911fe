"""Metrics benchmark: what hawserd's Prometheus endpoint costs.

1. Scrape cost: hawserd with ``--pods`` pod sandboxes of ``--containers``
   running busybox containers each (10 x 10 by default), all made through the
   CRI socket; then ``--scrapes`` scrapes of ``/metrics`` one after the other.
   hawserd's CPU time per scrape (utime + stime of /proc/PID/stat, all its
   threads) and the wall time, against the target of 100 ms of CPU, and
   against reading the same cgroups' files natively in the same run (this
   Python process, one ``open``/``read`` per file, and one ``cat`` of them all).
   The scrape must hold every container's ``container_cpu_usage_seconds_total``.
2. Added latency: three hawserds at once on three stores with the same
   history (one pod of ``--latency-containers`` running containers each), one
   with the endpoint on and two with ``--metrics-address ""`` (the second an
   A/A control: the resolution of the comparison); ``--rounds`` rounds of
   freshly started daemons, the roles passed from store to store every round.
   Per round and daemon ``--calls`` Version calls and a quarter as many
   ListContainers and ContainerStatus calls on a warm channel, in blocks in
   which the daemons take turns: median latency on and off, the overhead in
   percent against the target of 2 %.

See bench/README.md. Run through bench/metrics.sh."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
from _common import (
    REPO,
    WORK,
    Children,
    ToolError,
    bench_lock,
    free_port,
    install_signal_handlers,
    loadavg,
    median,
    mounts_under,
    remove_cgroup,
    remove_tree,
    run_registry,
    safe_env,
    tail,
)
from cri import build_image, busybox_layer, kill_leftovers, push_image, write_hosts_toml
from cri_api.v1 import api_pb2, api_pb2_grpc

CGROUP = "hawser-bench-metrics"  # every pod's cgroup parent is /hawser-bench-metrics/pod<uid>
NET_NAME = "hawser-bench-metrics"
POD_NAMESPACE = "hawser-bench"
BUSYBOX = ("bench/busybox", "metrics")
CONTAINER_CMD = ("/bin/sleep", "3600")
CPU_FAMILY = "container_cpu_usage_seconds_total"
TARGET_SCRAPE_CPU = 0.100  # seconds of hawserd CPU per scrape with 100 containers
TARGET_OVERHEAD = 0.02  # added latency of a CRI call with the endpoint on
TARGET_CONTAINERS = 100
CLK_TCK = os.sysconf("SC_CLK_TCK")
SUN_PATH_MAX = 107
LATENCY_METHODS = ("Version", "ListContainers", "ContainerStatus")

# What hawser's host.read_stats reads per cgroup (src/hawser/host/_cgroups.py), for the native reference.
V1_FILES = {
    "cpuacct": ("cpuacct.usage", "cpuacct.usage_user", "cpuacct.usage_sys"),
    "memory": ("memory.usage_in_bytes", "memory.stat", "memory.limit_in_bytes", "memory.oom_control"),
    "pids": ("pids.current", "pids.max"),
    "blkio": ("blkio.throttle.io_service_bytes_recursive",),
}
V2_FILES = ("cpu.stat", "memory.current", "memory.stat", "memory.events", "memory.max", "pids.current", "pids.max",
            "io.stat")
CGROUP_FS = Path("/sys/fs/cgroup")


# --------------------------------------------------------------------------- hawserd and its CRI client


def _details(e: grpc.RpcError) -> str:
    if isinstance(e, grpc.Call):
        code = e.code()
        return f"{code.name if code else 'error'}: {(e.details() or '')[:300]}"
    return str(e)


def _process_cpu(pid: int) -> float:
    """utime + stime of every thread of ``pid``, living and dead, in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        text = f.read()
    fields = text[text.rindex(b")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Hawserd:
    """hawserd on one root and state under ``base``, started and stopped as often as
    the benchmark needs (containers keep running in between), with its CRI client."""

    def __init__(self, children: Children, exe: str, base: Path, *, certs: Path, conf_dir: Path,
                 timeout: float) -> None:
        self.children = children
        self.exe = exe
        self.base = base
        self.certs = certs
        self.conf_dir = conf_dir
        self.timeout = timeout
        self.config = base / "config.toml"
        self.log = base.parent / f"{base.name}.hawserd.log"
        self.sock = base / "hawser.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.channel: grpc.Channel | None = None
        self.rt: Any = None
        self.images: Any = None
        self.metrics_url = ""
        self.version = ""
        self.notes: list[str] = []
        self.emptied = False  # every pod removed through the CRI: nothing to clean up
        base.mkdir(parents=True, exist_ok=True)
        self.config.write_text("")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, *, metrics: bool) -> None:
        port = free_port() if metrics else 0
        address = f"127.0.0.1:{port}" if metrics else ""
        argv = [self.exe, "--config", str(self.config), "--root", str(self.base / "root"),
                "--state", str(self.base / "state"), "--address", str(self.sock), "--containerd-address", "",
                "--registry-config-dir", str(self.certs), "--cni-conf-dir", str(self.conf_dir),
                "--cni-bin-dir", "/usr/lib/cni", "--metrics-address", address, "--log-level", "warning"]
        with open(self.log, "ab") as logf:
            logf.write(f"==== bench: hawserd --metrics-address {address!r}\n".encode())
            logf.flush()
            self.proc = self.children.start(argv, stdout=logf, stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(f"unix:{self.sock}", options=[("grpc.enable_http_proxy", 0)])
        self.rt = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)
        self.metrics_url = f"http://{address}/metrics" if metrics else ""
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Until Version answers, Status says RuntimeReady and NetworkReady and, with the
        endpoint on, /metrics answers."""
        assert self.proc is not None
        deadline = time.monotonic() + self.timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ToolError(f"hawserd exited ({self.proc.returncode}) while starting:\n{tail(self.log)}")
            try:
                v = self.rt.Version(api_pb2.VersionRequest(), timeout=2)
                st = self.rt.Status(api_pb2.StatusRequest(), timeout=2)
                conds = {c.type: c for c in st.status.conditions}
                if all(k in conds and conds[k].status for k in ("RuntimeReady", "NetworkReady")):
                    if self.metrics_url:
                        scrape(self.metrics_url, timeout=5)
                    self.version = f"{v.runtime_name} {v.runtime_version}"
                    return
                last = "; ".join(f"{c.type}={c.status} {c.reason} {c.message}".strip() for c in conds.values())
            except grpc.RpcError as e:
                last = _details(e)
            except OSError as e:
                last = f"/metrics: {e}"
            time.sleep(0.1)
        raise ToolError(f"hawserd not ready within {self.timeout:.0f} s ({last}):\n{tail(self.log)}")

    def stop(self) -> None:
        """SIGTERM, as a kubelet's host would; a non-zero exit becomes a note."""
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        proc, self.proc = self.proc, None
        if proc is None:
            return
        self.children.stop(proc, grace=20)
        if proc.returncode not in (0, None):
            self.notes.append(f"hawserd exited with {proc.returncode} on SIGTERM")

    def cpu(self) -> float:
        assert self.proc is not None
        return _process_cpu(self.proc.pid)

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return getattr(self.rt, method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            raise ToolError(f"hawserd {method}: {_details(e)}") from None

    def pull(self, ref: str) -> None:
        try:
            self.images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)), timeout=120)
        except grpc.RpcError as e:
            raise ToolError(f"hawserd PullImage {ref}: {_details(e)}") from None

    def remove_all(self) -> list[str]:
        """Stop and remove every pod (and so its containers), then any container left; best effort."""
        notes: list[str] = []
        try:
            pods = self.call("ListPodSandbox", api_pb2.ListPodSandboxRequest()).items
        except ToolError as e:
            return [f"cannot list pods: {e}"]
        for pod in pods:
            for method, req in (("StopPodSandbox", api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod.id)),
                                ("RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod.id))):
                try:
                    self.call(method, req)
                except ToolError as e:
                    notes.append(str(e).splitlines()[0][:200])
        with contextlib.suppress(ToolError):
            for c in self.call("ListContainers", api_pb2.ListContainersRequest()).containers:
                try:
                    self.call("RemoveContainer", api_pb2.RemoveContainerRequest(container_id=c.id))
                except ToolError as e:
                    notes.append(str(e).splitlines()[0][:200])
        return notes


def scrape(url: str, timeout: float = 60) -> bytes:
    """GET ``url`` with no proxy whatever the environment says (it is on 127.0.0.1)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=timeout) as resp:
        body: bytes = resp.read()
        return body


# --------------------------------------------------------------------------- pods and containers


@dataclass
class Pod:
    id: str
    config: api_pb2.PodSandboxConfig
    containers: list[str] = field(default_factory=list)


def pod_config(i: int, log_dir: Path, *, host_network: bool) -> api_pb2.PodSandboxConfig:
    """A BestEffort pod as a kubelet with the cgroupfs driver asks for it (see bench/cri.py)."""
    name = f"metrics-{i}"
    uid = str(uuid.uuid4())
    network = api_pb2.NODE if host_network else api_pb2.POD
    return api_pb2.PodSandboxConfig(
        metadata=api_pb2.PodSandboxMetadata(name=name, uid=uid, namespace=POD_NAMESPACE, attempt=0),
        hostname=name,
        log_directory=str(log_dir / f"{POD_NAMESPACE}_{name}_{uid}"),
        labels={"app": "hawser-bench-metrics", "io.kubernetes.pod.name": name},
        linux=api_pb2.LinuxPodSandboxConfig(
            cgroup_parent=f"/{CGROUP}/pod{uid}",
            security_context=api_pb2.LinuxSandboxSecurityContext(
                namespace_options=api_pb2.NamespaceOption(network=network, pid=api_pb2.CONTAINER, ipc=api_pb2.POD),
                seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Unconfined),
            ),
        ),
    )


def container_config(image: str, j: int, *, host_network: bool) -> api_pb2.ContainerConfig:
    name = f"sleep-{j}"
    network = api_pb2.NODE if host_network else api_pb2.POD
    return api_pb2.ContainerConfig(
        metadata=api_pb2.ContainerMetadata(name=name, attempt=0),
        image=api_pb2.ImageSpec(image=image),
        command=list(CONTAINER_CMD[:1]),
        args=list(CONTAINER_CMD[1:]),
        log_path=f"{name}/0.log",
        labels={"io.kubernetes.container.name": name},
        linux=api_pb2.LinuxContainerConfig(
            resources=api_pb2.LinuxContainerResources(cpu_shares=2, oom_score_adj=1000),
            security_context=api_pb2.LinuxContainerSecurityContext(
                namespace_options=api_pb2.NamespaceOption(network=network, pid=api_pb2.CONTAINER, ipc=api_pb2.POD),
                seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Unconfined),
            ),
        ),
    )


def start_pods(d: Hawserd, image: str, n_pods: int, per_pod: int, log_dir: Path, *,
               host_network: bool, label: str) -> list[Pod]:
    pods: list[Pod] = []
    t0 = time.monotonic()
    for i in range(n_pods):
        cfg = pod_config(i, log_dir, host_network=host_network)
        pod = Pod(d.call("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=cfg)).pod_sandbox_id, cfg)
        pods.append(pod)
        for j in range(per_pod):
            cid = d.call("CreateContainer", api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod.id, config=container_config(image, j, host_network=host_network),
                sandbox_config=cfg)).container_id
            pod.containers.append(cid)
            d.call("StartContainer", api_pb2.StartContainerRequest(container_id=cid))
        print(f"   {label:<4} {i + 1:3d}/{n_pods} pods, {sum(len(p.containers) for p in pods):4d} containers running "
              f"({time.monotonic() - t0:.1f} s)", flush=True)
    return pods


# --------------------------------------------------------------------------- the scrape phase


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def cpu_series(text: str) -> tuple[set[str], set[str]]:
    """The cgroup ids (``id`` label) under our cgroup parent with a ``container_cpu_usage_seconds_total``
    sample: (containers, pods); a pod's own series has ``container=""``."""
    containers: set[str] = set()
    pods: set[str] = set()
    prefix = CPU_FAMILY + "{"
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        labels = dict(_LABEL.findall(line[len(prefix):line.rindex("}")]))
        cg = labels.get("id", "")
        if not cg.startswith(f"/{CGROUP}/"):
            continue
        (containers if labels.get("container") else pods).add(cg)
    return containers, pods


def our_cgroups() -> tuple[list[str], list[str]]:
    """(container cgroups, pod cgroups) under /hawser-bench-metrics, as paths from a hierarchy's root."""
    unified = (CGROUP_FS / "cgroup.controllers").exists()
    top = CGROUP_FS / CGROUP if unified else CGROUP_FS / "cpuacct" / CGROUP
    if not top.is_dir():
        raise ToolError(f"no cgroup {top}: where did the pods' cgroups go?")
    pods = sorted(p for p in top.iterdir() if p.is_dir())
    containers = sorted(c for p in pods for c in p.iterdir() if c.is_dir())

    def rel(p: Path) -> str:
        return "/" + str(p.relative_to(top.parent))

    return [rel(c) for c in containers], [rel(p) for p in pods]


def cgroup_files(cgroups: Sequence[str]) -> list[str]:
    """The files hawser's ``read_stats`` reads for ``cgroups``, those that exist."""
    files: list[str] = []
    unified = (CGROUP_FS / "cgroup.controllers").exists()
    for cg in cgroups:
        if unified:
            files += [str(CGROUP_FS / cg.lstrip("/") / f) for f in V2_FILES]
            continue
        for ctrl, names in V1_FILES.items():
            files += [str(CGROUP_FS / ctrl / cg.lstrip("/") / f) for f in names]
    return [f for f in files if os.path.exists(f)]


def read_natively(files: Sequence[str]) -> int:
    """Read and parse every file once (numbers and ``key value`` lines); returns the bytes read."""
    total = 0
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        total += len(data)
        for line in data.splitlines():
            parts = line.split()
            if len(parts) == 1 and parts[0].isdigit():
                int(parts[0])
            elif len(parts) >= 2 and parts[-1].isdigit():
                int(parts[-1])
    return total


@dataclass
class ScrapeResult:
    pods: int = 0
    containers: int = 0
    start_seconds: float = 0.0
    series_containers: int = 0
    series_pods: int = 0
    body_bytes: int = 0
    body_lines: int = 0
    idle_cpu_per_second: float = 0.0  # hawserd's CPU while nobody calls it
    cpu: list[float] = field(default_factory=list)  # per scrape, in CLK_TCK steps
    wall: list[float] = field(default_factory=list)
    cpu_total: float = 0.0  # over all scrapes, from the first one's start to the last one's end
    elapsed: float = 0.0
    native_cgroups: int = 0
    native_files: int = 0
    native_bytes: int = 0
    native_cpu: list[float] = field(default_factory=list)  # per pass over all files (this thread's CPU)
    native_wall: list[float] = field(default_factory=list)
    cat_cpu: list[float] = field(default_factory=list)  # one `cat` of every file (its user + sys)
    cat_wall: list[float] = field(default_factory=list)

    @property
    def cpu_per_scrape(self) -> float:
        return self.cpu_total / len(self.cpu) if self.cpu else 0.0

    @property
    def cpu_per_scrape_net(self) -> float:
        """Minus what hawserd burns idle over the same time (its background loops)."""
        if not self.cpu:
            return 0.0
        return max(0.0, self.cpu_total - self.idle_cpu_per_second * self.elapsed) / len(self.cpu)


def scrape_phase(d: Hawserd, res: ScrapeResult, n: int, idle: float) -> None:
    url = d.metrics_url
    # The first scrape detects the cgroup layout and imports the readers: not what a steady scrape costs.
    for _ in range(2):
        body = scrape(url)
    text = body.decode()
    got_c, got_p = cpu_series(text)
    res.series_containers, res.series_pods = len(got_c), len(got_p)
    res.body_bytes, res.body_lines = len(body), text.count("\n")
    ctrs, pods = our_cgroups()
    if got_c != set(ctrs) or got_p != set(pods):
        raise ToolError(f"the scrape has {CPU_FAMILY} for {len(got_c)} containers and {len(got_p)} pods; "
                        f"{len(ctrs)} containers and {len(pods)} pods have cgroups under /{CGROUP}; "
                        f"missing: {sorted(set(ctrs) - got_c)[:3]} {sorted(set(pods) - got_p)[:3]}")

    c0, t0 = d.cpu(), time.monotonic()
    time.sleep(idle)
    res.idle_cpu_per_second = (d.cpu() - c0) / (time.monotonic() - t0)

    start_cpu, start = d.cpu(), time.perf_counter()
    for _ in range(n):
        c, t = d.cpu(), time.perf_counter()
        scrape(url)
        res.wall.append(time.perf_counter() - t)
        res.cpu.append(d.cpu() - c)
    res.cpu_total = d.cpu() - start_cpu
    res.elapsed = time.perf_counter() - start

    # The native reference, right after, on the same cgroups.
    files = cgroup_files(ctrs + pods)
    res.native_cgroups, res.native_files = len(ctrs) + len(pods), len(files)
    read_natively(files)  # warm the dentries as hawserd's warm-up scrapes did
    for _ in range(n):
        c, t = time.thread_time(), time.perf_counter()
        res.native_bytes = read_natively(files)
        res.native_wall.append(time.perf_counter() - t)
        res.native_cpu.append(time.thread_time() - c)
    for _ in range(n):
        ru0, t = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        r = subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=safe_env())
        res.cat_wall.append(time.perf_counter() - t)
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        if r.returncode != 0:
            raise ToolError(f"cat of the cgroup files failed: {r.stderr.decode(errors='replace')[:300]}")
        res.cat_cpu.append((ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime))


# --------------------------------------------------------------------------- the latency phase

# The daemons of the latency phase: the endpoint on, off, and off again (an A/A control: how far two
# identical daemons measured the same way are apart, which is the resolution of the comparison).
MODES = ("on", "off", "off2")


@dataclass
class LatencyResult:
    containers: int = 0
    calls: dict[str, int] = field(default_factory=dict)  # per method, per daemon and round
    blocks: int = 0
    # mode -> method -> every call's latency, seconds, all rounds
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # mode -> method -> the median of each round
    rounds: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def pooled(self, mode: str, method: str) -> float | None:
        xs = self.samples.get(mode, {}).get(method)
        return median(xs) if xs else None

    def round_ratios(self, mode: str, method: str) -> list[float]:
        """Per round, ``mode``'s median over "off"'s, minus 1 (daemons measured at the same time)."""
        a, b = self.rounds.get(mode, {}).get(method, []), self.rounds.get("off", {}).get(method, [])
        return [x / y - 1 for x, y in zip(a, b, strict=True)]

    def overhead(self, mode: str, method: str) -> float | None:
        """The median of the per-round ratios: one daemon that happens to be slow in one round
        (it happens, by a few to 15 % here) does not make the result."""
        xs = self.round_ratios(mode, method)
        return median(xs) if xs else None

    def pooled_overhead(self, mode: str, method: str) -> float | None:
        a, b = self.pooled(mode, method), self.pooled("off", method)
        return a / b - 1 if a is not None and b else None


def _requests(container_ids: Sequence[str]) -> dict[str, Callable[[int], Any]]:
    return {
        "Version": lambda _i: api_pb2.VersionRequest(),
        "ListContainers": lambda _i: api_pb2.ListContainersRequest(),
        "ContainerStatus": lambda i: api_pb2.ContainerStatusRequest(
            container_id=container_ids[i % len(container_ids)]),
    }


def time_block(d: Hawserd, make: Callable[[int], Any], method: str, n: int, out: list[float]) -> None:
    """``n`` calls of ``method`` on ``d``'s warm channel, one after the other; their latencies into ``out``."""
    fn = getattr(d.rt, method)
    perf = time.perf_counter
    try:
        for i in range(n):
            req = make(i)
            t = perf()
            fn(req, timeout=d.timeout)
            out.append(perf() - t)
    except grpc.RpcError as e:
        raise ToolError(f"hawserd {method}: {_details(e)}") from None


def observation_cost(calls: int = 200_000) -> float:
    """Seconds per call of what a daemon with the endpoint on does per request
    beyond one with it off: observing its method, code and duration."""
    import timeit

    from prometheus_client import CollectorRegistry

    from hawser.metrics import RequestMetrics  # type: ignore[import-untyped]  # the venv's hawser

    metrics = RequestMetrics(CollectorRegistry())
    method = "/runtime.v1.RuntimeService/Version"
    metrics.observe(method, "OK", 0.0005)
    return timeit.timeit(lambda: metrics.observe(method, "OK", 0.0005), number=calls) / calls


def latency_round(daemons: dict[str, Hawserd], ids: dict[str, list[str]], counts: dict[str, int], blocks: int,
                  warmup: int) -> dict[str, dict[str, list[float]]]:
    """Every daemon answers the same calls, in blocks that take turns (the first daemon changes
    every block), so that a change of the machine's load falls on all of them alike."""
    reqs = {mode: _requests(ids[mode]) for mode in daemons}
    out: dict[str, dict[str, list[float]]] = {mode: {m: [] for m in LATENCY_METHODS} for mode in daemons}
    modes = list(daemons)
    for mode in modes:
        for method in LATENCY_METHODS:
            time_block(daemons[mode], reqs[mode][method], method, warmup, [])
    for method in LATENCY_METHODS:
        per_block = max(1, counts[method] // blocks)
        for b in range(blocks):
            order = modes[b % len(modes):] + modes[:b % len(modes)]
            if b % 2:
                order.reverse()
            for mode in order:
                time_block(daemons[mode], reqs[mode][method], method, per_block, out[mode][method])
    return out


def latency_phase(stores: Sequence[Hawserd], ids: dict[str, list[str]], res: LatencyResult, *, rounds: int,
                  calls: int, blocks: int, settle: float) -> None:
    """``rounds`` rounds; each starts the daemons afresh on their stores (their containers keep
    running in between), the roles (on, off, off2) passed on from store to store every round, so
    that no store's own history or place on disk stays with one role."""
    res.containers = len(ids[stores[0].base.name])
    res.calls = {"Version": calls, "ListContainers": max(1, calls // 4), "ContainerStatus": max(1, calls // 4)}
    res.blocks = blocks
    for r in range(rounds):
        for d in stores:
            d.stop()
        roles = {mode: stores[(r + k) % len(stores)] for k, mode in enumerate(MODES)}
        for mode, d in roles.items():
            d.start(metrics=mode == "on")
        time.sleep(settle)
        got = latency_round(roles, {mode: ids[d.base.name] for mode, d in roles.items()}, res.calls, blocks,
                            warmup=max(20, calls // 20))
        for mode, per in got.items():
            for method, xs in per.items():
                res.samples.setdefault(mode, {}).setdefault(method, []).extend(xs)
                res.rounds.setdefault(mode, {}).setdefault(method, []).append(median(xs))
        cells = []
        for method in LATENCY_METHODS:
            off = median(got["off"][method])
            cells.append(f"{method} off {off * 1e6:5.0f} us, on {(median(got['on'][method]) / off - 1) * 100:+5.1f}%, "
                         f"off2 {(median(got['off2'][method]) / off - 1) * 100:+5.1f}%")
        print(f"   round {r + 1}/{rounds} (on: {roles['on'].base.name})  " + "; ".join(cells), flush=True)
    for d in stores:
        d.stop()


# --------------------------------------------------------------------------- report


def _ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def _us(x: float) -> str:
    return f"{x * 1e6:.0f} us"


def report(scr: ScrapeResult, lat: LatencyResult, info: dict[str, Any], args: argparse.Namespace,
           notes: list[str], out: Path) -> None:
    print()
    print(f"image  {info.get('image')} (container: {' '.join(CONTAINER_CMD)}); pods on "
          f"{'the host network' if args.host_network else 'a loopback-only CNI network'}; cgroup v"
          f"{info.get('cgroup_version')}")
    print(f"host   {info.get('cpus')} cpus, {info.get('kernel')}, CLK_TCK {CLK_TCK}, load before "
          f"{info.get('load_before')}, after {info.get('load_after')}")
    print(f"       {info.get('hawserd')}")
    summary: dict[str, Any] = {}
    if scr.cpu:
        n = len(scr.cpu)
        print()
        print(f"scrape cost: {scr.containers} running containers in {scr.pods} pods (started in "
              f"{scr.start_seconds:.1f} s), {n} scrapes of /metrics one after the other")
        print(f"  exposition: {scr.body_bytes / 1000:.0f} kB, {scr.body_lines} lines; {CPU_FAMILY}: "
              f"{scr.series_containers} containers + {scr.series_pods} pods (all of them)")
        rows = [
            ("hawserd CPU per scrape (mean)", scr.cpu_per_scrape, median(scr.wall)),
            ("  minus hawserd's idle CPU", scr.cpu_per_scrape_net, None),
            (f"native: Python reads {scr.native_files} files", median(scr.native_cpu), median(scr.native_wall)),
            ("native: one `cat` of the same files", median(scr.cat_cpu), median(scr.cat_wall)),
        ]
        print(f"  {'':<44} {'CPU':>10} {'wall':>10}")
        for label, cpu, wall in rows:
            print(f"  {label:<44} {_ms(cpu):>10} {_ms(wall) if wall is not None else '':>10}")
        print(f"  (hawserd idle: {scr.idle_cpu_per_second * 1000:.1f} ms CPU/s; per-scrape CPU in {1000 // CLK_TCK} "
              f"ms steps: min {_ms(min(scr.cpu))}, max {_ms(max(scr.cpu))}; native over {scr.native_cgroups} "
              f"cgroups, {scr.native_bytes / 1000:.0f} kB read per pass)")
        nat, cat = median(scr.native_cpu), median(scr.cat_cpu)
        cost = scr.cpu_per_scrape
        print(f"  hawserd / native Python read: {cost / nat:.1f}x   hawserd / cat: {cost / cat:.1f}x" if nat and cat
              else "")
        print(f"  target: <= {TARGET_SCRAPE_CPU * 1000:.0f} ms CPU per scrape with {TARGET_CONTAINERS} containers: "
              f"{cost * 1000:.1f} ms = {cost / TARGET_SCRAPE_CPU:.2f}x the target "
              f"({TARGET_SCRAPE_CPU / cost:.1f}x headroom): {'met' if cost <= TARGET_SCRAPE_CPU else 'MISSED'}"
              if cost else "  target: hawserd used no measurable CPU")
        summary["scrape"] = {**asdict(scr), "cpu_per_scrape": cost, "cpu_per_scrape_net": scr.cpu_per_scrape_net,
                             "median_wall": median(scr.wall), "native_median_cpu": nat, "cat_median_cpu": cat,
                             "ratio_to_native": cost / nat if nat else None,
                             "ratio_to_target": cost / TARGET_SCRAPE_CPU}
    if lat.samples:
        print()
        n_rounds = len(lat.rounds.get("off", {}).get("Version", []))
        print(f"CRI latency, /metrics on vs off: three hawserds at once (on, off, off2: a second one with the "
              f"endpoint off, the A/A control), {lat.containers} containers running on each; {n_rounds} rounds "
              f"(fresh daemons), per round and daemon {', '.join(f'{v} {k}' for k, v in lat.calls.items())} "
              f"in {lat.blocks} blocks taking turns")
        print(f"  {'median per call':<18} {'off':>8} {'on':>8} {'on/off':>8} {'off2/off':>9}   "
              "per round: on/off; off2/off")
        overheads: dict[str, float] = {}
        control: dict[str, float] = {}
        for m in LATENCY_METHODS:
            off, on_abs = lat.pooled("off", m), lat.pooled("on", m)
            on, aa = lat.overhead("on", m), lat.overhead("off2", m)
            if off is None or on_abs is None or on is None or aa is None:
                continue
            overheads[m], control[m] = on, aa
            per_on = " ".join(f"{x * 100:+.1f}%" for x in lat.round_ratios("on", m))
            per_aa = " ".join(f"{x * 100:+.1f}%" for x in lat.round_ratios("off2", m))
            print(f"  {m:<18} {_us(off):>8} {_us(on_abs):>8} {on * 100:+7.1f}% {aa * 100:+8.1f}%   "
                  f"{per_on}; {per_aa}")
        print("  (on/off, off2/off: the median of the per-round ratios; off, on: medians of every call)")
        if overheads:
            worst = max(overheads, key=lambda k: overheads[k])
            noise = max(abs(v) for v in control.values())
            print(f"  target: < {TARGET_OVERHEAD * 100:.0f} % added latency: worst {overheads[worst] * 100:+.1f}% "
                  f"({worst}): {'met' if overheads[worst] < TARGET_OVERHEAD else 'MISSED'}; the A/A control "
                  f"(off2/off) is within {noise * 100:.1f}%, the resolution of this run")
            observe = observation_cost()
            shares = {m: observe / off for m in overheads if (off := lat.pooled("off", m))}
            print(f"  what the endpoint adds to a call in-process: hawser's RequestMetrics.observe, {observe * 1e6:.2f} us "
                  f"(measured here, 200,000 calls) = " + ", ".join(f"{v * 100:.2f}% of {m}" for m, v in shares.items()))
            summary["observe_seconds"] = observe
        summary["latency"] = {
            "containers": lat.containers, "calls_per_round": lat.calls, "blocks": lat.blocks,
            "median": {mode: {m: lat.pooled(mode, m) for m in LATENCY_METHODS} for mode in MODES},
            "round_medians": lat.rounds, "overhead_on": overheads, "control_off2": control,
            "pooled_overhead_on": {m: lat.pooled_overhead("on", m) for m in LATENCY_METHODS},
            "pooled_control_off2": {m: lat.pooled_overhead("off2", m) for m in LATENCY_METHODS},
        }
    for note in notes:
        print(f"  note: {note}")
    doc = {**info, "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "clk_tck": CLK_TCK, **summary, "notes": notes,
           "targets": {"scrape_cpu_seconds": TARGET_SCRAPE_CPU, "containers": TARGET_CONTAINERS,
                       "latency_overhead": TARGET_OVERHEAD}}
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {out}")


# --------------------------------------------------------------------------- set-up and clean-up


def write_conflist(conf_dir: Path) -> None:
    """A network of the loopback plugin alone: every pod gets its own network namespace (which a
    scrape reads the counters of) and nothing touches the host's links, routes or iptables."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    (conf_dir / "10-hawser-bench-metrics.conflist").write_text(json.dumps({
        "cniVersion": "1.0.0", "name": NET_NAME, "plugins": [{"type": "loopback"}]}, indent=2) + "\n")


def clean_host(runs_dir: Path) -> list[str]:
    """What this benchmark (or an interrupted earlier run) may have left: processes naming its
    directory (hawserd, conmons) and what runs below them (the containers), its cgroup,
    mounts (overlays, pinned namespaces, /dev/shm) and its directory. Returns notes; never raises."""
    notes: list[str] = []
    steps: list[tuple[str, Callable[[], list[str]]]] = [
        ("processes", lambda: kill_leftovers([str(runs_dir) + "/"], "leftover")),
        ("cgroups", lambda: [f"cgroup not removed: {x}" for x in remove_cgroup(CGROUP)]),
    ]
    for what, fn in steps:
        try:
            notes += fn()
        except (ToolError, OSError) as e:
            notes.append(f"{what}: {e}")
    try:
        left = mounts_under(runs_dir)
        remove_tree(runs_dir)
        if left:
            notes.append(f"unmounted {len(left)} mounts left under {runs_dir}")
    except (ToolError, OSError) as e:
        notes.append(f"scratch: {e}")
    return notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=10, help="pod sandboxes for the scrape phase [10]")
    ap.add_argument("--containers", type=int, default=10, help="running containers per pod [10]")
    ap.add_argument("--scrapes", type=int, default=20, help="timed scrapes of /metrics [20]")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds hawserd's idle CPU is measured over [3]")
    ap.add_argument("--rounds", type=int, default=6, help="latency rounds, each with freshly started daemons and "
                    "the roles passed on (a multiple of 3 gives each store each role as often) [6]")
    ap.add_argument("--blocks", type=int, default=20,
                    help="blocks per method and round in which the daemons take turns [20]")
    ap.add_argument("--calls", type=int, default=2000,
                    help="Version calls per round; ListContainers and ContainerStatus a quarter of it each [2000]")
    ap.add_argument("--latency-containers", type=int, default=3,
                    help="running containers of each latency daemon (one pod) [3]")
    ap.add_argument("--host-network", action="store_true", help="pods on the host's network (no CNI)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds after hawserd is ready before timing [1]")
    ap.add_argument("--skip-scrape", action="store_true")
    ap.add_argument("--skip-latency", action="store_true")
    ap.add_argument("--timeout", type=float, default=60, help="seconds allowed per CRI call and start-up [60]")
    ap.add_argument("--workdir", type=Path, default=WORK, help="scratch space [bench/.work]")
    ap.add_argument("--hawserd", default=str(REPO / ".venv/bin/hawserd"), help="hawserd executable")
    args = ap.parse_args(argv)
    if min(args.pods, args.containers, args.scrapes, args.rounds, args.calls, args.blocks,
           args.latency_containers) < 1:
        ap.error("--pods, --containers, --scrapes, --rounds, --calls, --blocks and --latency-containers must be >= 1")
    if os.geteuid() != 0:
        print("metrics.py: needs root (runc, conmon, cgroups, mounts)", file=sys.stderr)
        return 2
    if not os.access(args.hawserd, os.X_OK):
        print(f"metrics.py: {args.hawserd} is not executable (run scripts/setup.sh)", file=sys.stderr)
        return 2
    for tool in ("runc", "conmon", "docker-registry", "cat"):
        if not shutil.which(tool):
            print(f"metrics.py: {tool} not found (run bench/metrics.sh)", file=sys.stderr)
            return 2
    if not args.host_network and not os.access("/usr/lib/cni/loopback", os.X_OK):
        print("metrics.py: /usr/lib/cni/loopback not found (containernetworking-plugins; run bench/metrics.sh)",
              file=sys.stderr)
        return 2
    install_signal_handlers()
    os.environ.update(safe_env())  # the proxy safety net for everything, this process included

    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    runs_dir = work / "metrics-runs"
    if len(str(runs_dir / "scrape" / "hawser.sock")) > SUN_PATH_MAX:
        print(f"metrics.py: {runs_dir} is too long a path for hawserd's socket; use a shorter --workdir",
              file=sys.stderr)
        return 2
    lockf = bench_lock(work, "metrics.py")
    if lockf is None:
        return 2
    for msg in clean_host(runs_dir):  # leftovers of an interrupted run (we hold the lock)
        print(f"metrics.py: previous run: {msg}", file=sys.stderr)

    children = Children()
    scr, lat = ScrapeResult(), LatencyResult()
    notes: list[str] = []
    info: dict[str, Any] = {}
    daemons: dict[str, Hawserd] = {}
    rc = 0
    try:
        with contextlib.ExitStack() as stack:
            shared = runs_dir / "shared"
            shared.mkdir(parents=True)
            reg = stack.enter_context(run_registry(children, shared / "registry", shared))
            image = push_image(reg, *BUSYBOX, *build_image(busybox_layer(), {
                "Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "WorkingDir": "/"}))
            certs, conf_dir = shared / "certs.d", shared / "net.d"
            write_hosts_toml(certs, reg.host)
            write_conflist(conf_dir)
            info = {"image": image, "cpus": os.cpu_count(), "kernel": platform.release(),
                    "cgroup_version": 2 if (CGROUP_FS / "cgroup.controllers").exists() else 1,
                    "hawserd_executable": args.hawserd, "load_before": loadavg()}

            def daemon(mode: str, n_pods: int, per_pod: int) -> tuple[Hawserd, list[Pod]]:
                """A hawserd of its own (root, state, socket) with ``n_pods`` x ``per_pod`` running containers."""
                d = daemons[mode] = Hawserd(children, args.hawserd, runs_dir / mode, certs=certs, conf_dir=conf_dir,
                                            timeout=args.timeout)
                d.start(metrics=mode == "scrape")
                info["hawserd"] = d.version
                d.pull(image)
                t0 = time.monotonic()
                pods = start_pods(d, image, n_pods, per_pod, runs_dir / "logs", host_network=args.host_network,
                                  label=mode)
                if mode == "scrape":
                    scr.pods, scr.containers, scr.start_seconds = len(pods), n_pods * per_pod, time.monotonic() - t0
                return d, pods

            print(f"== registry {reg.host}: {image}", flush=True)
            if not args.skip_scrape:
                print(f"== hawserd with /metrics on: {args.pods} pods x {args.containers} containers "
                      f"({' '.join(CONTAINER_CMD)}) through the CRI", flush=True)
                scraped, _ = daemon("scrape", args.pods, args.containers)
                time.sleep(args.settle)
                print(f"== {args.scrapes} scrapes of {scraped.metrics_url} (2 untimed first), then the native "
                      "reference", flush=True)
                scrape_phase(scraped, scr, args.scrapes, args.idle)
                print(f"   hawserd {scr.cpu_per_scrape * 1000:.1f} ms CPU per scrape; native Python read "
                      f"{median(scr.native_cpu) * 1000:.2f} ms, cat {median(scr.cat_cpu) * 1000:.2f} ms", flush=True)
                got = scraped.remove_all()
                notes.extend(got)
                scraped.emptied = not got
                scraped.stop()
            if not args.skip_latency:
                # Three stores with the same history (one pod, its containers started, nothing removed).
                print(f"== latency: three hawserds (stores a, b, c), {args.latency_containers} containers each",
                      flush=True)
                ids = {name: list(daemon(name, 1, args.latency_containers)[1][0].containers)
                       for name in ("a", "b", "c")}
                print(f"== {args.rounds} rounds, the roles (on, off, off2) passed on every round; the daemons take "
                      f"turns in {args.blocks} blocks per method", flush=True)
                latency_phase([daemons[n] for n in ("a", "b", "c")], ids, lat, rounds=args.rounds, calls=args.calls,
                              blocks=args.blocks, settle=args.settle)
            info["load_after"] = loadavg()
        # The registry is stopped; the pods go next (finally), through the CRI.
    except ToolError as e:
        print(f"metrics.py: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("\nmetrics.py: interrupted; cleaning up", file=sys.stderr)
        rc = 130
    finally:
        try:
            for d in daemons.values():
                if d.emptied:
                    continue
                if not d.running and (d.base / "root").exists():
                    with contextlib.suppress(ToolError):
                        d.start(metrics=False)
                if d.running:
                    notes += d.remove_all()
                d.stop()
                notes += d.notes
        except KeyboardInterrupt:
            notes.append("interrupted while removing the pods")
        finally:
            children.stop_all()
            for mode in daemons:
                with contextlib.suppress(OSError):  # kept for a look after the run
                    shutil.copyfile(runs_dir / f"{mode}.hawserd.log", work / f"metrics-hawserd-{mode}.log")
            notes += clean_host(runs_dir)
            left = mounts_under(work)
            if left:
                print(f"metrics.py: WARNING: mounts left under {work}: {left}", file=sys.stderr)
                rc = rc or 1
            if rc in (0, 1) and (scr.cpu or lat.samples):
                report(scr, lat, info, args, notes, work / "metrics-results.json")
            elif notes:
                for note in notes:
                    print(f"metrics.py: {note}", file=sys.stderr)
            lockf.close()
    return rc

if __name__ == "__main__":
    raise SystemExit(main())
