"""Archive benchmark: `hawser save` and `hawser load` of the bench image against
`podman save` and `podman load` of the same image, in the same run.

Setup, untimed: the bench image (bench/_image.py) is pushed to a local
docker-registry; a podman store (overlay driver) pulls it and saves it in both
formats: those two archives are what both tools load, so the input of every
load is the same file, read once beforehand so it is in the page cache.

Each round, for each tool (the first one alternates round by round), on a
fresh scratch filesystem: the tool pulls the image from the registry
(untimed), then are timed: `save --format docker-archive`, `save --format
oci-archive` (each to a file on the scratch filesystem, removed afterwards),
`load -i` of the docker-archive into an empty store, `load -i` of the
oci-archive into another empty store; each load is checked (the image ID
must be the image's config digest).  The median of `--runs` rounds is
reported per operation, with hawser/podman ratios.  See bench/README.md.
Run through bench/archive.sh.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from _common import (
    MB,
    MIB,
    REPO,
    WORK,
    Children,
    Scratch,
    ToolError,
    bench_lock,
    check_free_space,
    fmt_bytes,
    install_signal_handlers,
    loadavg,
    loop_available,
    median,
    remove_tree,
    run_registry,
    safe_env,
)
from _image import load_or_build, push

REPO_NAME = "bench/archive"
TAG = "latest"
OPS = ("save docker-archive", "save oci-archive", "load docker-archive", "load oci-archive")
TOOLS = ("hawser", "podman")
TARGET_RATIO = 1.0
_PODMAN_CACHE = Path("/var/lib/containers")


def _timed(argv: list[str], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    try:
        proc = subprocess.run(argv, capture_output=True, timeout=timeout, env=safe_env(), stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ToolError(f"{what}: timed out after {timeout:.0f} s") from None
    elapsed = time.monotonic() - t0
    if proc.returncode != 0:
        raise ToolError(f"{what} failed ({proc.returncode}):\n{proc.stderr.decode(errors='replace')[-2000:]}")
    return elapsed


def _out(argv: list[str], what: str, timeout: float = 600) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=safe_env(),
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise ToolError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return proc.stdout


class Tool:
    """One tool's commands against a store under a directory."""

    name = ""

    def __init__(self, base: Path) -> None:
        self.base = base

    def argv(self, store: str) -> list[str]:
        raise NotImplementedError

    def pull(self, store: str, ref: str) -> list[str]:
        raise NotImplementedError

    def save(self, store: str, ref: str, fmt: str, out: Path) -> list[str]:
        raise NotImplementedError

    def load(self, store: str, archive: Path) -> list[str]:
        raise NotImplementedError

    def image_id(self, store: str, ref: str) -> str:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Hawser(Tool):
    name = "hawser"
    exe = str(REPO / ".venv/bin/hawser")

    def argv(self, store: str) -> list[str]:
        return [self.exe, "--root", str(self.base / store / "root"), "--state", str(self.base / store / "state"),
                "--snapshotter", "overlayfs"]

    def pull(self, store: str, ref: str) -> list[str]:
        return [*self.argv(store), "pull", "--plain-http", "-q", ref]

    def save(self, store: str, ref: str, fmt: str, out: Path) -> list[str]:
        return [*self.argv(store), "save", "--format", fmt, "-o", str(out), ref]

    def load(self, store: str, archive: Path) -> list[str]:
        return [*self.argv(store), "load", "-q", "-i", str(archive)]

    def image_id(self, store: str, ref: str) -> str:
        images = json.loads(_out([*self.argv(store), "images", "--format", "json"], "hawser images"))
        return next((str(i["id"]) for i in images if i["name"] == ref), "")


class Podman(Tool):
    """podman with its stores on the scratch filesystem (overlay driver) and its
    runroots in short directories of /tmp (podman refuses a runroot over 50 characters)."""

    name = "podman"

    def __init__(self, base: Path) -> None:
        super().__init__(base)
        self._run = Path(tempfile.mkdtemp(prefix="hbp-"))
        (self._run / "registries.conf").write_text("unqualified-search-registries = []\n")

    def argv(self, store: str) -> list[str]:
        return ["podman", "--root", str(self.base / store / "root"), "--runroot", str(self._run / store),
                "--tmpdir", str(self._run / f"{store}-tmp"), "--storage-driver", "overlay",
                "--events-backend", "none", "--cgroup-manager", "cgroupfs"]

    def pull(self, store: str, ref: str) -> list[str]:
        return [*self.argv(store), "pull", "-q", "--tls-verify=false", ref]

    def save(self, store: str, ref: str, fmt: str, out: Path) -> list[str]:
        return [*self.argv(store), "save", "-q", "--format", fmt, "-o", str(out), ref]

    def load(self, store: str, archive: Path) -> list[str]:
        return [*self.argv(store), "load", "-q", "-i", str(archive)]

    def image_id(self, store: str, ref: str) -> str:
        return "sha256:" + _out([*self.argv(store), "image", "inspect", "--format", "{{.Id}}", ref],
                                "podman image inspect").strip()

    def close(self) -> None:
        remove_tree(self._run)


