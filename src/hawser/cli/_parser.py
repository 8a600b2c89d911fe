"""argparse, dressed for hawser: help that reads like docker's, one-line usage
errors, and command tables whose commands are built only when chosen.

A command is a *builder*: a function that declares the command's arguments on
its parser and returns the *handler* that runs it.  The builder's docstring is
the command's description.
"""

from __future__ import annotations

import sys
from argparse import REMAINDER, Action, ArgumentError, ArgumentParser, HelpFormatter, Namespace

# The CLI never imports typing (2-3 ms of every start); mypy takes any name
# TYPE_CHECKING as true, so the annotations below are checked all the same.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, NoReturn, TypeAlias

    from hawser.cli._context import CliContext

    Handler: TypeAlias = Callable[[CliContext, Namespace], int | None]
    """Runs a parsed command; returns its exit code (None: 0)."""
    Builder: TypeAlias = Callable[["Parser"], Handler]
    """Declares a command's arguments on its parser; returns its handler."""


class UsageError(Exception):
    """Arguments that parse but do not make sense together; reported as argparse's own errors are."""


class Parser(ArgumentParser):
    """An ArgumentParser with hawser's help layout and error format.

    Usage errors are one line on stderr plus a hint, exit code 2.
    """

    def __init__(self, prog: str, *, description: str | None = None) -> None:
        # allow_abbrev=False: options are spelled out, and a container command's own
        # arguments (``run IMG ls --n``) can never be taken for an abbreviation.
        super().__init__(prog=prog, description=description, add_help=False, allow_abbrev=False,
                         formatter_class=_Formatter)
        self.commands: dict[str, str] = {}
        self.builders: dict[str, Builder] = {}
        """A group's subcommands (see group()), for the completion scripts and man pages."""

    def add_help_option(self) -> None:
        """-h/--help, last in the help; only --help where the command uses -h itself (run --hostname)."""
        try:
            self.add_argument("-h", "--help", action="help", help="Show this message and exit.")
        except ArgumentError:
            self.add_argument("--help", action="help", help="Show this message and exit.")

    def add_commands(self, commands: Mapping[str, str]) -> None:
        """Take ``COMMAND [ARGS]...`` after the options; commands maps each name to its summary."""
        self.commands = dict(commands)
        self.usage = "%(prog)s [OPTIONS] COMMAND [ARGS]..."
        self.add_argument("command", nargs="?", metavar="COMMAND")
        self.add_argument("arguments", nargs=REMAINDER, metavar="ARGS")

    def run_command(self, ctx: CliContext, args: Namespace, load: Callable[[str], Builder]) -> int | None:
        """Build the chosen command's parser, parse the rest of the line with it and run the command.

        Without a command, print the help as a usage error (exit code 2).
        """
        if args.command is None:
            self.print_help(sys.stderr)
            return 2
        if args.command not in self.commands:
            self.error(f"no such command {args.command!r}")
        build = load(args.command)
        parser = Parser(f"{self.prog} {args.command}", description=build.__doc__)
        handler = build(parser)
        parser.add_help_option()
        parsed = parser.parse_args(args.arguments)
        try:
            return handler(ctx, parsed)
        except UsageError as exc:
            parser.error(str(exc))

    def format_usage(self) -> str:
        formatter = self._formatter()
        formatter.add_usage(self.usage or self._default_usage(), [], [], prefix="Usage: ")
        return formatter.format_help()

    def format_help(self) -> str:
        formatter = self._formatter()
        formatter.add_usage(self.usage or self._default_usage(), [], [], prefix="Usage: ")
        formatter.add_text(self.description)
        formatter.start_section("Options")
        formatter.add_arguments([a for a in self._actions if a.option_strings])
        formatter.end_section()
        text = formatter.format_help()
        if self.commands:
            # A formatter of its own, so that the commands align among themselves.
            formatter = self._formatter()
            formatter.start_section("Commands")
            formatter.add_arguments([Action([], name, help=self.commands[name]) for name in sorted(self.commands)])
            formatter.end_section()
            text += "\n" + formatter.format_help()
        return text

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message}\nTry '{self.prog} --help' for help.\n")

    def _formatter(self) -> HelpFormatter:
        import shutil

        return _Formatter(self.prog, width=min(shutil.get_terminal_size().columns, 80) - 2)

    def _default_usage(self) -> str:
        """``prog [OPTIONS] CONTAINERS...``: the positionals spelled the way docker's help does."""
        words = ["%(prog)s", "[OPTIONS]"]
        for action in self._actions:
            if action.option_strings:
                continue
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
            forms: dict[object, str] = {"?": f"[{metavar}]", "*": f"[{metavar}]...", "+": f"{metavar}..."}
            words.append(forms.get(action.nargs, metavar))
        return " ".join(words)


def add_command_line(parser: Parser, target: str, *, command_required: bool) -> None:
    """TARGET (``image``, ``container``), then the command to run there: ``namespace.command``.

    Everything after TARGET is the command, verbatim, options and ``--``
    included: ``hawser run IMG ls -la``, ``hawser exec ID sh -c 'x'``.
    """
    command = "COMMAND [ARG...]" if command_required else "[COMMAND [ARG...]]"
    parser.add_argument(target, action=_CommandLine, nargs=REMAINDER, metavar=f"{target.upper()} {command}",
                        command_required=command_required)


class _CommandLine(Action):
    """argparse's REMAINDER from the first positional on, split into the target and the command.

    One REMAINDER for both, because a target of its own would swallow a
    ``--`` after it (``run IMG -- x``) that belongs to the command.
    """

    def __init__(self, *args: Any, command_required: bool, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.command_required = command_required

    def __call__(self, parser: ArgumentParser, namespace: Namespace, values: str | Sequence[Any] | None,
                 option_string: str | None = None) -> None:
        words = list(values or ())
        if words[:1] == ["--"]:  # ``run -- IMG``: the -- ended hawser's options
            words = words[1:]
        missing = [self.dest.upper()] if not words else []
        if self.command_required and len(words) < 2:
            missing.append("COMMAND")
        if missing:
            parser.error(f"the following arguments are required: {', '.join(missing)}")
        setattr(namespace, self.dest, words[0])
        namespace.command = words[1:]


def group(parser: Parser, builders: Mapping[str, Builder]) -> Handler:
    """A command made of subcommands (``hawser image ls``); each builder's docstring gives its summary."""
    parser.add_commands({name: _summary(build) for name, build in builders.items()})
    parser.builders = dict(builders)

    def handler(ctx: CliContext, args: Namespace) -> int | None:
        return parser.run_command(ctx, args, builders.__getitem__)

    return handler


def _summary(build: Builder) -> str:
    """The first sentence of the builder's docstring, however many lines it spans."""
    import re

    paragraph = " ".join((build.__doc__ or "").strip().split("\n\n", 1)[0].split())
    return re.split(r"(?<=\.)\s+(?=[A-Z])", paragraph, maxsplit=1)[0]


class _Formatter(HelpFormatter):
    """Help laid out as it was under click: ``-e, --env K=V``, a wider option column.

    The width is fixed unless given: argparse builds a formatter for every
    add_argument, and its default one imports shutil (3 ms) to ask the terminal.
    """

    def __init__(self, prog: str, width: int = 78) -> None:
        super().__init__(prog, max_help_position=30, width=width)

    def _format_action_invocation(self, action: Action) -> str:
        if not action.option_strings:
            return super()._format_action_invocation(action)
        names = ", ".join(sorted(action.option_strings, key=lambda name: name.startswith("--")))  # -m, --memory
        if action.nargs == 0:
            return names
        metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
        return f"{names} {metavar}"
