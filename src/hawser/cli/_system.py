"""``hawser system``: disk usage, garbage collection, consistency check."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import group

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.check import Report
    from hawser.cli._parser import Handler, Parser


def system(p: Parser) -> Handler:
    """Store usage, garbage collection and consistency check."""
    return group(p, {"df": df, "prune": prune, "check": check})


def df(p: Parser) -> Handler:
    """Show how much disk images, content and snapshots use."""
    p.add_argument("--format", choices=("table", "json"), default="table", metavar="[table|json]")
    return _df


def _df(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._images import _human

    usage = ctx.images().usage()
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

    report = ctx.images(to_free_space=not a.dry_run).prune(dry_run=a.dry_run)
    verb = "would remove" if a.dry_run else "removed"
    for item in report.removed:
        echo(f"{verb} {item.kind} {item.key}: {item.reason}")
    for err in report.errors:
        echo(f"error: {err}", err=True)
    echo(f"{verb} {len(report.removed)} objects, {_human(report.bytes_reclaimed)}")
    return 1 if report.errors else 0


def check(p: Parser) -> Handler:
    """Verify the store and find leftovers: blob digests, snapshot chains, record
    references, orphan snapshots, mounts, bundles, runc state, conmons, cgroups,
    pinned namespaces. Exits 1 while a problem remains."""
    p.add_argument("--repair", action="store_true",
                   help="Remove or rebuild what is wrong (never what a live container, pod or pull holds).")
    p.add_argument("--format", choices=("table", "json"), default="table", metavar="[table|json]")
    return _check


def _check(ctx: CliContext, a: Namespace) -> int:
    # Imported here only: the check package is not on any other command's path.
    from hawser.check import check_store

    report = check_store(ctx.store(), repair=a.repair)
    if a.format == "json":
        import json

        echo(json.dumps([f.to_json() for f in report.findings], indent=2))
        return report.exit_code
    for f in report.findings:
        if f.severity != "problem":
            status = "info"
        elif f.repaired:
            status = "repaired"
        elif f.error is not None:
            status = "failed" if a.repair else "error"
        else:
            status = "problem"
        line = f"{status:<9} {f.kind:<27} {f.subject}: {f.detail}"
        if f.error is not None:
            line += f" [error: {f.error}]"
        echo(line)
    echo(_summary(report, a.repair))
    return report.exit_code


def _summary(report: Report, repair: bool) -> str:
    problems = report.problems
    infos = len(report.findings) - len(problems)
    if not problems:
        text = "no problems found"
    else:
        text = f"{len(problems)} problem{'s' if len(problems) != 1 else ''}"
        if repair:
            repaired = sum(1 for f in problems if f.repaired)
            text += f": {repaired} repaired, {len(problems) - repaired} remaining"
    if infos:
        text += f", {infos} info"
    return f"{text} ({report.duration:.1f}s)"
