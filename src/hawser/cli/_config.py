"""``hawser config``: the documented defaults and the effective configuration."""

from __future__ import annotations

import json
from dataclasses import asdict

import click

from hawser.cli._context import CliContext


@click.group()
def config() -> None:
    """Show configuration."""


@config.command("default")
def default() -> None:
    """Print the default config file, with comments."""
    from hawser.config import DEFAULT_TOML

    click.echo(DEFAULT_TOML, nl=False)


@config.command("show")
@click.pass_obj
def show(ctx: CliContext) -> None:
    """Print the effective configuration (file plus flags) as JSON."""
    click.echo(json.dumps(asdict(ctx.config), indent=2))
