"""attach, rename, top, ``container prune``, and ``hawser container``: the
group docker's other container commands are aliases of."""

from __future__ import annotations

import sys

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import group

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Builder, Handler, Parser


def attach(p: Parser) -> Handler:
    """Attach this terminal's input and output to a running container.

    Ctrl-P Ctrl-Q (or --detach-keys) leaves it running."""
    p.add_argument("--no-stdin", action="store_true", help="Do not attach standard input.")
    p.add_argument("--detach-keys", metavar="KEYS",
                   help="Keys that detach: ctrl-<value> or a letter, comma-separated [default: ctrl-p,ctrl-q].")
    p.add_argument("--sig-proxy", default="true", choices=("true", "false"), metavar="BOOL",
                   help="Pass SIGINT and SIGTERM on to the container (without a terminal) [default: true].")
    p.add_argument("container", metavar="CONTAINER")
    return _attach


def _attach(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.runtime import DETACH_KEYS, attach_running, parse_detach_keys

    keys = DETACH_KEYS if a.detach_keys is None else parse_detach_keys(a.detach_keys)
    manager = ctx.containers()
    record = manager.lookup(a.container)
    code = attach_running(manager, record, stdin=not a.no_stdin, detach_keys=keys, sig_proxy=a.sig_proxy == "true")
    if code is None:  # detached: as docker, nothing more is said on a terminal
        return 0
    return code


def rename(p: Parser) -> Handler:
    """Rename a container."""
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("name", metavar="NEW_NAME")
    return _rename


def _rename(ctx: CliContext, a: Namespace) -> None:
    from hawser.errors import InvalidArgument

    manager = ctx.containers()
    record = manager.lookup(a.container)
    if record.name == a.name:
        raise InvalidArgument(f"renaming a container with the same name as its current name: {a.name}")
    manager.records.rename(record.id, a.name, namespace=record.namespace)


def top(p: Parser) -> Handler:
    """Show the processes of a container (ps on the host, its options after the container)."""
    from argparse import REMAINDER

    p.usage = "%(prog)s [OPTIONS] CONTAINER [ps OPTIONS]"
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("ps_options", nargs=REMAINDER, metavar="ps OPTIONS")
    return _top


def _top(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.errors import FailedPrecondition, HawserError
    from hawser.host import CgroupLayout, cgroup_pids, run_process
    from hawser.runtime import PAUSED, RUNNING, cgroup_of

    manager = ctx.containers()
    record = manager.lookup(a.container)
    status = manager.status(record)
    if status.state not in (RUNNING, PAUSED):
        raise FailedPrecondition(f"container {record.name} is not running ({status.state})")
    pids: set[int] = set()
    cgroup = cgroup_of(record)
    if cgroup:
        try:
            pids.update(cgroup_pids(CgroupLayout.detect(), cgroup))
        except HawserError:
            pass
    if not pids and status.pid:
        pids.add(status.pid)
    # docker's default columns (ps -ef), and its way with options: run ps, keep the rows of the container's pids.
    options = a.ps_options or ["-ef"]
    result = run_process(["ps", *options], timeout=30)
    if result.returncode != 0:
        raise FailedPrecondition(f"ps {' '.join(options)} failed: {result.stderr.decode(errors='replace').strip()}")
    lines = result.stdout.decode(errors="replace").splitlines()
    if not lines:
        return None
    header = lines[0].split()
    if "PID" not in header:
        raise FailedPrecondition("ps's output has no PID column", hint="add pid to the -o columns")
    column = header.index("PID")
    echo(lines[0])
    for line in lines[1:]:
        fields = line.split(None, len(header) - 1)
        if len(fields) > column and fields[column].isdigit() and int(fields[column]) in pids:
            echo(line)
    return None


def prune(p: Parser) -> Handler:
    """Remove all stopped containers."""
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation.")
    return _prune


def _prune(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.cli._images import _human
    from hawser.errors import HawserError, NotFound
    from hawser.runtime import CREATED, EXITED

    if not a.force:
        echo("WARNING! This will remove all stopped containers.")
        if not sys.stdin.isatty():
            echo("Are you sure you want to continue? [y/N] (not a terminal: use -f)", err=True)
            return 1
        if input("Are you sure you want to continue? [y/N] ").strip().lower() not in ("y", "yes"):
            return 1
    manager = ctx.containers(to_free_space=True)
    removed: list[str] = []
    reclaimed = 0
    failed = False
    for info in manager.list():
        # docker's prune takes the created ones too: all that are not running.
        if info.status.state not in (EXITED, CREATED):
            continue
        size = 0
        try:
            size = manager.snapshotter.usage(info.record.snapshot_key).size
        except (HawserError, OSError):
            pass
        try:
            manager.remove(info.id)
        except NotFound:
            continue
        except HawserError as exc:
            echo(f"hawser: {exc}", err=True)
            failed = True
            continue
        removed.append(info.id)
        reclaimed += size
    if removed:
        echo("Deleted Containers:")
        for id_ in removed:
            echo(id_)
        echo()
    echo(f"Total reclaimed space: {_human(reclaimed)}")
    return 1 if failed else None


# docker container COMMAND -> hawser's top-level command (its module and builder are _main's table).
_ALIASES = {
    "attach": "attach", "commit": "commit", "cp": "cp", "create": "create", "diff": "diff", "exec": "exec",
    "export": "export", "inspect": "inspect", "kill": "kill", "logs": "logs", "ls": "ps", "list": "ps", "ps": "ps",
    "pause": "pause", "port": "port", "rename": "rename", "restart": "restart", "rm": "rm", "run": "run",
    "start": "start", "stats": "stats", "stop": "stop", "top": "top", "unpause": "unpause", "update": "update",
    "wait": "wait",
}


def _lazy(name: str, module: str, function: str, summary: str) -> Builder:
    """A builder that imports the command's module only when it is chosen."""

    def build(p: Parser) -> Handler:
        import importlib

        real: Builder = getattr(importlib.import_module(f"hawser.cli.{module}"), function)
        p.description = real.__doc__
        return real(p)

    build.__doc__ = summary
    build.__name__ = name
    return build


def container(p: Parser) -> Handler:
    """Manage containers (ls, run, start, stop, rm, exec, logs, cp, prune, ...)."""
    from hawser.cli._main import _COMMANDS

    # Only the commands hawser has: one added to _main's table later joins the group by itself.
    builders: dict[str, Builder] = {}
    for name, command in _ALIASES.items():
        if command in _COMMANDS:
            module, function, summary = _COMMANDS[command]
            builders[name] = _lazy(name, module, function, summary)
    builders["prune"] = prune
    # conmon's exit command for a restart policy or -d --rm (hawser.cli._lifecycle)
    builders["cleanup"] = _lazy("cleanup", "_lifecycle", "container_cleanup", "(internal) Apply a container's "
                                "restart policy or --rm once it has exited.")
    return group(p, builders)


def remove_when_exited(ctx: CliContext, id_: str) -> None:
    """``run --rm -it`` detached from: no hawser process waits for the
    container any more, so a small one of its own (``setsid``: out of this
    session) waits for it to exit and removes it, as docker's daemon would."""
    import shlex
    import shutil

    from hawser.host import run_process

    script = (f"exec </dev/null >/dev/null 2>&1; {shlex.join(ctx.hawser_argv('wait', id_))}; "
              f"{shlex.join(ctx.hawser_argv('rm', '-f', '-v', id_))}")
    run_process([shutil.which("setsid") or "/usr/bin/setsid", "-f", "sh", "-c", script], timeout=10)
