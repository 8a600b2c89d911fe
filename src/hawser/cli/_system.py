"""``hawser system``: disk usage, garbage collection, consistency check, and what the host offers."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import group

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace
    from typing import Any

    from hawser.check import Report
    from hawser.cli._parser import Handler, Parser
    from hawser.config import Config


def system(p: Parser) -> Handler:
    """Store usage, garbage collection, consistency check and host information."""
    from hawser.cli._lifecycle import restart_containers

    return group(p, {"df": df, "prune": prune, "check": check, "info": info,
                     "restart-containers": restart_containers})


def df(p: Parser) -> Handler:
    """Show how much disk images, content and snapshots use."""
    p.add_argument("--format", choices=("table", "json"), default="table", metavar="[table|json]")
    return _df


def _df(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._images import _human
    from hawser.cli._volumes import usage as volume_usage

    usage = ctx.images().usage()
    usage["volumes"] = volume_usage(ctx)
    if a.format == "json":
        import json

        echo(json.dumps(usage, indent=2))
        return
    echo(f"{'TYPE':<12}{'COUNT':>8}{'SIZE':>12}")
    for kind in ("images", "content", "snapshots", "volumes"):
        echo(f"{kind:<12}{usage[kind]['count']:>8}{_human(usage[kind]['size']):>12}")


def prune(p: Parser) -> Handler:
    """Remove stopped containers, then collect garbage: blobs, snapshots and ingests no image or live lease uses.

    As docker's, it asks first on a terminal (-f does not); without one it
    collects garbage but keeps the stopped containers unless -f is given. The
    CRI's namespace (k8s.io) keeps its containers: the kubelet owns them.
    """
    p.add_argument("-f", "--force", action="store_true", help="Remove stopped containers without asking.")
    p.add_argument("--dry-run", action="store_true", help="Say what would be removed, and why; remove nothing.")
    p.add_argument("--volumes", action="store_true", help="Remove the anonymous volumes no container uses too.")
    return _prune


PRUNE_WARNING = """WARNING! This will remove:
  - all stopped containers
  - all blobs, snapshots and ingests no image or live lease uses
"""
CRI_NAMESPACE = "k8s.io"


def _prune(ctx: CliContext, a: Namespace) -> int:
    from hawser.cli._images import _human

    removed = _prune_containers(ctx, force=a.force, dry_run=a.dry_run)
    if removed is None:
        echo("hawser: system prune has been cancelled", err=True)
        return 1
    if getattr(a, "volumes", False) and not a.dry_run:
        from hawser.cli._volumes import prune_anonymous

        prune_anonymous(ctx)
    report = ctx.images(to_free_space=not a.dry_run).prune(dry_run=a.dry_run)
    verb = "would remove" if a.dry_run else "removed"
    for item in report.removed:
        echo(f"{verb} {item.kind} {item.key}: {item.reason}")
    for err in report.errors:
        echo(f"error: {err}", err=True)
    echo(f"{verb} {len(report.removed)} objects, {_human(report.bytes_reclaimed)}")
    return 1 if report.errors or removed is False else 0


def _prune_containers(ctx: CliContext, *, force: bool, dry_run: bool) -> bool | None:
    """Remove the namespace's stopped (exited or created) containers, as ``Deleted Containers:`` and their
    ids: True if all went, False if one failed, None if the user said no at the prompt."""
    import os
    import sys

    from hawser.errors import HawserError, NotFound
    from hawser.runtime import CREATED, EXITED

    if ctx.namespace == CRI_NAMESPACE:
        return True
    manager = ctx.containers()
    stopped = [i.record for i in manager.list(all_=True) if i.status.state in (EXITED, CREATED)]
    if not stopped:
        return True
    if dry_run:
        for record in stopped:
            echo(f"would remove container {record.id}: {record.name} is stopped")
        return True
    if not force:
        if not (os.isatty(0) and os.isatty(1)):
            echo(f"hawser: kept {len(stopped)} stopped container{'s' if len(stopped) != 1 else ''}: "
                 "without a terminal to ask on, `system prune -f` removes them", err=True)
            return True
        echo(PRUNE_WARNING)
        echo("Are you sure you want to continue? [y/N] ", end="")
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return None
    ok = True
    echo("Deleted Containers:")
    for record in stopped:
        try:
            manager.remove(record.id)
        except NotFound:
            continue  # removed meanwhile (a ``run --rm`` container's own exit command)
        except HawserError as exc:
            echo(f"hawser: {exc}", err=True)
            ok = False
            continue
        echo(record.id)
    echo()
    return ok


def check(p: Parser) -> Handler:
    """Verify the store and find leftovers: blob digests, snapshot chains, record
    references, orphan snapshots, mounts, bundles, runc state, conmons, cgroups,
    pinned namespaces. Exits 1 while a problem remains."""
    p.add_argument("--repair", action="store_true",
                   help="Remove or rebuild what is wrong (never what a live container, pod or pull holds).")
    p.add_argument("--format", choices=("table", "json"), default="table", metavar="[table|json]")
    return _check


def _check(ctx: CliContext, a: Namespace) -> int:
    # Imported here only: the check package is not on any other command's path.
    from hawser.check import check_store

    report = check_store(ctx.store(), repair=a.repair)
    if a.format == "json":
        import json

        echo(json.dumps([f.to_json() for f in report.findings], indent=2))
        return report.exit_code
    for f in report.findings:
        if f.severity != "problem":
            status = "info"
        elif f.repaired:
            status = "repaired"
        elif f.error is not None:
            status = "failed" if a.repair else "error"
        else:
            status = "problem"
        line = f"{status:<9} {f.kind:<27} {f.subject}: {f.detail}"
        if f.error is not None:
            line += f" [error: {f.error}]"
        echo(line)
    echo(_summary(report, a.repair))
    return report.exit_code


def _summary(report: Report, repair: bool) -> str:
    problems = report.problems
    infos = len(report.findings) - len(problems)
    if not problems:
        text = "no problems found"
    else:
        text = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        if repair:
            repaired = sum(1 for f in problems if f.repaired)
            text += f": {repaired} repaired, {len(problems) - repaired} remaining"
    if infos:
        text += f", {infos} info"
    return f"{text} ({report.duration:.1f}s)"


# --- system info ------------------------------------------------------------------------

VERSION_TIMEOUT = 2.0
"""Seconds each tool gets to print its version."""
PROBE_TIMEOUT = 1.0
"""Seconds a daemon socket gets to accept a connection."""
CNI_PLUGINS = ("bridge", "host-local", "portmap", "loopback")


def info(p: Parser) -> Handler:
    """Show hawser's version, the tools it runs, the host, the store and the daemon."""
    p.add_argument("--format", choices=("table", "json"), default="table", metavar="[table|json]")
    return _info


