"""Push benchmark: the bench image from a local store to an empty local registry.

Compares ``hawser push`` (the image imported into a hawser store beforehand)
with ``skopeo copy oci:LAYOUT docker://...`` of the same image from an OCI
layout, and with ``podman push`` (the image pulled into a private podman
storage beforehand) when podman can run here. Each timed push goes to a fresh,
empty docker-registry. See bench/README.md. Run through bench/push.sh."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from _common import (
    MIB,
    REPO,
    WORK,
    Children,
    Registry,
    Scratch,
    TimedRuns,
    ToolError,
    bench_lock,
    check_free_space,
    fmt_bytes,
    install_signal_handlers,
    loadavg,
    loop_available,
    median,
    remove_tree,
    run_captured,
    run_registry,
    safe_env,
    skipped_line,
    tool_version,
)
from _image import OCI_MANIFEST, BuiltImage, load_or_build

REPO_NAME = "bench/pushed"
TAG = "latest"
SOURCE_NAME = "127.0.0.1:1/bench/image:latest"  # the image's name in hawser's and podman's stores (never contacted)
TARGET_RATIO = 1.0  # hawser / skopeo
TOOLS = ("hawser", "skopeo", "podman")


def _run(argv: list[str], timeout: float = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_captured(argv, timeout, env)


def _first_line(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else ""


# --------------------------------------------------------------------------- the sources


def write_layout(img: BuiltImage, blobdir: Path, layout: Path) -> None:
    """An OCI image layout of the built image (blobs hard-linked from the cache), tagged ``TAG``."""
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    for digest in [img.manifest_digest, img.config_digest, *(x.digest for x in img.layers)]:
        hexd = digest.split(":", 1)[1]
        try:
            os.link(blobdir / hexd, blobs / hexd)
        except OSError:
            shutil.copyfile(blobdir / hexd, blobs / hexd)
    (layout / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    (layout / "index.json").write_text(json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": img.manifest_digest, "size": img.manifest_size,
                       "annotations": {"org.opencontainers.image.ref.name": TAG}}],
    }))


def hawser_argv(hawser: str, base: Path) -> list[str]:
    return [hawser, "--root", str(base / "root"), "--state", str(base / "state")]


def hawser_prepare(hawser: str, base: Path, layout: Path) -> None:
    r = _run([*hawser_argv(hawser, base), "image", "import", "-q", "--name", SOURCE_NAME, str(layout)])
    if r.returncode != 0:
        raise ToolError(f"hawser image import failed ({r.returncode}): {_first_line(r.stderr or r.stdout)}")


def podman_argv(base: Path) -> list[str]:
    return ["podman", "--root", str(base / "root"), "--runroot", str(base / "runroot"), "--storage-driver", "overlay",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file", "--tmpdir", str(base / "tmp")]


def podman_prepare(base: Path, layout: Path) -> None:
    """The image into podman's private storage, named ``SOURCE_NAME`` (skopeo writes
    it there: ``podman pull oci:`` names it after the layout's path, which ``.work`` makes invalid)."""
    (base / "tmp").mkdir(parents=True, exist_ok=True)
    storage = f"containers-storage:[overlay@{base / 'root'}+{base / 'runroot'}]{SOURCE_NAME}"
    r = _run(["skopeo", "--insecure-policy", "copy", "-q", f"oci:{layout}:{TAG}", storage])
    if r.returncode != 0:
        raise ToolError(f"cannot put the image into podman's storage ({r.returncode}): "
                        f"{_first_line(r.stderr or r.stdout)}")
    r = _run([*podman_argv(base), "image", "exists", SOURCE_NAME])
    if r.returncode != 0:
        raise ToolError(f"podman cannot run here ({r.returncode}): {_first_line(r.stderr or r.stdout)}")


def warm(paths: list[Path]) -> int:
    """Read every file under ``paths`` once: every tool starts from the same warm page cache."""
    total = 0
    for top in paths:
        for dirpath, _, names in os.walk(top):
            for name in names:
                with open(os.path.join(dirpath, name), "rb") as f:
                    while chunk := f.read(4 * MIB):
                        total += len(chunk)
    return total


# --------------------------------------------------------------------------- one timed push


