"""``hawser image copy``: an image between registries, layouts, archives and the store."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Handler, Parser


def copy(p: Parser) -> Handler:
    """Copy an image from SOURCE to DEST, each one of: docker://REFERENCE,
    oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE[:REFERENCE],
    hawser:NAME (the local store). Manifests and blobs are copied as they are
    (digests kept); nothing is unpacked unless DEST is the store. An index is
    copied as the one manifest for this host (or --platform) unless --all."""
    p.add_argument("--all", dest="all_platforms", action="store_true",
                   help="Copy an index with every platform's manifest.")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="The platform to copy [default: this host's].")
    p.add_argument("--src-plain-http", action="store_true", help="Talk http, not https, to the source registry.")
    p.add_argument("--dest-plain-http", action="store_true",
                   help="Talk http, not https, to the destination registry.")
    p.add_argument("-q", "--quiet", action="store_true", help="Print only the copied digest.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("dest", metavar="DEST")
    return _copy


def _copy(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._progress import progress_display
    from hawser.images import CopyOptions, copy_image
    from hawser.oci import Platform

    options = CopyOptions(all_platforms=a.all_platforms, platform=Platform.parse(a.platform) if a.platform else None,
                          src_plain_http=a.src_plain_http, dest_plain_http=a.dest_plain_http)
    images = ctx.images()
    with progress_display(a.quiet) as sink:
        result = copy_image(images, a.source, a.dest, options, sink)
    echo(str(result.descriptor.digest) if a.quiet else f"copied {a.source} to {result.destination}: "
         f"{result.descriptor.digest}")
