"""Shared plumbing for the benchmarks: child processes, mounts, the local
registry, the proxy safety net and RSS sampling of a process tree.

Every process started here runs in its own session so that Ctrl-C reaches only
the benchmark, which then stops its children itself (``Children.stop_all``)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / ".work"

MB = 1_000_000
MIB = 1 << 20

# Nothing the benchmark starts may reach past loopback: a closed loopback port as the proxy.
PROXY_ENV = {
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "127.0.0.1,localhost",
    "http_proxy": "http://127.0.0.1:9",
    "https_proxy": "http://127.0.0.1:9",
    "no_proxy": "127.0.0.1,localhost",
}


class ToolError(RuntimeError):
    """A tool (registry, containerd, ctr, curl, hawser, ...) failed."""


def safe_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy") and not k.startswith("CONTAINERD_")}
    env.update(PROXY_ENV)
    env.update(extra or {})
    return env


def install_signal_handlers() -> None:
    """SIGTERM/SIGHUP behave like Ctrl-C, so ``finally`` blocks clean up."""

    def _raise(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


# --------------------------------------------------------------------------- processes


_Out = IO[Any] | int | None


class Children:
    """Processes this benchmark started (each in its own session / process group)."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[bytes]] = []

    def start(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, stdout: _Out = None,
              stderr: _Out = None, cwd: Path | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(list(argv), env=dict(env) if env is not None else safe_env(), stdin=subprocess.DEVNULL,
                                stdout=stdout, stderr=stderr, cwd=cwd, start_new_session=True)
        self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds; reap."""
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        # Anything left in the group (a grandchild that ignored SIGTERM) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc in self._procs:
            self._procs.remove(proc)

    def stop_all(self) -> None:
        for proc in reversed(list(self._procs)):
            self.stop(proc, grace=5.0)


# --------------------------------------------------------------------------- mounts

_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


def _unescape(field_: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    prefix = str(path.resolve()).rstrip("/")
    found: list[str] = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = _unescape(line.split()[4])
            if mp == prefix or mp.startswith(prefix + "/"):
                found.append(mp)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def unmount_all(path: Path) -> list[str]:
    """Unmount everything at or below ``path`` (lazily if busy); returns what it unmounted."""
    done: list[str] = []
    for _ in range(5):
        mps = mounts_under(path)
        if not mps:
            break
        for mp in mps:
            raw = mp.encode()
            if _libc.umount2(raw, 0) != 0 and _libc.umount2(raw, _MNT_DETACH) != 0:
                err = ctypes.get_errno()
                if err not in (22, 2):  # EINVAL (not a mount any more), ENOENT
                    raise ToolError(f"cannot unmount {mp}: {os.strerror(err)}")
            done.append(mp)
    left = mounts_under(path)
    if left:
        raise ToolError(f"mounts left under {path}: {left}")
    return done


def remove_tree(path: Path) -> None:
    """Unmount whatever is below ``path``, then delete it (never across a mount)."""
    if not path.exists() and not path.is_symlink():
        return
    unmount_all(path)
    shutil.rmtree(path, ignore_errors=False)


# --------------------------------------------------------------------------- scratch space


class Scratch:
    """Fresh space for one cold run.

    ``loop`` (the default) mounts a freshly made ext4 (journal, default options)
    from a sparse file on a loop device at ``runs_dir/name``; ``dir`` is a plain
    directory on the filesystem under ``runs_dir``. The loop file is unlinked
    once attached and the loop device auto-clears at unmount, so unmounting
    (``remove_tree``) frees everything.

    Why a fresh filesystem: ext4 *without* a journal (as here: the VM's root
    filesystem) skips inodes deleted in the last 10-15 minutes when it
    allocates new ones (fs/ext4/ialloc.c, recently_deleted()), which makes a
    run that follows the deletion of a previous run's 30,000 files 2-3 times
    slower. A fresh filesystem per run makes every run start from the same state.
    """

    def __init__(self, runs_dir: Path, mode: str, size: int) -> None:
        self.runs_dir = runs_dir
        self.mode = mode
        self.size = size

    def make(self, name: str) -> Path:
        base = self.runs_dir / name
        base.mkdir(parents=True)
        if self.mode == "dir":
            return base
        img = self.runs_dir / f"{name}.img"
        try:
            with open(img, "wb") as f:
                f.truncate(self.size)
            r = subprocess.run(["mkfs.ext4", "-q", "-F", "-m", "0", "-E",
                                "lazy_itable_init=0,lazy_journal_init=0,nodiscard", str(img)],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise ToolError(f"mkfs.ext4 failed: {r.stderr.strip()}")
            r = subprocess.run(["losetup", "--find", "--show", "--direct-io=on", str(img)], capture_output=True,
                               text=True)
            if r.returncode != 0:
                raise ToolError(f"losetup failed: {r.stderr.strip()}")
            dev = r.stdout.strip()
            try:
                r = subprocess.run(["mount", "-t", "ext4", dev, str(base)], capture_output=True, text=True)
                if r.returncode != 0:
                    raise ToolError(f"mounting {dev} on {base} failed: {r.stderr.strip()}")
            finally:
                # Detached while mounted = auto-clear at unmount; if the mount failed, it is freed now.
                subprocess.run(["losetup", "-d", dev], capture_output=True)
        finally:
            img.unlink(missing_ok=True)
        return base


def loop_available() -> str | None:
    """None if a loop-mounted scratch filesystem can be used, else why not."""
    if not os.path.exists("/dev/loop-control"):
        return "no /dev/loop-control"
    for tool in ("mkfs.ext4", "losetup", "mount"):
        if not shutil.which(tool):
            return f"{tool} not found"
    return None


# --------------------------------------------------------------------------- registry


@dataclass
class Registry:
    host: str
    proc: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://{self.host}{path}"


@contextlib.contextmanager
def run_registry(children: Children, storage: Path, rundir: Path) -> Iterator[Registry]:
    """Debian's docker-registry on 127.0.0.1:<free port>, storage kept in ``storage``."""
    storage.mkdir(parents=True, exist_ok=True)
    rundir.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("docker-registry") or "/usr/bin/docker-registry"
    for attempt in range(3):
        port = free_port()
        config = rundir / "registry.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {storage}\n"
            "  maintenance:\n    uploadpurging:\n      enabled: false\n"
            f"http:\n  addr: 127.0.0.1:{port}\n"
        )
        log = rundir / "registry.log"
        with open(log, "wb") as logf:
            proc = children.start([exe, "serve", str(config)], stdout=logf, stderr=subprocess.STDOUT)
        reg = Registry(f"127.0.0.1:{port}", proc, log)
        deadline = time.monotonic() + 20
        ready = False
        with httpx.Client(trust_env=False, timeout=2) as client:
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(httpx.HTTPError):
                    if client.get(reg.url("/v2/")).status_code == 200:
                        ready = True
                        break
                time.sleep(0.05)
        if ready:
            try:
                yield reg
            finally:
                children.stop(proc)
            return
        children.stop(proc)
        if attempt == 2:
            raise ToolError(f"docker-registry did not come up on {reg.host}:\n{tail(log)}")


