"""Container commands, shaped like docker's and nerdctl's: run, create, start,
ps, exec, logs, stop, kill, rm, inspect, stats, pause, unpause, wait."""

from __future__ import annotations

import os
import signal
import sys
import time

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import UsageError, add_command_line

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Callable, Sequence
    from typing import Any

    from hawser.cli._parser import Handler, Parser
    from hawser.metadata import Container
    from hawser.runtime import ContainerInfo, ContainerManager, ContainerOptions


def _manager(ctx: CliContext) -> ContainerManager:
    return ctx.containers()


# --- arguments shared by run and create -----------------------------------------


def _container_arguments(p: Parser) -> None:
    p.add_argument("--name", metavar="NAME", help="Name the container.")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V",
                   help="Set an environment variable (K alone: the host's value).")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE", help="Read K=V lines from FILE.")
    p.add_argument("-w", "--workdir", metavar="DIR", help="Working directory inside the container.")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]", help="User (name or uid) to run as.")
    p.add_argument("--entrypoint", metavar="CMD", help="Override the image's entrypoint ('' clears it).")
    p.add_argument("-v", "--volume", dest="volumes", action="append", default=[], metavar="[SRC:]DST[:ro]",
                   help="Bind mount (SRC an absolute path), named volume (SRC a name) or anonymous volume.")
    from hawser.cli._extras import volumes_from_argument
    from hawser.cli._volumes import mount_arguments

    mount_arguments(p)
    volumes_from_argument(p)  # --volumes-from
    p.add_argument("--tmpfs", action="append", default=[], metavar="DST[:SIZE]", help="Mount a tmpfs.")
    p.add_argument("--memory", "-m", metavar="SIZE", help="Memory limit (e.g. 64m).")
    p.add_argument("--memory-swap", metavar="SIZE", help="Memory plus swap limit.")
    p.add_argument("--cpus", metavar="N", help="CPU quota in cores (e.g. 0.5).")
    p.add_argument("--cpu-shares", type=int, metavar="INTEGER", help="Relative CPU weight.")
    p.add_argument("--cpuset-cpus", metavar="LIST", help="CPUs allowed (e.g. 0-1).")
    p.add_argument("--pids-limit", type=int, metavar="INTEGER", help="Maximum number of processes.")
    p.add_argument("--read-only", action="store_true", help="Mount the root filesystem read-only.")
    p.add_argument("--cap-add", action="append", default=[], metavar="CAP", help="Add a capability.")
    p.add_argument("--cap-drop", action="append", default=[], metavar="CAP", help="Drop a capability.")
    p.add_argument("--privileged", action="store_true", help="All capabilities, devices, no seccomp.")
    p.add_argument("--security-opt", action="append", default=[], metavar="OPT",
                   help="no-new-privileges[:false], seccomp=unconfined.")
    from hawser.cli._network import network_arguments

    network_arguments(p)  # --network, -p, -P, --add-host, --dns...
    p.add_argument("--hostname", "-h", default="", metavar="TEXT", help="Container host name.")
    p.add_argument("--sysctl", action="append", default=[], metavar="K=V", help="Namespaced kernel parameter.")
    p.add_argument("--stop-signal", metavar="SIG", help="Signal to stop the container.")
    p.add_argument("--label", "-l", dest="labels", action="append", default=[], metavar="K=V", help="Container label.")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep stdin open.")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a terminal.")
    p.add_argument("--plain-http", action="store_true", help="Pull a missing image over plain http.")
    from hawser.cli._lifecycle import add_arguments

    add_arguments(p)  # --restart, --health-*
    add_command_line(p, "image", command_required=False)


