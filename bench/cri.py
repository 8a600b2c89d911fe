"""CRI benchmark: pod and container lifecycle through the CRI, hawserd vs containerd's CRI plugin.

The same Python CRI client (cri_api's stubs, gRPC over the runtimes' unix
sockets) drives both runtimes, running at the same time, through the lifecycle
of a pod with one busybox container: RunPodSandbox, CreateContainer,
StartContainer, StopContainer, RemoveContainer, StopPodSandbox,
RemovePodSandbox. N pods one after the other (alternating runtimes pod by pod),
then rounds of 10 pods in parallel (alternating runtimes round by round), then
the memory of each daemon idle and with 100 pods running. Both use runc, the
same CNI conflist (bridge + host-local + portmap, a bridge and a private subnet
of the benchmark's own) and the cgroupfs driver. See bench/README.md. Run
through bench/cri.sh."""

from __future__ import annotations

import argparse
import contextlib
import functools
import gzip
import hashlib
import io
import ipaddress
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import httpx
from _common import (
    MB,
    WORK,
    Children,
    Registry,
    Scratch,
    ToolError,
    bench_lock,
    descendants,
    install_signal_handlers,
    kill_processes,
    loadavg,
    loop_available,
    median,
    memory_of,
    mentioning,
    mounts_under,
    processes,
    remove_cgroup,
    remove_tree,
    run_containerd,
    run_registry,
    safe_env,
    same_namespaces,
    tail,
)
from cri_api.v1 import api_pb2, api_pb2_grpc

NET_NAME = "hawser-bench-cri"  # the CNI network; its iptables rules carry it in their comments
BRIDGE = "hwbcri0"
SUBNETS = ("10.231.0.0/16", "10.232.0.0/16", "10.233.0.0/16", "172.29.0.0/16")
CGROUP = "hawser-bench-cri"  # every pod's cgroup parent is /hawser-bench-cri/<runtime>/<pod>
POD_NAMESPACE = "hawser-bench"
BUSYBOX = ("bench/busybox", "cri")
SMALL = ("bench/small", "cri")  # pulled and removed by the image loop: one small layer of its own
# The image loop's calls, as the report names them.
IMAGE_CALLS = ("PullImage (present)", "PullImage (absent)", "ImageStatus", "ListImages", "RemoveImage",
               "ContainerStatus", "PodSandboxStatus", "ListContainers", "Version")
PAUSE = ("bench/pause", "catatonit")
CONTAINER_CMD = ("/bin/sleep", "3600")
STOP_TIMEOUT = 0  # seconds; see the README: `sleep` as pid 1 ignores SIGTERM
STEPS = ("RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer", "StopPodSandbox",
         "RemovePodSandbox")
TARGET_RATIO = 1.0  # hawser pods/s over containerd's
TARGET_CALL_RATIO = 1.0  # hawser's time per image or status call over containerd's
FLOOR_CALL = "Version"  # timed beside them: what each gRPC stack costs for a call that does no work
TARGET_IDLE_RSS = 60 * MB
TARGET_RUNNING_RSS = 150 * MB
SCRATCH_SIZE = 4 << 30  # sparse: only what is written takes space
# Host directories a runtime may create whatever its config says (containerd 1.6's shims put their
# sockets in /run/containerd/s; libcni caches results in /var/lib/cni): removed if this run made them.
HOST_DIRS = (Path("/run/containerd/s"), Path("/run/containerd"), Path("/var/lib/cni/results"), Path("/var/lib/cni"))
CNI_RESULTS = Path("/var/lib/cni/results")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
SUN_PATH_MAX = 107


class Unimplemented(ToolError):
    """The runtime answered UNIMPLEMENTED."""

    def __init__(self, method: str) -> None:
        super().__init__(f"UNIMPLEMENTED ({method})")
        self.method = method


# --------------------------------------------------------------------------- results


@dataclass
class Memory:
    """One runtime's memory at one moment: the daemon, and its helpers outside the containers."""

    daemon_rss: int = 0
    daemon_pss: int = 0
    helpers: dict[str, int] = field(default_factory=dict)  # program name -> count (shims, conmons)
    helpers_rss: int = 0
    helpers_pss: int = 0
    inside: int = 0  # processes in other pid/mount namespaces below them: the containers (and pauses)

    @property
    def total_rss(self) -> int:
        return self.daemon_rss + self.helpers_rss

    @property
    def total_pss(self) -> int:
        return self.daemon_pss + self.helpers_pss

    def summary(self) -> dict[str, Any]:
        return {**self.__dict__, "total_rss": self.total_rss, "total_pss": self.total_pss}


@dataclass
class Result:
    name: str
    version: str = ""
    seq_pods: list[float] = field(default_factory=list)  # seconds per pod (the seven calls)
    seq_steps: dict[str, list[float]] = field(default_factory=dict)
    par_walls: list[float] = field(default_factory=list)  # seconds per round of `parallel` pods
    par_steps: dict[str, list[float]] = field(default_factory=dict)
    memory: dict[str, Memory] = field(default_factory=dict)  # "fresh", "idle", "running"
    image_calls: dict[str, list[float]] = field(default_factory=dict)  # the image loop: seconds per call
    running: int = 0  # pods started for the "running" figure
    running_start: float = 0.0
    running_stop: float = 0.0
    error: str | None = None
    unimplemented: str | None = None
    # The container methods answered UNIMPLEMENTED but the pod methods work: the sequential phase
    # goes on with pods without containers (RunPodSandbox, StopPodSandbox, RemovePodSandbox).
    sandbox_only: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.unimplemented is None

    @property
    def active(self) -> bool:
        """Still measured in the sequential phase (fully, or its pod methods only)."""
        return self.error is None and (self.unimplemented is None or self.sandbox_only)

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = why

    def summary(self, parallel: int) -> dict[str, Any]:
        d: dict[str, Any] = {
            "version": self.version, "ok": self.ok, "error": self.error, "unimplemented": self.unimplemented,
            "sandbox_only": self.sandbox_only,
            "notes": sorted(set(self.notes)),
            "sequential": {"pods": len(self.seq_pods), "seconds_per_pod": self.seq_pods,
                           "pods_per_second": pods_per_second(self.seq_pods),
                           "median_per_step": {k: median(v) for k, v in self.seq_steps.items() if v}},
            "parallel": {"pods_per_round": parallel, "walls": self.par_walls,
                         "median_wall": median(self.par_walls) if self.par_walls else None,
                         "pods_per_second": parallel / median(self.par_walls) if self.par_walls else None,
                         "median_per_step": {k: median(v) for k, v in self.par_steps.items() if v}},
            "memory": {k: v.summary() for k, v in self.memory.items()},
            "image_loop": {"median_per_call": {k: median(v) for k, v in self.image_calls.items() if v},
                           "seconds_per_call": self.image_calls},
            "running": {"pods": self.running, "start_seconds": self.running_start, "stop_seconds": self.running_stop},
        }
        return d


def pods_per_second(walls: Sequence[float]) -> float | None:
    return len(walls) / sum(walls) if walls else None


# --------------------------------------------------------------------------- images (built here, no downloads)

FIXED_MTIME = 1_700_000_000