# --------------------------------------------------------------------------- RSS sampling

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _status_kb(text: str, key: str) -> int:
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1])
    return 0


@dataclass
class TreeSample:
    main_peak: int = 0  # bytes: VmHWM of the main process (its own high-water mark)
    tree_rss_peak: int = 0  # bytes: max over samples of the summed RSS of the process tree
    tree_pss_peak: int = 0  # bytes: the same with PSS (shared pages split between sharers)
    max_procs: int = 0
    samples: int = 0
    pids: set[int] = field(default_factory=set)


class TreeSampler(threading.Thread):
    """Samples the RSS of ``pid`` and its descendants every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True, name=f"rss-{pid}")
        self.root = pid
        self.interval = interval
        self.result = TreeSample()
        self._stop_event = threading.Event()

    def _tree(self) -> list[int]:
        children: dict[int, list[int]] = {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            stat = _read(f"/proc/{name}/stat")
            if not stat:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split(maxsplit=2)[1])
            children.setdefault(ppid, []).append(int(name))
        tree, todo = [], [self.root]
        while todo:
            p = todo.pop()
            tree.append(p)
            todo.extend(children.get(p, ()))
        return tree

    def sample(self) -> None:
        res = self.result
        status = _read(f"/proc/{self.root}/status")
        if status is None:
            return
        res.main_peak = max(res.main_peak, _status_kb(status, "VmHWM:") * 1024)
        rss = pss = 0
        tree = self._tree()
        for p in tree:
            statm = _read(f"/proc/{p}/statm")
            if statm:
                rss += int(statm.split()[1]) * _PAGE
            rollup = _read(f"/proc/{p}/smaps_rollup")
            if rollup:
                pss += _status_kb(rollup, "Pss:") * 1024
        res.tree_rss_peak = max(res.tree_rss_peak, rss)
        res.tree_pss_peak = max(res.tree_pss_peak, pss)
        res.max_procs = max(res.max_procs, len(tree))
        res.pids.update(tree)
        res.samples += 1

    def run(self) -> None:
        while True:
            self.sample()
            if self._stop_event.wait(self.interval):
                return

    def finish(self) -> TreeSample:
        self._stop_event.set()
        self.join()
        return self.result


# --------------------------------------------------------------------------- stats and output


def run_captured(argv: Sequence[str], timeout: float, env: Mapping[str, str] | None = None
                 ) -> subprocess.CompletedProcess[str]:
    """``argv`` run with stdin closed and its output captured as text, in
    ``safe_env()`` unless ``env`` is given."""
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                          env=dict(env) if env else safe_env(), stdin=subprocess.DEVNULL)


def tool_version(argv: Sequence[str]) -> str:
    """The first line a tool prints for its version ("" when it cannot say)."""
    try:
        r = run_captured(argv, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    text = (r.stdout or r.stderr).strip()
    return text.splitlines()[0] if text else ""


@dataclass
class TimedRuns:
    """One tool's timed runs in a benchmark, or why it has none."""

    name: str
    seconds: list[float] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None and bool(self.seconds)

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {"ok": self.ok, "runs": self.seconds, "error": self.error, "notes": self.notes}
        if self.seconds:
            d.update(median=median(self.seconds), min=min(self.seconds), max=max(self.seconds))
        return d

    def line(self, width: int, error_chars: int) -> str:
        """The report's row: median, min, max, count and every run (or why none)."""
        if not self.ok:
            return f"  {self.name:<{width}} {'FAILED':>9}   {(self.error or 'no runs').splitlines()[0][:error_chars]}"
        s = self.seconds
        return (f"  {self.name:<{width}} {median(s):8.2f}s {min(s):8.2f}s {max(s):8.2f}s   {len(s)}   "
                + " ".join(f"{x:.2f}" for x in s))