def _build_options(a: Namespace) -> ContainerOptions:
    from hawser.errors import InvalidArgument
    from hawser.runtime import BindMount, ContainerOptions, Namespaces, Resources, TmpfsMount, parse_cpus, parse_memory

    mounts: list[BindMount] = []  # -v and --mount: hawser.cli._volumes.with_volumes, in _create
    tmpfs = []
    for spec in a.tmpfs:
        dst, _, size = spec.partition(":")
        tmpfs.append(TmpfsMount(destination=dst, size=parse_memory(size) if size else None))
    quota = period = None
    if a.cpus:
        quota, period = parse_cpus(a.cpus)
    resources = Resources(
        memory_limit=parse_memory(a.memory) if a.memory else None,
        memory_swap=(-1 if a.memory_swap == "-1" else parse_memory(a.memory_swap)) if a.memory_swap
        else None,
        cpu_quota=quota, cpu_period=period, cpu_shares=a.cpu_shares, cpuset_cpus=a.cpuset_cpus,
        pids_limit=a.pids_limit)
    no_new_privs, seccomp = True, True
    for opt in a.security_opt:
        if opt in ("no-new-privileges", "no-new-privileges:true"):
            no_new_privs = True
        elif opt == "no-new-privileges:false":
            no_new_privs = False
        elif opt == "seccomp=unconfined":
            seccomp = False
        else:
            raise InvalidArgument(f"unsupported --security-opt {opt!r}")
    sysctls = {}
    for item in a.sysctl:
        k, sep, v = item.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid --sysctl {item!r}: use KEY=VALUE")
        sysctls[k] = v
    entrypoint = None if a.entrypoint is None else (tuple([a.entrypoint]) if a.entrypoint else ())
    return ContainerOptions(
        args=tuple(a.command) if a.command else None, entrypoint=entrypoint, env=_environment(a), workdir=a.workdir,
        user=a.user, tty=a.tty, stdin=a.interactive, stdin_once=not a.tty, hostname=a.hostname,
        read_only=a.read_only, mounts=tuple(mounts), tmpfs=tuple(tmpfs), cap_add=tuple(a.cap_add),
        cap_drop=tuple(a.cap_drop), privileged=a.privileged, no_new_privileges=no_new_privs,
        resources=resources, sysctls=sysctls, seccomp=seccomp, stop_signal=a.stop_signal,
        namespaces=Namespaces(network="host" if a.network == "host" else None))


def _environment(a: Namespace) -> tuple[str, ...]:
    from hawser.cli._scripting import environment

    return environment(a.env, a.env_file)


def _labels(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _ensure_image(ctx: CliContext, image: str, plain_http: bool, platform: str | None = None) -> None:
    from hawser.errors import NotFound

    store = ctx.images()
    try:
        store.resolve_name(image)
    except NotFound:
        from hawser.oci import parse_reference

        parse_reference(image)  # a name no registry could have is refused before any "Unable to find"
        echo(f"Unable to find image '{image}' locally; pulling", err=True)
        from hawser.cli._progress import progress_display

        with progress_display(True) as sink:
            from hawser.oci import Platform

            store.pull(image, plain_http=plain_http, progress=sink,
                       platform=Platform.parse(platform) if platform else None)


def _create(ctx: CliContext, a: Namespace, *, exit_command: Sequence[str] = ()) -> ContainerInfo:
    from hawser.cli._lifecycle import create_config
    from hawser.cli._volumes import mount_requests, with_volumes

    requests = mount_requests(a)  # refused before anything is pulled
    # The restart policy and healthcheck; with a policy or -d --rm, conmon's exit command applies them.
    extra, cleanup = create_config(ctx, a, remove=getattr(a, "remove", False), detach=getattr(a, "detach", False))
    exit_command = cleanup or exit_command
    options = _build_options(a)
    _ensure_image(ctx, a.image, a.plain_http, getattr(a, "platform", None))
    manager = _manager(ctx)
    if a.volumes_from:  # the other containers' volumes and binds, after -v's and --mount's
        from hawser.cli._extras import volumes_from

        requests = volumes_from(ctx, a.volumes_from, requests)
    with with_volumes(ctx, manager, a.image, options, requests) as options:
        from hawser.cli._network import network_request
        from hawser.cli._network_container import container_network, shares_network

        request = network_request(a)
        if shares_network(a):  # --network container:NAME: its namespace, files and host name
            request, options = container_network(ctx, manager, a, request, options)
        return manager.create(a.image, options, name=a.name, labels=_labels(a.labels), exit_command=exit_command,
                              network=request, extra_config=extra)


def _check_tty(*, tty: bool, interactive: bool) -> None:
    """docker's refusal of a terminal whose input is not one (it would hang)."""
    if tty and interactive and not os.isatty(0):
        from hawser.errors import InvalidArgument

        error = InvalidArgument("the input device is not a TTY", hint="drop -t, or run it from a terminal")
        error.exit_code = 1  # docker's: this one is not its 125
        raise error


def run(p: Parser) -> Handler:
    """Create and start a container from IMAGE (pulled if missing), running CMD."""
    p.add_argument("-d", "--detach", action="store_true", help="Run in the background; print the container id.")
    p.add_argument("--rm", dest="remove", action="store_true", help="Remove the container when it exits.")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="Platform to pull IMAGE for if missing.")
    p.add_argument("--detach-keys", metavar="KEYS", help="Keys that detach from -it [default: ctrl-p,ctrl-q].")
    _container_arguments(p)
    return _run


