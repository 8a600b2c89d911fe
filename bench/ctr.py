"""containerd-API benchmark: Debian's `ctr` against hawserd's containerd API and against a private containerd.

In the same run, on the same page-cache state, alternating the daemons round by
round: a cold `ctr images pull --plain-http` of the bench image (ctr fetches
through Content.Write, unpacks through Snapshots and Diff.Apply), then the
latency of `ctr images ls` and `ctr content ls`, then the daemon's RSS idle.
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
    fmt_bytes,
    install_signal_handlers,
    loadavg,
    loop_available,
    median,
    memory_of,
    mounts_under,
    processes,
    remove_tree,
    run_containerd,
    run_registry,
    safe_env,
    tail,
)
from _image import BuiltImage, load_or_build, push

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
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=safe_env(),
                          stdin=subprocess.DEVNULL)


def _ctr(sock: Path, *args: str) -> list[str]:
    return ["ctr", "--address", str(sock), "--namespace", NAMESPACE, *args]


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
            "--cni-bin-dir", "/usr/lib/cni", "--log-level", log_level]
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


# --------------------------------------------------------------------------- report


def _tool_version(argv: list[str]) -> str:
    try:
        r = _run(argv, timeout=20)
        text = (r.stdout or r.stderr).strip()
        return text.splitlines()[0] if text else ""
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def _mb(x: float) -> str:
    return f"{x / MB:.1f} MB"


def _ratio(h: float, c: float) -> float | None:
    return h / c if c else None


def report(img: BuiltImage, ref: str, results: dict[str, ToolResult | None], extra: dict[str, Any],
           out: Path) -> None:
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
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {out}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="cold pulls per daemon (median reported) [3]")
    ap.add_argument("--calls", type=int, default=20, help="calls of each `ctr ... ls` per run [20]")
    ap.add_argument("--idle", type=float, default=5, help="seconds idle before hawserd's RSS is read [5]")
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
    if args.runs < 1 or args.calls < 1:
        ap.error("--runs and --calls must be >= 1")
    if os.geteuid() != 0:
        print("ctr.py: needs root (containerd, hawserd, overlayfs)", file=sys.stderr)
        return 2
    for tool in ("containerd", "ctr", "docker-registry"):
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
    remove_tree(runs_dir)  # leftovers of an interrupted run (we hold the lock)
    children = Children()
    results: dict[str, ToolResult | None] = {
        "containerd": None if args.skip_containerd else ToolResult("containerd"),
        "hawserd": None if args.skip_hawserd else ToolResult("hawserd"),
    }
    rc = 0
    try:
        print("== image", flush=True)
        t0 = time.monotonic()
        img, blobdir = load_or_build(work, rebuild=args.rebuild)
        built = time.monotonic() - t0
        print(f"   {len(img.layers)} layers, {img.files:,} files, {fmt_bytes(img.compressed)} compressed, "
              f"{fmt_bytes(img.uncompressed)} uncompressed " + (f"(built in {built:.1f} s)" if built > 1 else "(cached)"),
              flush=True)
        check_free_space(work, 2 * img.uncompressed + 2 * img.compressed + 300 * MB, "the pulls")
        scratch_mode = args.scratch
        if scratch_mode == "loop" and (why := loop_available()):
            print(f"   no loop-mounted scratch filesystem ({why}): plain directories instead", flush=True)
            scratch_mode = "dir"
        runs_dir.mkdir(parents=True, exist_ok=True)
        scratch = Scratch(runs_dir, scratch_mode, max(4 << 30, 3 * img.uncompressed + (1 << 30)))
        with run_registry(children, work / "registry", runs_dir) as reg:
            ref = f"{reg.host}/{REPO_NAME}:{TAG}"
            _push_and_warm(reg, img, blobdir, ref)
            extra: dict[str, Any] = {
                "scratch": scratch_mode, "load_before": loadavg(), "cpus": os.cpu_count(),
                "kernel": platform.release(), "calls": args.calls, "idle": args.idle,
                "containerd_version": _tool_version(["containerd", "--version"]),
                "ctr_version": _tool_version(["ctr", "--version"]),
                "hawserd_version": _tool_version([args.hawserd, "--version"]) if not args.skip_hawserd else None,
                "hawserd_log_level": args.log_level,
            }
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
            extra["load_after"] = loadavg()
            extra["runs_requested"] = args.runs
            report(img, ref, results, extra, work / "ctr-results.json")
        if any(r is not None and not r.ok for r in results.values()):
            rc = 1
    except ToolError as e:
        print(f"ctr.py: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("\nctr.py: interrupted; cleaning up", file=sys.stderr)
        rc = 130
    finally:
        children.stop_all()
        with contextlib.suppress(ToolError, OSError):
            remove_tree(runs_dir)
        left = mounts_under(work)
        if left:
            print(f"ctr.py: WARNING: mounts left under {work}: {left}", file=sys.stderr)
            rc = rc or 1
        lockf.close()
    return rc


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
