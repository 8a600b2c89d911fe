"""Run benchmark: latency of `run --rm IMAGE /bin/true`, one cold CLI process each time.

Compares `hawser run --rm` with `ctr run --rm` on a private containerd (CRI off,
io.containerd.runc.v2) and with bare `runc run` on a prepared bundle (the floor),
interleaved in the same run, all on the same small busybox image from a local
registry. Also: `hawser --version` latency (against `python -c pass`), and the
memory that idle containers cost outside themselves (hawser: conmon; containerd:
its shims). See bench/README.md. Run through bench/run.sh."""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _common import (
    MB,
    REPO,
    WORK,
    Children,
    Containerd,
    ProcInfo,
    Scratch,
    TimedRuns,
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
    safe_env,
    same_namespaces,
)

REPO_NAME = "bench/busybox"
TAG = "latest"
NAMESPACE = "hawser-bench-run"  # containerd namespace; ctr puts its containers in cgroup /<namespace>/<id>
FLOOR_CGROUP = "hawser-bench-floor"
TARGET_RATIO = 1.0  # hawser / containerd
TARGET_VERSION = 0.080  # seconds, `hawser --version`
TARGET_IDLE = 2 * MB  # bytes outside the container, per idle container (PSS)
IDLE_CMD = ("/bin/sleep", "100000")
SCRATCH_SIZE = 1 << 30
SHIM_SOCKET_DIRS = (Path("/run/containerd/s"), Path("/run/containerd"))


# --------------------------------------------------------------------------- results


@dataclass
class Series(TimedRuns):
    """Latencies of one command, in seconds (its report adds the count and
    keeps each note once)."""

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = why

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ok": self.ok, "runs": self.seconds, "n": len(self.seconds), "error": self.error,
                             "notes": sorted(set(self.notes))}
        if self.seconds:
            d.update(median=median(self.seconds), min=min(self.seconds), max=max(self.seconds))
        return d


@dataclass
class Idle:
    """What ``count`` idle containers cost outside the containers themselves."""

    name: str
    count: int = 0  # containers started
    running: int = 0  # container processes found (other pid/mount namespace) below the monitors
    per_comm: dict[str, int] = field(default_factory=dict)  # outside processes by name
    rss: int = 0  # summed over the outside processes
    pss: int = 0
    daemon_rss_before: int | None = None  # containerd itself, before and with the containers
    daemon_pss_before: int | None = None
    daemon_rss: int | None = None
    daemon_pss: int | None = None
    start_seconds: float = 0.0
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and self.count > 0

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: v for k, v in self.__dict__.items() if k != "name"}
        if self.count:
            d.update(rss_per_container=self.rss / self.count, pss_per_container=self.pss / self.count)
        return d


# --------------------------------------------------------------------------- helpers


def _run(argv: Sequence[str], timeout: float = 60, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Untimed: a tool's set-up or clean-up step."""
    try:
        return subprocess.run(list(argv), input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                              capture_output=True, timeout=timeout, env=safe_env(), start_new_session=True)
    except subprocess.TimeoutExpired:
        raise ToolError(f"`{' '.join(argv)}` timed out after {timeout:.0f} s") from None
    except OSError as e:
        raise ToolError(f"`{' '.join(argv)}`: {e}") from None


def _run_detaching(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Untimed, for a command that leaves a process behind (`run -d`): output goes
    to files, not pipes, so a monitor that keeps them open cannot stall us."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=safe_env(),
                                    start_new_session=True)
        except OSError as e:
            raise ToolError(f"`{' '.join(argv)}`: {e}") from None
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise ToolError(f"`{' '.join(argv)}` timed out after {timeout:.0f} s") from None
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(list(argv), rc, out.read(), err.read())


def _check(r: subprocess.CompletedProcess[bytes], what: str) -> subprocess.CompletedProcess[bytes]:
    if r.returncode != 0:
        raise ToolError(f"{what} failed (exit {r.returncode}): {_output(r)}")
    return r


def _output(r: subprocess.CompletedProcess[bytes], limit: int = 1500) -> str:
    text = (r.stderr or b"").decode(errors="replace").strip() or (r.stdout or b"").decode(errors="replace").strip()
    return text[-limit:] or "(no output)"


def timed(argv: Sequence[str], timeout: float) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """Wall time of one cold process, from fork to reaped exit."""
    try:
        t0 = time.perf_counter()
        r = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout,
                           start_new_session=True)
        return time.perf_counter() - t0, r
    except subprocess.TimeoutExpired:
        raise ToolError(f"`{' '.join(argv)}` timed out after {timeout:.0f} s") from None
    except OSError as e:
        raise ToolError(f"`{' '.join(argv)}`: {e}") from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.is_symlink() or path.exists():
        path.unlink()


