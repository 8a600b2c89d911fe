"""Container commands, shaped like docker's and nerdctl's: run, create, start,
ps, exec, logs, stop, kill, rm, inspect, stats, pause, unpause, wait."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from hawser.cli._context import CliContext

if TYPE_CHECKING:
    from hawser.metadata import Container
    from hawser.runtime import ContainerInfo, ContainerManager, ContainerOptions


def _manager(ctx: CliContext) -> ContainerManager:
    from hawser.runtime import ContainerManager

    return ContainerManager(ctx.store())


# --- options shared by run and create -------------------------------------------


def _container_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--name", metavar="NAME", help="Name the container."),
        click.option("-e", "--env", "env", multiple=True, metavar="K=V", help="Set an environment variable."),
        click.option("-w", "--workdir", metavar="DIR", help="Working directory inside the container."),
        click.option("-u", "--user", metavar="USER[:GROUP]", help="User (name or uid) to run as."),
        click.option("--entrypoint", metavar="CMD", help="Override the image's entrypoint ('' clears it)."),
        click.option("-v", "--volume", "volumes", multiple=True, metavar="SRC:DST[:ro]", help="Bind mount."),
        click.option("--tmpfs", "tmpfs", multiple=True, metavar="DST[:SIZE]", help="Mount a tmpfs."),
        click.option("--memory", "-m", metavar="SIZE", help="Memory limit (e.g. 64m)."),
        click.option("--memory-swap", metavar="SIZE", help="Memory plus swap limit."),
        click.option("--cpus", metavar="N", help="CPU quota in cores (e.g. 0.5)."),
        click.option("--cpu-shares", type=int, help="Relative CPU weight."),
        click.option("--cpuset-cpus", metavar="LIST", help="CPUs allowed (e.g. 0-1)."),
        click.option("--pids-limit", type=int, help="Maximum number of processes."),
        click.option("--read-only", is_flag=True, help="Mount the root filesystem read-only."),
        click.option("--cap-add", multiple=True, metavar="CAP", help="Add a capability."),
        click.option("--cap-drop", multiple=True, metavar="CAP", help="Drop a capability."),
        click.option("--privileged", is_flag=True, help="All capabilities, devices, no seccomp."),
        click.option("--security-opt", multiple=True, metavar="OPT",
                     help="no-new-privileges[:false], seccomp=unconfined."),
        click.option("--network", default="none", type=click.Choice(["none", "host"]),
                     help="Network namespace: a new empty one (none) or the host's."),
        click.option("--hostname", "-h", "hostname", default="", help="Container host name."),
        click.option("--sysctl", multiple=True, metavar="K=V", help="Namespaced kernel parameter."),
        click.option("--stop-signal", metavar="SIG", help="Signal to stop the container."),
        click.option("--label", "-l", "labels", multiple=True, metavar="K=V", help="Container label."),
        click.option("-i", "--interactive", is_flag=True, help="Keep stdin open."),
        click.option("-t", "--tty", is_flag=True, help="Allocate a terminal."),
        click.option("--plain-http", is_flag=True, help="Pull a missing image over plain http."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _build_options(args: Sequence[str], kw: dict[str, Any]) -> ContainerOptions:
    from hawser.errors import InvalidArgument
    from hawser.runtime import BindMount, ContainerOptions, Namespaces, Resources, TmpfsMount, parse_cpus, parse_memory

    mounts = []
    for spec in kw["volumes"]:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise InvalidArgument(f"invalid volume {spec!r}: use SRC:DST[:ro|rw]")
        mode = parts[2].split(",") if len(parts) == 3 else []
        if any(m not in ("ro", "rw", "private", "rprivate", "shared", "rshared", "slave", "rslave") for m in mode):
            raise InvalidArgument(f"invalid volume mode in {spec!r}")
        propagation = next((m for m in mode if m not in ("ro", "rw")), "rprivate")
        mounts.append(BindMount(source=os.path.abspath(parts[0]), destination=parts[1], readonly="ro" in mode,
                                propagation=propagation))
    tmpfs = []
    for spec in kw["tmpfs"]:
        dst, _, size = spec.partition(":")
        tmpfs.append(TmpfsMount(destination=dst, size=parse_memory(size) if size else None))
    quota = period = None
    if kw["cpus"]:
        quota, period = parse_cpus(kw["cpus"])
    resources = Resources(
        memory_limit=parse_memory(kw["memory"]) if kw["memory"] else None,
        memory_swap=(-1 if kw["memory_swap"] == "-1" else parse_memory(kw["memory_swap"])) if kw["memory_swap"]
        else None,
        cpu_quota=quota, cpu_period=period, cpu_shares=kw["cpu_shares"], cpuset_cpus=kw["cpuset_cpus"],
        pids_limit=kw["pids_limit"])
    no_new_privs, seccomp = True, True
    for opt in kw["security_opt"]:
        if opt in ("no-new-privileges", "no-new-privileges:true"):
            no_new_privs = True
        elif opt == "no-new-privileges:false":
            no_new_privs = False
        elif opt == "seccomp=unconfined":
            seccomp = False
        else:
            raise InvalidArgument(f"unsupported --security-opt {opt!r}")
    sysctls = {}
    for item in kw["sysctl"]:
        k, sep, v = item.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid --sysctl {item!r}: use KEY=VALUE")
        sysctls[k] = v
    entrypoint = None if kw["entrypoint"] is None else (tuple([kw["entrypoint"]]) if kw["entrypoint"] else ())
    return ContainerOptions(
        args=tuple(args) if args else None, entrypoint=entrypoint, env=tuple(kw["env"]), workdir=kw["workdir"],
        user=kw["user"], tty=kw["tty"], stdin=kw["interactive"], hostname=kw["hostname"],
        read_only=kw["read_only"], mounts=tuple(mounts), tmpfs=tuple(tmpfs), cap_add=tuple(kw["cap_add"]),
        cap_drop=tuple(kw["cap_drop"]), privileged=kw["privileged"], no_new_privileges=no_new_privs,
        resources=resources, sysctls=sysctls, seccomp=seccomp, stop_signal=kw["stop_signal"],
        namespaces=Namespaces(network="host" if kw["network"] == "host" else None))


def _labels(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _ensure_image(ctx: CliContext, image: str, plain_http: bool) -> None:
    from hawser.errors import NotFound

    store = ctx.store()
    try:
        store.resolve_name(image)
    except NotFound:
        click.echo(f"Unable to find image '{image}' locally; pulling", err=True)
        from hawser.cli._progress import progress_display

        with progress_display(True) as sink:
            store.pull(image, plain_http=plain_http, progress=sink)


def _create(ctx: CliContext, image: str, args: Sequence[str], kw: dict[str, Any]) -> ContainerInfo:
    options = _build_options(args, kw)
    _ensure_image(ctx, image, kw["plain_http"])
    return _manager(ctx).create(image, options, name=kw["name"], labels=_labels(kw["labels"]))


@click.command(context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background; print the container id.")
@click.option("--rm", "remove", is_flag=True, help="Remove the container when it exits.")
@_container_options
@click.argument("image")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def run(ctx: CliContext, /, detach: bool, remove: bool, image: str, args: tuple[str, ...], **kw: Any) -> None:
    """Create and start a container from IMAGE (pulled if missing), running CMD."""
    manager = _manager(ctx)
    info = _create(ctx, image, args, kw)
    if detach:
        manager.start_created(info)
        click.echo(info.id)
        return
    code = _run_foreground(manager, info, interactive=kw["interactive"], tty=kw["tty"])
    if remove:
        manager.remove(info.id, force=True)
    sys.exit(code)


def _run_foreground(manager: ContainerManager, info: ContainerInfo, *, interactive: bool, tty: bool) -> int:
    """Start the container and relay its output until it exits; signals go to it."""
    from hawser.runtime import EXITED

    if interactive or tty:
        from hawser.runtime import attach

        return attach(manager, info, stdin=interactive, tty=tty)
    record = info.record
    forwarded: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        try:
            manager.runc.kill(record.id, signum)
        except Exception:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        manager.start_created(info)
        out, err = sys.stdout.buffer, sys.stderr.buffer
        for entry in manager.follow_output(record):
            stream = out if entry.stream == "stdout" else err
            stream.write(entry.data)
            stream.flush()
        status = manager.wait(record.id)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if status.state != EXITED or status.exit_code is None:
        return 125
    return status.exit_code


@click.command(context_settings={"allow_interspersed_args": False})
@_container_options
@click.argument("image")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_obj
def create(ctx: CliContext, /, image: str, args: tuple[str, ...], **kw: Any) -> None:
    """Create a container from IMAGE without starting it; print its id."""
    click.echo(_create(ctx, image, args, kw).id)


@click.command()
@click.option("-a", "--attach", is_flag=True, help="Relay the container's output until it exits.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def start(ctx: CliContext, attach: bool, containers: tuple[str, ...]) -> None:
    """Start created containers."""
    manager = _manager(ctx)
    if attach:
        if len(containers) != 1:
            raise click.UsageError("--attach takes one container")
        record = manager.lookup(containers[0])
        sys.exit(_attached_start(manager, record))
    for c in containers:
        click.echo(manager.start(c).record.name)


def _ago(t: float | None) -> str:
    if t is None:
        return ""
    seconds = max(0.0, time.time() - t)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''}"
    return f"{int(seconds)} second{'s' if int(seconds) != 1 else ''}"


def _status_text(info: ContainerInfo) -> str:
    s = info.status
    if s.state == "running":
        return f"Up {_ago(s.started_at)}"
    if s.state == "paused":
        return f"Up {_ago(s.started_at)} (Paused)"
    if s.state == "exited":
        code = "?" if s.exit_code is None else str(s.exit_code)
        return f"Exited ({code}) {_ago(s.finished_at)} ago" if s.finished_at else f"Exited ({code})"
    if s.state == "created":
        return "Created"
    return f"Unknown: {s.reason}"


@click.command()
@click.option("-a", "--all", "all_", is_flag=True, help="Show all containers, not only running ones.")
@click.option("-q", "--quiet", is_flag=True, help="Only ids.")
@click.option("--no-trunc", is_flag=True, help="Full ids and commands.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def ps(ctx: CliContext, all_: bool, quiet: bool, no_trunc: bool, fmt: str) -> None:
    """List containers."""
    infos = _manager(ctx).list(all_=all_)
    if quiet:
        for i in infos:
            click.echo(i.id if no_trunc else i.id[:12])
        return
    if fmt == "json":
        click.echo(json.dumps([i.to_json() for i in infos], indent=2))
        return
    rows = [("CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES")]
    for i in infos:
        command = " ".join(str(a) for a in (i.record.config.get("args") or i.record.config.get("entrypoint") or []))
        if not no_trunc and len(command) > 20:
            command = command[:19] + "…"
        rows.append((i.id if no_trunc else i.id[:12], i.record.image, f'"{command}"',
                     f"{_ago(i.record.created_at)} ago", _status_text(i), i.record.name))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    for r in rows:
        click.echo("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@click.command("exec", context_settings={"allow_interspersed_args": False})
@click.option("-d", "--detach", is_flag=True, help="Run in the background.")
@click.option("-i", "--interactive", is_flag=True, help="Keep stdin open.")
@click.option("-t", "--tty", is_flag=True, help="Allocate a terminal.")
@click.option("-e", "--env", "env", multiple=True, metavar="K=V")
@click.option("-u", "--user", metavar="USER[:GROUP]")
@click.option("-w", "--workdir", metavar="DIR")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(ctx: CliContext, detach: bool, interactive: bool, tty: bool, env: tuple[str, ...], user: str | None,
          workdir: str | None, container: str, command: tuple[str, ...]) -> None:
    """Run COMMAND in a running CONTAINER."""
    del interactive  # stdin is this process's own; runc relays it
    code = _manager(ctx).exec_attached(container, command, tty=tty, detach=detach, env=env, user=user,
                                       workdir=workdir)
    sys.exit(code)


@click.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing until the container exits.")
@click.option("--since", metavar="T", help="Only entries since T (10m, RFC 3339, Unix time).")
@click.option("-n", "--tail", metavar="N", help="Only the last N lines ('all').")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its time.")
@click.argument("container")
@click.pass_obj
def logs(ctx: CliContext, follow: bool, since: str | None, tail: str | None, timestamps: bool,
         container: str) -> None:
    """Print a container's output."""
    from hawser.errors import InvalidArgument
    from hawser.runtime import parse_since

    tail_n: int | None = None
    if tail is not None and tail != "all":
        if not tail.isdigit():
            raise InvalidArgument(f"invalid --tail {tail!r}: a number or 'all'")
        tail_n = int(tail)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for entry in _manager(ctx).logs(container, since=parse_since(since) if since else None, tail=tail_n,
                                    follow=follow):
        stream = out if entry.stream == "stdout" else err
        if timestamps:
            stream.write(entry.time.encode() + b" ")
        stream.write(entry.data)
        stream.flush()


