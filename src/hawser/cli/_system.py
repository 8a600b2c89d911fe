"""``hawser system``: disk usage and garbage collection."""

from __future__ import annotations

import json

import click

from hawser.cli._context import CliContext
from hawser.cli._images import _human


@click.group()
def system() -> None:
    """Store usage and garbage collection."""


@system.command("df")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_obj
def df(ctx: CliContext, fmt: str) -> None:
    """Show how much disk images, content and snapshots use."""
    usage = ctx.store().usage()
    if fmt == "json":
        click.echo(json.dumps(usage, indent=2))
        return
    click.echo(f"{'TYPE':<12}{'COUNT':>8}{'SIZE':>12}")
    for kind in ("images", "content", "snapshots"):
        click.echo(f"{kind:<12}{usage[kind]['count']:>8}{_human(usage[kind]['size']):>12}")


@system.command("prune")
@click.option("--dry-run", is_flag=True, help="Say what would be removed, and why; remove nothing.")
@click.pass_obj
def prune(ctx: CliContext, dry_run: bool) -> None:
    """Collect garbage: blobs, snapshots and ingests no image or live lease uses."""
    report = ctx.store(to_free_space=not dry_run).prune(dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    for item in report.removed:
        click.echo(f"{verb} {item.kind} {item.key}: {item.reason}")
    for err in report.errors:
        click.echo(f"error: {err}", err=True)
    click.echo(f"{verb} {len(report.removed)} objects, {_human(report.bytes_reclaimed)}")
    if report.errors:
        raise SystemExit(1)