@contextmanager
def _podman_env() -> Iterator[None]:
    """podman reads this registries.conf (no search registries) and, as root, writes a blob-info
    cache to /var/lib/containers/cache whatever its flags say: removed at the end if it was not there."""
    existed = _PODMAN_CACHE.exists()
    conf = Path(tempfile.mkdtemp(prefix="hawser-bench-conf-"))
    (conf / "registries.conf").write_text("unqualified-search-registries = []\n")
    os.environ["CONTAINERS_REGISTRIES_CONF"] = str(conf / "registries.conf")
    try:
        yield
    finally:
        shutil.rmtree(conf, ignore_errors=True)
        if not existed:
            shutil.rmtree(_PODMAN_CACHE, ignore_errors=True)


def _round(tool: Tool, ref: str, inputs: dict[str, Path], config_digest: str, timeout: float
           ) -> dict[str, float]:
    times: dict[str, float] = {}
    _timed(tool.pull("src", ref), timeout, f"{tool.name} pull")
    for fmt in ("docker-archive", "oci-archive"):
        out = tool.base / f"saved.{fmt}.tar"
        times[f"save {fmt}"] = _timed(tool.save("src", ref, fmt, out), timeout, f"{tool.name} save {fmt}")
        if out.stat().st_size < MB:
            raise ToolError(f"{tool.name} save {fmt}: {out} is only {out.stat().st_size} bytes")
        out.unlink()
    for fmt in ("docker-archive", "oci-archive"):
        store = "ld" if fmt == "docker-archive" else "lo"
        times[f"load {fmt}"] = _timed(tool.load(store, inputs[fmt]), timeout, f"{tool.name} load {fmt}")
        got = tool.image_id(store, ref)
        if got != config_digest:
            raise ToolError(f"{tool.name} load {fmt}: image ID {got!r}, expected {config_digest}")
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3, help="rounds (median reported) [3]")
    ap.add_argument("--hawser", default=Hawser.exe, help="hawser executable")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed per command [600]")
    ap.add_argument("--scratch", choices=["loop", "dir"], default="loop",
                    help="where each round writes: a fresh loop-mounted ext4 per tool and round, or directories [loop]")
    ap.add_argument("--workdir", type=Path, default=WORK, help="cache and scratch space [bench/.work]")
    args = ap.parse_args(argv)
    if args.runs < 1:
        ap.error("--runs must be >= 1")
    if os.geteuid() != 0:
        print("archive.py: needs root (overlayfs)", file=sys.stderr)
        return 2
    for exe in ("podman", "docker-registry"):
        if not shutil.which(exe):
            print(f"archive.py: {exe} not found (run bench/archive.sh)", file=sys.stderr)
            return 2
    Hawser.exe = args.hawser
    install_signal_handlers()
    os.environ.update(safe_env())
    work: Path = args.workdir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    lockf = bench_lock(work, "archive.py")
    if lockf is None:
        return 2
    runs_dir = work / "archive-runs"
    remove_tree(runs_dir)
    children = Children()
    seconds: dict[str, dict[str, list[float]]] = {t: {op: [] for op in OPS} for t in TOOLS}
    errors: dict[str, str] = {}
    rc = 0
    try:
        with _podman_env():
            print("== image", flush=True)
            img, blobdir = load_or_build(work)
            print(f"   {len(img.layers)} layers, {img.files:,} files, {fmt_bytes(img.compressed)} compressed, "
                  f"{fmt_bytes(img.uncompressed)} uncompressed", flush=True)
            check_free_space(work, 8 * img.uncompressed, "the archives and stores")
            mode = args.scratch
            if mode == "loop" and (why := loop_available()):
                print(f"   no loop-mounted scratch filesystem ({why}): plain directories instead", flush=True)
                mode = "dir"
            runs_dir.mkdir(parents=True)
            scratch = Scratch(runs_dir, mode, max(6 << 30, 8 * img.uncompressed))
            with run_registry(children, work / "registry", runs_dir / "registry-run") as reg:
                ref = f"{reg.host}/{REPO_NAME}:{TAG}"
                push(reg, REPO_NAME, TAG, img, blobdir)
                print(f"== registry {reg.host}: pushed {ref}", flush=True)
                # The archives both tools load: podman's, saved once (untimed).
                inputs_dir = scratch.make("inputs")
                maker = Podman(inputs_dir)
                try:
                    _timed(maker.pull("src", ref), args.timeout, "podman pull")
                    inputs = {fmt: inputs_dir / f"input.{fmt}.tar" for fmt in ("docker-archive", "oci-archive")}
                    for fmt, path in inputs.items():
                        _timed(maker.save("src", ref, fmt, path), args.timeout, f"podman save {fmt}")
                        with open(path, "rb") as f:  # into the page cache
                            while f.read(8 * MIB):
                                pass
                        print(f"   load input {fmt}: {fmt_bytes(path.stat().st_size)}", flush=True)
                finally:
                    maker.close()
                extra: dict[str, Any] = {
                    "scratch": mode, "load_before": loadavg(), "cpus": os.cpu_count(), "kernel": platform.release(),
                    "podman_version": _out(["podman", "--version"], "podman --version").strip(),
                    "hawser_version": _out([args.hawser, "--version"], "hawser --version").strip(),
                }
                for i in range(args.runs):
                    order = TOOLS if i % 2 == 0 else TOOLS[::-1]
                    for name in order:
                        if name in errors:
                            continue
                        print(f"== round {i + 1}/{args.runs}: {name}", flush=True)
                        tool: Tool = Hawser(scratch.make(f"{name}-{i}")) if name == "hawser" else Podman(
                            scratch.make(f"{name}-{i}"))
                        try:
                            times = _round(tool, ref, inputs, img.config_digest, args.timeout)
                            for op, s in times.items():
                                seconds[name][op].append(s)
                            print("   " + ", ".join(f"{op} {s:.2f} s" for op, s in times.items()), flush=True)
                        except ToolError as exc:
                            errors[name] = str(exc)
                            print(f"   FAILED: {exc}", flush=True)
                            rc = 1
                        finally:
                            tool.close()
                            remove_tree(tool.base)
                remove_tree(inputs_dir)
        extra["load_after"] = loadavg()
        _report(seconds, errors, extra, work / "archive-results.json")
    except ToolError as exc:
        print(f"archive.py: {exc}", file=sys.stderr)
        rc = 1
    except KeyboardInterrupt:
        print("archive.py: interrupted", file=sys.stderr)
        rc = 130
    finally:
        children.stop_all()
        remove_tree(runs_dir)
        lockf.close()
    return rc


