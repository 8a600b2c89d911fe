"""Image commands: pull, images, rmi, image inspect/import/rm/ls."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import group

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Handler, Parser
    from hawser.oci import Platform


def _platform(value: str | None) -> Platform | None:
    if value is None:
        return None
    from hawser.oci import Platform

    return Platform.parse(value)


def pull(p: Parser) -> Handler:
    """Pull REFERENCE (e.g. 127.0.0.1:5000/app:1.0) into the store and unpack it."""
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="Platform to pull [default: this host's].")
    p.add_argument("--plain-http", action="store_true", help="Talk http, not https, to the registry.")
    p.add_argument("-q", "--quiet", action="store_true", help="Print only the image name.")
    p.add_argument("reference", metavar="REFERENCE")
    return _pull


def _pull(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._progress import progress_display

    store = ctx.images()
    with progress_display(a.quiet) as sink:
        image = store.pull(a.reference, platform=_platform(a.platform), plain_http=a.plain_http, progress=sink)
    echo(image.name if a.quiet else f"{image.name}: {image.target.digest}")


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _age(created: str) -> str:
    if not created:
        return ""
    import datetime as _dt

    try:
        when = _dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return created
    seconds = (_dt.datetime.now(_dt.UTC) - when).total_seconds()
    for size, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"), (86400, "day"),
                       (3600, "hour"), (60, "minute")):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def images(p: Parser) -> Handler:
    """List images: name, digest, size, created."""
    p.add_argument("-q", "--quiet", action="store_true", help="Only image IDs.")
    p.add_argument("--format", choices=("table", "json"), default="table", metavar="[table|json]")
    p.add_argument("--no-trunc", action="store_true", help="Full digests.")
    return _images


def _images(ctx: CliContext, a: Namespace) -> None:
    no_trunc = a.no_trunc
    rows = sorted(ctx.images().list_images(), key=lambda i: i.name)
    if a.format == "json":
        import json

        echo(json.dumps([{"name": i.name, "digest": str(i.target.digest), "id": str(i.image_id or ""),
                          "size": i.size, "created": i.created} for i in rows], indent=2))
        return
    if a.quiet:
        for i in rows:
            echo(str(i.image_id or "") if no_trunc else str(i.image_id or "").removeprefix("sha256:")[:12])
        return
    table = [("NAME", "DIGEST", "IMAGE ID", "SIZE", "CREATED")]
    for i in rows:
        digest = str(i.target.digest) if no_trunc else str(i.target.digest)[:19]
        image_id = str(i.image_id or "") if no_trunc else str(i.image_id or "").removeprefix("sha256:")[:12]
        table.append((i.name, digest, image_id, _human(i.size), _age(i.created)))
    widths = [max(len(r[c]) for r in table) for c in range(5)]
    for r in table:
        echo("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


def rmi(p: Parser) -> Handler:
    """Remove images, then collect what no image uses any more."""
    p.add_argument("references", nargs="+", metavar="REFERENCES")
    return _rmi


def _rmi(ctx: CliContext, a: Namespace) -> int:
    # Removing images is how a full disk gets room back: it may use the reserve.
    store = ctx.images(to_free_space=True)
    for name in store.remove(list(a.references), prune=False):
        echo(f"Untagged: {name}")
    report = store.prune()
    for err in report.errors:  # the images are gone; what they held may not all be
        echo(f"hawser: collecting what the images held: {err} (hint: hawser system prune retries)", err=True)
    return 1 if report.errors else 0


def inspect(p: Parser) -> Handler:
    """Show images as JSON."""
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    p.add_argument("references", nargs="+", metavar="REFERENCES")
    return _inspect


def _inspect(ctx: CliContext, a: Namespace) -> None:
    import json

    store = ctx.images()
    out = [store.inspect(store.resolve_name(r), _platform(a.platform)).to_json() for r in a.references]
    echo(json.dumps(out, indent=2))


def import_(p: Parser) -> Handler:
    """Import an OCI image layout directory or tar (no registry needed)."""
    p.add_argument("--name", metavar="REF", help="Name the image (when the archive does not).")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("path", metavar="PATH")
    return _import


def _import(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._progress import progress_display

    with progress_display(a.quiet) as sink:
        imported = ctx.images().import_archive(a.path, name=a.name, platform=_platform(a.platform), progress=sink)
    for image in imported:
        echo(image.name if a.quiet else f"{image.name}: {image.target.digest}")


def image(p: Parser) -> Handler:
    """Manage images."""
    return group(p, {"inspect": inspect, "import": import_, "rm": rmi, "ls": images, "pull": pull})