def timed_push(tool: str, reg: Registry, args: argparse.Namespace, work: Path, layout: Path) -> tuple[float, str]:
    dest = f"{reg.host}/{REPO_NAME}:{TAG}"
    if tool == "hawser":
        argv = [*hawser_argv(args.hawser, work / "hawser"), "push", "--plain-http", "-q"]
        if args.chunk_size:
            argv += ["--chunk-size", args.chunk_size]
        argv += [SOURCE_NAME, dest]
    elif tool == "skopeo":
        argv = ["skopeo", "--insecure-policy", "copy", "-q", "--dest-tls-verify=false", f"oci:{layout}:{TAG}",
                f"docker://{dest}"]
    else:
        argv = [*podman_argv(work / "podman"), "push", "-q", "--tls-verify=false", SOURCE_NAME, f"docker://{dest}"]
    t0 = time.monotonic()
    r = _run(argv, timeout=args.timeout)
    seconds = time.monotonic() - t0
    if r.returncode != 0:
        raise ToolError(f"{tool} push failed ({r.returncode}): {(r.stderr or r.stdout)[-2000:]}")
    with httpx.Client(trust_env=False, timeout=30) as client:
        resp = client.head(reg.url(f"/v2/{REPO_NAME}/manifests/{TAG}"),
                           headers={"Accept": f"{OCI_MANIFEST}, application/vnd.docker.distribution.manifest.v2+json"})
    if resp.status_code != 200:
        raise ToolError(f"{tool}: the registry has no {REPO_NAME}:{TAG} after the push ({resp.status_code})")
    return seconds, resp.headers.get("docker-content-digest", "")


# --------------------------------------------------------------------------- report