@click.command()
@click.option("-t", "--time", "timeout", type=float, help="Seconds before SIGKILL [default: the config's].")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def stop(ctx: CliContext, timeout: float | None, containers: tuple[str, ...]) -> None:
    """Stop containers: the stop signal, then SIGKILL."""
    manager = _manager(ctx)
    for c in containers:
        manager.stop(c, timeout)
        click.echo(c)


def _signal_number(text: str) -> int:
    from hawser.errors import InvalidArgument

    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else f"SIG{text.upper()}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"unknown signal {text!r}") from None


@click.command()
@click.option("-s", "--signal", "sig", default="KILL", help="Signal to send [default: KILL].")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def kill(ctx: CliContext, sig: str, containers: tuple[str, ...]) -> None:
    """Send a signal to containers."""
    manager = _manager(ctx)
    number = _signal_number(sig)
    for c in containers:
        manager.kill(c, number)
        click.echo(c)


@click.command()
@click.option("-f", "--force", is_flag=True, help="Kill a running container first.")
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def rm(ctx: CliContext, force: bool, containers: tuple[str, ...]) -> None:
    """Remove containers."""
    manager = _manager(ctx)
    for c in containers:
        manager.remove(c, force=force)
        click.echo(c)


@click.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_obj
def inspect(ctx: CliContext, names: tuple[str, ...]) -> None:
    """Show containers (or images) as JSON."""
    from hawser.errors import NotFound

    manager = _manager(ctx)
    out = []
    for n in names:
        try:
            out.append(manager.info(manager.lookup(n)).to_json())
        except NotFound:
            store = ctx.store()
            try:
                out.append(store.inspect(store.resolve_name(n)).to_json())
            except NotFound:
                raise NotFound(f"no such container or image: {n}") from None
    click.echo(json.dumps(out, indent=2))


