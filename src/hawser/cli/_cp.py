"""``hawser cp``: files between a container and the host, as docker's."""

from __future__ import annotations

import sys

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import UsageError

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Handler, Parser


def cp(p: Parser) -> Handler:
    """Copy files between a container and the host.

    CONTAINER:SRC DEST copies out, SRC CONTAINER:DEST in; '-' is a tar
    stream on standard input or output.  Paths in the container never lead
    out of its root, whatever its symlinks say."""
    p.usage = "%(prog)s [OPTIONS] CONTAINER:SRC_PATH DEST_PATH|-\n       %(prog)s [OPTIONS] SRC_PATH|- CONTAINER:DEST_PATH"
    p.add_argument("-a", "--archive", action="store_true", help="Keep the files' owners (uid and gid).")
    p.add_argument("-L", "--follow-link", action="store_true", help="Follow a symlink given as SRC_PATH.")
    p.add_argument("-q", "--quiet", action="store_true", help="Print nothing on success.")
    p.add_argument("source", metavar="SRC")
    p.add_argument("dest", metavar="DEST")
    return _cp


def _split(arg: str) -> tuple[str | None, str]:
    """(container, path) of CONTAINER:PATH; (None, path) for a host path (one
    starting with / or ., or without a colon, as docker reads them)."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return name, path


def _cp(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.runtime import (
        CopySide,
        archive_tree,
        container_side,
        copy_tree,
        extract_tar,
        open_source,
        tar_entries,
    )

    src_ctr, src = _split(a.source)
    dest_ctr, dest = _split(a.dest)
    if (src_ctr is None) == (dest_ctr is None):
        raise UsageError("copying between containers is not supported" if src_ctr else
                         "one of SRC and DEST must name a container (CONTAINER:PATH)")
    if not (src if src_ctr is None else dest):
        raise UsageError("the host path must not be empty")
    name = src_ctr or dest_ctr
    assert name is not None
    manager = ctx.containers()
    record = manager.lookup(name)
    with container_side(manager, record) as inside:
        host = CopySide()
        if src_ctr is not None:
            source = open_source(inside, src or "/", follow=a.follow_link)
            if dest == "-":
                archive_tree(source, sys.stdout.buffer)
                sys.stdout.buffer.flush()
                return None
            copied = copy_tree(source, host, dest, keep_owner=a.archive)
            where = dest
        else:
            if src == "-":
                extract_tar(tar_entries(sys.stdin.buffer), inside, dest or "/", keep_owner=a.archive)
                return None
            source = open_source(host, src, follow=a.follow_link)
            copied = copy_tree(source, inside, dest or "/", keep_owner=a.archive)
            where = f"{record.name}:{dest}"
    if not a.quiet:
        from hawser.cli._images import _human

        echo(f"Successfully copied {_human(copied)} to {where}", err=True)
    return None
