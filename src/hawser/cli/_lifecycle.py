"""Lifecycle commands: restart, healthcheck, the exit command conmon runs
(``container cleanup``), ``system restart-containers``; and the run/create
flags of restart policies and healthchecks (the logic is in
``hawser.runtime.restart`` and ``hawser.runtime.health``)."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from hawser.cli._parser import Handler, Parser
    from hawser.metadata import Container
    from hawser.runtime import ContainerManager


# --- run and create's flags ---------------------------------------------------------


def add_arguments(p: Parser) -> None:
    """--restart and the --health-* flags of run and create."""
    p.add_argument("--restart", default="no", metavar="POLICY",
                   help="Restart policy: no, on-failure[:max-retries], always, unless-stopped [default: no].")
    p.add_argument("--health-cmd", metavar="COMMAND", help="Command to run to check health (through /bin/sh).")
    p.add_argument("--health-interval", metavar="DURATION", help="Time between checks (ms|s|m|h) [default: 30s].")
    p.add_argument("--health-timeout", metavar="DURATION", help="Longest time a check may run [default: 30s].")
    p.add_argument("--health-retries", type=int, metavar="INTEGER",
                   help="Consecutive failures that make it unhealthy [default: 3].")
    p.add_argument("--health-start-period", metavar="DURATION",
                   help="Start-up time in which failures do not count [default: 0s].")
    p.add_argument("--no-healthcheck", action="store_true", help="Disable any healthcheck the image has.")


def create_config(ctx: CliContext, a: Namespace, *, remove: bool, detach: bool
                  ) -> tuple[dict[str, Any], list[str]]:
    """The record's extra config (the restart policy, the healthcheck
    overrides) and conmon's exit command for run/create's flags (``remove``,
    ``detach``: run's --rm and -d; a foreground run --rm removes it itself).
    InvalidArgument for a bad value, or a policy with --rm (as docker)."""
    from hawser.errors import InvalidArgument
    from hawser.runtime.health import parse_duration
    from hawser.runtime.restart import RestartPolicy, restart_config

    policy = RestartPolicy.parse(a.restart)
    auto_remove = remove and detach
    if policy.restarts and remove:
        raise InvalidArgument("conflicting options: --restart and --rm", hint="a container removed when it "
                              "exits cannot be restarted; drop one of them")
    given = [a.health_cmd, a.health_interval, a.health_timeout, a.health_retries, a.health_start_period]
    if a.no_healthcheck and any(v is not None for v in given):
        raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
    if a.health_retries is not None and a.health_retries < 0:
        raise InvalidArgument("--health-retries cannot be negative")
    health: dict[str, Any] = {
        "test": ["NONE"] if a.no_healthcheck else ["CMD-SHELL", a.health_cmd] if a.health_cmd else [],
        "retries": a.health_retries or 0}
    for key, text in (("interval", a.health_interval), ("timeout", a.health_timeout),
                      ("start_period", a.health_start_period)):
        seconds = parse_duration(text) if text is not None else 0.0
        if text is not None and key != "start_period" and seconds < 0.001:
            raise InvalidArgument(f"--health-{key} must be at least 1ms")
        health[key] = seconds
    extra: dict[str, Any] = {"healthcheck": health}
    exit_command: list[str] = []
    if policy.restarts or auto_remove:
        extra["restart"] = restart_config(policy, auto_remove=auto_remove)
        exit_command = cleanup_command(ctx)
    return extra, exit_command


def cleanup_command(ctx: CliContext) -> list[str]:
    """What conmon runs when a container with a policy or ``-d --rm`` exits
    (the container's id is appended).  conmon waits for its exit command, and
    a restart or rm waits for conmon to be gone: ``setsid -f`` lets conmon go
    at once, the cleanup carrying on on its own."""
    import shutil

    return [shutil.which("setsid") or "/usr/bin/setsid", "-f", *ctx.hawser_argv("container", "cleanup")]


def start_observer(ctx: CliContext, manager: ContainerManager) -> Callable[[str, Container, Mapping[str, str]], None]:
    """A container observer of starts: a container with a healthcheck gets
    its monitor (``healthcheck monitor``, detached); one with a restart
    policy a copy of its spec a reboot leaves (``restart.keep_spec``)."""

    def observe(kind: str, record: Container, details: Mapping[str, str]) -> None:
        if kind != "started":
            return
        if "restart" in record.config:
            from hawser.runtime.restart import keep_spec

            keep_spec(manager, record)
        if "healthcheck" in record.config:
            from hawser.runtime.health import monitor_observer

            monitor_observer(ctx.hawser_argv("healthcheck", "monitor"))(kind, record, details)

    return observe


# --- commands --------------------------------------------------------------------


def restart(p: Parser) -> Handler:
    """Restart containers: stop (the stop signal, then SIGKILL), then start the same container again."""
    p.add_argument("-t", "--time", dest="timeout", type=float, metavar="SECONDS",
                   help="Seconds to wait for the stop before SIGKILL [default: the config's].")
    p.add_argument("containers", nargs="+", metavar="CONTAINERS")
    return _restart


def _restart(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.runtime.restart import user_restart

    manager = ctx.containers()
    return _each(a.containers, lambda c: user_restart(manager, c, a.timeout))


def _each(names: Sequence[str], action: Any) -> int | None:
    from hawser.cli._containers import _each as each

    result: int | None = each(names, action)
    return result


def start_command(ctx: CliContext, names: Sequence[str]) -> int | None:
    """``hawser start`` of created or exited containers, each name reported as docker does."""
    from hawser.runtime.restart import user_start

    manager = ctx.containers()
    return _each(names, lambda c: user_start(manager, c))


def healthcheck(p: Parser) -> Handler:
    """Run a container's healthcheck."""
    from hawser.cli._parser import group

    return group(p, {"run": healthcheck_run, "monitor": healthcheck_monitor})


def healthcheck_run(p: Parser) -> Handler:
    """Run a container's healthcheck once and record it: exit 0 healthy, else 1 (and the status)."""
    p.add_argument("container", metavar="CONTAINER")
    return _healthcheck_run


def _healthcheck_run(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.runtime.health import HEALTHY, check_once

    state = check_once(ctx.containers(), a.container)
    status = state.get("Status")
    if status == HEALTHY:  # as podman's: quiet when healthy, the status and 1 otherwise
        return None
    echo(status)
    return 1


def healthcheck_monitor(p: Parser) -> Handler:
    """(internal) Check a container every interval until it exits; started with it."""
    p.add_argument("container", metavar="ID")
    return _healthcheck_monitor


def _healthcheck_monitor(ctx: CliContext, a: Namespace) -> None:
    from hawser.runtime.health import monitor

    monitor(ctx.containers(), a.container)


def container_cleanup(p: Parser) -> Handler:
    """(internal) What conmon runs when a container exits: its restart policy, or --rm."""
    p.add_argument("container", metavar="ID")
    return _container_cleanup


def _container_cleanup(ctx: CliContext, a: Namespace) -> None:
    import logging

    from hawser.runtime.restart import cleanup

    try:
        manager = ctx.containers(to_free_space=True)
        record = manager.records.find(a.container)
        if cleanup(manager, a.container) == "removed" and record is not None:
            from hawser.cli._volumes import remove_anonymous

            remove_anonymous(ctx, record.config)  # --rm takes the anonymous volumes along, as docker's
    except Exception as exc:  # nobody reads this process's output: the journal's log has it
        logging.getLogger(__name__).warning("container cleanup of %s failed: %s", a.container, exc)
        raise


def restart_containers(p: Parser) -> Handler:
    """Start the containers with restart policy always or unless-stopped after a reboot (run at boot)."""
    return _restart_containers


def _restart_containers(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.runtime.restart import restart_on_boot

    failed = False
    for name, outcome in restart_on_boot(ctx.containers()):
        if outcome == "started":
            echo(name)
        else:
            echo(f"hawser: {name}: {outcome}", err=True)
            failed = True
    return 1 if failed else None
