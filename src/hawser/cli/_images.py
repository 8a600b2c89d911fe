"""Image commands: pull, images, rmi, image inspect/import/rm/ls."""

from __future__ import annotations

import datetime as _dt
import json
from typing import TYPE_CHECKING

import click

from hawser.cli._context import CliContext
from hawser.cli._progress import progress_display

if TYPE_CHECKING:
    from hawser.oci import Platform


def _platform(value: str | None) -> Platform | None:
    if value is None:
        return None
    from hawser.oci import Platform

    return Platform.parse(value)


@click.command()
@click.option("--platform", metavar="OS/ARCH[/VARIANT]", help="Platform to pull [default: this host's].")
@click.option("--plain-http", is_flag=True, help="Talk http, not https, to the registry.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the image name.")
@click.argument("reference")
@click.pass_obj
def pull(ctx: CliContext, platform: str | None, plain_http: bool, quiet: bool, reference: str) -> None:
    """Pull REFERENCE (e.g. 127.0.0.1:5000/app:1.0) into the store and unpack it."""
    store = ctx.store()
    with progress_display(quiet) as sink:
        image = store.pull(reference, platform=_platform(platform), plain_http=plain_http,
                           progress=sink)
    click.echo(image.name if quiet else f"{image.name}: {image.target.digest}")


def _human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _age(created: str) -> str:
    if not created:
        return ""
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


@click.command("images")
@click.option("-q", "--quiet", is_flag=True, help="Only image IDs.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--no-trunc", is_flag=True, help="Full digests.")
@click.pass_obj
def images(ctx: CliContext, quiet: bool, fmt: str, no_trunc: bool) -> None:
    """List images: name, digest, size, created."""
    rows = sorted(ctx.store().list_images(), key=lambda i: i.name)
    if fmt == "json":
        click.echo(json.dumps([{"name": i.name, "digest": str(i.target.digest), "id": str(i.image_id or ""),
                                "size": i.size, "created": i.created} for i in rows], indent=2))
        return
    if quiet:
        for i in rows:
            click.echo(str(i.image_id or "") if no_trunc else str(i.image_id or "").removeprefix("sha256:")[:12])
        return
    table = [("NAME", "DIGEST", "IMAGE ID", "SIZE", "CREATED")]
    for i in rows:
        digest = str(i.target.digest) if no_trunc else str(i.target.digest)[:19]
        image_id = str(i.image_id or "") if no_trunc else str(i.image_id or "").removeprefix("sha256:")[:12]
        table.append((i.name, digest, image_id, _human(i.size), _age(i.created)))
    widths = [max(len(r[c]) for r in table) for c in range(5)]
    for r in table:
        click.echo("   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@click.command("rmi")
@click.argument("references", nargs=-1, required=True)
@click.pass_obj
def rmi(ctx: CliContext, references: tuple[str, ...]) -> None:
    """Remove images, then collect what no image uses any more."""
    # Removing images is how a full disk gets room back: it may use the reserve.
    for name in ctx.store(to_free_space=True).remove(list(references)):
        click.echo(f"Untagged: {name}")


@click.command("inspect")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]")
@click.argument("references", nargs=-1, required=True)
@click.pass_obj
def inspect(ctx: CliContext, platform: str | None, references: tuple[str, ...]) -> None:
    """Show images as JSON."""
    store = ctx.store()
    out = [store.inspect(store.resolve_name(r), _platform(platform)).to_json()
           for r in references]
    click.echo(json.dumps(out, indent=2))


@click.command("import")
@click.option("--name", metavar="REF", help="Name the image (when the archive does not).")
@click.option("--platform", metavar="OS/ARCH[/VARIANT]")
@click.option("-q", "--quiet", is_flag=True)
@click.argument("path", type=click.Path())
@click.pass_obj
def import_(ctx: CliContext, name: str | None, platform: str | None, quiet: bool, path: str) -> None:
    """Import an OCI image layout directory or tar (no registry needed)."""
    with progress_display(quiet) as sink:
        imported = ctx.store().import_archive(path, name=name, platform=_platform(platform),
                                              progress=sink)
    for image in imported:
        click.echo(image.name if quiet else f"{image.name}: {image.target.digest}")


@click.group("image")
def image() -> None:
    """Manage images."""


image.add_command(inspect)
image.add_command(import_)
image.add_command(rmi, "rm")
image.add_command(images, "ls")
image.add_command(pull)
