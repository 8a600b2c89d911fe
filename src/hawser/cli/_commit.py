"""Container to image: commit, diff."""

from __future__ import annotations

import contextlib

from hawser.cli._context import CliContext, echo

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Iterator

    from hawser.cli._parser import Handler, Parser
    from hawser.metadata import Container
    from hawser.runtime import ContainerManager


def commit(p: Parser) -> Handler:
    """Make an image of a container's changes: its filesystem's changes as a new
    layer on the image it was made from, with --change instructions applied to
    the config; the image is stored as IMAGE (moved there if IMAGE names
    another). The container is paused while its layer is read."""
    p.add_argument("-c", "--change", dest="changes", action="append", default=[], metavar="INSTRUCTION",
                   help="Apply a Dockerfile instruction: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR "
                        "(e.g. 'CMD [\"sh\"]', 'ENV A=1').")
    p.add_argument("-m", "--message", default="", metavar="TEXT", help="Commit message (the history comment).")
    p.add_argument("-a", "--author", default="", metavar="TEXT", help="Author (e.g. 'Ann <ann@example.com>').")
    p.add_argument("-p", "--pause", dest="pause", action="store_true", default=True,
                   help="Pause a running container while committing [default].")
    p.add_argument("--no-pause", dest="pause", action="store_false", help="Do not pause the container.")
    p.add_argument("-q", "--quiet", action="store_true", help="Print only the image ID.")
    p.add_argument("container", metavar="CONTAINER")
    p.add_argument("image", metavar="IMAGE")
    return _commit


def _commit(ctx: CliContext, a: Namespace) -> None:
    from hawser.images import CommitOptions, check_changes

    check_changes(a.changes)  # refused before anything is opened or paused
    manager = ctx.containers()
    record = manager.lookup(a.container)
    options = CommitOptions(changes=tuple(a.changes), message=a.message, author=a.author)
    result = ctx.images().commit(record, a.image, options=options,
                                 pause=(lambda: _paused(manager, record)) if a.pause else None)
    echo(str(result.image_id) if a.quiet else f"{result.name} {result.image_id}")


@contextlib.contextmanager
def _paused(manager: ContainerManager, record: Container) -> Iterator[None]:
    """The container frozen while the block runs (as docker commit does), thawed
    after, also on failure; nothing is done to one that is not running."""
    from hawser.runtime import RUNNING

    if manager.status(record).state != RUNNING:
        yield  # created, exited or paused by its owner: nothing runs to change its tree
        return
    manager.pause(record.id)
    try:
        yield
    finally:
        manager.resume(record.id)


def diff(p: Parser) -> Handler:
    """List what a container changed in its filesystem: A (added), C (changed),
    D (deleted) and a path per line, parents of changes as changed, by path."""
    p.add_argument("--format", choices=("text", "json"), default="text", metavar="[text|json]",
                   help="Lines, or a JSON list of {Kind, Path}.")
    p.add_argument("container", metavar="CONTAINER")
    return _diff


def _diff(ctx: CliContext, a: Namespace) -> None:
    from hawser.images import container_changes

    record = ctx.containers().lookup(a.container)
    changes = container_changes(ctx.store(), record)
    if a.format == "json":
        import json

        echo(json.dumps([{"Kind": c.kind, "Path": c.path} for c in changes], indent=2))
        return
    for change in changes:
        echo(change)