def report(img: BuiltImage, results: dict[str, TimedRuns | None], extra: dict[str, Any], out: Path) -> None:
    print()
    print(f"image  {len(img.layers)} layers, {fmt_bytes(img.compressed)} compressed "
          f"(manifest {img.manifest_digest[:19]}...)")
    print(f"host   {os.cpu_count()} cpus, {platform.release()}, scratch {extra['scratch']}, "
          f"load before {extra['load_before']}, after {extra['load_after']}")
    print()
    print(f"  {'push':<8} {'median':>9} {'min':>9} {'max':>9}   n   runs (s)")
    for name in TOOLS:
        res = results.get(name)
        print(skipped_line(name, 8) if res is None else res.line(8, 100))
    print()
    ratios: dict[str, float | None] = {"hawser_over_skopeo": None, "hawser_over_podman": None}
    hws, sko, pod = results.get("hawser"), results.get("skopeo"), results.get("podman")
    if hws and hws.ok:
        hm = median(hws.seconds)
        if sko and sko.ok:
            r = ratios["hawser_over_skopeo"] = hm / median(sko.seconds)
            print(f"  hawser / skopeo  {r:.2f}x   (target <= {TARGET_RATIO:.2f}: {'met' if r <= TARGET_RATIO else 'MISSED'})")
        if pod and pod.ok:
            r = ratios["hawser_over_podman"] = hm / median(pod.seconds)
            print(f"  hawser / podman  {r:.2f}x")
    for name, res in results.items():
        if res is not None:
            for note in sorted(set(res.notes)):
                print(f"  note ({name}): {note}")
    for name, res in results.items():
        if res is not None and res.error:
            print(f"\n{name} FAILED:\n{res.error}")
    doc = {
        "image": {"manifest": img.manifest_digest, "layers": [asdict(x) for x in img.layers],
                  "compressed": img.compressed},
        "results": {k: (v.summary() if v else None) for k, v in results.items()},
        "ratios": ratios,
        "targets": {"hawser_over_skopeo": TARGET_RATIO},
        **extra,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"\nresults: {out}")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="pushes per tool, interleaved (median reported) [3]")
    for tool in TOOLS:
        ap.add_argument(f"--skip-{tool}", action="store_true")
    ap.add_argument("--rebuild", action="store_true", help="rebuild the image even if cached")
    ap.add_argument("--hawser", default=str(REPO / ".venv/bin/hawser"), help="hawser executable")
    ap.add_argument("--chunk-size", help="hawser push --chunk-size (default: hawser's)")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed per push [600]")
    ap.add_argument("--scratch", choices=["loop", "dir"], default="loop",
                    help="the registry's storage: a fresh loop-mounted ext4 per push, or plain directories [loop]")
    ap.add_argument("--workdir", type=Path, default=WORK, help="cache and scratch space [bench/.work]")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if os.geteuid() != 0:
        print("push.py: needs root (the stores, loop mounts)", file=sys.stderr)
        return 2
    for tool in ("docker-registry", *(() if args.skip_skopeo else ("skopeo",))):
        if not shutil.which(tool):
            print(f"push.py: {tool} not found (run bench/push.sh)", file=sys.stderr)
            return 2
    install_signal_handlers()
    os.environ.update(safe_env())

    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    lockf = bench_lock(work, "push.py")
    if lockf is None:
        return 2
    runs_dir = work / "push-runs"
    remove_tree(runs_dir)  # leftovers of an interrupted run (we hold the lock)
    children = Children()
    results: dict[str, TimedRuns | None] = {t: None if getattr(args, f"skip_{t}") else TimedRuns(t) for t in TOOLS}
    pods = results["podman"]
    if pods is not None and not shutil.which("podman"):
        pods.error = "podman is not installed (apt-get install podman)"
    rc = 0
    try:
        print("== image", flush=True)
        img, blobdir = load_or_build(work, rebuild=args.rebuild)
        print(f"   {len(img.layers)} layers, {fmt_bytes(img.compressed)} compressed", flush=True)
        check_free_space(work, 3 * img.uncompressed + 3 * img.compressed, "the stores and the registries")
        scratch_mode = args.scratch
        if scratch_mode == "loop" and (why := loop_available()):
            print(f"   no loop-mounted scratch filesystem ({why}): plain directories instead", flush=True)
            scratch_mode = "dir"
        runs_dir.mkdir(parents=True)
        scratch = Scratch(runs_dir / "registries", scratch_mode, max(2 << 30, 3 * img.compressed))
        layout = runs_dir / "layout"
        write_layout(img, blobdir, layout)
        print(f"== sources: OCI layout {layout}", flush=True)
        sources = [layout]
        hws = results["hawser"]
        if hws is not None:
            t0 = time.monotonic()
            try:
                hawser_prepare(args.hawser, runs_dir / "hawser", layout)
                sources.append(runs_dir / "hawser" / "root" / "content")
                print(f"   hawser store: imported {SOURCE_NAME} ({time.monotonic() - t0:.1f} s)", flush=True)
            except (ToolError, subprocess.TimeoutExpired) as e:
                hws.error = str(e)
        if pods is not None and pods.error is None:
            t0 = time.monotonic()
            try:
                podman_prepare(runs_dir / "podman", layout)
                print(f"   podman storage: pulled the layout ({time.monotonic() - t0:.1f} s)", flush=True)
            except (ToolError, subprocess.TimeoutExpired) as e:
                pods.error = str(e)
        warmed = warm(sources)
        print(f"   page cache warmed: {fmt_bytes(warmed)} read", flush=True)
        extra: dict[str, Any] = {
            "scratch": scratch_mode, "load_before": loadavg(), "cpus": os.cpu_count(), "kernel": platform.release(),
            "hawser_version": tool_version([args.hawser, "--version"]),
            "skopeo_version": tool_version(["skopeo", "--version"]),
            "podman_version": tool_version(["podman", "--version"]) if shutil.which("podman") else None,
            "chunk_size": args.chunk_size,
        }
        digests: dict[str, set[str]] = {}
        for i in range(args.runs):
            print(f"== round {i + 1}/{args.runs}", flush=True)
            order = TOOLS[i % len(TOOLS):] + TOOLS[:i % len(TOOLS)]  # each tool goes first in turn
            for tool in order:
                res = results[tool]
                if res is None or res.error is not None:
                    continue
                storage = scratch.make(f"{tool}-{i}")
                try:
                    with run_registry(children, storage / "registry", storage / "run") as reg:
                        seconds, digest = timed_push(tool, reg, args, runs_dir, layout)
                    res.seconds.append(seconds)
                    digests.setdefault(tool, set()).add(digest)
                    print(f"   {tool:<7} {seconds:7.2f} s   {digest[:19]}...", flush=True)
                except (ToolError, subprocess.TimeoutExpired) as e:
                    res.error = str(e)
                    print(f"   {tool:<7} FAILED: {str(e).splitlines()[0]}", flush=True)
                finally:
                    remove_tree(storage)
                os.sync()
        for tool, seen in digests.items():
            res = results[tool]
            assert res is not None
            if seen != {img.manifest_digest}:
                res.notes.append(f"pushed manifest {', '.join(sorted(seen))}, not the image's {img.manifest_digest} "
                                 "(layers recompressed)")
        extra["load_after"] = loadavg()
        report(img, results, extra, work / "push-results.json")
        if any(r is not None and r.error for r in results.values()):
            rc = 1
    except ToolError as e:
        print(f"push.py: {e}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("push.py: interrupted", file=sys.stderr)
        rc = 130
    finally:
        children.stop_all()
        try:
            remove_tree(runs_dir)
        except ToolError as e:
            print(f"push.py: cleanup: {e}", file=sys.stderr)
        lockf.close()
    return rc


if __name__ == "__main__":
    sys.exit(main())