def _layer(files: Sequence[tuple[str, str, bytes | str, int]]) -> bytes:
    """A deterministic layer tar: (kind "dir"/"file"/"link", path, data or link target, mode)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for kind, path, data, mode in files:
            info = tarfile.TarInfo(path)
            info.mtime, info.mode, info.uid, info.gid = FIXED_MTIME, mode, 0, 0
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, str(data)
                tar.addfile(info)
            else:
                raw = data if isinstance(data, bytes) else data.encode()
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def busybox_layer() -> bytes:
    """/bin/busybox from busybox-static with the applets the benchmark uses, a minimal /etc."""
    exe = Path("/bin/busybox")
    if not exe.is_file():
        raise ToolError("/bin/busybox not found (busybox-static; run bench/cri.sh)")
    entries: list[tuple[str, str, bytes | str, int]] = [("dir", d, "", m) for d, m in (
        ("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("proc", 0o555), ("root", 0o700), ("sys", 0o555),
        ("tmp", 0o1777), ("var", 0o755))]
    entries.append(("file", "bin/busybox", exe.read_bytes(), 0o755))
    entries += [("link", f"bin/{a}", "busybox", 0o777) for a in ("sh", "sleep", "true", "cat", "ls")]
    entries.append(("file", "etc/passwd", "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
                    0o644))
    entries.append(("file", "etc/group", "root:x:0:\nnogroup:x:65534:\n", 0o644))
    return _layer(entries)


def pause_layer() -> bytes:
    """/pause: Debian's static catatonit, which `-P` turns into a pause process."""
    exe = Path(shutil.which("catatonit") or "/usr/bin/catatonit")
    if not exe.is_file():
        raise ToolError("catatonit not found (run bench/cri.sh)")
    return _layer([("file", "pause", exe.read_bytes(), 0o755)])


def _arch() -> str:
    m = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(m, m)


def build_image(layer: bytes, config: Mapping[str, Any]) -> tuple[bytes, dict[str, bytes]]:
    """(manifest, {digest: blob}) of a one-layer OCI image."""
    blob = gzip.compress(layer, compresslevel=6, mtime=0)
    blobs: dict[str, bytes] = {}

    def add(data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return digest

    layer_digest = add(blob)
    cfg = json.dumps({
        "created": "2026-01-01T00:00:00Z", "architecture": _arch(), "os": "linux", "config": dict(config),
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }, sort_keys=True).encode()
    cfg_digest = add(cfg)
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_digest, "size": len(cfg)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest,
                    "size": len(blob)}],
    }, sort_keys=True).encode()
    return manifest, blobs


def push_image(reg: Registry, repo: str, tag: str, manifest: bytes, blobs: Mapping[str, bytes]) -> str:
    """Push over plain HTTP (distribution API v2, monolithic uploads); returns the reference."""
    with httpx.Client(trust_env=False, timeout=60) as client:
        for digest, data in blobs.items():
            if client.head(reg.url(f"/v2/{repo}/blobs/{digest}")).status_code == 200:
                continue
            r = client.post(reg.url(f"/v2/{repo}/blobs/uploads/"))
            if r.status_code != 202:
                raise ToolError(f"registry: starting an upload to {repo}: HTTP {r.status_code} {r.text[:200]}")
            location = r.headers["location"]
            url = location if location.startswith("http") else reg.url(location)
            url += ("&" if "?" in url else "?") + f"digest={digest}"
            r = client.put(url, content=data,
                           headers={"content-type": "application/octet-stream"})
            if r.status_code != 201:
                raise ToolError(f"registry: uploading {digest} to {repo}: HTTP {r.status_code} {r.text[:200]}")
        r = client.put(reg.url(f"/v2/{repo}/manifests/{tag}"), content=manifest,
                       headers={"content-type": "application/vnd.oci.image.manifest.v1+json"})
        if r.status_code != 201:
            raise ToolError(f"registry: pushing the manifest {repo}:{tag}: HTTP {r.status_code} {r.text[:200]}")
    return f"{reg.host}/{repo}:{tag}"


# --------------------------------------------------------------------------- the network both runtimes use


def pick_subnet() -> str:
    """The first of SUBNETS that overlaps no address or route of this host."""
    used = []
    for argv in (["ip", "-o", "-4", "addr", "show"], ["ip", "-4", "route", "show", "table", "all"]):
        out = subprocess.run(argv, capture_output=True, text=True).stdout
        for word in out.split():
            with contextlib.suppress(ValueError):
                if "/" in word or word.count(".") == 3:
                    used.append(ipaddress.ip_network(word, strict=False))
    for cand in SUBNETS:
        net = ipaddress.ip_network(cand)
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return cand
    raise ToolError(f"every candidate subnet {SUBNETS} overlaps an address or route of this host")


def write_conflist(conf_dir: Path, ipam_dir: Path, subnet: str) -> Path:
    """The one CNI config both runtimes read: bridge + host-local + portmap, our own
    bridge, subnet and IPAM state directory."""
    conf_dir.mkdir(parents=True, exist_ok=True)
    ipam_dir.mkdir(parents=True, exist_ok=True)
    path = conf_dir / "10-hawser-bench-cri.conflist"
    path.write_text(json.dumps({
        "cniVersion": "1.0.0",
        "name": NET_NAME,
        "plugins": [
            {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": True, "hairpinMode": True,
             "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "routes": [{"dst": "0.0.0.0/0"}],
                      "dataDir": str(ipam_dir)}},
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }, indent=2) + "\n")
    return path