def make_rootfs(tars: Sequence[bytes], rootfs: Path) -> None:
    """Apply uncompressed layer tars in order (whiteouts and opaque directories included)."""
    rootfs.mkdir(parents=True)
    for tar in tars:
        with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
            names = tf.getnames()
        for name in names:  # a layer's whiteouts refer to the layers below it: apply them first
            parent, _, base = name.rstrip("/").rpartition("/")
            if base == ".wh..wh..opq":
                d = rootfs / parent
                if d.is_dir():
                    for child in d.iterdir():
                        _remove(child)
            elif base.startswith(".wh."):
                _remove(rootfs / parent / base[4:])
        _check(_run(["tar", "-x", "-p", "--numeric-owner", "--exclude=.wh.*", "-C", str(rootfs), "-f", "-"],
                    stdin=tar), "tar -x of a layer")


def _name(p: ProcInfo) -> str:
    """A process's program name (comm is cut at 15 characters: containerd-shim-runc-v2)."""
    return os.path.basename(p.argv[0]) if p.argv and p.argv[0] else p.comm


def outside_memory(markers: Sequence[str], *, exclude: set[int]) -> tuple[dict[int, str], int]:
    """Processes outside any container that belong to a runtime: those whose argv
    names one of ``markers`` (its root, state or socket) and their descendants in
    this process's pid and mount namespaces. Returns ({pid: comm}, container
    processes below them)."""
    table = processes()
    tree = descendants(table, mentioning(table, markers)) - exclude
    outside = {pid: _name(table[pid]) for pid in tree if same_namespaces(pid)}
    return outside, len(tree) - len(outside)


def sum_memory(pids: Sequence[int]) -> tuple[int, int]:
    rss = pss = 0
    for pid in pids:
        m = memory_of(pid)
        if m:
            rss += m[0]
            pss += m[1]
    return rss, pss


def sweep(markers: Sequence[str], what: str, *, grace: float = 0, exclude: set[int] | None = None) -> list[str]:
    """Kill whatever still runs with one of ``markers`` in its argv, and everything
    below it (a runtime's leftovers: monitors, shims, container processes), after
    waiting up to ``grace`` seconds for them to exit by themselves."""
    deadline = time.monotonic() + grace
    while True:
        table = processes()
        pids = descendants(table, mentioning(table, markers)) - (exclude or set())
        if not pids:
            return []
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    names = sorted(f"{_name(table[p])}[{p}]" for p in pids if p in table)
    left = kill_processes(pids)
    msg = [f"{what}: killed {len(pids)} leftover processes: {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}"]
    if left:
        msg.append(f"{what}: processes that would not die: {sorted(left)}")
    return msg


# --------------------------------------------------------------------------- the floor: runc run


class Floor:
    """`runc run` on a bundle prepared once (config.json from `runc spec`)."""

    name = "floor"

    def __init__(self, base: Path, tars: Sequence[bytes], timeout: float, series: Series) -> None:
        self.base = base
        self.bundle = base / "bundle"
        self.runc_root = base / "runc"
        self.timeout = timeout
        self.series = series
        self.seq = 0
        self.bundle.mkdir()
        make_rootfs(tars, self.bundle / "rootfs")
        _check(_run(["runc", "spec", "--bundle", str(self.bundle)]), "runc spec")
        spec = json.loads((self.bundle / "config.json").read_text())
        spec["process"]["terminal"] = False
        spec["process"]["args"] = ["/bin/true"]
        self.spec = spec

    def once(self) -> float:
        self.seq += 1
        cid = f"bench-floor-{self.seq}"
        self.spec["linux"]["cgroupsPath"] = f"/{FLOOR_CGROUP}/{cid}"
        (self.bundle / "config.json").write_text(json.dumps(self.spec))
        dt, r = timed(["runc", "--root", str(self.runc_root), "run", "--bundle", str(self.bundle), cid], self.timeout)
        if r.returncode != 0:
            raise ToolError(f"runc run exited {r.returncode}: {_output(r)}")
        if (self.runc_root / cid).exists():  # runc run deletes the container at exit; if not, untimed
            self.series.notes.append("runc run left its container behind: runc delete (untimed)")
            _run(["runc", "--root", str(self.runc_root), "delete", "--force", cid])
        return dt

    def close(self) -> list[str]:
        notes = []
        if self.runc_root.is_dir():
            for d in self.runc_root.iterdir():
                _run(["runc", "--root", str(self.runc_root), "delete", "--force", d.name])
                notes.append(f"floor: runc delete --force {d.name}")
        return notes