def _attached_start(manager: ContainerManager, record: Container) -> int:
    """start -a: start an existing container and relay its output until it exits."""
    from hawser.runtime import EXITED

    start = os.path.getsize(manager.log_path(record.id)) if os.path.exists(manager.log_path(record.id)) else 0
    manager.start(record.id)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for entry in manager.follow_output(record, start):
        stream = out if entry.stream == "stdout" else err
        stream.write(entry.data)
        stream.flush()
    status = manager.wait(record.id)
    return status.exit_code if status.state == EXITED and status.exit_code is not None else 125


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def pause(ctx: CliContext, containers: tuple[str, ...]) -> None:
    """Freeze every process of containers."""
    manager = _manager(ctx)
    for c in containers:
        manager.pause(c)
        click.echo(c)


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def unpause(ctx: CliContext, containers: tuple[str, ...]) -> None:
    """Thaw paused containers."""
    manager = _manager(ctx)
    for c in containers:
        manager.resume(c)
        click.echo(c)


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_obj
def wait(ctx: CliContext, containers: tuple[str, ...]) -> None:
    """Wait for containers to exit; print their exit codes."""
    manager = _manager(ctx)
    for c in containers:
        status = manager.wait(c)
        click.echo("" if status.exit_code is None else status.exit_code)


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f}MiB"