def _quiet(argv: Sequence[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, env=safe_env(),
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return subprocess.CompletedProcess(list(argv), 1, "", str(e))


IPT_TABLES = ("nat", "filter", "mangle")


def iptables_snapshot() -> set[str]:
    """Rules and chains of the IPv4 tables the CNI plugins touch, counters left out."""
    lines: set[str] = set()
    for table in IPT_TABLES:
        r = _quiet(["iptables-save", "-t", table])
        for line in r.stdout.splitlines():
            if line.startswith(":"):
                lines.add(f"{table} {line.split()[0]}")
            elif line.startswith("-A "):
                lines.add(f"{table} {line}")
    return lines


def remove_our_iptables() -> list[str]:
    """Delete every rule that names our network in its comment, and the chains holding them
    (the CNI-<hash> chains of ipMasq, portmap's per-pod chains); returns what it did."""
    notes: list[str] = []
    if not shutil.which("iptables-save"):
        return notes
    builtin = {"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}
    for table in IPT_TABLES:
        saved = _quiet(["iptables-save", "-t", table]).stdout.splitlines()
        rules = [shlex.split(line) for line in saved if line.startswith("-A ") and NET_NAME in line]
        chains = {r[1] for r in rules if r[1] not in builtin}
        # Jumps to those chains from anywhere, then the rules of ours in built-in chains, then the chains.
        jumps = [shlex.split(line) for line in saved if line.startswith("-A ") and NET_NAME not in line
                 and any(f"-j {c}" in line or f"-g {c}" in line for c in chains)]
        removed = 0
        for rule in [*jumps, *(r for r in rules if r[1] in builtin)]:
            if _quiet(["iptables", "-w", "-t", table, "-D", *rule[1:]]).returncode == 0:
                removed += 1
        for chain in sorted(chains):
            _quiet(["iptables", "-w", "-t", table, "-F", chain])
            if _quiet(["iptables", "-w", "-t", table, "-X", chain]).returncode == 0:
                removed += 1
        if removed:
            notes.append(f"iptables {table}: removed {removed} rules/chains of {NET_NAME}")
    return notes


def remove_our_links() -> list[str]:
    """Veths still enslaved to our bridge, then the bridge."""
    notes: list[str] = []
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        return notes
    out = _quiet(["ip", "-o", "link", "show", "master", BRIDGE]).stdout
    veths = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]
    for v in veths:
        _quiet(["ip", "link", "del", v])
    if veths:
        notes.append(f"deleted {len(veths)} veths left on {BRIDGE}")
    r = _quiet(["ip", "link", "del", BRIDGE])
    if r.returncode != 0:
        notes.append(f"cannot delete bridge {BRIDGE}: {r.stderr.strip()}")
    return notes


def remove_cni_results() -> list[str]:
    """libcni's cached results for our network (containerd's go-cni keeps them in /var/lib/cni)."""
    found = sorted(CNI_RESULTS.glob(f"{NET_NAME}-*")) if CNI_RESULTS.is_dir() else []
    for p in found:
        p.unlink(missing_ok=True)
    return [f"removed {len(found)} cached CNI results under {CNI_RESULTS}"] if found else []


# --------------------------------------------------------------------------- the CRI client


def _code(e: grpc.RpcError) -> grpc.StatusCode | None:
    return e.code() if isinstance(e, grpc.Call) else None


def _details(e: grpc.RpcError) -> str:
    return (e.details() or "") if isinstance(e, grpc.Call) else str(e)


class Endpoint:
    """One runtime behind its CRI socket, and the pods the benchmark asks it for."""

    def __init__(self, key: str, address: Path, log_dir: Path, timeout: float) -> None:
        self.key = key  # "containerd" or "hawser"
        self.address = address
        self.log_dir = log_dir
        self.timeout = timeout
        self.channel = grpc.insecure_channel(f"unix:{address}", options=[("grpc.enable_http_proxy", 0)])
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.images = api_pb2_grpc.ImageServiceStub(self.channel)
        self.image_ref = ""
        self._seq = 0
        self._lock = threading.Lock()

    def close(self) -> None:
        self.channel.close()

    def call(self, method: str, request: Any, timings: dict[str, list[float]] | None = None,
             timeout: float | None = None) -> Any:
        fn = getattr(self.runtime, method)
        t0 = time.perf_counter()
        try:
            resp = fn(request, timeout=timeout or self.timeout)
        except grpc.RpcError as e:
            code = _code(e)
            if code == grpc.StatusCode.UNIMPLEMENTED:
                raise Unimplemented(method) from None
            name = code.name if code else "error"
            raise ToolError(f"{self.key} {method}: {name}: {_details(e)[:500]}") from None
        if timings is not None:
            timings.setdefault(method, []).append(time.perf_counter() - t0)
        return resp

    def wait_ready(self, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> str:
        """Until Version answers and Status says RuntimeReady and NetworkReady; returns the version line."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ToolError(f"{self.key} exited ({proc.returncode}) while starting:\n{tail(log)}")
            try:
                v = self.runtime.Version(api_pb2.VersionRequest(), timeout=2)
                st = self.runtime.Status(api_pb2.StatusRequest(), timeout=2)
                conds = {c.type: c for c in st.status.conditions}
                if all(k in conds and conds[k].status for k in ("RuntimeReady", "NetworkReady")):
                    return f"{v.runtime_name} {v.runtime_version}"
                last = "; ".join(f"{c.type}={c.status} {c.reason} {c.message}".strip() for c in conds.values())
            except grpc.RpcError as e:
                last = _details(e) or str(_code(e))
            time.sleep(0.1)
        raise ToolError(f"{self.key} not ready within {timeout:.0f} s ({last}):\n{tail(log)}")

    def image_call(self, method: str, request: Any, timings: dict[str, list[float]], label: str = "") -> Any:
        """An ImageService call, timed under ``label`` (its method's name by default)."""
        t0 = time.perf_counter()
        try:
            resp = getattr(self.images, method)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            code = _code(e)
            raise ToolError(f"{self.key} {method}: {code.name if code else 'error'}: {_details(e)[:500]}") from None
        timings.setdefault(label or method, []).append(time.perf_counter() - t0)
        return resp

    def pull(self, ref: str) -> None:
        try:
            self.images.PullImage(api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=ref)), timeout=120)
        except grpc.RpcError as e:
            code = _code(e)
            raise ToolError(f"{self.key} PullImage {ref}: {code.name if code else 'error'}: {_details(e)[:500]}") \
                from None

    # --- requests ------------------------------------------------------------------

    def _next(self, phase: str) -> str:
        with self._lock:
            self._seq += 1
            return f"{phase}-{self._seq}"

    def pod_config(self, phase: str) -> api_pb2.PodSandboxConfig:
        """What a kubelet sends for a BestEffort pod (cgroupfs driver, no seccomp default)."""
        name = self._next(phase)
        uid = str(uuid.uuid4())
        log_dir = self.log_dir / f"{POD_NAMESPACE}_{name}_{uid}"
        return api_pb2.PodSandboxConfig(
            metadata=api_pb2.PodSandboxMetadata(name=name, uid=uid, namespace=POD_NAMESPACE, attempt=0),
            hostname=name,
            log_directory=str(log_dir),
            labels={"app": "hawser-bench-cri", "io.kubernetes.pod.name": name},
            linux=api_pb2.LinuxPodSandboxConfig(
                cgroup_parent=f"/{CGROUP}/{self.key}/pod{uid}",
                security_context=api_pb2.LinuxSandboxSecurityContext(
                    namespace_options=api_pb2.NamespaceOption(network=api_pb2.POD, pid=api_pb2.CONTAINER,
                                                              ipc=api_pb2.POD),
                    seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Unconfined),
                ),
            ),
        )

    def container_config(self) -> api_pb2.ContainerConfig:
        return api_pb2.ContainerConfig(
            metadata=api_pb2.ContainerMetadata(name="sleep", attempt=0),
            image=api_pb2.ImageSpec(image=self.image_ref),
            command=list(CONTAINER_CMD[:1]),
            args=list(CONTAINER_CMD[1:]),
            log_path="sleep/0.log",
            labels={"io.kubernetes.container.name": "sleep"},
            linux=api_pb2.LinuxContainerConfig(
                resources=api_pb2.LinuxContainerResources(cpu_shares=2, oom_score_adj=1000),
                security_context=api_pb2.LinuxContainerSecurityContext(
                    namespace_options=api_pb2.NamespaceOption(network=api_pb2.POD, pid=api_pb2.CONTAINER,
                                                              ipc=api_pb2.POD),
                    seccomp=api_pb2.SecurityProfile(profile_type=api_pb2.SecurityProfile.Unconfined),
                ),
            ),
        )

    # --- pods ----------------------------------------------------------------------

    def start_pod(self, phase: str, timings: dict[str, list[float]] | None = None) -> tuple[str, str]:
        """RunPodSandbox, CreateContainer, StartContainer; returns (pod id, container id).
        On failure, what was made is removed (untimed) before the error goes up."""
        cfg = self.pod_config(phase)
        pod_id = self.call("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=cfg), timings).pod_sandbox_id
        try:
            ctr_id = self.call("CreateContainer", api_pb2.CreateContainerRequest(
                pod_sandbox_id=pod_id, config=self.container_config(), sandbox_config=cfg), timings).container_id
            self.call("StartContainer", api_pb2.StartContainerRequest(container_id=ctr_id), timings)
        except ToolError as e:
            # A container method that is not there yet: the pod's own stop and remove are still timed.
            self.discard(pod_id, timings if isinstance(e, Unimplemented) else None)
            raise
        return pod_id, ctr_id

    def sandbox_lifecycle(self, phase: str, timings: dict[str, list[float]]) -> float:
        """A pod without containers: RunPodSandbox, StopPodSandbox, RemovePodSandbox."""
        t0 = time.perf_counter()
        pod_id = self.call("RunPodSandbox", api_pb2.RunPodSandboxRequest(config=self.pod_config(phase)),
                           timings).pod_sandbox_id
        self.discard(pod_id, timings, strict=True)
        return time.perf_counter() - t0

    def lifecycle(self, phase: str, timings: dict[str, list[float]]) -> float:
        """The seven calls for one pod; returns their summed latency."""
        t0 = time.perf_counter()
        pod_id, ctr_id = self.start_pod(phase, timings)
        try:
            self.call("StopContainer", api_pb2.StopContainerRequest(container_id=ctr_id, timeout=STOP_TIMEOUT),
                      timings)
            self.call("RemoveContainer", api_pb2.RemoveContainerRequest(container_id=ctr_id), timings)
            self.call("StopPodSandbox", api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id), timings)
            self.call("RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timings)
        except ToolError:
            self.discard(pod_id)
            raise
        return time.perf_counter() - t0

    def discard(self, pod_id: str, timings: dict[str, list[float]] | None = None, *,
                strict: bool = False) -> list[str]:
        """Stop and remove a pod and its containers: best effort (errors become notes)
        unless ``strict``."""
        notes = []
        for method, req in (("StopPodSandbox", api_pb2.StopPodSandboxRequest(pod_sandbox_id=pod_id)),
                            ("RemovePodSandbox", api_pb2.RemovePodSandboxRequest(pod_sandbox_id=pod_id))):
            try:
                self.call(method, req, timings)
            except ToolError as e:
                if strict:
                    raise
                notes.append(f"{self.key}: {method} {pod_id[:12]}: {str(e).splitlines()[0][:200]}")
        return notes

    def remove_all(self) -> list[str]:
        """Every pod (and container) the runtime knows; idempotent, best effort."""
        notes: list[str] = []
        try:
            pods = self.call("ListPodSandbox", api_pb2.ListPodSandboxRequest(), timeout=30).items
        except ToolError as e:
            return [f"{self.key}: cannot list pods: {str(e).splitlines()[0][:200]}"]
        for pod in pods:
            notes += self.discard(pod.id)
        with contextlib.suppress(ToolError):
            for c in self.call("ListContainers", api_pb2.ListContainersRequest(), timeout=30).containers:
                with contextlib.suppress(ToolError):
                    self.call("RemoveContainer", api_pb2.RemoveContainerRequest(container_id=c.id))
        if pods:
            notes.insert(0, f"{self.key}: removed {len(pods)} pods left over")
        return notes


# --------------------------------------------------------------------------- the two daemons


def containerd_cri_config(base: Path, *, sandbox_image: str, conf_dir: Path, certs: Path) -> Path:
    """containerd 1.6's config: everything under ``base``, the CRI plugin on, configured
    like hawserd (runc, cgroupfs, our CNI conflist, 127.0.0.1 registries only)."""
    from _common import containerd_config

    cri = '[plugins."io.containerd.grpc.v1.cri"'
    return containerd_config(base, cri=(
        f"{cri}]\n"
        f'  sandbox_image = "{sandbox_image}"\n'
        "  restrict_oom_score_adj = true\n"  # CAP_SYS_RESOURCE is withheld here
        "  netns_mounts_under_state_dir = true\n"  # pinned netns under our state dir, as hawserd's
        "  disable_apparmor = true\n"
        "  enable_selinux = false\n"
        "  disable_tcp_service = true\n"
        '  stream_server_address = "127.0.0.1"\n'
        '  stream_server_port = "0"\n'
        "  tolerate_missing_hugetlb_controller = true\n"
        f"{cri}.containerd]\n"
        '  snapshotter = "overlayfs"\n'
        '  default_runtime_name = "runc"\n'
        f"{cri}.containerd.runtimes.runc]\n"
        '  runtime_type = "io.containerd.runc.v2"\n'
        f"{cri}.containerd.runtimes.runc.options]\n"
        "  SystemdCgroup = false\n"
        f'  Root = "{base}/runc"\n'
        f"{cri}.cni]\n"
        '  bin_dir = "/usr/lib/cni"\n'
        f'  conf_dir = "{conf_dir}"\n'
        "  max_conf_num = 1\n"
        f"{cri}.registry]\n"
        f'  config_path = "{certs}"\n'
    ))


def write_hosts_toml(certs: Path, host: str) -> None:
    """certs.d/<host>/hosts.toml: the local registry over plain HTTP (read by both runtimes)."""
    d = certs / host
    d.mkdir(parents=True, exist_ok=True)
    (d / "hosts.toml").write_text(f'server = "http://{host}"\n\n[host."http://{host}"]\n'
                                  '  capabilities = ["pull", "resolve"]\n')


@dataclass
class Daemon:
    """A running runtime: its process, where it keeps its things, its CRI client."""

    key: str
    base: Path
    proc: subprocess.Popen[bytes]
    log: Path
    endpoint: Endpoint
    result: Result

    @property
    def markers(self) -> list[str]:
        return [str(self.base) + "/"]


@contextlib.contextmanager
def start_containerd(children: Children, base: Path, *, sandbox_image: str, conf_dir: Path, certs: Path,
                     timeout: float, result: Result) -> Iterator[Daemon]:
    cfg = containerd_cri_config(base, sandbox_image=sandbox_image, conf_dir=conf_dir, certs=certs)
    with run_containerd(children, base, config=cfg, timeout=timeout) as inst:
        ep = Endpoint("containerd", base / "containerd.sock", base / "logs", timeout)
        try:
            result.version = ep.wait_ready(inst.proc, inst.log, timeout)
            yield Daemon("containerd", base, inst.proc, inst.log, ep, result)
        finally:
            ep.close()


@contextlib.contextmanager
def start_hawserd(children: Children, base: Path, *, conf_dir: Path, certs: Path, timeout: float,
                  result: Result) -> Iterator[Daemon]:
    """hawserd as the e2e tests start it: its own root, state, socket and config file."""
    config = base / "config.toml"
    config.write_text("")
    log = base.parent / f"{base.name}.hawserd.log"
    argv = [sys.executable, "-m", "hawser.daemon", "--config", str(config), "--root", str(base / "root"),
            "--state", str(base / "state"), "--address", str(base / "hawser.sock"), "--registry-config-dir",
            str(certs), "--cni-conf-dir", str(conf_dir), "--cni-bin-dir", "/usr/lib/cni", "--log-level", "warning",
            # Metrics on, as by default, on a port of its own; no containerd socket outside the scratch dir.
            "--metrics-address", "127.0.0.1:0", "--containerd-address", ""]
    with open(log, "wb") as logf:
        proc = children.start(argv, stdout=logf, stderr=subprocess.STDOUT)
    ep = Endpoint("hawser", base / "hawser.sock", base / "logs", timeout)
    try:
        result.version = ep.wait_ready(proc, log, timeout)
        yield Daemon("hawser", base, proc, log, ep, result)
    finally:
        ep.close()
        children.stop(proc, grace=20)
        if proc.returncode not in (0, None):
            result.notes.append(f"hawserd exited with {proc.returncode} on SIGTERM")


# --------------------------------------------------------------------------- processes and memory


def _prog(table: Mapping[int, Any], pid: int) -> str:
    p = table[pid]
    return os.path.basename(p.argv[0]) if p.argv and p.argv[0] else str(p.comm)


def measure_memory(d: Daemon) -> Memory:
    """The daemon's RSS/PSS (smaps_rollup), and the processes outside the containers that
    belong to it: those naming its directory (shims, conmons) and what runs below them in
    our pid and mount namespaces. Processes in other namespaces are counted only."""
    m = Memory()
    got = memory_of(d.proc.pid)
    if got:
        m.daemon_rss, m.daemon_pss = got
    table = processes()
    tree = descendants(table, mentioning(table, d.markers)) - {d.proc.pid}
    # hawserd's own short-lived children (a CNI plugin, runc) are helpers too; the registry is not ours.
    outside = [p for p in tree if p in table and same_namespaces(p)]
    m.inside = len(tree) - len(outside)
    m.helpers = dict(Counter(_prog(table, p) for p in outside).most_common())
    for p in outside:
        got = memory_of(p)
        if got:
            m.helpers_rss += got[0]
            m.helpers_pss += got[1]
    return m


def kill_leftovers(markers: Sequence[str], what: str) -> list[str]:
    """SIGKILL whatever still names one of ``markers`` in its argv, and what runs below it."""
    table = processes()
    pids = descendants(table, mentioning(table, markers))
    if not pids:
        return []
    names = sorted(f"{_prog(table, p)}[{p}]" for p in pids if p in table)
    left = kill_processes(pids)
    notes = [f"{what}: killed {len(pids)} processes: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}"]
    if left:
        notes.append(f"{what}: processes that would not die: {sorted(left)}")
    return notes


# --------------------------------------------------------------------------- phases


CONTAINER_METHODS = ("CreateContainer", "StartContainer", "StopContainer", "RemoveContainer")


def _guarded(d: Daemon, what: str, fn: Callable[[], None], *, sandbox_only: bool = False) -> None:
    """Runs a phase step of one runtime; a failure takes that runtime out of the rest.
    ``sandbox_only``: the step can go on with pods without containers."""
    r = d.result
    if not (r.ok or (sandbox_only and r.active)):
        return
    try:
        fn()
    except Unimplemented as e:
        if r.unimplemented is None:
            r.unimplemented = e.method
        if sandbox_only and not r.sandbox_only and e.method in CONTAINER_METHODS:
            r.sandbox_only = True
            r.notes.append(f"{e.method} answered UNIMPLEMENTED: the sequential phase timed pods without "
                           "containers (RunPodSandbox, StopPodSandbox, RemovePodSandbox) instead")
            print(f"   {d.key:<10} UNIMPLEMENTED ({e.method}): pods without containers from now on, "
                  "left out of the other phases", flush=True)
        else:
            r.sandbox_only = False
            print(f"   {d.key:<10} UNIMPLEMENTED ({e.method}): left out of the lifecycle phases", flush=True)
    except ToolError as e:
        r.fail(f"{what}: {e}")
        print(f"   {d.key:<10} FAILED ({what}): {str(e).splitlines()[0][:160]}", flush=True)


def sequential(daemons: Sequence[Daemon], n: int, warmup: int) -> None:
    """``warmup`` untimed then ``n`` timed pods per runtime, alternating pod by pod
    (the first runtime changes every pod)."""
    for i in range(warmup + n):
        order = daemons if i % 2 == 0 else list(reversed(daemons))
        got: list[str] = []
        for d in order:
            timings: dict[str, list[float]] = {}

            def one(d: Daemon = d, timings: dict[str, list[float]] = timings, i: int = i,
                    got: list[str] = got) -> None:
                phase = "warm" if i < warmup else "seq"
                if d.result.sandbox_only:
                    dt = d.endpoint.sandbox_lifecycle(phase, timings)
                else:
                    dt = d.endpoint.lifecycle(phase, timings)
                    if i >= warmup:
                        d.result.seq_pods.append(dt)
                if i >= warmup:
                    for k, v in timings.items():
                        d.result.seq_steps.setdefault(k, []).extend(v)
                got.append(f"{d.key}{' (no containers)' if d.result.sandbox_only else ''} {dt * 1000:6.1f} ms")

            _guarded(d, "sequential pods", one, sandbox_only=True)
        if i >= warmup and got and ((i - warmup + 1) % 10 == 0 or i == warmup + n - 1):
            print(f"   {i - warmup + 1:4d}/{n}  " + "  ".join(got), flush=True)


def parallel_round(d: Daemon, k: int) -> None:
    """``k`` pods at once, each through the seven calls on its own thread; the wall time of the round."""
    go = threading.Event()
    errors: list[BaseException] = []
    timings: list[dict[str, list[float]]] = [{} for _ in range(k)]

    def worker(j: int) -> None:
        go.wait()
        try:
            d.endpoint.lifecycle("par", timings[j])
        except BaseException as e:  # handed to the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(j,), name=f"{d.key}-par-{j}", daemon=True) for j in range(k)]
    for t in threads:
        t.start()
    t0 = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        unimpl = [e for e in errors if isinstance(e, Unimplemented)]
        if unimpl:
            raise unimpl[0]
        first = errors[0]
        raise first if isinstance(first, ToolError) else ToolError(f"{type(first).__name__}: {first}")
    d.result.par_walls.append(wall)
    for t_ in timings:
        for key, v in t_.items():
            d.result.par_steps.setdefault(key, []).extend(v)


def parallel(daemons: Sequence[Daemon], k: int, rounds: int) -> None:
    for r in range(rounds):
        order = daemons if r % 2 == 0 else list(reversed(daemons))
        for d in order:
            _guarded(d, f"parallel round {r + 1}", functools.partial(parallel_round, d, k))
        got = [f"{d.key} {d.result.par_walls[-1]:6.2f} s" for d in order if d.result.ok and d.result.par_walls]
        print(f"   round {r + 1}/{rounds}  {k} pods  " + "  ".join(got), flush=True)


def image_loop(daemons: Sequence[Daemon], small: str, n: int, warmup: int) -> None:
    """The calls kubelet makes most, one at a time, alternating the runtimes
    round by round: PullImage of an image present and of a small one absent,
    ImageStatus, ListImages, RemoveImage; and with one pod running,
    ContainerStatus, PodSandboxStatus and ListContainers (kubelet's
    relist).  ``warmup`` untimed rounds first."""
    pods: dict[str, tuple[str, str]] = {}
    for d in daemons:
        def start(d: Daemon = d) -> None:
            pods[d.key] = d.endpoint.start_pod("img")
            d.endpoint.pull(small)
        _guarded(d, "image loop set-up", start)
    try:
        for i in range(warmup + n):
            for d in daemons if i % 2 == 0 else list(reversed(daemons)):
                if d.key not in pods:
                    continue
                pod_id, ctr_id = pods[d.key]
                timings: dict[str, list[float]] = {}

                def one(d: Daemon = d, pod_id: str = pod_id, ctr_id: str = ctr_id,
                        timings: dict[str, list[float]] = timings) -> None:
                    e = d.endpoint
                    present = api_pb2.ImageSpec(image=e.image_ref)
                    e.image_call("PullImage", api_pb2.PullImageRequest(image=present), timings, "PullImage (present)")
                    e.image_call("ImageStatus", api_pb2.ImageStatusRequest(image=present), timings)
                    e.image_call("ListImages", api_pb2.ListImagesRequest(), timings)
                    e.image_call("RemoveImage", api_pb2.RemoveImageRequest(image=api_pb2.ImageSpec(image=small)),
                                 timings)
                    e.image_call("PullImage", api_pb2.PullImageRequest(image=api_pb2.ImageSpec(image=small)),
                                 timings, "PullImage (absent)")
                    e.call("ContainerStatus", api_pb2.ContainerStatusRequest(container_id=ctr_id), timings)
                    e.call("PodSandboxStatus", api_pb2.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timings)
                    e.call("ListContainers", api_pb2.ListContainersRequest(), timings)
                    # An RPC that does nothing: what the server and client stacks cost alone.
                    e.call("Version", api_pb2.VersionRequest(), timings)

                _guarded(d, "image loop", one)
                if i >= warmup:
                    for k, v in timings.items():
                        d.result.image_calls.setdefault(k, []).extend(v)
            if i >= warmup and ((i - warmup + 1) % 10 == 0 or i == warmup + n - 1):
                got = [f"{d.key} {sum(median(v) for v in d.result.image_calls.values()) * 1000:6.1f} ms"
                       for d in daemons if d.result.image_calls]
                print(f"   {i - warmup + 1:4d}/{n}  sum of medians  " + "  ".join(got), flush=True)
    finally:
        for d in daemons:
            if d.key in pods:
                for note in d.endpoint.discard(pods[d.key][0]):
                    d.result.notes.append(note)


def running_phase(d: Daemon, n: int, settle: float, workers: int = 4) -> None:
    """``n`` pods with their container running, one after the other; the memory with them
    all; then all stopped and removed (``workers`` at a time, untimed but reported)."""
    r = d.result
    pods: list[str] = []
    try:
        t0 = time.monotonic()
        for i in range(n):
            pod_id, _ = d.endpoint.start_pod("run")
            pods.append(pod_id)
            if (i + 1) % 25 == 0:
                print(f"   {d.key:<10} {i + 1:4d}/{n} pods running ({time.monotonic() - t0:.1f} s)", flush=True)
        r.running = len(pods)
        r.running_start = time.monotonic() - t0
        time.sleep(settle)
        r.memory["running"] = measure_memory(d)
    finally:
        t0 = time.monotonic()
        notes: list[str] = []
        lock = threading.Lock()

        def drain() -> None:
            while True:
                with lock:
                    if not pods:
                        return
                    pod = pods.pop()
                got = d.endpoint.discard(pod)
                with lock:
                    notes.extend(got)

        threads = [threading.Thread(target=drain, daemon=True) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        r.running_stop = time.monotonic() - t0
        r.notes += notes


# --------------------------------------------------------------------------- report


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def _mb(x: float) -> str:
    return f"{x / MB:.1f} MB"


def _ratio(h: float | None, c: float | None) -> str:
    return f"{h / c:.2f}x" if h is not None and c else ""


def report(results: Mapping[str, Result | None], info: Mapping[str, Any], args: argparse.Namespace,
           cleanup: Sequence[str], out: Path) -> dict[str, Any]:
    c, h = results.get("containerd"), results.get("hawser")

    def status(r: Result | None) -> str | None:
        if r is None:
            return "skipped"
        if r.unimplemented:
            return f"UNIMPLEMENTED ({r.unimplemented})"
        if r.error:
            return "FAILED"
        return None

    def val(r: Result | None, value: Callable[[Result], float | None]) -> float | None:
        if r is None:
            return None
        with contextlib.suppress(KeyError, ValueError, ZeroDivisionError):
            return value(r)
        return None

    def row(label: str, value: Callable[[Result], float | None], fmt: Callable[[float], str]) -> None:
        """What was measured (a runtime that stopped part-way shows what it got), and hawser/containerd."""
        cells = []
        for r in (c, h):
            v = val(r, value)
            cells.append("skipped" if r is None else "-" if v is None else fmt(v))
        print(f"  {label:<36} {cells[0]:>14} {cells[1]:>14} {_ratio(val(h, value), val(c, value)):>10}")

    def seq_rate(r: Result) -> float | None:
        return pods_per_second(r.seq_pods)

    def par_wall(r: Result) -> float | None:
        return median(r.par_walls) if r.par_walls else None

    def par_rate(r: Result) -> float | None:
        return args.parallel / median(r.par_walls) if r.par_walls else None

    def mem(key: str, what: str) -> Callable[[Result], float | None]:
        def get(r: Result) -> float | None:
            m = r.memory.get(key)
            return None if m is None else float(getattr(m, what))
        return get

    def step(name: str, where: str) -> Callable[[Result], float | None]:
        def get(r: Result) -> float | None:
            xs = (r.seq_steps if where == "seq" else r.par_steps).get(name)
            return median(xs) if xs else None
        return get

    print()
    print(f"images {info.get('busybox')} (container: {' '.join(CONTAINER_CMD)}), sandbox image for containerd "
          f"{info.get('pause')}")
    print(f"net    {NET_NAME}: bridge {BRIDGE}, {info.get('subnet')}, host-local + portmap; cgroupfs; runc "
          f"{info.get('runc_version', '')}")
    print(f"host   {info.get('cpus')} cpus, {info.get('kernel')}, scratch {info.get('scratch')}, load before "
          f"{info.get('load_before')}, after {info.get('load_after')}")
    for r in (c, h):
        if r is not None and r.version:
            print(f"       {r.name}: {r.version}")
    print()
    for r in (c, h):
        if r is not None and status(r):
            extra = " (pod methods measured on pods without containers)" if r.sandbox_only else ""
            print(f"  {r.name}: {status(r)}{extra}")
    print(f"  {'':<36} {'containerd':>14} {'hawser':>14} {'hawser/ctrd':>10}")
    n = args.pods
    row(f"sequential: {n} pods, pods/s", seq_rate, lambda x: f"{x:.2f}")
    row("  median per pod (7 calls)", lambda r: median(r.seq_pods) if r.seq_pods else None, _ms)
    for s in STEPS:
        row(f"  {s}", step(s, "seq"), _ms)
    row(f"parallel: {args.parallel} pods, wall (median of {args.rounds})", par_wall,
        lambda x: f"{x:.2f} s")
    row("  pods/s", par_rate, lambda x: f"{x:.2f}")
    for s in STEPS:
        row(f"  {s}", step(s, "par"), _ms)
    if args.image_rounds:
        print(f"  image and status calls, median of {args.image_rounds}")
        for name in IMAGE_CALLS:
            row(f"  {name}", lambda r, name=name: median(r.image_calls[name]), _ms)
    row("memory, fresh: daemon RSS", mem("fresh", "daemon_rss"), _mb)
    row("  idle after the phases: daemon RSS", mem("idle", "daemon_rss"), _mb)
    row("  idle after: daemon + helpers RSS", mem("idle", "total_rss"), _mb)
    if args.running:
        row(f"  {args.running} pods running: daemon RSS", mem("running", "daemon_rss"), _mb)
        row("  ... daemon PSS", mem("running", "daemon_pss"), _mb)
        row("  ... shims/conmons RSS", mem("running", "helpers_rss"), _mb)
        row("  ... shims/conmons PSS", mem("running", "helpers_pss"), _mb)
        row("  ... daemon + helpers PSS", mem("running", "total_pss"), _mb)
        row(f"  time to start {args.running} pods", lambda r: r.running_start if r.running else None,
            lambda x: f"{x:.1f} s")
        row("  time to remove them (4 at once)", lambda r: r.running_stop if r.running else None,
            lambda x: f"{x:.1f} s")
        for r in (c, h):
            m = r.memory.get("running") if r else None
            if r is not None and m is not None:
                helpers = ", ".join(f"{k} x{v}" for k, v in m.helpers.items()) or "none"
                print(f"    {r.name}: {r.running} pods, {m.inside} processes inside them; outside: {helpers}")
    print()
    ratios: dict[str, Any] = {"sequential_throughput": None, "parallel_throughput": None}
    if c and h and c.ok and h.ok:
        cs, hs = seq_rate(c), seq_rate(h)
        cp, hp = par_rate(c), par_rate(h)
        ratios["sequential_throughput"] = hs / cs if hs and cs else None
        ratios["parallel_throughput"] = hp / cp if hp and cp else None
        for label, v in (("sequential", ratios["sequential_throughput"]),
                         (f"parallel-{args.parallel}", ratios["parallel_throughput"])):
            if v is not None:
                print(f"  hawser/containerd throughput, {label}: {v:.2f}x  (target >= {TARGET_RATIO:.1f}: "
                      f"{'met' if v >= TARGET_RATIO else 'MISSED'})")
        calls = {}
        for name in IMAGE_CALLS:
            if c.image_calls.get(name) and h.image_calls.get(name):
                calls[name] = median(h.image_calls[name]) / median(c.image_calls[name])
        if calls:
            ratios["image_calls"] = calls
            # Version is the reference (an RPC that does nothing), not a call with a target.
            targeted = {k: v for k, v in calls.items() if k != FLOOR_CALL}
            missed = [f"{k} {v:.2f}x" for k, v in targeted.items() if v > TARGET_CALL_RATIO]
            print(f"  hawser/containerd time per image or status call: worst {max(targeted.values()):.2f}x  "
                  f"(target <= {TARGET_CALL_RATIO:.1f} each: {'met' if not missed else 'MISSED: ' + ', '.join(missed)})")
            if FLOOR_CALL in calls:
                floor = median(h.image_calls[FLOOR_CALL]) * 1000
                under = [k for k in targeted if median(c.image_calls[k]) * 1000 <= floor]
                print(f"  hawserd's Version (no work) takes {floor:.2f} ms; containerd answers "
                      f"{', '.join(under) or 'none'} in that time or less")
    elif h is not None and not h.ok:
        why = (f"UNIMPLEMENTED ({h.unimplemented})" if h.unimplemented
               else f"FAILED: {(h.error or '').splitlines()[0][:150]}")
        print(f"  hawser: {why}; no throughput ratio")
    if h is not None:
        for key, label in (("fresh", "fresh"), ("idle", "idle after the phases")):
            m = h.memory.get(key)
            if m is not None:
                print(f"  hawserd RSS {label}: {_mb(m.daemon_rss)}  (target <= {_mb(TARGET_IDLE_RSS)}: "
                      f"{'met' if m.daemon_rss <= TARGET_IDLE_RSS else 'MISSED'})")
        m = h.memory.get("running")
        if m is not None:
            print(f"  hawserd RSS with {h.running} pods running: {_mb(m.daemon_rss)}  (target <= "
                  f"{_mb(TARGET_RUNNING_RSS)}: {'met' if m.daemon_rss <= TARGET_RUNNING_RSS else 'MISSED'})")
    for r in (c, h):
        if r is None:
            continue
        for note in sorted(set(r.notes)):
            print(f"  note ({r.name}): {note}")
    for note in cleanup:
        print(f"  cleanup: {note}")
    for r in (c, h):
        if r is not None and r.error:
            print(f"\n{r.name} FAILED:\n{r.error}")
    doc = {
        **info,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "container_command": list(CONTAINER_CMD),
        "stop_timeout": STOP_TIMEOUT,
        "results": {k: (v.summary(args.parallel) if v else None) for k, v in results.items()},
        "ratios_hawser_over_containerd": ratios,
        "cleanup": list(cleanup),
        "targets": {"throughput_ratio": TARGET_RATIO, "hawserd_idle_rss": TARGET_IDLE_RSS,
                    "hawserd_running_rss": TARGET_RUNNING_RSS, "running_pods": 100},
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {out}")
    return doc


# --------------------------------------------------------------------------- main


def _version(argv: list[str]) -> str:
    r = _quiet(argv, timeout=20)
    lines = (r.stdout or r.stderr).strip().splitlines()
    return lines[0] if lines else ""


def _none(fn: Callable[[Path], None], arg: Path) -> list[str]:
    fn(arg)
    return []


def _collect(notes: list[str], fn: Callable[[], list[str]]) -> None:
    """A clean-up step for an ExitStack: its findings and failures become notes, never exceptions."""
    try:
        notes.extend(fn())
    except (ToolError, OSError) as e:
        notes.append(str(e))


def save_host_state(path: Path) -> None:
    """What the run may change on the host and must put back, written before anything runs,
    so that the next run can put it back if this one is killed: ip_forward, the host
    directories that do not exist yet."""
    path.write_text(json.dumps({"ip_forward": IP_FORWARD.read_text().strip(),
                                "created_dirs": [str(d) for d in HOST_DIRS if not d.exists()]}) + "\n")


def clean_host(runs_dir: Path, state_file: Path) -> list[str]:
    """Everything this benchmark (or an interrupted earlier run) may have left on the host:
    processes, cgroups, mounts and scratch space, veths and the bridge, iptables rules,
    cached CNI results; then what ``state_file`` recorded (the ip_forward sysctl, host
    directories the run created). Returns notes; never raises."""
    notes: list[str] = []
    steps: list[tuple[str, Callable[[], list[str]]]] = [
        ("processes", lambda: kill_leftovers([str(runs_dir) + "/"], "leftover")),
        ("cgroups", lambda: [f"cgroup not removed: {x}" for x in remove_cgroup(CGROUP)]),
        ("scratch", lambda: _none(remove_tree, runs_dir)),
        ("links", remove_our_links),
        ("iptables", remove_our_iptables),
        ("cni results", remove_cni_results),
    ]
    for what, fn in steps:
        try:
            notes += fn()
        except (ToolError, OSError) as e:
            notes.append(f"{what}: {e}")
    try:
        state = json.loads(state_file.read_text())
    except FileNotFoundError:
        return notes
    except (OSError, ValueError) as e:
        return [*notes, f"{state_file}: {e}"]
    # The bridge plugin (isGateway) turns IPv4 forwarding on; put back what the host had,
    # unless pods of someone else (interfaces on other bridges) may be relying on it by now.
    orig = str(state.get("ip_forward", ""))
    with contextlib.suppress(OSError):
        if orig in ("0", "1") and IP_FORWARD.read_text().strip() != orig:
            others = sorted(p.parent.name for p in Path("/sys/class/net").glob("*/master"))
            if others:
                notes.append(f"net.ipv4.ip_forward left at 1 (was {orig}): interfaces on other bridges "
                             f"({', '.join(others[:4])}) may need it")
            else:
                IP_FORWARD.write_text(orig + "\n")
                notes.append(f"net.ipv4.ip_forward set back to {orig}")
    for d in map(Path, state.get("created_dirs", [])):  # deepest first; only if empty
        try:
            d.rmdir()
        except FileNotFoundError:
            pass
        except OSError as e:
            notes.append(f"cannot remove {d}: {e.strerror}")
    state_file.unlink(missing_ok=True)
    return notes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pods", type=int, default=30, help="timed sequential pods per runtime [30]")
    ap.add_argument("--warmup", type=int, default=3, help="untimed pods per runtime before them [3]")
    ap.add_argument("--parallel", type=int, default=10, help="pods per parallel round [10]")
    ap.add_argument("--image-rounds", type=int, default=30,
                    help="rounds of the image and status calls per runtime, 0 to skip [30]")
    ap.add_argument("--rounds", type=int, default=3, help="parallel rounds per runtime, median reported [3]")
    ap.add_argument("--running", type=int, default=100,
                    help="pods kept running for the memory figure; 0 skips that phase [100]")
    ap.add_argument("--skip-hawser", action="store_true")
    ap.add_argument("--skip-containerd", action="store_true")
    ap.add_argument("--timeout", type=float, default=60, help="seconds allowed per CRI call and start-up [60]")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before each memory measurement [2]")
    ap.add_argument("--scratch", choices=["loop", "dir"], default="loop",
                    help="each runtime's root and state: on a fresh loop-mounted ext4, or in plain directories [loop]")
    ap.add_argument("--workdir", type=Path, default=WORK, help="scratch space [bench/.work]")
    args = ap.parse_args(argv)
    if args.pods < 1 or args.warmup < 0 or args.parallel < 1 or args.rounds < 0 or args.running < 0:
        ap.error("--pods and --parallel must be >= 1; --warmup, --rounds and --running >= 0")
    if os.geteuid() != 0:
        print("cri.py: needs root (runc, containerd, CNI, cgroups, mounts)", file=sys.stderr)
        return 2
    need = ["runc", "docker-registry", "iptables", "iptables-save", "ip", "catatonit"] + \
        ([] if args.skip_containerd else ["containerd", "ctr", "containerd-shim-runc-v2"]) + \
        ([] if args.skip_hawser else ["conmon"])
    for tool in need:
        if not shutil.which(tool):
            print(f"cri.py: {tool} not found (run bench/cri.sh)", file=sys.stderr)
            return 2
    for plugin in ("bridge", "host-local", "portmap", "loopback"):
        if not os.access(f"/usr/lib/cni/{plugin}", os.X_OK):
            print(f"cri.py: /usr/lib/cni/{plugin} not found (containernetworking-plugins; run bench/cri.sh)",
                  file=sys.stderr)
            return 2
    install_signal_handlers()
    os.environ.update(safe_env())  # the proxy safety net for everything, this process included

    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    runs_dir = work / "cri-runs"
    if len(str(runs_dir / "containerd" / "containerd.sock.ttrpc")) > SUN_PATH_MAX:
        print(f"cri.py: {runs_dir} is too long a path for the runtimes' unix sockets; use a shorter --workdir",
              file=sys.stderr)
        return 2
    lockf = bench_lock(work, "cri.py")
    if lockf is None:
        return 2
    state_file = work / "cri-host-state.json"
    # Leftovers of an interrupted run (we hold the lock).
    for msg in clean_host(runs_dir, state_file):
        print(f"cri.py: previous run: {msg}", file=sys.stderr)
    save_host_state(state_file)
    ipt_before = iptables_snapshot()

    children = Children()
    results: dict[str, Result | None] = {
        "containerd": None if args.skip_containerd else Result("containerd"),
        "hawser": None if args.skip_hawser else Result("hawser"),
    }
    cleanup: list[str] = []
    info: dict[str, Any] = {}
    rc = 0
    try:
        with contextlib.ExitStack() as stack:
            runs_dir.mkdir(parents=True)
            shared = runs_dir / "shared"
            scratch_mode = args.scratch
            if scratch_mode == "loop" and (why := loop_available()):
                print(f"   no loop-mounted scratch filesystem ({why}): plain directories instead", flush=True)
                scratch_mode = "dir"
            scratch = Scratch(runs_dir, scratch_mode, SCRATCH_SIZE)

            reg = stack.enter_context(run_registry(children, shared / "registry", shared))
            busybox = push_image(reg, *BUSYBOX, *build_image(busybox_layer(), {
                "Cmd": ["/bin/sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "WorkingDir": "/"}))
            pause = push_image(reg, *PAUSE, *build_image(pause_layer(), {"Entrypoint": ["/pause"], "Cmd": ["-P"]}))
            small = push_image(reg, *SMALL, *build_image(_layer([("dir", "etc", "", 0o755),
                                                                 ("file", "etc/small", b"small\n", 0o644)]),
                                                         {"Cmd": ["/bin/true"]}))
            subnet = pick_subnet()
            conf_dir = shared / "net.d"
            write_conflist(conf_dir, shared / "ipam", subnet)
            certs = shared / "certs.d"
            write_hosts_toml(certs, reg.host)
            print(f"== registry {reg.host}: {busybox}, {pause}; CNI {NET_NAME} on {BRIDGE} {subnet}", flush=True)
            info = {"busybox": busybox, "pause": pause, "subnet": subnet, "bridge": BRIDGE, "scratch": scratch_mode,
                    "cpus": os.cpu_count(), "kernel": platform.release(), "load_before": loadavg(),
                    "runc_version": _version(["runc", "--version"]).removeprefix("runc version "),
                    "containerd_version": _version(["containerd", "--version"]) if not args.skip_containerd else None}

            daemons: list[Daemon] = []
            c_res, h_res = results["containerd"], results["hawser"]
            if c_res is not None:
                try:
                    base = scratch.make("containerd")
                    # Unwound in reverse: pods removed, containerd stopped, its shims and containers killed.
                    stack.callback(_collect, cleanup, functools.partial(kill_leftovers, [f"{base}/"], "containerd"))
                    d = stack.enter_context(start_containerd(children, base, sandbox_image=pause, conf_dir=conf_dir,
                                                             certs=certs, timeout=args.timeout, result=c_res))
                    stack.callback(_collect, cleanup, d.endpoint.remove_all)
                    daemons.append(d)
                except ToolError as e:
                    c_res.fail(f"start-up: {e}")
                    print(f"   containerd FAILED to start: {str(e).splitlines()[0][:160]}", flush=True)
            if h_res is not None:
                try:
                    base_h = scratch.make("hawser")
                    stack.callback(_collect, cleanup, functools.partial(kill_leftovers, [f"{base_h}/"], "hawser"))
                    d = stack.enter_context(start_hawserd(children, base_h, conf_dir=conf_dir, certs=certs,
                                                          timeout=args.timeout, result=h_res))
                    stack.callback(_collect, cleanup, d.endpoint.remove_all)
                    daemons.append(d)
                except ToolError as e:
                    h_res.fail(f"start-up: {e}")
                    print(f"   hawser     FAILED to start: {str(e).splitlines()[0][:160]}", flush=True)
            for d in daemons:
                print(f"   {d.key:<10} ready: {d.result.version}", flush=True)

            time.sleep(args.settle)
            for d in daemons:
                d.result.memory["fresh"] = measure_memory(d)
            print("== pulling the images through CRI PullImage (untimed)", flush=True)
            for d in daemons:
                d.endpoint.image_ref = busybox
                refs = [busybox, pause] if d.key == "containerd" else [busybox]
                for ref in refs:
                    _guarded(d, "pull", functools.partial(d.endpoint.pull, ref))

            # One pod each first: hawserd's pod methods may not be there yet (UNIMPLEMENTED).
            print(f"== sequential: {args.warmup} warm-up + {args.pods} timed pods per runtime, alternating",
                  flush=True)
            sequential(daemons, args.pods, args.warmup)
            if args.rounds:
                print(f"== parallel: {args.rounds} rounds of {args.parallel} pods at once, alternating", flush=True)
                parallel(daemons, args.parallel, args.rounds)
            if args.image_rounds:
                print(f"== image and status calls: {args.warmup} warm-up + {args.image_rounds} rounds per runtime, "
                      "alternating", flush=True)
                image_loop([d for d in daemons if d.result.ok], small, args.image_rounds, args.warmup)
            time.sleep(args.settle)
            for d in daemons:
                d.result.memory["idle"] = measure_memory(d)
            if args.running:
                for d in daemons:
                    if not d.result.ok:
                        continue
                    print(f"== memory: {args.running} pods running on {d.key}", flush=True)
                    _guarded(d, f"{args.running} running pods",
                             functools.partial(running_phase, d, args.running, args.settle))
            info["load_after"] = loadavg()
        # Everything is stopped now: whatever is left was leaked by a runtime.
        tops = {str(runs_dir / n) for n in ("containerd", "hawser")}
        left = [m for m in mounts_under(runs_dir) if m not in tops]
        if left:
            cleanup.append(f"mounts left by the runtimes (now unmounted): {left[:5]}{' ...' if len(left) > 5 else ''}")
        report(results, info, args, cleanup, work / "cri-results.json")
        if any(r is not None and r.error for r in results.values()):
            rc = 1
    except ToolError as e:
        print(f"cri.py: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("\ncri.py: interrupted; cleaning up", file=sys.stderr)
        rc = 130
    finally:
        children.stop_all()
        for log in (runs_dir / "containerd.containerd.log", runs_dir / "hawser.hawserd.log"):
            with contextlib.suppress(OSError):  # kept for a look after the run: bench/.work/cri-*.log
                shutil.copyfile(log, work / f"cri-{log.name.partition('.')[2]}")
        for msg in clean_host(runs_dir, state_file):
            print(f"cri.py: {msg}", file=sys.stderr)
        added = sorted(iptables_snapshot() - ipt_before)
        if added:
            print(f"cri.py: WARNING: iptables lines added during the run remain (not {NET_NAME}'s, left alone): "
                  f"{added[:5]}", file=sys.stderr)
        left = mounts_under(work)
        if left:
            print(f"cri.py: WARNING: mounts left under {work}: {left}", file=sys.stderr)
            rc = rc or 1
        lockf.close()
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