# --------------------------------------------------------------------------- containerd: ctr run


class ContainerdTool:
    """`ctr run --rm` against a private containerd that keeps running (start-up untimed)."""

    name = "containerd"

    def __init__(self, inst: Containerd, ref: str, timeout: float, series: Series, *, seccomp: bool) -> None:
        self.inst = inst
        self.name = series.name
        # hawser applies its default seccomp profile to every container, as docker, nerdctl and
        # containerd's CRI do; ctr applies none unless asked. --seccomp compares like with like.
        self.seccomp = ["--seccomp"] if seccomp else []
        self.ref = ref
        self.timeout = timeout
        self.series = series
        self.seq = 0
        # Where ctr and the shim would otherwise write on the host: /run/containerd/{fifo,runc}.
        self.place = ["--fifo-dir", str(inst.base / "fifo"), "--runc-root", str(inst.base / "runc")]

    def pull(self) -> None:
        _check(_run(self.inst.ctr("images", "pull", "--plain-http", self.ref), timeout=self.timeout),
               f"ctr images pull {self.ref}")

    def once(self) -> float:
        self.seq += 1
        dt, r = timed(self.inst.ctr("run", "--rm", *self.seccomp, *self.place, self.ref, f"bench-{self.seq}",
                                    "/bin/true"),
                      self.timeout)
        if r.returncode != 0:
            raise ToolError(f"ctr run --rm exited {r.returncode}: {_output(r)}")
        return dt

    def start_idle(self, k: int) -> None:
        _check(_run_detaching(self.inst.ctr("run", "-d", *self.place, self.ref, f"bench-idle-{k}", *IDLE_CMD),
                              timeout=self.timeout), "ctr run -d")

    def remove_all(self) -> list[str]:
        """Every task and container of the namespace (idempotent)."""
        notes = []
        r = _run(self.inst.ctr("tasks", "ls", "-q"))
        for cid in r.stdout.decode().split():
            rr = _run(self.inst.ctr("tasks", "rm", "--force", cid))
            if rr.returncode != 0:
                notes.append(f"containerd: ctr tasks rm --force {cid}: {_output(rr, 300)}")
        r = _run(self.inst.ctr("containers", "ls", "-q"))
        ids = r.stdout.decode().split()
        if ids:
            rr = _run(self.inst.ctr("containers", "rm", *ids), timeout=120)
            if rr.returncode != 0:
                notes.append(f"containerd: ctr containers rm: {_output(rr, 300)}")
        return notes


# --------------------------------------------------------------------------- hawser: hawser run


def hawser_preflight(exe: str) -> None:
    if not os.access(exe, os.X_OK):
        raise ToolError(f"{exe} is not executable (run scripts/setup.sh)")
    r = _run([exe, "run", "--help"])
    if r.returncode != 0:
        raise ToolError(f"no usable `hawser run` (`hawser run --help` exited {r.returncode}): {_output(r, 300)}")


class HawserTool:
    """`hawser --root R --state S run --rm`, a cold CLI process each time."""

    name = "hawser"

    def __init__(self, exe: str, base: Path, ref: str, timeout: float, series: Series) -> None:
        self.exe = exe
        self.base = base
        self.root = base / "root"
        self.state = base / "state"
        self.ref = ref
        self.timeout = timeout
        self.series = series
        self.ids: list[str] = []

    def cli(self, *args: str) -> list[str]:
        return [self.exe, "--root", str(self.root), "--state", str(self.state), *args]

    def pull(self) -> None:
        _check(_run(self.cli("pull", "--plain-http", "-q", self.ref), timeout=self.timeout),
               f"hawser pull {self.ref}")

    def once(self) -> float:
        # no network, as ctr's (bench/cli_network.py times the default bridge network)
        dt, r = timed(self.cli("run", "--rm", "--network", "none", self.ref, "/bin/true"), self.timeout)
        if r.returncode != 0:
            raise ToolError(f"hawser run --rm exited {r.returncode}: {_output(r)}")
        return dt

    def start_idle(self, k: int) -> None:
        r = _check(_run_detaching(self.cli("run", "-d", "--network", "none", "--name", f"bench-idle-{k}", self.ref,
                                           *IDLE_CMD),
                                  timeout=self.timeout), "hawser run -d")
        out = r.stdout.decode().split()
        self.ids.append(out[-1] if out else f"bench-idle-{k}")

    def _listed(self) -> list[str] | None:
        """Every container's id (`ps -a -q`), or None if hawser cannot list them."""
        for extra in (["--no-trunc"], []):
            with contextlib.suppress(ToolError):
                r = _run(self.cli("ps", "-a", "-q", *extra))
                if r.returncode == 0:
                    return r.stdout.decode().split()
        return None

    def remove_all(self) -> list[str]:
        """Every container in hawser's root (idempotent)."""
        notes: list[str] = []
        listed = self._listed()
        ids = listed if listed is not None else list(self.ids)
        if ids and _run(self.cli("rm", "-f", *ids), timeout=300).returncode != 0:
            for cid in self._listed() or ids:  # one at a time, to get rid of all that can go
                rr = _run(self.cli("rm", "-f", cid))
                if rr.returncode != 0:
                    notes.append(f"hawser: rm -f {cid}: {_output(rr, 300)}")
        if listed is None:
            notes.append("hawser: `ps -a -q` failed; removed the containers `run -d` reported")
        self.ids.clear()
        return notes


