"""Archive commands: save and load (images as tar archives), export and import
(a container's filesystem as a tar, and such a tar as an image)."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo

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


def save(p: Parser) -> Handler:
    """Save images to a tar archive: an OCI layout (every digest kept) or docker's format."""
    p.add_argument("-o", "--output", metavar="FILE", default="-",
                   help="Write the archive to FILE [default: standard output, unless a terminal].")
    p.add_argument("--format", choices=("oci-archive", "docker-archive"), default="oci-archive",
                   metavar="[oci-archive|docker-archive]", help="Archive format [default: oci-archive].")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="docker-archive: the platform of a multi-platform image [default: this host's].")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    return _save


def _save(ctx: CliContext, a: Namespace) -> None:
    ctx.images().save_archive(list(a.images), a.output, format=a.format, platform=_platform(a.platform))


def load(p: Parser) -> Handler:
    """Load images from a tar archive: what hawser, docker, podman and skopeo save (oci-archive or docker-archive)."""
    p.add_argument("-i", "--input", metavar="FILE", default="-",
                   help="Read the archive from FILE, '-' for standard input [default: standard input]; "
                        "gzip, zstd, xz and bzip2 archives are read too.")
    p.add_argument("--name", metavar="REF", help="Name the image (when the archive does not).")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]",
                   help="The platform to load from a multi-platform image [default: this host's].")
    p.add_argument("-q", "--quiet", action="store_true", help="Print only the image names.")
    return _load


def _load(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._progress import progress_display

    with progress_display(a.quiet) as sink:
        loaded = ctx.images().load_archive(a.input, name=a.name, platform=_platform(a.platform), progress=sink)
    for image in loaded:
        echo(image.name if a.quiet else f"Loaded image: {image.name} ({image.target.digest})")


def export(p: Parser) -> Handler:
    """Export a container's filesystem as a tar archive."""
    p.add_argument("-o", "--output", metavar="FILE", default="-",
                   help="Write the tar to FILE [default: standard output, unless a terminal].")
    p.add_argument("container", metavar="CONTAINER")
    return _export


def _export(ctx: CliContext, a: Namespace) -> None:
    from hawser.errors import FailedPrecondition

    images = ctx.images()
    record = ctx.containers().lookup(a.container)
    if record.snapshotter != images.snapshotter.name:
        raise FailedPrecondition(f"container {record.id[:12]} is in the {record.snapshotter} snapshotter",
                                 hint=f"hawser --snapshotter {record.snapshotter} export ...")
    images.export_snapshot(record.snapshot_key, a.output)


def import_(p: Parser) -> Handler:
    """Import a filesystem tar (as `hawser export` writes) as a one-layer image."""
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="The image's platform [default: this host's].")
    p.add_argument("-q", "--quiet", action="store_true", help="Print only the image name.")
    p.add_argument("file", metavar="FILE", help="The tar, '-' for standard input.")
    p.add_argument("reference", nargs="?", metavar="REF", help="Name the image [default: localhost/import:ID].")
    return _import


def _import(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._progress import progress_display

    with progress_display(True) as sink:
        image = ctx.images().import_rootfs(a.file, name=a.reference, platform=_platform(a.platform), progress=sink)
    echo(image.name if a.quiet else f"{image.name}: {image.target.digest}")
