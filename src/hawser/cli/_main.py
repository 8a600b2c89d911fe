"""Entry point: global options, the command table, and one-line errors.

Command modules are imported only when their command runs, so that
``hawser --version`` and ``hawser --help`` stay fast.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from hawser import __version__
from hawser.cli._context import CliContext

# name -> (module, attribute): loaded on first use.
_COMMANDS: dict[str, tuple[str, str]] = {
    "pull": ("hawser.cli._images", "pull"),
    "images": ("hawser.cli._images", "images"),
    "rmi": ("hawser.cli._images", "rmi"),
    "image": ("hawser.cli._images", "image"),
    "system": ("hawser.cli._system", "system"),
    "config": ("hawser.cli._config", "config"),
    **{name: ("hawser.cli._containers", attr) for name, attr in (
        ("run", "run"), ("create", "create"), ("start", "start"), ("ps", "ps"), ("exec", "exec_"),
        ("logs", "logs"), ("stop", "stop"), ("kill", "kill"), ("rm", "rm"), ("inspect", "inspect"),
        ("stats", "stats"), ("pause", "pause"), ("unpause", "unpause"), ("wait", "wait"))},
}
_HELP = {
    "pull": "Pull an image from a registry.",
    "images": "List images.",
    "rmi": "Remove images.",
    "image": "Manage images (inspect, import, rm, ls).",
    "system": "Store usage, garbage collection.",
    "config": "Show configuration.",
    "run": "Create and start a container.",
    "create": "Create a container.",
    "start": "Start created containers.",
    "ps": "List containers.",
    "exec": "Run a command in a running container.",
    "logs": "Print a container's output.",
    "stop": "Stop containers.",
    "kill": "Signal containers.",
    "rm": "Remove containers.",
    "inspect": "Show containers or images as JSON.",
    "stats": "Container resource usage.",
    "pause": "Pause containers.",
    "unpause": "Unpause containers.",
    "wait": "Wait for containers to exit.",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        entry = _COMMANDS.get(name)
        if entry is None:
            return None
        import importlib

        command: click.Command = getattr(importlib.import_module(entry[0]), entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, _HELP[name]) for name in sorted(_COMMANDS)])


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-v", prog_name="hawser", message="%(prog)s version %(version)s")
@click.option("--config", "config_path", metavar="FILE", help="Config file [default: /etc/hawser/config.toml].")
@click.option("--root", metavar="DIR", help="Persistent data [default: /var/lib/hawser].")
@click.option("--state", metavar="DIR", help="Transient state [default: /run/hawser].")
@click.option("--registry-config-dir", metavar="DIR", help="hosts.toml directory [default: /etc/hawser/certs.d].")
@click.option("--snapshotter", type=click.Choice(["overlayfs", "native"]), help="Snapshotter [default: overlayfs].")
@click.option("--debug", is_flag=True, help="Show tracebacks.")
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    """hawser: pull OCI images and run containers."""
    ctx.obj = CliContext(**options)


def run() -> None:
    debug = "--debug" in sys.argv
    try:
        cli.main(standalone_mode=False, prog_name="hawser")
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(141)
    except Exception as exc:
        from hawser.errors import HawserError

        if debug:
            import traceback

            traceback.print_exc()
        if isinstance(exc, HawserError):
            click.echo(f"hawser: {exc}", err=True)
            sys.exit(exc.exit_code)
        if isinstance(exc, OSError) and exc.errno == 28:
            click.echo(f"hawser: no space left on device: {exc}", err=True)
            sys.exit(1)
        click.echo(f"hawser: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
        sys.exit(70)