def _info(ctx: CliContext, a: Namespace) -> None:
    report = collect_info(ctx)
    if a.format == "json":
        import json

        echo(json.dumps(report, indent=2))
        return
    for line in info_lines(report):
        echo(line)


def collect_info(ctx: CliContext) -> dict[str, Any]:
    """Everything ``system info`` reports, under stable keys.  A tool that is
    missing or fails is reported as such, never raised."""
    import os

    from hawser import __version__
    from hawser.config import read_config_file
    from hawser.registry import docker_config_path

    config = ctx.config
    store = ctx.store()
    snap_root = os.path.join(config.root, "snapshots", store.snapshotter.name)
    config_file, config_text = read_config_file(ctx._config_path)
    return {
        "version": __version__,
        "tools": {
            "runc": tool_version(config.runtime.runc or _which("runc", "/usr/sbin/runc")),
            "conmon": tool_version(config.runtime.conmon or _which("conmon", "/usr/bin/conmon")),
            "catatonit": tool_version(_which("catatonit", "/usr/bin/catatonit")),
        },
        "cni": {
            "bin_dir": config.cni.bin_dir,
            "conf_dir": config.cni.conf_dir,
            "plugins": {name: tool_version(os.path.join(config.cni.bin_dir, name)) for name in CNI_PLUGINS},
        },
        "host": {"kernel": os.uname().release, **_cgroups()},
        "storage": {
            "snapshotter": store.snapshotter.name,
            "backing_filesystem": filesystem_of(snap_root if os.path.exists(snap_root) else config.root),
            "root": config.root,
            "state": config.state,
        },
        "objects": _counts(ctx),
        "daemon": _daemon(config),
        "registry": {
            "config_file": config_file,
            "config_file_present": config_text is not None,
            "hosts_dir": config.registry.config_path,
            # The file pulls and logins use ($REGISTRY_AUTH_FILE, $DOCKER_CONFIG honoured).
            "docker_config": str(docker_config_path(config.registry.docker_config)),
        },
    }


def _which(name: str, fallback: str) -> str:
    """Where hawser finds ``name`` when the config names none (as the runtime does)."""
    import shutil

    return shutil.which(name) or fallback


def tool_version(path: str) -> dict[str, Any]:
    """``{"path", "status", "version", "error"}`` of the program at ``path``:
    status "ok", "missing" (not an executable file) or "failed" (it did not
    answer ``--version`` in time, or exited non-zero)."""
    import os

    from hawser.host import ProcessTimedOut, run_process

    found = {"path": path, "status": "ok", "version": None, "error": None}
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return {**found, "status": "missing"}
    try:
        result = run_process([path, "--version"], timeout=VERSION_TIMEOUT)
    except (OSError, ProcessTimedOut) as exc:
        return {**found, "status": "failed", "error": str(exc)}
    text = (result.stdout or result.stderr).decode(errors="replace").strip()
    first = text.splitlines()[0] if text else ""
    if result.returncode != 0:
        return {**found, "status": "failed", "version": first or None,
                "error": f"--version exited with {result.returncode}"}
    return {**found, "version": first}