def _report(seconds: dict[str, dict[str, list[float]]], errors: dict[str, str], extra: dict[str, Any],
            path: Path) -> None:
    print(f"\n== results (median of runs; machine load before: {extra['load_before']}, after: {extra['load_after']})")
    print(f"{'operation':22} {'hawser':>10} {'podman':>10} {'hawser/podman':>14}")
    out: dict[str, Any] = {"extra": extra, "errors": errors, "ops": {}}
    for op in OPS:
        h, p = seconds["hawser"][op], seconds["podman"][op]
        mh, mp = (median(h) if h else None), (median(p) if p else None)
        ratio = mh / mp if mh is not None and mp else None
        out["ops"][op] = {"hawser": h, "podman": p, "hawser_median": mh, "podman_median": mp, "ratio": ratio}
        verdict = "" if ratio is None else ("  ok" if ratio <= TARGET_RATIO else "  over 1.0x")
        print(f"{op:22} {_cell(mh)} {_cell(mp)} {'' if ratio is None else f'{ratio:13.2f}x'}{verdict}")
    for name, err in errors.items():
        print(f"{name}: {tail_text(err)}")
    path.write_text(json.dumps(out, indent=2))
    print(f"(written to {path})")


def _cell(m: float | None) -> str:
    return f"{m:9.2f}s" if m is not None else "    FAILED"


def tail_text(text: str, lines: int = 5) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


if __name__ == "__main__":
    sys.exit(main())