def skipped_line(name: str, width: int) -> str:
    return f"  {name:<{width}} {'skipped':>9}"


def median(xs: Sequence[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def loadavg() -> str:
    return (_read("/proc/loadavg") or "").strip()


def bench_lock(work: Path, prog: str) -> IO[str] | None:
    """The lock every benchmark holds for its whole run (they share the machine,
    and bench/.work); None, said on stderr, when another benchmark holds it."""
    import fcntl
    import sys

    lock = open(work / ".lock", "w")  # noqa: SIM115 - the caller holds it for the whole run
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        print(f"{prog}: another benchmark holds {work / '.lock'}", file=sys.stderr)
        return None
    return lock


def check_free_space(path: Path, need: int, what: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(path).free
    if free < need:
        raise ToolError(f"not enough disk space for {what} under {path}: {fmt_bytes(free)} free, "
                        f"{fmt_bytes(need)} needed")


# --------------------------------------------------------------------------- a private containerd

# Everything a benchmark does not need; CRI above all (it would want CNI, and it
# would start sandboxes of its own).
CONTAINERD_DISABLED = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
]


def containerd_config(base: Path, *, cri: str = "") -> Path:
    """A config for a private containerd with everything under ``base`` (root,
    state, temp, sockets); returns its path.  CRI is off unless ``cri`` gives
    the plugin's TOML tables, which are appended."""
    cfg = base / "config.toml"
    disabled = ", ".join(f'"{p}"' for p in CONTAINERD_DISABLED if not (cri and p == "io.containerd.grpc.v1.cri"))
    cfg.write_text(
        "version = 2\n"
        f'root = "{base}/root"\n'
        f'state = "{base}/state"\n'
        f'temp = "{base}/tmp"\n'
        f"disabled_plugins = [{disabled}]\n"
        "[grpc]\n"
        f'  address = "{base}/containerd.sock"\n'
        "[ttrpc]\n"
        f'  address = "{base}/containerd.sock.ttrpc"\n'
        "[debug]\n"
        '  address = ""\n'
        '  level = "warn"\n'
        "[metrics]\n"
        '  address = ""\n'
        + cri
    )
    (base / "tmp").mkdir(exist_ok=True)
    return cfg


@dataclass
class Containerd:
    base: Path
    proc: subprocess.Popen[bytes]
    log: Path
    namespace: str

    @property
    def sock(self) -> Path:
        return self.base / "containerd.sock"

    def ctr(self, *args: str) -> list[str]:
        """argv of a ``ctr`` command against this instance, in its namespace."""
        return ["ctr", "--address", str(self.sock), "--namespace", self.namespace, *args]


@contextlib.contextmanager
def run_containerd(children: Children, base: Path, *, namespace: str = "default",
                   timeout: float = 30, config: Path | None = None) -> Iterator[Containerd]:
    """A private containerd on ``base`` (see ``containerd_config``; ``config``
    replaces that config: it must put the gRPC socket at ``base/containerd.sock``),
    ready when yielded, stopped at exit. Its shims outlive it: stopping
    containers is the caller's job."""
    cfg = config or containerd_config(base)
    log = base.parent / f"{base.name}.containerd.log"
    with open(log, "wb") as logf:
        proc = children.start(["containerd", "--config", str(cfg)], stdout=logf, stderr=subprocess.STDOUT)
    inst = Containerd(base, proc, log, namespace)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise ToolError(f"containerd exited ({proc.returncode}):\n{tail(log)}")
            if inst.sock.exists():
                r = subprocess.run(inst.ctr("version"), capture_output=True, timeout=10, env=safe_env(),
                                   stdin=subprocess.DEVNULL)
                if r.returncode == 0:
                    break
            if time.monotonic() > deadline:
                raise ToolError(f"containerd did not come up in {timeout:.0f} s:\n{tail(log)}")
            time.sleep(0.05)
        yield inst
    finally:
        children.stop(proc, grace=15)


# --------------------------------------------------------------------------- processes on the host


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    comm: str
    argv: tuple[str, ...]


def processes() -> dict[int, ProcInfo]:
    """Every process visible in /proc (kernel threads have an empty argv)."""
    found: dict[int, ProcInfo] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        stat = _read(f"/proc/{name}/stat")
        raw = None
        with contextlib.suppress(OSError), open(f"/proc/{name}/cmdline", "rb") as f:
            raw = f.read()
        if not stat or raw is None:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split(maxsplit=2)[1])
        argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0")[:-1])
        found[int(name)] = ProcInfo(int(name), ppid, comm, argv)
    return found


def descendants(table: Mapping[int, ProcInfo], roots: set[int]) -> set[int]:
    """``roots`` and every process below them."""
    children: dict[int, list[int]] = {}
    for info in table.values():
        children.setdefault(info.ppid, []).append(info.pid)
    out: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.add(pid)
            todo.extend(children.get(pid, ()))
    return out


def mentioning(table: Mapping[int, ProcInfo], markers: Sequence[str]) -> set[int]:
    """Processes with one of ``markers`` somewhere in their argv, this one and its ancestors aside."""
    mine, pid = set(), os.getpid()
    while pid > 1 and pid not in mine:
        mine.add(pid)
        pid = table[pid].ppid if pid in table else 0
    return {p.pid for p in table.values() if p.pid not in mine and any(m in a for a in p.argv for m in markers)}


def same_namespaces(pid: int, kinds: Sequence[str] = ("pid", "mnt")) -> bool:
    """Whether ``pid`` shares this process's namespaces of ``kinds`` (False if it is gone)."""
    try:
        return all(os.readlink(f"/proc/{pid}/ns/{k}") == os.readlink(f"/proc/self/ns/{k}") for k in kinds)
    except OSError:
        return False


def memory_of(pid: int) -> tuple[int, int] | None:
    """(RSS, PSS) in bytes from /proc/PID/smaps_rollup, or None if it is gone."""
    rollup = _read(f"/proc/{pid}/smaps_rollup")
    if not rollup:
        return None
    return _status_kb(rollup, "Rss:") * 1024, _status_kb(rollup, "Pss:") * 1024


def kill_processes(pids: set[int], timeout: float = 10) -> set[int]:
    """SIGKILL ``pids`` and wait until they are gone (reaped by whoever is their
    parent); returns those still there after ``timeout``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    left = set(pids)
    while left and time.monotonic() < deadline:
        for pid in list(left):
            stat = _read(f"/proc/{pid}/stat")
            if stat is None or stat[stat.rindex(")") + 2] == "Z":
                left.discard(pid)
        if left:
            time.sleep(0.05)
    return left


# --------------------------------------------------------------------------- cgroups

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_dirs(rel: str) -> list[Path]:
    """``rel`` in every mounted hierarchy (v1 controllers and the v2 mount), if it exists."""
    rel = rel.strip("/")
    found = []
    for mp in sorted(set(_cgroup_mounts())):
        d = Path(mp) / rel
        if d.is_dir():
            found.append(d)
    return found


def _cgroup_mounts() -> list[str]:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] in ("cgroup", "cgroup2"):
                out.append(_unescape(left.split()[4]))
    return out


def remove_cgroup(rel: str, timeout: float = 5) -> list[str]:
    """rmdir the cgroup ``rel`` and everything below it in every hierarchy
    (each must be empty of processes); returns what could not be removed."""
    deadline = time.monotonic() + timeout
    while True:
        failed = []
        for top in cgroup_dirs(rel):
            below = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*below, top]:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError as e:
                    failed.append(f"{d}: {e.strerror}")
        if not failed or time.monotonic() > deadline:
            return failed
        time.sleep(0.1)
