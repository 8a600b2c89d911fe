"""``hawser system``: disk usage and garbage collection."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import group

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Handler, Parser


def system(p: Parser) -> Handler:
    """Store usage and garbage collection."""
    return group(p, {"df": df, "prune": prune})


def df(p: Parser) -> Handler:
    """Show how much disk images, content and snapshots use."""
    p.add_argument("--format", choices=("table", "json"), default="table", metavar="[table|json]")
    return _df


def _df(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._images import _human

    usage = ctx.store().usage()
    if a.format == "json":
        import json

        echo(json.dumps(usage, indent=2))
        return
    echo(f"{'TYPE':<12}{'COUNT':>8}{'SIZE':>12}")
    for kind in ("images", "content", "snapshots"):
        echo(f"{kind:<12}{usage[kind]['count']:>8}{_human(usage[kind]['size']):>12}")


def prune(p: Parser) -> Handler:
    """Collect garbage: blobs, snapshots and ingests no image or live lease uses."""
    p.add_argument("--dry-run", action="store_true", help="Say what would be removed, and why; remove nothing.")
    return _prune


def _prune(ctx: CliContext, a: Namespace) -> int:
    from hawser.cli._images import _human

    report = ctx.store(to_free_space=not a.dry_run).prune(dry_run=a.dry_run)
    verb = "would remove" if a.dry_run else "removed"
    for item in report.removed:
        echo(f"{verb} {item.kind} {item.key}: {item.reason}")
    for err in report.errors:
        echo(f"error: {err}", err=True)
    echo(f"{verb} {len(report.removed)} objects, {_human(report.bytes_reclaimed)}")
    return 1 if report.errors else 0
