"""Entry point: global options, the command table, and one-line errors.

Command modules are imported only when their command runs, so that
``hawser --version`` and ``hawser --help`` stay fast; so is everything they
need (rich, json, the store).
"""

from __future__ import annotations

import sys

from hawser import __version__
from hawser.cli._context import CliContext, echo
from hawser.cli._parser import Parser

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from typing import NoReturn

    from hawser.cli._parser import Builder

# name -> (module under hawser.cli, its builder function, summary for ``hawser --help``)
_COMMANDS: dict[str, tuple[str, str, str]] = {
    "pull": ("_images", "pull", "Pull an image from a registry."),
    "push": ("_push", "push", "Push an image to a registry."),
    "tag": ("_push", "tag", "Give an image another name."),
    "images": ("_images", "images", "List images."),
    "rmi": ("_images", "rmi", "Remove images."),
    "image": ("_images", "image", "Manage images (ls, pull, push, tag, history, save, load, prune, ...)."),
    "system": ("_system", "system", "Store usage, garbage collection, consistency check."),
    "config": ("_config", "config", "Show configuration."),
    "version": ("_version", "version", "Show the client's and the daemon's versions."),
    "run": ("_containers", "run", "Create and start a container."),
    "create": ("_containers", "create", "Create a container."),
    "start": ("_containers", "start", "Start created or exited containers."),
    "ps": ("_scripting", "ps", "List containers."),
    "exec": ("_containers", "exec_", "Run a command in a running container."),
    "logs": ("_containers", "logs", "Print a container's output."),
    "stop": ("_containers", "stop", "Stop containers."),
    "kill": ("_containers", "kill", "Signal containers."),
    "rm": ("_containers", "rm", "Remove containers."),
    "inspect": ("_scripting", "inspect", "Show containers or images as JSON."),
    "stats": ("_containers", "stats", "Container resource usage."),
    "pause": ("_containers", "pause", "Pause containers."),
    "unpause": ("_containers", "unpause", "Unpause containers."),
    "wait": ("_containers", "wait", "Wait for containers to exit."),
    "attach": ("_container_group", "attach", "Attach to a running container (Ctrl-P Ctrl-Q detaches)."),
    "rename": ("_container_group", "rename", "Rename a container."),
    "top": ("_container_group", "top", "Show the processes of a container."),
    "cp": ("_cp", "cp", "Copy files between a container and the host."),
    "container": ("_container_group", "container", "Manage containers (ls, run, cp, prune, ...)."),
    "restart": ("_lifecycle", "restart", "Restart containers."),
    "healthcheck": ("_lifecycle", "healthcheck", "Run a container's healthcheck."),
    "events": ("_events", "events", "Show events (pulls, runs, exits, removals), live."),
    "commit": ("_commit", "commit", "Make an image of a container's changes."),
    "diff": ("_commit", "diff", "List what a container changed in its filesystem."),
    "save": ("_archive", "save", "Save images to a tar archive (oci-archive or docker-archive)."),
    "load": ("_archive", "load", "Load images from a tar archive or standard input."),
    "export": ("_archive", "export", "Export a container's filesystem as a tar archive."),
    "import": ("_archive", "import_", "Import a filesystem tar as a one-layer image."),
    "volume": ("_volumes", "volume", "Manage volumes (create, ls, inspect, rm, prune)."),
    "network": ("_network", "network", "Manage networks (create, ls, inspect, rm, prune)."),
    "port": ("_network", "port", "List a container's published ports."),
    "login": ("_login", "login", "Log in to a registry."),
    "logout": ("_login", "logout", "Log out of a registry."),
    "completion": ("_docs", "completion", "Print a shell completion script (bash or zsh)."),
    "history": ("_extras", "history", "Show the history of an image."),
    "info": ("_extras", "info", "Show system-wide information."),
    "update": ("_extras", "update", "Update the resource limits or restart policy of containers."),
}


def _load(name: str) -> Builder:
    import importlib

    module, function, _ = _COMMANDS[name]
    build: Builder = getattr(importlib.import_module(f"hawser.cli.{module}"), function)
    return build


def _parser() -> Parser:
    parser = Parser("hawser", description="hawser: pull OCI images and run containers.")
    parser.add_argument("-v", "--version", action="version", version=f"hawser version {__version__}",
                        help="Show the version and exit.")
    parser.add_argument("--config", metavar="FILE", help="Config file [default: /etc/hawser/config.toml].")
    parser.add_argument("--root", metavar="DIR", help="Persistent data [default: /var/lib/hawser].")
    parser.add_argument("--state", metavar="DIR", help="Transient state [default: /run/hawser].")
    parser.add_argument("--registry-config-dir", metavar="DIR",
                        help="hosts.toml directory [default: /etc/hawser/certs.d].")
    parser.add_argument("--snapshotter", choices=("overlayfs", "native"), metavar="[overlayfs|native]",
                        help="Snapshotter [default: overlayfs].")
    parser.add_argument("-n", "--namespace", metavar="NAME",
                        help="Namespace of images and containers [default: $HAWSER_NAMESPACE, else default]; "
                             "the CRI's are in k8s.io.")
    parser.add_argument("--debug", action="store_true", help="Show tracebacks.")
    parser.add_help_option()
    parser.add_commands({name: summary for name, (_, _, summary) in _COMMANDS.items()})
    return parser


def run() -> None:
    debug = False
    failure = 1  # the exit code of an error of hawser itself: docker's 125 for run and create
    try:
        parser = _parser()
        args = parser.parse_args()
        debug = args.debug
        failure = _failure_code(args.command, args.arguments)
        ctx = CliContext(config_path=args.config, root=args.root, state=args.state,
                         registry_config_dir=args.registry_config_dir, snapshotter=args.snapshotter, debug=debug,
                         namespace=args.namespace)
        try:
            code = parser.run_command(ctx, args, _load)
        except SystemExit as exc:
            if exc.code == 2 and failure != 1:  # a usage error of run or create
                sys.exit(failure)
            raise
        finally:
            ctx.close()
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away (``hawser ps | head``): no complaint from the
        # interpreter's final flush either.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(141)
    except Exception as exc:
        _fail(exc, debug=debug, failure=failure)
    sys.exit(code)


def _failure_code(command: str | None, arguments: list[str]) -> int:
    """docker's exit code for a failure of the tool itself: 125 for ``run`` and
    ``create`` (``container run``...), so that a script tells it from the
    container's own code (126, 127: its command cannot be invoked, is not
    found); 1 for the other commands."""
    if command == "container":
        command = next((a for a in arguments if not a.startswith("-")), None)
    return 125 if command in ("run", "create") else 1


def _fail(exc: Exception, *, debug: bool, failure: int = 1) -> NoReturn:
    """One line on stderr, and the exit code of the error's kind (``failure`` for a plain error)."""
    from hawser.errors import HawserError

    if debug:
        import traceback

        traceback.print_exc()
    if isinstance(exc, HawserError):
        echo(f"hawser: {exc}", err=True)
        # an exit code the error was given (``error.exit_code = 126``) stands; its kind's becomes ``failure``
        sys.exit(exc.exit_code if "exit_code" in vars(exc) else failure if failure != 1 else exc.exit_code)
    if isinstance(exc, OSError) and exc.errno == 28:
        echo(f"hawser: no space left on device: {exc}", err=True)
        sys.exit(failure)
    echo(f"hawser: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
    sys.exit(70 if failure == 1 else failure)
