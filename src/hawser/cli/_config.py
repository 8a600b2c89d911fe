"""``hawser config``: the documented defaults and the effective configuration."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import group

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Handler, Parser


def config(p: Parser) -> Handler:
    """Show configuration."""
    return group(p, {"default": default, "show": show})


def default(p: Parser) -> Handler:
    """Print the default config file, with comments."""
    return _default


def _default(ctx: CliContext, a: Namespace) -> None:
    from hawser.config import default_toml

    echo(default_toml(), end="")


def show(p: Parser) -> Handler:
    """Print the effective configuration (file, drop-ins and flags) as JSON."""
    return _show


def _show(ctx: CliContext, a: Namespace) -> None:
    import json

    from hawser._dataclass import asdict

    echo(json.dumps(asdict(ctx.config), indent=2))