def _run(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.cli._volumes import remove_container

    if not a.detach:
        _check_tty(tty=a.tty, interactive=a.interactive)
    manager = _manager(ctx)
    info = _create(ctx, a)  # -d --rm: conmon's exit command removes it (_lifecycle.create_config)
    if a.detach:
        manager.start_created(info)
        echo(info.id)
        return None
    try:
        code = _run_foreground(manager, info, interactive=a.interactive, tty=a.tty, detach_keys=a.detach_keys)
        if code is None:  # detached (Ctrl-P Ctrl-Q): it runs on, and --rm still holds
            if a.remove:
                from hawser.cli._container_group import remove_when_exited

                remove_when_exited(ctx, info.id)
            return None
    except Exception:
        if a.remove:  # --rm holds when the container cannot start too (as with docker)
            try:
                remove_container(ctx, manager, info.id, force=True, volumes=True)
            except Exception:
                pass  # the error to report is the first one
        raise
    if a.remove:
        remove_container(ctx, manager, info.id, force=True, volumes=True)
    return code


def _run_foreground(manager: ContainerManager, info: ContainerInfo, *, interactive: bool, tty: bool,
                    detach_keys: str | None = None) -> int | None:
    """Start the container and relay its output until it exits; signals go to it.
    None when the user detached (-i: the detach keys)."""
    from hawser.runtime import EXITED

    if interactive or tty:
        from hawser.runtime import DETACH_KEYS, attach, parse_detach_keys

        keys = DETACH_KEYS if detach_keys is None else parse_detach_keys(detach_keys)
        return attach(manager, info, stdin=interactive, tty=tty, detach_keys=keys)
    record = info.record
    forwarded: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        forwarded.append(signum)
        try:
            manager.runc_for(record).kill(record.id, signum)
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
        # conmon could not record the exit (say, a full disk under the state dir).
        echo(f"hawser: container {info.id[:12]} ended, but its exit status is unknown "
             f"({status.reason or status.state})", err=True)
        return 125
    return status.exit_code


def create(p: Parser) -> Handler:
    """Create a container from IMAGE without starting it; print its id."""
    _container_arguments(p)
    return _create_command


def _create_command(ctx: CliContext, a: Namespace) -> None:
    echo(_create(ctx, a).id)


def _containers(p: Parser, *, required: bool = True) -> None:
    p.add_argument("containers", nargs="+" if required else "*", metavar="CONTAINERS")


def _each(names: Sequence[str], action: Callable[[str], object]) -> int | None:
    """As docker with several names: each one is tried, each failure is one
    line on stderr, each success its name on stdout; 1 if any failed."""
    from hawser.errors import HawserError

    failed = False
    for name in names:
        try:
            action(name)
        except HawserError as exc:
            echo(f"hawser: {exc}", err=True)
            failed = True
        else:
            echo(name)
    return 1 if failed else None


def start(p: Parser) -> Handler:
    """Start created or exited containers."""
    p.add_argument("-a", "--attach", action="store_true", help="Relay the container's output until it exits.")
    p.add_argument("-i", "--interactive", action="store_true", help="Attach standard input too (with -a).")
    p.add_argument("--detach-keys", metavar="KEYS", help="Keys that detach from -ai [default: ctrl-p,ctrl-q].")
    _containers(p)
    return _start


def _start(ctx: CliContext, a: Namespace) -> int | None:
    if a.attach and len(a.containers) != 1:
        raise UsageError("--attach takes one container")
    manager = _manager(ctx)
    if a.attach and a.interactive:  # through conmon's attach socket, as attach: the detach keys work
        from hawser.runtime import DETACH_KEYS, parse_detach_keys, start_attached

        keys = DETACH_KEYS if a.detach_keys is None else parse_detach_keys(a.detach_keys)
        code = start_attached(manager, manager.lookup(a.containers[0]), stdin=True, detach_keys=keys)
        return 0 if code is None else code
    if a.attach:
        return _attached_start(manager, manager.lookup(a.containers[0]))
    from hawser.cli._lifecycle import start_command

    return start_command(ctx, a.containers)  # created or exited ones; each name reported as docker


def _format(p: Parser) -> None:
    p.add_argument("--format", default="table", metavar="FORMAT",
                   help="table, json, or a Go template ('{{.Name}} {{.CPUPerc}}', 'table {{.Name}}\\t{{.MemUsage}}').")


def ps(p: Parser) -> Handler:
    """List containers."""
    from hawser.cli._scripting import ps as build  # --format templates and --filter

    return build(p)


def exec_(p: Parser) -> Handler:
    """Run COMMAND in a running CONTAINER."""
    p.add_argument("-d", "--detach", action="store_true", help="Run in the background.")
    p.add_argument("-i", "--interactive", action="store_true", help="Keep stdin open.")
    p.add_argument("-t", "--tty", action="store_true", help="Allocate a terminal.")
    p.add_argument("-e", "--env", action="append", default=[], metavar="K=V")
    p.add_argument("--env-file", action="append", default=[], metavar="FILE", help="Read K=V lines from FILE.")
    p.add_argument("-u", "--user", metavar="USER[:GROUP]")
    p.add_argument("-w", "--workdir", metavar="DIR")
    add_command_line(p, "container", command_required=True)
    return _exec


def _exec(ctx: CliContext, a: Namespace) -> int:
    # a.interactive: stdin is this process's own; runc relays it
    if not a.detach:
        _check_tty(tty=a.tty, interactive=a.interactive)
        if a.tty and not any(os.isatty(fd) for fd in (0, 1, 2)):  # runc needs one to relay the terminal
            from hawser.errors import InvalidArgument

            raise InvalidArgument("the input device is not a TTY", hint="drop -t, or run it from a terminal")
    return _manager(ctx).exec_attached(a.container, tuple(a.command), tty=a.tty, detach=a.detach,
                                       env=_environment(a), user=a.user, workdir=a.workdir)


def logs(p: Parser) -> Handler:
    """Print a container's output."""
    p.add_argument("-f", "--follow", action="store_true", help="Keep printing until the container exits.")
    p.add_argument("--since", metavar="T", help="Only entries since T (10m, RFC 3339, Unix time).")
    p.add_argument("-n", "--tail", metavar="N", help="Only the last N lines ('all').")
    p.add_argument("-t", "--timestamps", action="store_true", help="Prefix each line with its time.")
    p.add_argument("container", metavar="CONTAINER")
    return _logs


def _logs(ctx: CliContext, a: Namespace) -> None:
    from hawser.errors import InvalidArgument
    from hawser.runtime import parse_since

    tail, since = a.tail, a.since
    tail_n: int | None = None
    if tail is not None and tail != "all":
        if not tail.isdigit():
            raise InvalidArgument(f"invalid --tail {tail!r}: a number or 'all'")
        tail_n = int(tail)
    manager = _manager(ctx)
    record = manager.lookup(a.container)
    if "containerd" in record.config:  # made through containerd's API (hawser.containerd._records)
        from hawser.errors import FailedPrecondition

        raise FailedPrecondition(f"container {record.name}: its output goes to the client's FIFOs (made through "
                                 "containerd's API); hawser logs cannot show it")
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for entry in manager.logs(a.container, since=parse_since(since) if since else None, tail=tail_n,
                              follow=a.follow):
        stream = out if entry.stream == "stdout" else err
        if a.timestamps:
            stream.write(entry.time.encode() + b" ")
        stream.write(entry.data)
        stream.flush()


def stop(p: Parser) -> Handler:
    """Stop containers: the stop signal, then SIGKILL."""
    p.add_argument("-t", "--time", dest="timeout", type=float, metavar="FLOAT",
                   help="Seconds before SIGKILL [default: the config's].")
    _containers(p)
    return _stop


def _stop(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.runtime.restart import user_stop

    manager = _manager(ctx)
    return _each(a.containers, lambda c: user_stop(manager, c, a.timeout))  # no restart policy follows


def _signal_number(text: str) -> int:
    from hawser.errors import InvalidArgument

    if text.isdigit():
        return int(text)
    name = text.upper() if text.upper().startswith("SIG") else f"SIG{text.upper()}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise InvalidArgument(f"unknown signal {text!r}") from None


def kill(p: Parser) -> Handler:
    """Send a signal to containers."""
    p.add_argument("-s", "--signal", default="KILL", metavar="TEXT", help="Signal to send [default: KILL].")
    _containers(p)
    return _kill


def _kill(ctx: CliContext, a: Namespace) -> int | None:
    manager = _manager(ctx)
    number = _signal_number(a.signal)
    from hawser.runtime.restart import user_kill

    return _each(a.containers, lambda c: user_kill(manager, c, number))  # no restart policy follows


def rm(p: Parser) -> Handler:
    """Remove containers."""
    p.add_argument("-f", "--force", action="store_true", help="Kill a running container first.")
    p.add_argument("-v", "--volumes", action="store_true", help="Remove the container's anonymous volumes too.")
    _containers(p)
    return _rm


def _rm(ctx: CliContext, a: Namespace) -> int | None:
    # As rmi and prune: on a full disk the store opens with the reserve given back.
    from hawser.cli._volumes import remove_container

    manager = ctx.containers(to_free_space=True)
    return _each(a.containers, lambda c: remove_container(ctx, manager, c, force=a.force, volumes=a.volumes))


def inspect(p: Parser) -> Handler:
    """Show containers (or images) as JSON, in docker's layout."""
    from hawser.cli._scripting import inspect as build  # docker's layout, -f templates

    return build(p)


def _attached_start(manager: ContainerManager, record: Container) -> int:
    """start -a: start an existing container and relay its output until it exits."""
    from hawser.runtime import EXITED
    from hawser.runtime.restart import user_start

    start = os.path.getsize(manager.log_path(record.id)) if os.path.exists(manager.log_path(record.id)) else 0
    user_start(manager, record.id)
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for entry in manager.follow_output(record, start):
        stream = out if entry.stream == "stdout" else err
        stream.write(entry.data)
        stream.flush()
    status = manager.wait(record.id)
    return status.exit_code if status.state == EXITED and status.exit_code is not None else 125


def pause(p: Parser) -> Handler:
    """Freeze every process of containers."""
    _containers(p)
    return _pause


def _pause(ctx: CliContext, a: Namespace) -> int | None:
    manager = _manager(ctx)
    return _each(a.containers, manager.pause)


def unpause(p: Parser) -> Handler:
    """Thaw paused containers."""
    _containers(p)
    return _unpause


def _unpause(ctx: CliContext, a: Namespace) -> int | None:
    manager = _manager(ctx)
    return _each(a.containers, manager.resume)


def wait(p: Parser) -> Handler:
    """Wait for containers to exit; print their exit codes."""
    _containers(p)
    return _wait


def _wait(ctx: CliContext, a: Namespace) -> None:
    manager = _manager(ctx)
    for c in a.containers:
        status = manager.wait(c)
        echo("" if status.exit_code is None else status.exit_code)


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f}MiB"


def stats(p: Parser) -> Handler:
    """Resource usage of containers, from their cgroups."""
    p.add_argument("--no-stream", action="store_true", help="Print once and exit.")
    p.add_argument("-a", "--all", action="store_true", help="All containers, not only running ones.")
    _format(p)
    _containers(p, required=False)
    return _stats


def _stats(ctx: CliContext, a: Namespace) -> None:
    import json

    from hawser.runtime import ContainerStatsReader

    fmt = a.format
    manager = _manager(ctx)
    reader = ContainerStatsReader.of(manager)
    records = [manager.lookup(c) for c in a.containers] if a.containers else \
        [i.record for i in manager.list(all_=a.all)]
    while True:
        rows: list[dict[str, Any]] = []
        for r in records:
            sample = reader.read(r, writable_layer=False)
            s = sample.cgroup
            if s is None:
                continue
            cpu = (sample.nano_cores or 0) / 1e7  # percent of one core
            rows.append({"id": r.id, "name": r.name, "cpu_percent": round(cpu, 2), "cpu_usage_ns": s.cpu_usage_ns,
                         "memory_usage": s.memory_usage, "memory_working_set": s.memory_working_set,
                         "memory_limit": s.memory_limit, "pids": s.pids_current,
                         "block_read": s.blkio_read_bytes, "block_write": s.blkio_write_bytes,
                         "oom_kills": s.oom_kills})
        if fmt == "json":
            echo(json.dumps(rows))
        elif fmt != "table":  # a Go template of docker's fields
            from hawser.cli._scripting import print_stats

            print_stats(rows, {r.id: manager.status(r).pid for r in records}, fmt)
        else:
            from hawser.cli._stats_table import stats_lines

            # NET I/O: the counters of the container's network namespace, through its init.
            pids = {r.id: manager.status(r).pid for r in records}
            for line in stats_lines(rows, pids):
                echo(line)
        if a.no_stream:
            return
        time.sleep(1.0)
        if fmt == "table" and os.isatty(1):
            echo("\x1b[2J\x1b[H", end="")