@click.command()
@click.option("--no-stream", is_flag=True, help="Print once and exit.")
@click.option("-a", "--all", "all_", is_flag=True, help="All containers, not only running ones.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.argument("containers", nargs=-1)
@click.pass_obj
def stats(ctx: CliContext, no_stream: bool, all_: bool, fmt: str, containers: tuple[str, ...]) -> None:
    """Resource usage of containers, from their cgroups."""
    from hawser.errors import NotFound
    from hawser.host import CgroupLayout, read_stats

    manager = _manager(ctx)
    layout = CgroupLayout.detect()
    records = [manager.lookup(c) for c in containers] if containers else \
        [i.record for i in manager.list(all_=all_)]
    previous: dict[str, tuple[int, int]] = {}
    while True:
        rows: list[dict[str, Any]] = []
        for r in records:
            try:
                s = read_stats(layout, manager.cgroup(r))
            except NotFound:
                continue
            cpu = 0.0
            if r.id in previous:
                used, at = previous[r.id]
                if s.timestamp_ns > at:
                    cpu = 100.0 * (s.cpu_usage_ns - used) / (s.timestamp_ns - at)
            previous[r.id] = (s.cpu_usage_ns, s.timestamp_ns)
            rows.append({"id": r.id, "name": r.name, "cpu_percent": round(cpu, 2), "cpu_usage_ns": s.cpu_usage_ns,
                         "memory_usage": s.memory_usage, "memory_working_set": s.memory_working_set,
                         "memory_limit": s.memory_limit, "pids": s.pids_current,
                         "block_read": s.blkio_read_bytes, "block_write": s.blkio_write_bytes,
                         "oom_kills": s.oom_kills})
        if fmt == "json":
            click.echo(json.dumps(rows))
        else:
            click.echo(f"{'CONTAINER ID':14}{'NAME':24}{'CPU %':>8}  {'MEM USAGE / LIMIT':>26}  {'PIDS':>5}  "
                       f"{'BLOCK I/O':>20}")
            for row in rows:
                limit = _mb(row["memory_limit"]) if row["memory_limit"] else "unlimited"
                click.echo(f"{row['id'][:12]:14}{row['name'][:23]:24}{row['cpu_percent']:>7.2f}%  "
                           f"{_mb(row['memory_working_set']) + ' / ' + limit:>26}  {row['pids']:>5}  "
                           f"{_mb(row['block_read']) + ' / ' + _mb(row['block_write']):>20}")
        if no_stream:
            return
        time.sleep(1.0)
        if fmt == "table" and os.isatty(1):
            click.echo("\x1b[2J\x1b[H", nl=False)
