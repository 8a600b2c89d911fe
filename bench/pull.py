"""Pull benchmark: cold pull-and-unpack of a realistic image from a local registry.

Compares hawser with containerd (a private instance, overlayfs snapshotter, timed
`ctr images pull`) and with the native floor (per layer, in parallel:
curl | pigz -d | tar -x). See bench/README.md. Run through bench/pull.sh."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from _common import (
    MB,
    MIB,
    REPO,
    WORK,
    Children,
    Registry,
    Scratch,
    TimedRuns,
    ToolError,
    TreeSample,
    TreeSampler,
    bench_lock,
    check_free_space,
    containerd_config,
    fmt_bytes,
    install_signal_handlers,
    loadavg,
    loop_available,
    median,
    mounts_under,
    remove_tree,
    run_captured,
    run_registry,
    safe_env,
    skipped_line,
    tail,
    tool_version,
)
from _image import BuiltImage, load_or_build, push

REPO_NAME = "bench/image"
TAG = "latest"
TARGET_RATIO = 0.5
TARGET_RSS = 150 * MB

@dataclass
class ToolResult(TimedRuns):
    rss: list[dict[str, int]] = field(default_factory=list)  # hawser only, one per run

    def summary(self) -> dict[str, Any]:
        d = super().summary()
        if self.rss:
            d["rss"] = self.rss
            d["main_peak_rss"] = max(r["main_peak"] for r in self.rss)
            d["tree_peak_rss"] = max(r["tree_rss_peak"] for r in self.rss)
            d["tree_peak_pss"] = max(r["tree_pss_peak"] for r in self.rss)
            d["max_single_process_rss"] = max(r["wait4_maxrss"] for r in self.rss)
        return d


def _run(argv: list[str], timeout: float = 60, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_captured(argv, timeout, env)


def _wait(children: Children, proc: subprocess.Popen[bytes], timeout: float, what: str) -> int:
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        children.stop(proc, grace=2)
        raise ToolError(f"{what}: timed out after {timeout:.0f} s") from None


# --------------------------------------------------------------------------- the native floor


def floor_run(children: Children, reg: Registry, img: BuiltImage, base: Path, timeout: float) -> float:
    procs = []
    try:
        t0 = time.monotonic()
        for i, layer in enumerate(img.layers):
            d = base / f"layer{i}"
            d.mkdir()
            url = reg.url(f"/v2/{REPO_NAME}/blobs/{layer.digest}")
            cmd = f"curl -sSf --noproxy '*' '{url}' | pigz -d | tar -x -C '{d}'"
            with open(base / f"layer{i}.err", "wb") as err:
                procs.append((layer.name, children.start(["bash", "-o", "pipefail", "-c", cmd], stderr=err), err.name))
        deadline = t0 + timeout
        for name, p, errname in procs:
            rc = _wait(children, p, max(1.0, deadline - time.monotonic()), f"floor layer {name}")
            if rc != 0:
                raise ToolError(f"floor: curl | pigz -d | tar -x failed for layer {name} ({rc}):\n{tail(Path(errname))}")
        return time.monotonic() - t0
    finally:
        for _, p, _ in procs:
            children.stop(p, grace=2)
        remove_tree(base)


# --------------------------------------------------------------------------- containerd


def containerd_run(children: Children, ref: str, nlayers: int, base: Path, timeout: float) -> tuple[float, str]:
    """One cold `ctr images pull` against a fresh private containerd; returns (seconds, note)."""
    sock = base / "containerd.sock"
    log = base.parent / f"{base.name}.log"
    cfg = containerd_config(base)
    with open(log, "wb") as logf:
        daemon = children.start(["containerd", "--config", str(cfg)], stdout=logf, stderr=subprocess.STDOUT)
    ctr = ["ctr", "--address", str(sock), "--namespace", "default"]
    pull: subprocess.Popen[bytes] | None = None
    try:
        deadline = time.monotonic() + 30
        while True:
            if daemon.poll() is not None:
                raise ToolError(f"containerd exited ({daemon.returncode}):\n{tail(log)}")
            if sock.exists() and _run([*ctr, "version"], timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise ToolError(f"containerd did not come up in 30 s:\n{tail(log)}")
            time.sleep(0.05)
        with open(base.parent / f"{base.name}.ctr.out", "wb") as out:
            t0 = time.monotonic()
            pull = children.start([*ctr, "images", "pull", "--plain-http", "--snapshotter", "overlayfs", ref],
                                  stdout=out, stderr=subprocess.STDOUT)
            rc = _wait(children, pull, timeout, "ctr images pull")
            elapsed = time.monotonic() - t0
        children.stop(pull)
        if rc != 0:
            raise ToolError(f"ctr images pull failed ({rc}):\n{tail(Path(out.name))}\ncontainerd log:\n{tail(log)}")
        # Verify the unpack: one committed overlayfs snapshot per layer.
        snaps = _run([*ctr, "snapshots", "--snapshotter", "overlayfs", "ls"])
        committed = [ln for ln in snaps.stdout.splitlines()[1:] if ln.split() and ln.split()[-1] == "Committed"]
        if snaps.returncode != 0 or len(committed) != nlayers:
            raise ToolError(f"containerd did not unpack into overlayfs: expected {nlayers} committed snapshots, "
                            f"`ctr snapshots ls` says:\n{snaps.stdout}{snaps.stderr}")
        mounts = [m for m in mounts_under(base) if m != str(base.resolve())]  # the scratch fs itself aside
        note = f"{len(committed)} committed overlayfs snapshots" + (f", {len(mounts)} mounts left" if mounts else "")
        return elapsed, note
    finally:
        if pull is not None:
            children.stop(pull, grace=2)
        children.stop(daemon, grace=15)
        remove_tree(base)


# --------------------------------------------------------------------------- hawser


def hawser_run(children: Children, hawser: str, ref: str, base: Path, timeout: float) -> tuple[float, dict[str, int], str]:
    """One cold `hawser pull` into a fresh root; returns (seconds, rss, note)."""
    root, state = base / "root", base / "state"
    out, err = base.parent / f"{base.name}.out", base.parent / f"{base.name}.err"
    argv = [hawser, "--root", str(root), "--state", str(state), "pull", "--plain-http", "-q", ref]
    proc: subprocess.Popen[bytes] | None = None
    sampler: TreeSampler | None = None
    timed_out = threading.Event()
    try:
        with open(out, "wb") as o, open(err, "wb") as e:
            t0 = time.monotonic()
            proc = children.start(argv, stdout=o, stderr=e)
            sampler = TreeSampler(proc.pid)
            sampler.start()
            pgid = proc.pid

            def _kill() -> None:
                timed_out.set()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pgid, signal.SIGKILL)

            killer = threading.Timer(timeout, _kill)
            killer.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            finally:
                killer.cancel()
            elapsed = time.monotonic() - t0
            proc.returncode = os.waitstatus_to_exitcode(status)
            sample: TreeSample = sampler.finish()
            children.stop(proc, grace=1)  # reaps nothing; kills leftover workers in its group
        if timed_out.is_set():
            raise ToolError(f"hawser pull timed out after {timeout:.0f} s\nstderr:\n{tail(err, 60)}")
        if proc.returncode != 0:
            raise ToolError(f"hawser pull exited {proc.returncode} after {elapsed:.1f} s\n"
                            f"command: {' '.join(argv)}\nstderr:\n{tail(err, 60)}\nstdout:\n{tail(out, 10)}")
        rss = {"main_peak": sample.main_peak, "tree_rss_peak": sample.tree_rss_peak,
               "tree_pss_peak": sample.tree_pss_peak, "wait4_maxrss": usage.ru_maxrss * 1024,
               "max_procs": sample.max_procs, "samples": sample.samples}
        # Not timed: is the image there?
        listing = _run([hawser, "--root", str(root), "--state", str(state), "images", "--format", "json"])
        note = "image listed by `hawser images`"
        try:
            names = [i.get("name", "") for i in json.loads(listing.stdout)]
            if not any(REPO_NAME in n for n in names):
                note = f"WARNING: `hawser images` does not list the image: {names}"
        except (ValueError, AttributeError):
            note = f"WARNING: `hawser images --format json` failed ({listing.returncode}): {listing.stderr.strip()[-300:]}"
        mounts = [m for m in mounts_under(base) if m != str(base.resolve())]  # the scratch fs itself aside
        if mounts:
            note += f"; {len(mounts)} mounts left by pull: {mounts[:3]}"
        return elapsed, rss, note
    finally:
        if proc is not None:
            children.stop(proc, grace=2)  # interrupted: stop it before deleting its root
        if sampler is not None:
            sampler.finish()
        remove_tree(base)


def hawser_preflight(hawser: str) -> str | None:
    if not os.access(hawser, os.X_OK):
        return f"{hawser} is not executable (run scripts/setup.sh)"
    try:
        r = _run([hawser, "--help"], timeout=60)
    except subprocess.TimeoutExpired:
        return f"{hawser} --help timed out"
    if r.returncode != 0:
        return f"{hawser} --help failed ({r.returncode}):\n{(r.stderr or r.stdout)[-2000:]}"
    return None


# --------------------------------------------------------------------------- report


def report(img: BuiltImage, ref: str, results: dict[str, ToolResult | None], extra: dict[str, Any],
           out: Path) -> None:
    floor, ctrd, hws = results.get("floor"), results.get("containerd"), results.get("hawser")
    print()
    print(f"image  {ref}  (manifest {img.manifest_digest[:19]}...)")
    print(f"       {len(img.layers)} layers, {img.files:,} files ({img.entries:,} tar entries), "
          f"{fmt_bytes(img.compressed)} compressed, {fmt_bytes(img.uncompressed)} uncompressed")
    for x in img.layers:
        print(f"         {x.name:8} {x.files:6,} files  {fmt_bytes(x.uncompressed):>9} -> {fmt_bytes(x.size):>9}")
    print(f"host   {os.cpu_count()} cpus, {platform.release()}, scratch {extra['scratch']}, load before {extra['load_before']}, "
          f"after {extra['load_after']}")
    print()
    print(f"  {'cold pull':<12} {'median':>9} {'min':>9} {'max':>9}   n   runs (s)")
    for name in ("floor", "containerd", "hawser"):
        res = results.get(name)
        print(skipped_line(name, 12) if res is None else res.line(12, 90))
    print()
    ratios: dict[str, float | None] = {"hawser_over_containerd": None, "hawser_over_floor": None,
                                       "containerd_over_floor": None}
    if ctrd and ctrd.ok and floor and floor.ok:
        ratios["containerd_over_floor"] = median(ctrd.seconds) / median(floor.seconds)
        print(f"  containerd / floor   {ratios['containerd_over_floor']:.2f}x")
    if hws and hws.ok:
        hm = median(hws.seconds)
        if ctrd and ctrd.ok:
            r = ratios["hawser_over_containerd"] = hm / median(ctrd.seconds)
            print(f"  hawser / containerd  {r:.2f}x   (target <= {TARGET_RATIO:.2f}: {'met' if r <= TARGET_RATIO else 'MISSED'})")
        if floor and floor.ok:
            r = ratios["hawser_over_floor"] = hm / median(floor.seconds)
            print(f"  hawser / floor       {r:.2f}x")
        s = hws.summary()
        main_peak = s["main_peak_rss"]
        print(f"  hawser peak RSS      CLI process {main_peak / MIB:.0f} MiB = {main_peak / MB:.0f} MB "
              f"(target <= {TARGET_RSS / MB:.0f} MB: {'met' if main_peak <= TARGET_RSS else 'MISSED'})")
        print(f"                       process tree: RSS sum {s['tree_peak_rss'] / MB:.0f} MB, PSS sum "
              f"{s['tree_peak_pss'] / MB:.0f} MB, up to {max(x['max_procs'] for x in hws.rss)} processes; "
              f"largest single process (wait4) {s['max_single_process_rss'] / MB:.0f} MB")
    for name, res in results.items():
        if res is not None:
            for note in sorted(set(res.notes)):
                print(f"  note ({name}): {note}")
    for name, res in results.items():
        if res is not None and res.error:
            print(f"\n{name} FAILED:\n{res.error}")
    doc = {
        "reference": ref,
        "image": {"manifest": img.manifest_digest, "layers": [asdict(x) for x in img.layers],
                  "layer_count": len(img.layers), "files": img.files, "entries": img.entries,
                  "compressed": img.compressed, "uncompressed": img.uncompressed,
                  "build_seconds": img.build_seconds},
        "results": {k: (v.summary() if v else None) for k, v in results.items()},
        "ratios": ratios,
        "targets": {"hawser_over_containerd": TARGET_RATIO, "hawser_main_peak_rss": TARGET_RSS},
        **extra,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {out}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="cold runs per tool (median reported) [3]")
    ap.add_argument("--skip-hawser", action="store_true")
    ap.add_argument("--skip-containerd", action="store_true")
    ap.add_argument("--skip-floor", action="store_true")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the image even if cached")
    ap.add_argument("--hawser", default=str(REPO / ".venv/bin/hawser"), help="hawser executable")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed per pull [600]")
    ap.add_argument("--scratch", choices=["loop", "dir"], default="loop",
                    help="where each run writes: a fresh loop-mounted ext4 per run, or plain directories [loop]")
    ap.add_argument("--workdir", type=Path, default=WORK, help="cache and scratch space [bench/.work]")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if os.geteuid() != 0:
        print("pull.py: needs root (containerd, overlayfs)", file=sys.stderr)
        return 2
    for tool in ("pigz", "curl", "tar", "containerd", "ctr", "docker-registry"):
        if not shutil.which(tool):
            print(f"pull.py: {tool} not found (run bench/pull.sh)", file=sys.stderr)
            return 2
    install_signal_handlers()
    os.environ.update(safe_env())  # the proxy safety net for everything, this process included

    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    lockf = bench_lock(work, "pull.py")
    if lockf is None:
        return 2
    runs_dir = work / "runs"
    remove_tree(runs_dir)  # leftovers of an interrupted run (we hold the lock)
    children = Children()
    results: dict[str, ToolResult | None] = {
        "floor": None if args.skip_floor else ToolResult("floor"),
        "containerd": None if args.skip_containerd else ToolResult("containerd"),
        "hawser": None if args.skip_hawser else ToolResult("hawser"),
    }
    rc = 0
    try:
        print("== image", flush=True)
        t0 = time.monotonic()
        img, blobdir = load_or_build(work, rebuild=args.rebuild)
        built = time.monotonic() - t0
        print(f"   {len(img.layers)} layers, {img.files:,} files, {fmt_bytes(img.compressed)} compressed, "
              f"{fmt_bytes(img.uncompressed)} uncompressed "
              + (f"(built in {built:.1f} s)" if built > 1 else "(cached)"), flush=True)
        check_free_space(work, 2 * img.uncompressed + img.compressed + 300 * MB, "the pulls")
        scratch_mode = args.scratch
        if scratch_mode == "loop" and (why := loop_available()):
            print(f"   no loop-mounted scratch filesystem ({why}): plain directories instead", flush=True)
            scratch_mode = "dir"
        runs_dir.mkdir(parents=True, exist_ok=True)
        scratch = Scratch(runs_dir, scratch_mode, max(4 << 30, 3 * img.uncompressed + (1 << 30)))
        with run_registry(children, work / "registry", runs_dir) as reg:
            ref = f"{reg.host}/{REPO_NAME}:{TAG}"
            t0 = time.monotonic()
            sent = push(reg, REPO_NAME, TAG, img, blobdir)
            print(f"== registry {reg.host}: pushed {ref} ({fmt_bytes(sent)} uploaded, {time.monotonic() - t0:.1f} s)",
                  flush=True)
            # Same page-cache state for every tool: read every blob once through the registry.
            with httpx.Client(trust_env=False, timeout=300) as client:
                for layer in img.layers:
                    with client.stream("GET", reg.url(f"/v2/{REPO_NAME}/blobs/{layer.digest}")) as r:
                        r.raise_for_status()
                        for _ in r.iter_bytes(MIB):
                            pass
            hws = results["hawser"]
            if hws is not None:
                hws.error = hawser_preflight(args.hawser)
            extra: dict[str, Any] = {
                "scratch": scratch_mode, "load_before": loadavg(), "cpus": os.cpu_count(), "kernel": platform.release(),
                "containerd_version": tool_version(["containerd", "--version"]),
                "hawser_version": tool_version([args.hawser, "--version"]) if hws else None,
            }
            for i in range(args.runs):
                print(f"== round {i + 1}/{args.runs}", flush=True)
                res = results["floor"]
                if res is not None and res.error is None:
                    try:
                        s = floor_run(children, reg, img, scratch.make(f"floor-{i}"), args.timeout)
                        res.seconds.append(s)
                        print(f"   floor       {s:7.2f} s", flush=True)
                    except ToolError as e:
                        res.error = str(e)
                        print(f"   floor       FAILED: {str(e).splitlines()[0]}", flush=True)
                    os.sync()
                res = results["containerd"]
                if res is not None and res.error is None:
                    try:
                        s, note = containerd_run(children, ref, len(img.layers), scratch.make(f"containerd-{i}"),
                                                 args.timeout)
                        res.seconds.append(s)
                        res.notes.append(note)
                        print(f"   containerd  {s:7.2f} s   ({note})", flush=True)
                    except ToolError as e:
                        res.error = str(e)
                        print(f"   containerd  FAILED: {str(e).splitlines()[0]}", flush=True)
                    os.sync()
                res = results["hawser"]
                if res is not None and res.error is None:
                    try:
                        s, rss, note = hawser_run(children, args.hawser, ref, scratch.make(f"hawser-{i}"), args.timeout)
                        res.seconds.append(s)
                        res.rss.append(rss)
                        res.notes.append(note)
                        print(f"   hawser      {s:7.2f} s   peak RSS {rss['main_peak'] / MB:.0f} MB "
                              f"(tree {rss['tree_rss_peak'] / MB:.0f} MB)", flush=True)
                    except ToolError as e:
                        res.error = str(e)
                        print(f"   hawser      FAILED: {str(e).splitlines()[0]}", flush=True)
                    os.sync()
            extra["load_after"] = loadavg()
            extra["runs_requested"] = args.runs
            report(img, ref, results, extra, work / "pull-results.json")
        if any(r is not None and not r.ok for r in results.values()):
            rc = 1
    except ToolError as e:
        print(f"pull.py: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("\npull.py: interrupted; cleaning up", file=sys.stderr)
        rc = 130
    finally:
        children.stop_all()
        with contextlib.suppress(ToolError, OSError):
            remove_tree(runs_dir)
        left = mounts_under(work)
        if left:
            print(f"pull.py: WARNING: mounts left under {work}: {left}", file=sys.stderr)
            rc = rc or 1
        lockf.close()
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
