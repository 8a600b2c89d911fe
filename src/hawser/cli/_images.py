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
    p.add_argument("--signature-policy", metavar="FILE",
                   help="A containers-policy.json the image must satisfy [default: registry.policy].")
    p.add_argument("reference", metavar="REFERENCE")
    return _pull


def _pull(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._progress import progress_display

    store = ctx.images()
    with progress_display(a.quiet) as sink:
        image = store.pull(a.reference, platform=_platform(a.platform), plain_http=a.plain_http, progress=sink,
                           signature_policy=a.signature_policy)
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


# docker's default table; --digests puts the DIGEST column after TAG.
_IMAGE_TABLE = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
_IMAGE_TABLE_DIGESTS = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"


def images(p: Parser) -> Handler:
    """List images: repository, tag, image ID, created, size."""
    p.add_argument("-q", "--quiet", action="store_true", help="Only image IDs.")
    p.add_argument("--format", default="table", metavar="FORMAT",
                   help="table, json, or a Go template of docker's fields ('{{.Repository}}:{{.Tag}}').")
    p.add_argument("--digests", action="store_true", help="Show the DIGEST column.")
    p.add_argument("--no-trunc", action="store_true", help="Full image IDs.")
    from hawser.cli._scripting import add_image_listing

    add_image_listing(p)  # REPOSITORY[:TAG], -f/--filter
    return _images


def _images(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._scripting import image_rows, print_images, select_images

    no_trunc = a.no_trunc
    rows = select_images(ctx, sorted(ctx.images().list_images(), key=lambda i: i.name), a.filters, a.repository)
    if a.format not in ("table", "json") and not a.quiet:
        print_images(image_rows(rows, no_trunc=no_trunc), a.format)
        return
    if a.format == "json":
        import json

        echo(json.dumps([{"name": i.name, "digest": str(i.target.digest), "id": str(i.image_id or ""),
                          "size": i.size, "created": i.created} for i in rows], indent=2))
        return
    if a.quiet:
        for i in rows:
            echo(str(i.image_id or "") if no_trunc else str(i.image_id or "").removeprefix("sha256:")[:12])
        return
    print_images(image_rows(rows, no_trunc=no_trunc), _IMAGE_TABLE_DIGESTS if a.digests else _IMAGE_TABLE)


def rmi(p: Parser) -> Handler:
    """Remove images, then collect what no image uses any more."""
    p.add_argument("-f", "--force", action="store_true",
                   help="Remove an image containers use; an image ID removes all the image's names.")
    p.add_argument("references", nargs="+", metavar="REFERENCES")
    return _rmi


def _rmi_names(ctx: CliContext, text: str, ids: dict[str, str], *, force: bool) -> list[str]:
    """The names ``rmi TEXT`` removes, or docker's refusal without -f: an image
    ID of an image with several names; the last name of an image a container uses."""
    from hawser.errors import FailedPrecondition, InvalidArgument
    from hawser.oci import parse_reference

    store = ctx.images()
    name = store.resolve_name(text)
    image_id = ids.get(name, "")
    try:
        by_name = name == text or str(parse_reference(text)) == name
    except InvalidArgument:
        by_name = False
    siblings = sorted(n for n, i in ids.items() if i == image_id) if image_id else [name]
    if not by_name and len(siblings) > 1 and not force:
        raise FailedPrecondition(f"conflict: unable to delete {text} (must be forced) - image is referenced in "
                                 f"multiple repositories: {', '.join(siblings)}",
                                 hint="remove it by name, or all its names with rmi -f")
    names = [name] if by_name else siblings
    if not force and set(siblings) <= set(names):  # the image goes: no container may use it
        user = next((i for i in ctx.containers().list(all_=True)
                     if (image_id and i.record.image_id == image_id) or i.record.image in names), None)
        if user is not None:
            raise FailedPrecondition(f"conflict: unable to remove repository reference {text} (must force) - "
                                     f"container {user.id[:12]} is using its referenced image "
                                     f"{image_id.removeprefix('sha256:')[:12] or name}",
                                     hint=f"remove the container first (hawser rm {user.record.name}), or use -f")
    return names


def _rmi(ctx: CliContext, a: Namespace) -> int:
    from hawser.errors import HawserError

    # Removing images is how a full disk gets room back: it may use the reserve.
    store = ctx.images(to_free_space=True)
    ids = {i.name: str(i.image_id or "") for i in store.list_images()}
    failed = removed = False
    for text in a.references:  # as docker: each one tried, each failure one line
        try:
            for name in _rmi_names(ctx, text, ids, force=a.force):
                store.untag(name)
                ids.pop(name, None)
                removed = True
                echo(f"Untagged: {name}")
        except HawserError as exc:
            echo(f"hawser: {exc}", err=True)
            failed = True
    if not removed:
        return 1 if failed else 0
    report = store.prune()
    for err in report.errors:  # the images are gone; what they held may not all be
        echo(f"hawser: collecting what the images held: {err} (hint: hawser system prune retries)", err=True)
    return 1 if report.errors or failed else 0


def inspect(p: Parser) -> Handler:
    """Show images as JSON, in docker's layout."""
    from hawser.cli._scripting import image_inspect  # docker's layout, -f templates

    return image_inspect(p)


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
    from hawser.cli._archive import load, save
    from hawser.cli._copy import copy
    from hawser.cli._extras import history, image_prune
    from hawser.cli._push import push, tag
    from hawser.cli._sign import sign

    return group(p, {"inspect": inspect, "import": import_, "rm": rmi, "ls": images, "pull": pull, "copy": copy,
                     "sign": sign, "history": history, "tag": tag, "push": push, "save": save, "load": load,
                     "prune": image_prune})
