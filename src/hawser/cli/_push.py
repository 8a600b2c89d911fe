"""Distribution commands: push, tag."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import UsageError

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Handler, Parser

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """Bytes from ``1048576``, ``512k``, ``16m``, ``16MiB``, ``1g`` (binary units)."""
    low = text.strip().lower().removesuffix("ib").removesuffix("b")
    digits = low.rstrip("kmg")
    unit = low[len(digits):]
    if not digits.isdigit() or unit not in _UNITS or int(digits) < 1:
        raise UsageError(f"invalid size {text!r}: give bytes, or a number with k, m or g (e.g. 16m)")
    return int(digits) * _UNITS[unit]


def push(p: Parser) -> Handler:
    """Push IMAGE from the store to a registry: to DESTINATION (e.g.
    127.0.0.1:5000/team/app:1.0), by default to IMAGE's own name. Blobs the
    repository has are skipped, those another repository of the registry has
    are mounted from it, the rest uploaded (big ones in chunks, resumed after
    a broken connection); manifests follow, the tag last."""
    p.add_argument("--plain-http", action="store_true", help="Talk http, not https, to the registry.")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="Push only this platform's manifest of an index (an image of its own).")
    p.add_argument("--chunk-size", metavar="SIZE",
                   help="Upload blobs bigger than SIZE in chunks of SIZE (e.g. 16m) [default: 32m].")
    p.add_argument("--format", choices=("text", "json"), default="text", metavar="[text|json]",
                   help="What to print at the end: a line, or the push's details as JSON.")
    p.add_argument("-q", "--quiet", action="store_true", help="Print only the pushed digest.")
    p.add_argument("image", metavar="IMAGE")
    p.add_argument("destination", metavar="DESTINATION", nargs="?")
    return _push


def _push(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._progress import progress_display
    from hawser.images import PushOptions
    from hawser.oci import Platform
    from hawser.registry import UploadOptions

    options = PushOptions(platform=Platform.parse(a.platform) if a.platform else None,
                          upload=UploadOptions(chunk_size=parse_size(a.chunk_size)) if a.chunk_size else None)
    images = ctx.images()
    with progress_display(a.quiet or a.format == "json") as sink:
        result = images.push(a.image, a.destination, plain_http=a.plain_http, options=options, progress=sink)
    if a.quiet:
        echo(str(result.descriptor.digest))
    elif a.format == "json":
        import json

        echo(json.dumps(result.to_json(), indent=2))
    else:
        echo(f"pushed {result.summary()}")


def tag(p: Parser) -> Handler:
    """Give the stored image SOURCE (a name, or an image ID) another name, TARGET
    (e.g. 127.0.0.1:5000/team/app:1.1): a new image record naming the same
    manifest or index."""
    p.add_argument("-f", "--force", action="store_true", help="Move TARGET to SOURCE's image if it names another.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("target", metavar="TARGET")
    return _tag


def _tag(ctx: CliContext, a: Namespace) -> None:
    image = ctx.images().tag(a.source, a.target, force=a.force)
    echo(image.name)
