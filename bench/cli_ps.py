"""`ps` benchmark (issue 18): `hawser ps -a` with 100 containers, target at most
100 ms, beside `podman ps -a` with 100 containers made the same way, in the same run.

Both stores are private and fresh (hawser: --root/--state in a temp dir;
podman: --root/--runroot in /tmp, overlay) and hold the same one-layer busybox
image, imported from a tar of this host's busybox-static.  The 100 containers:
80 created (`create IMAGE true`), 15 exited (`run IMAGE true`), 5 running
(`run -d IMAGE sleep 1000`), all with `--network none`.  Timed, one cold CLI
process each time, interleaved: `ps -a`, `ps -a --format '{{.Names}}'`,
`ps -a --filter status=exited -q`, and podman's `ps -a`.  Prints the medians,
min, max; target: hawser's `ps -a` <= 100 ms.
Run as root: .venv/bin/python bench/cli_ps.py [--runs N] [--skip-podman]"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, TimedRuns, median, remove_cgroup, safe_env, tool_version
from cli_network import busybox_tar

TARGET_SECONDS = 0.100
PODMAN = "/usr/bin/podman"
HAWSER = str(REPO / ".venv" / "bin" / "hawser")
IMAGE = "localhost/bench/busybox:latest"
PODMAN_RUN = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
MIX = (("create", 80), ("exited", 15), ("running", 5))


def check(argv: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-6:])} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")


def timed(argv: list[str], env: dict[str, str], expect_lines: int | None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[-4:])} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    if expect_lines is not None and len(proc.stdout.splitlines()) != expect_lines:
        raise RuntimeError(f"{' '.join(argv[-4:])}: {len(proc.stdout.splitlines())} lines, not {expect_lines}")
    return took


def populate(tool: list[str], run_flags: tuple[str, ...], env: dict[str, str]) -> None:
    """The 100 containers of MIX, made through ``tool``."""
    for kind, count in MIX:
        for _ in range(count):
            if kind == "create":
                check([*tool, "create", *run_flags, IMAGE, "true"], env)
            elif kind == "exited":
                check([*tool, "run", *run_flags, IMAGE, "true"], env)
            else:
                check([*tool, "run", "-d", *run_flags, IMAGE, "sleep", "1000"], env)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--skip-podman", action="store_true")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("cli_ps.py: run as root", file=sys.stderr)
        return 2
    total = sum(n for _, n in MIX)
    work = Path(tempfile.mkdtemp(prefix="hwps-"))  # short: podman's runroot must be <= 50 chars
    env = safe_env()
    hawser = [HAWSER, "--root", str(work / "h-root"), "--state", str(work / "h-state")]
    podman = [PODMAN, "--root", str(work / "p-root"), "--runroot", str(work / "p-run"), "--tmpdir",
              str(work / "p-tmp"), "--storage-driver", "overlay", "--events-backend", "none",
              "--cgroup-manager", "cgroupfs"]
    timings = {
        "hawser ps -a": ([*hawser, "ps", "-a"], total + 1),
        "hawser ps -a --format": ([*hawser, "ps", "-a", "--format", "{{.Names}}"], total),
        "hawser ps --filter -q": ([*hawser, "ps", "-a", "--filter", "status=exited", "-q"], MIX[1][1]),
        "podman ps -a": ([*podman, "ps", "-a"], total + 1),
    }
    if args.skip_podman:
        del timings["podman ps -a"]
    results = {name: TimedRuns(name) for name in timings}
    made = time.perf_counter()
    try:
        tar = work / "busybox.tar"
        busybox_tar(tar)
        check([*hawser, "import", "-q", str(tar), IMAGE], env)
        populate(hawser, ("--network", "none"), env)
        made_hawser = time.perf_counter() - made
        if not args.skip_podman:
            check([*podman, "import", "-q", str(tar), IMAGE], env)
            populate(podman, (*PODMAN_RUN, "--network", "none"), env)
        for _ in range(args.warmup):
            for argv, lines in timings.values():
                timed(argv, env, lines)
        for _ in range(args.runs):
            for name, (argv, lines) in timings.items():
                try:
                    results[name].seconds.append(timed(argv, env, lines))
                except RuntimeError as exc:
                    results[name].error = str(exc)
    finally:
        if not args.skip_podman:
            subprocess.run([*podman, "rm", "-a", "-f", "-t", "0"], capture_output=True, env=env)
            subprocess.run([*podman, "rmi", "-a", "-f"], capture_output=True, env=env)
        ids = subprocess.run([*hawser, "ps", "-a", "-q"], capture_output=True, text=True, env=env).stdout.split()
        if ids:
            subprocess.run([*hawser, "rm", "-f", *ids], capture_output=True, env=env)
        store_id = work / "h-root" / "store-id"
        if store_id.exists():  # the store's cgroup parent, /hawser/<id[:12]>, runc leaves behind
            remove_cgroup(f"hawser/{store_id.read_text().strip()[:12]}")
        subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    print(f"CLI ps with {total} containers ({', '.join(f'{n} {k}' for k, n in MIX)}), {args.runs} runs each "
          f"(after {args.warmup} warm-up); hawser made them in {made_hawser:.1f}s")
    print(f"  hawser {tool_version([HAWSER, '--version'])}; {tool_version([PODMAN, '--version'])}")
    print(f"  {'command':<24} {'median':>9} {'min':>9} {'max':>9}   n   runs")
    for r in results.values():
        print(_ms_line(r))
    h = results["hawser ps -a"]
    if h.ok:
        verdict = "met" if median(h.seconds) <= TARGET_SECONDS else "MISSED"
        print(f"  hawser ps -a: {median(h.seconds) * 1000:.0f} ms (target <= {TARGET_SECONDS * 1000:.0f} ms: {verdict})")
        p = results.get("podman ps -a")
        if p is not None and p.ok:
            print(f"  hawser / podman: {median(h.seconds) / median(p.seconds):.2f}x")
    return 0 if all(r.ok for r in results.values()) else 1


def _ms_line(r: TimedRuns) -> str:
    if not r.ok:
        return f"  {r.name:<24} {'FAILED':>9}   {(r.error or 'no runs').splitlines()[0][:80]}"
    s = r.seconds
    return (f"  {r.name:<24} {median(s) * 1000:7.1f}ms {min(s) * 1000:7.1f}ms {max(s) * 1000:7.1f}ms   {len(s)}   "
            + " ".join(f"{x * 1000:.0f}" for x in s))


if __name__ == "__main__":
    sys.exit(main())