# --------------------------------------------------------------------------- phases


def idle_memory(tool: ContainerdTool | HawserTool, n: int, markers: Sequence[str], daemon_pid: int | None,
                settle: float) -> Idle:
    res = Idle(tool.name)
    try:
        if daemon_pid is not None:
            m = memory_of(daemon_pid)
            if m:
                res.daemon_rss_before, res.daemon_pss_before = m
        t0 = time.monotonic()
        for k in range(n):
            tool.start_idle(k)
            res.count += 1
        res.start_seconds = time.monotonic() - t0
        time.sleep(settle)
        outside, inside = outside_memory(markers, exclude={daemon_pid} if daemon_pid else set())
        res.running = inside
        res.per_comm = dict(Counter(outside.values()).most_common())
        res.rss, res.pss = sum_memory(list(outside))
        if daemon_pid is not None:
            m = memory_of(daemon_pid)
            if m:
                res.daemon_rss, res.daemon_pss = m
        if inside < n:
            res.notes.append(f"only {inside} container processes found for {n} containers")
    except ToolError as e:
        res.error = f"after {res.count} of {n} containers: {e}"
    finally:
        res.notes += tool.remove_all()
    return res


def latency_round(tools: Sequence[Floor | ContainerdTool | HawserTool], warm: bool) -> dict[str, float]:
    """One run of each tool, in turn; returns {tool: seconds}."""
    got = {}
    for tool in tools:
        s = tool.series
        if s.error is not None:
            continue
        try:
            dt = tool.once()
        except ToolError as e:
            s.fail(str(e))
            print(f"   {tool.name:<11} FAILED: {str(e).splitlines()[0][:150]}", flush=True)
            continue
        got[tool.name] = dt
        if not warm:
            s.seconds.append(dt)
    return got


def version_latency(hawser: str, runs: int, warmup: int, timeout: float) -> tuple[Series, Series]:
    """`hawser --version` and `python -c pass` (hawser's own interpreter), interleaved."""
    ver, ref = Series("hawser --version"), Series("python -c pass")
    python = sys.executable
    with contextlib.suppress(OSError):
        first = Path(hawser).read_bytes()[:256].split(b"\n", 1)[0]
        if first.startswith(b"#!"):
            python = first[2:].decode().strip().split()[0]
    ref.notes.append(python)
    for i in range(warmup + runs):
        for s, argv in ((ver, [hawser, "--version"]), (ref, [python, "-c", "pass"])):
            if s.error is not None:
                continue
            try:
                dt, r = timed(argv, timeout)
                if r.returncode != 0:
                    raise ToolError(f"`{' '.join(argv)}` exited {r.returncode}: {_output(r, 300)}")
            except ToolError as e:
                s.fail(str(e))
                continue
            if i >= warmup:
                s.seconds.append(dt)
    return ver, ref


# --------------------------------------------------------------------------- report


def _ms(x: float) -> str:
    return f"{x * 1000:7.1f} ms"


def _line(label: str, s: Series | None) -> str:
    if s is None:
        return f"  {label:<26} {'skipped':>10}"
    if not s.ok:
        why = (s.error or "no runs").splitlines()[0][:100]
        return f"  {label:<26} {'FAILED':>10}   {why}"
    x = s.seconds
    return f"  {label:<26} {_ms(median(x))} {_ms(min(x))} {_ms(max(x))}  {len(x):3d}"


def _mb(n: float) -> str:
    return f"{n / MB:.2f} MB"