def _cgroups() -> dict[str, Any]:
    from hawser.errors import HawserError
    from hawser.host import CgroupLayout

    try:
        layout = CgroupLayout.detect()
    except (HawserError, OSError):
        return {"cgroup_version": None, "cgroup_controllers": []}
    if layout.version == 2:
        try:
            with open(f"{layout.mounts['']}/cgroup.controllers", encoding="utf-8") as f:
                controllers = f.read().split()
        except OSError:
            controllers = []
    else:
        controllers = [name for name in layout.mounts if name and not name.startswith("name=")]
    return {"cgroup_version": layout.version, "cgroup_controllers": sorted(controllers)}


def filesystem_of(path: str, mounts: str | None = None) -> str:
    """The type of the filesystem ``path`` is on: its deepest mount in
    ``mounts`` (the text of /proc/mounts, read when None); "" if unknown."""
    import os

    if mounts is None:
        try:
            with open("/proc/mounts", encoding="utf-8") as f:
                mounts = f.read()
        except OSError:
            return ""
    target = os.path.realpath(path)
    best, kind = "", ""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes space, tab, newline and backslash as octal.
        point = fields[1].encode().decode("unicode_escape")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, kind = point, fields[2]
    return kind


def _counts(ctx: CliContext) -> dict[str, Any]:
    metadata = ctx.store().metadata

    def count(namespace: str) -> dict[str, int]:
        return {"images": len(metadata.images.list(namespace=namespace)),
                "containers": len(metadata.containers.list(namespace=namespace)),
                "pods": len(metadata.sandboxes.list(namespace=namespace))}

    names = {n.name for n in metadata.namespaces.list()} | {ctx.namespace}
    total = {"namespaces": len(names), "images": 0, "containers": 0, "pods": 0}
    for name in names:
        for key, value in count(name).items():
            total[key] += value
    return {"namespace": ctx.namespace, **count(ctx.namespace), "all_namespaces": total}


def _daemon(config: Config) -> dict[str, Any]:
    cri = socket_answers(config.daemon.address)
    containerd = bool(config.daemon.containerd_address) and socket_answers(config.daemon.containerd_address)
    return {"running": cri or containerd,
            "address": config.daemon.address, "address_answers": cri,
            "containerd_address": config.daemon.containerd_address, "containerd_address_answers": containerd}


def socket_answers(address: str, timeout: float = PROBE_TIMEOUT) -> bool:
    """Whether something accepts connections on the unix socket ``address``."""
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError:
            return False
    return True


def _tool_line(t: dict[str, Any]) -> str:
    if t["status"] == "missing":
        return f"missing ({t['path']})"
    if t["status"] == "failed":
        return f"failed: {t['error']} ({t['path']})"
    return f"{t['version']} ({t['path']})"


def info_lines(r: dict[str, Any]) -> list[str]:
    """``system info`` as docker info lays it out: groups of ``key: value`` lines."""
    objects, everywhere, daemon, host = r["objects"], r["objects"]["all_namespaces"], r["daemon"], r["host"]
    lines = [
        f"Version: {r['version']}",
        "Runtime:",
        *(f" {name}: {_tool_line(t)}" for name, t in r["tools"].items()),
        "CNI:",
        f" Conf Dir: {r['cni']['conf_dir']}",
        f" Bin Dir: {r['cni']['bin_dir']}",
        *(f" {name}: {_tool_line(t)}" for name, t in r["cni"]["plugins"].items()),
        "Host:",
        f" Kernel: {host['kernel']}",
        f" Cgroup Version: {host['cgroup_version'] or 'unknown'}",
        f" Cgroup Controllers: {' '.join(host['cgroup_controllers']) or 'none'}",
        "Storage:",
        f" Snapshotter: {r['storage']['snapshotter']}",
        f" Backing Filesystem: {r['storage']['backing_filesystem'] or 'unknown'}",
        f" Root Dir: {r['storage']['root']}",
        f" State Dir: {r['storage']['state']}",
        f"Namespace {objects['namespace']}:",
        f" Images: {objects['images']}",
        f" Containers: {objects['containers']}",
        f" Pods: {objects['pods']}",
        f"All Namespaces ({everywhere['namespaces']}):",
        f" Images: {everywhere['images']}",
        f" Containers: {everywhere['containers']}",
        f" Pods: {everywhere['pods']}",
        "Daemon:",
        f" Running: {'yes' if daemon['running'] else 'no'}",
        f" CRI Socket: {daemon['address']} ({'answers' if daemon['address_answers'] else 'not answering'})",
    ]
    if daemon["containerd_address"]:
        state = "answers" if daemon["containerd_address_answers"] else "not answering"
        lines.append(f" containerd Socket: {daemon['containerd_address']} ({state})")
    lines += [
        "Registry:",
        f" Config File: {r['registry']['config_file']}{'' if r['registry']['config_file_present'] else ' (absent)'}",
        f" Hosts Dir: {r['registry']['hosts_dir']}",
        f" Docker Config: {r['registry']['docker_config']}",
    ]
    return lines
