"""CLI networking benchmark (issue 18): `hawser run --rm -p 127.0.0.1:P:80 IMAGE true`
on the default bridge network against `podman run --rm --runtime runc --ulimit
nofile=1024:1024 --ulimit nproc=1024:1024 -p 127.0.0.1:P:80 IMAGE true` (its
default network, CNI on this host), interleaved in the same run, one cold CLI
process each time, a fresh port each run.

Both stores are private and fresh (hawser: --root/--state in a temp dir, its
bridge network on a subnet and bridge of its own; podman: --root/--runroot in
/tmp, overlay) and run the same one-layer busybox image, imported from a tar of
this host's busybox-static.  Also timed, as information: `hawser run --rm
--network none IMAGE true` (what the network costs).  Prints the medians, min,
max and hawser/podman; target <= 1.0x.  Run as root: .venv/bin/python bench/cli_network.py [--runs N]"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from _common import REPO, TimedRuns, free_port, median, remove_cgroup, safe_env, tool_version

TARGET_RATIO = 1.0
PODMAN = "/usr/bin/podman"
HAWSER = str(REPO / ".venv" / "bin" / "hawser")
BRIDGE = "hwbench0"
SUBNET = "10.86.77.0/24"
IMAGE = "localhost/bench/busybox:latest"


def busybox_tar(path: Path) -> None:
    """A one-layer busybox rootfs: the static binary, sh and true, the usual dirs."""
    busybox = shutil.which("busybox") or "/bin/busybox"
    with tarfile.open(path, "w") as tar:
        for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        tar.add(busybox, "bin/busybox")
        for name in ("sh", "true", "sleep"):
            info = tarfile.TarInfo(f"bin/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=120)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}... failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("cli_network.py: run as root", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="hwnb-"))  # short: podman's runroot must be <= 50 chars
    env = safe_env()
    config = work / "config.toml"
    config.write_text(f'version = 1\n[cni]\nbridge_subnet = "{SUBNET}"\nbridge_name = "{BRIDGE}"\n')
    hawser = [HAWSER, "--config", str(config), "--root", str(work / "h-root"), "--state", str(work / "h-state")]
    podman = [PODMAN, "--root", str(work / "p-root"), "--runroot", str(work / "p-run"), "--tmpdir",
              str(work / "p-tmp"), "--storage-driver", "overlay", "--events-backend", "none",
              "--cgroup-manager", "cgroupfs"]
    podman_run = [*podman, "run", "--rm", "--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit",
                  "nproc=1024:1024"]
    podman_bridge_existed = os.path.exists("/sys/class/net/cni-podman0")
    results = {name: TimedRuns(name) for name in ("hawser", "podman", "hawser --network none")}
    try:
        tar = work / "busybox.tar"
        busybox_tar(tar)
        subprocess.run([*hawser, "import", "-q", str(tar), IMAGE], check=True, capture_output=True, env=env)
        subprocess.run([*podman, "import", "-q", str(tar), IMAGE], check=True, capture_output=True, env=env)

        def hawser_run() -> list[str]:
            return [*hawser, "run", "--rm", "-p", f"127.0.0.1:{free_port()}:80", IMAGE, "true"]

        def podman_one() -> list[str]:
            return [*podman_run, "-p", f"127.0.0.1:{free_port()}:80", IMAGE, "true"]

        def none_run() -> list[str]:
            return [*hawser, "run", "--rm", "--network", "none", IMAGE, "true"]

        makers = {"hawser": hawser_run, "podman": podman_one, "hawser --network none": none_run}
        for _ in range(args.warmup):
            for make in makers.values():
                timed(make(), env)
        for _ in range(args.runs):
            for name, make in makers.items():
                try:
                    results[name].seconds.append(timed(make(), env))
                except RuntimeError as exc:
                    results[name].error = str(exc)
    finally:
        subprocess.run([*podman, "rm", "-a", "-f"], capture_output=True, env=env)
        subprocess.run([*podman, "rmi", "-a", "-f"], capture_output=True, env=env)
        for id_ in subprocess.run([*hawser, "ps", "-a", "-q"], capture_output=True, text=True,
                                  env=env).stdout.split():
            subprocess.run([*hawser, "rm", "-f", id_], capture_output=True, env=env)
        subprocess.run([sys.executable, "-c", "import sys\nfrom hawser.network import UserNetworks, remove_rules\n"
                        "for n in UserNetworks(sys.argv[1]).all_networks(): remove_rules(n)", str(work / "h-root")],
                       capture_output=True, env=env)  # the networks' egress rules outlive their store
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        if not podman_bridge_existed:
            subprocess.run(["ip", "link", "del", "cni-podman0"], capture_output=True)
        subprocess.run(["umount", "-R", "-l", str(work)], capture_output=True)
        store_id = work / "h-root" / "store-id"
        if store_id.exists():  # the store's cgroup parent, /hawser/<store id[:12]>
            remove_cgroup(f"hawser/{store_id.read_text().strip()[:12]}")
        shutil.rmtree(work, ignore_errors=True)
    print(f"CLI run --rm with a published port, {args.runs} runs each (after {args.warmup} warm-up)")
    print(f"  hawser {tool_version([HAWSER, '--version'])}; {tool_version([PODMAN, '--version'])}")
    print(f"  {'tool':<22} {'median':>9} {'min':>9} {'max':>9}   n   runs")
    for r in results.values():
        print(r.line(22, 60))
    h, p = results["hawser"], results["podman"]
    if h.ok and p.ok:
        ratio = median(h.seconds) / median(p.seconds)
        verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
        print(f"  hawser / podman: {ratio:.2f}x (target <= {TARGET_RATIO:.1f}x: {verdict})")
    return 0 if all(r.ok for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