def _idle_lines(res: Idle | None, label: str) -> list[str]:
    if res is None:
        return [f"  {label:<11} skipped"]
    if not res.ok:
        return [f"  {label:<11} FAILED   {(res.error or 'no containers').splitlines()[0][:110]}"]
    procs = ", ".join(f"{c} x{k}" for c, k in res.per_comm.items()) or "no processes"
    lines = [f"  {label:<11} {res.count} containers ({res.running} running), outside them: {procs}",
             f"  {'':<11} per container: PSS {_mb(res.pss / res.count)}, RSS {_mb(res.rss / res.count)} "
             f"(total PSS {_mb(res.pss)}, RSS {_mb(res.rss)}); {res.count} started in {res.start_seconds:.1f} s"]
    if res.daemon_rss is not None:
        before = (f", {_mb(res.daemon_rss_before)} RSS / {_mb(res.daemon_pss_before or 0)} PSS before them"
                  if res.daemon_rss_before is not None else "")
        lines.append(f"  {'':<11} containerd itself: RSS {_mb(res.daemon_rss)}, PSS {_mb(res.daemon_pss or 0)} "
                     f"with them{before}")
    return lines


def report(ref: str, info: Mapping[str, Any], lat: Mapping[str, Series | None], ver: Series | None,
           pyref: Series | None, idle: Mapping[str, Idle | None], cleanup: Sequence[str], out: Path) -> dict[str, Any]:
    print()
    print(f"image  {ref}  ({info['manifest'][:19]}..., {info['layers']} layers, {info['compressed']:,} bytes compressed)")
    print(f"host   {info['cpus']} cpus, {info['kernel']}, scratch {info['scratch']}, load before {info['load_before']}, "
          f"after {info['load_after']}")
    versions = [f"runc {info['runc_version']}", info["containerd_version"],
                f"hawser {info['hawser_version']}" if info["hawser_version"] else None]
    print("       " + "; ".join(v for v in versions if v))
    print()
    print(f"  {'run --rm ... /bin/true':<26} {'median':>10} {'min':>10} {'max':>10}    n")
    labels = {"floor": "floor (runc run)", "containerd": "containerd (ctr run --rm --seccomp)",
              "containerd-noseccomp": "  ctr's default: no seccomp", "hawser": "hawser (run --rm)"}
    for name, label in labels.items():
        print(_line(label, lat.get(name)))
    print()
    floor, ctrd, hws = lat.get("floor"), lat.get("containerd"), lat.get("hawser")
    ratios: dict[str, float | None] = {"hawser_over_containerd": None, "hawser_over_floor": None,
                                       "containerd_over_floor": None, "hawser_over_containerd_noseccomp": None}
    if ctrd and ctrd.ok and floor and floor.ok:
        r = ratios["containerd_over_floor"] = median(ctrd.seconds) / median(floor.seconds)
        print(f"  containerd / floor   {r:.2f}x")
    if hws and hws.ok:
        if ctrd and ctrd.ok:
            r = ratios["hawser_over_containerd"] = median(hws.seconds) / median(ctrd.seconds)
            print(f"  hawser / containerd  {r:.2f}x   (target <= {TARGET_RATIO:.2f}: "
                  f"{'met' if r <= TARGET_RATIO else 'MISSED'})")
        plain = lat.get("containerd-noseccomp")
        if plain and plain.ok:
            r = ratios["hawser_over_containerd_noseccomp"] = median(hws.seconds) / median(plain.seconds)
            print(f"  hawser / ctr without seccomp  {r:.2f}x   (for reference: hawser always applies its profile)")
        if floor and floor.ok:
            r = ratios["hawser_over_floor"] = median(hws.seconds) / median(floor.seconds)
            print(f"  hawser / floor       {r:.2f}x")
    elif hws is not None:
        print(f"  hawser: failed ({(hws.error or 'no runs').splitlines()[0][:120]})")
    if ver is not None:
        print()
        print(_line("hawser --version", ver))
        print(_line("python -c pass", pyref))
        if ver.ok:
            m = median(ver.seconds)
            print(f"  hawser --version     {m * 1000:.1f} ms   (target < {TARGET_VERSION * 1000:.0f} ms: "
                  f"{'met' if m < TARGET_VERSION else 'MISSED'})")
    if any(v is not None for v in idle.values()):
        print()
        print("  memory of idle containers (/bin/sleep), outside the containers, summed from /proc/PID/smaps_rollup")
        for name, res in idle.items():
            for line in _idle_lines(res, name):
                print(line)
        h = idle.get("hawser")
        if h is not None and h.ok:
            per = h.pss / h.count
            print(f"  hawser per container PSS {_mb(per)}   (target <= {_mb(TARGET_IDLE)}: "
                  f"{'met' if per <= TARGET_IDLE else 'MISSED'})")
    for name, s in [*lat.items(), ("version", ver)]:
        if s is not None:
            for note in sorted(set(s.notes)):
                if name != "version":
                    print(f"  note ({name}): {note}")
    for name, res in idle.items():
        if res is not None:
            for note in sorted(set(res.notes)):
                print(f"  note (idle {name}): {note}")
    for note in cleanup:
        print(f"  cleanup: {note}")
    for name, s in lat.items():
        if s is not None and s.error:
            print(f"\n{name} FAILED:\n{s.error}")
    for name, res in idle.items():
        if res is not None and res.error:
            print(f"\nidle {name} FAILED:\n{res.error}")
    doc = {
        "reference": ref,
        **info,
        "latency": {k: (v.summary() if v else None) for k, v in lat.items()},
        "version": {"hawser": ver.summary() if ver else None, "python_pass": pyref.summary() if pyref else None},
        "idle": {k: (v.summary() if v else None) for k, v in idle.items()},
        "ratios": ratios,
        "cleanup": list(cleanup),
        "targets": {"hawser_over_containerd": TARGET_RATIO, "hawser_version_seconds": TARGET_VERSION,
                    "idle_pss_per_container": TARGET_IDLE},
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {out}")
    return doc


# --------------------------------------------------------------------------- main


def build_and_push(host: str) -> tuple[str, dict[str, Any], list[bytes]]:
    """The test suite's busybox image (tests/support), pushed as <host>/bench/busybox:latest."""
    sys.path.insert(0, str(REPO))
    from tests.support.images import build_image, push_image
    from tests.support.layers import busybox_layers

    from hawser.registry import RegistryClient, RegistryOptions

    tars = busybox_layers()
    with tarfile.open(fileobj=io.BytesIO(tars[0])) as tf:
        names = set(tf.getnames())
    for applet in ("bin/true", "bin/sleep"):
        if applet not in names:
            raise ToolError(f"busybox_layers() has no {applet}")
    image = build_image(tars)
    ref = f"{host}/{REPO_NAME}:{TAG}"
    with RegistryClient(RegistryOptions(plain_http=True, docker_config=None)) as client:
        push_image(client, ref, image, tag=TAG)
    info = {"manifest": str(image.manifest_desc.digest), "layers": len(image.layers),
            "compressed": sum(d.size for d, _ in image.layers), "uncompressed": sum(len(t) for t in tars)}
    return ref, info, tars


def _version(argv: list[str]) -> str:
    with contextlib.suppress(ToolError):
        r = _run(argv, timeout=20)
        lines = (r.stdout or r.stderr).decode(errors="replace").strip().splitlines()
        return lines[0] if lines else ""
    return ""


def _step(series: Series | None, what: str, fn: Callable[[], object]) -> None:
    """A tool's set-up step: a failure fails that tool only."""
    if series is None or series.error is not None:
        return
    try:
        fn()
    except ToolError as e:
        series.fail(f"{what}: {e}")
        print(f"   {series.name:<11} FAILED ({what}): {str(e).splitlines()[0][:150]}", flush=True)


def _guard(notes: list[str], what: str, fn: Callable[[], Sequence[str]]) -> Callable[[], None]:
    """A clean-up step for an ExitStack: its findings and failures become notes, never exceptions."""

    def step() -> None:
        try:
            notes.extend(fn())
        except (ToolError, OSError) as e:
            notes.append(f"{what}: {e}")

    return step


def _cgroup_step(rel: str) -> Callable[[], list[str]]:
    return lambda: [f"cgroup not removed: {x}" for x in remove_cgroup(rel)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=20, help="timed runs per tool, median reported [20]")
    ap.add_argument("--warmup", type=int, default=3, help="untimed runs per tool before them [3]")
    ap.add_argument("--idle", type=int, default=50, help="idle containers for the memory figures; 0 skips [50]")
    ap.add_argument("--skip-hawser", action="store_true")
    ap.add_argument("--skip-containerd", action="store_true")
    ap.add_argument("--skip-floor", action="store_true")
    ap.add_argument("--hawser", default=str(REPO / ".venv/bin/hawser"), help="hawser executable")
    ap.add_argument("--timeout", type=float, default=60, help="seconds allowed per command [60]")
    ap.add_argument("--settle", type=float, default=2.0,
                    help="seconds between starting the idle containers and measuring them [2]")
    ap.add_argument("--scratch", choices=["loop", "dir"], default="loop",
                    help="each tool's root and state: on a fresh loop-mounted ext4, or in plain directories [loop]")
    ap.add_argument("--workdir", type=Path, default=WORK, help="scratch space [bench/.work]")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.warmup < 0 or args.idle < 0:
        ap.error("--runs must be >= 1, --warmup and --idle >= 0")
    if os.geteuid() != 0:
        print("run.py: needs root (runc, containerd, overlayfs, cgroups)", file=sys.stderr)
        return 2
    need = ["runc", "tar", "docker-registry"] + ([] if args.skip_containerd else ["containerd", "ctr"])
    for tool in need:
        if not shutil.which(tool):
            print(f"run.py: {tool} not found (run bench/run.sh)", file=sys.stderr)
            return 2
    install_signal_handlers()
    os.environ.update(safe_env())  # the proxy safety net for everything, this process included

    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    lockf = bench_lock(work, "run.py")
    if lockf is None:
        return 2
    runs_dir = work / "run-runs"
    everything = [str(runs_dir) + "/"]  # in the argv of every process a tool leaves running
    # Leftovers of an interrupted run (we hold the lock): its processes, cgroups, mounts.
    for msg in sweep(everything, "previous run"):
        print(f"run.py: {msg}", file=sys.stderr)
    remove_cgroup(FLOOR_CGROUP)
    remove_cgroup(NAMESPACE)
    remove_tree(runs_dir)
    # containerd 1.6's shims put their sockets in /run/containerd/s whatever the config says.
    host_dirs = [d for d in SHIM_SOCKET_DIRS if not d.exists()]

    children = Children()
    lat: dict[str, Series | None] = {"floor": None, "containerd": None, "containerd-noseccomp": None, "hawser": None}
    idle: dict[str, Idle | None] = {"hawser": None, "containerd": None}
    ver: Series | None = None
    pyref: Series | None = None
    cleanup: list[str] = []
    ref = ""
    info: dict[str, Any] = {}
    rc = 0
    try:
        with contextlib.ExitStack() as stack:
            runs_dir.mkdir(parents=True)
            scratch_mode = args.scratch
            if scratch_mode == "loop" and (why := loop_available()):
                print(f"   no loop-mounted scratch filesystem ({why}): plain directories instead", flush=True)
                scratch_mode = "dir"
            scratch = Scratch(runs_dir, scratch_mode, SCRATCH_SIZE)

            sys.path.insert(0, str(REPO))
            from tests.support.registry_server import start_registry

            try:
                reg = start_registry(runs_dir)
            except RuntimeError as e:
                raise ToolError(str(e)) from None
            stack.callback(reg.stop)
            ref, image, tars = build_and_push(reg.host)
            print(f"== registry {reg.host}: pushed {ref} ({image['layers']} layers, {image['compressed']:,} bytes)",
                  flush=True)
            info = {
                **image, "scratch": scratch_mode, "cpus": os.cpu_count(), "kernel": platform.release(),
                "load_before": loadavg(), "runs_requested": args.runs, "warmup": args.warmup,
                "runc_version": _version(["runc", "--version"]).removeprefix("runc version "),
                "containerd_version": _version(["containerd", "--version"]) if not args.skip_containerd else None,
                "hawser_version": (_version([args.hawser, "--version"]).removeprefix("hawser version ")
                                   if not args.skip_hawser else None),
            }

            tools: list[Floor | ContainerdTool | HawserTool] = []
            ctrd_tool: list[ContainerdTool] = []
            hawser_tool: list[HawserTool] = []

            if not args.skip_floor:
                fs = lat["floor"] = Series("floor")

                def setup_floor() -> None:
                    stack.callback(_guard(cleanup, "floor cgroups", _cgroup_step(FLOOR_CGROUP)))
                    floor = Floor(scratch.make("floor"), tars, args.timeout, fs)
                    stack.callback(_guard(cleanup, "floor", floor.close))
                    tools.append(floor)

                _step(fs, "bundle", setup_floor)

            if not args.skip_containerd:
                cs = lat["containerd"] = Series("containerd")
                plain = lat["containerd-noseccomp"] = Series("containerd-noseccomp")

                def setup_containerd() -> None:
                    base = scratch.make("containerd")
                    # Unwound in reverse: remove containers, stop containerd, kill leftover shims, cgroups.
                    stack.callback(_guard(cleanup, "containerd cgroups", _cgroup_step(NAMESPACE)))
                    stack.callback(_guard(cleanup, "containerd", lambda: sweep([str(base) + "/"], "containerd")))
                    inst = stack.enter_context(run_containerd(children, base, namespace=NAMESPACE))
                    tool = ContainerdTool(inst, ref, args.timeout, cs, seccomp=True)
                    stack.callback(_guard(cleanup, "containerd", tool.remove_all))
                    tool.pull()
                    tools.append(tool)
                    tools.append(ContainerdTool(inst, ref, args.timeout, plain, seccomp=False))
                    ctrd_tool.append(tool)

                _step(cs, "containerd", setup_containerd)

            if not args.skip_hawser:
                hs = lat["hawser"] = Series("hawser")

                def setup_hawser() -> None:
                    hawser_preflight(args.hawser)
                    tool = HawserTool(args.hawser, scratch.make("hawser"), ref, args.timeout, hs)
                    stack.callback(_guard(cleanup, "hawser", lambda: sweep([str(tool.base) + "/"], "hawser")))
                    stack.callback(_guard(cleanup, "hawser", tool.remove_all))
                    tool.pull()
                    tools.append(tool)
                    hawser_tool.append(tool)

                _step(hs, "set-up", setup_hawser)

            print(f"== latency: {args.warmup} warm-up + {args.runs} timed runs each, interleaved", flush=True)
            for _ in range(args.warmup):
                latency_round(tools, warm=True)
            for i in range(args.runs):
                got = latency_round(tools, warm=False)
                print(f"   {i + 1:3d}/{args.runs}  " + "  ".join(f"{k} {v * 1000:6.1f} ms" for k, v in got.items()),
                      flush=True)

            if not args.skip_hawser:
                print(f"== hawser --version and python -c pass: {args.runs} runs each", flush=True)
                ver, pyref = version_latency(args.hawser, args.runs, args.warmup, args.timeout)

            if args.idle:
                if hawser_tool:
                    print(f"== memory: {args.idle} idle hawser containers", flush=True)
                    h = hawser_tool[0]
                    res = idle["hawser"] = idle_memory(h, args.idle, [str(h.base) + "/"], None, args.settle)
                    res.notes += sweep([str(h.base) + "/"], "left after hawser rm -f", grace=5)
                elif lat["hawser"] is not None:
                    idle["hawser"] = Idle("hawser", error=lat["hawser"].error or "not set up")
                if ctrd_tool:
                    print(f"== memory: {args.idle} idle containerd containers", flush=True)
                    c = ctrd_tool[0]
                    res = idle["containerd"] = idle_memory(c, args.idle, [str(c.inst.base) + "/"], c.inst.proc.pid,
                                                           args.settle)
                    # Shims that outlive their task are containerd's business: kill only at the end.
                elif lat["containerd"] is not None:
                    idle["containerd"] = Idle("containerd", error=lat["containerd"].error or "not set up")
            info["load_after"] = loadavg()
        # Everything is stopped now: whatever is left was leaked by a tool.
        tops = {str(runs_dir / n) for n in ("floor", "containerd", "hawser")}
        left = [m for m in mounts_under(runs_dir) if m not in tops]
        if left:
            cleanup.append(f"mounts left by the tools (now unmounted): {left[:5]}{' ...' if len(left) > 5 else ''}")
        report(ref, info, lat, ver, pyref, idle, cleanup, work / "run-results.json")
        if any(s is not None and not s.ok for s in [*lat.values(), ver, pyref]) or \
                any(r is not None and not r.ok for r in idle.values()):
            rc = 1
    except ToolError as e:
        print(f"run.py: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("\nrun.py: interrupted; cleaning up", file=sys.stderr)
        rc = 130
    finally:
        children.stop_all()
        for msg in sweep(everything, "leftover"):
            print(f"run.py: {msg}", file=sys.stderr)
        for rel in (FLOOR_CGROUP, NAMESPACE):
            for msg in remove_cgroup(rel):
                print(f"run.py: WARNING: cgroup not removed: {msg}", file=sys.stderr)
        try:
            remove_tree(runs_dir)
        except (ToolError, OSError) as e:
            print(f"run.py: WARNING: {e}", file=sys.stderr)
        for d in host_dirs:  # deepest first; only what this run created, only if empty
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as e:
                print(f"run.py: WARNING: cannot remove {d}: {e.strerror}", file=sys.stderr)
        left = mounts_under(work)
        if left:
            print(f"run.py: WARNING: mounts left under {work}: {left}", file=sys.stderr)
            rc = rc or 1
        lockf.close()
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
