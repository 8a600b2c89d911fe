"""Volume commands, shaped like docker's: volume create, ls, inspect, rm,
prune; and the volumes of run and create (``-v``, ``--mount``, the image's
VOLUME entries), and their removal with a container (``rm -v``, ``run --rm``)."""

from __future__ import annotations

import contextlib

from hawser.cli._context import CliContext, echo
from hawser.cli._parser import group

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Iterator, Mapping, Sequence
    from typing import Any

    from hawser.cli._parser import Handler, Parser
    from hawser.runtime import ContainerManager, ContainerOptions
    from hawser.volumes import MountRequest, Volume, VolumeStore


def _store(ctx: CliContext) -> VolumeStore:
    from hawser.volumes import VolumeStore

    return VolumeStore.of(ctx.store())


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    from hawser.errors import InvalidArgument

    out = {}
    for item in items:
        k, _, v = item.partition("=")
        if not k:
            raise InvalidArgument(f"invalid {what} {item!r}: use KEY=VALUE")
        out[k] = v
    return out


# --- run and create -------------------------------------------------------------


def mount_arguments(p: Parser) -> None:
    """``--mount`` (run and create take ``-v`` already)."""
    p.add_argument("--mount", dest="mounts", action="append", default=[], metavar="type=TYPE,...",
                   help="Mount a bind, volume or tmpfs: type=bind|volume|tmpfs,source=,target=[,readonly].")


def mount_requests(a: Namespace) -> list[MountRequest]:
    """The mounts ``-v`` and ``--mount`` ask for (parsed before anything is
    pulled or made). InvalidArgument for a bad one, a relative path among them."""
    from hawser.errors import InvalidArgument
    from hawser.volumes import parse_mount, parse_volume

    requests = [parse_volume(v) for v in a.volumes] + [parse_mount(m) for m in getattr(a, "mounts", ())]
    seen: set[str] = set()
    for r in requests:
        if r.destination in seen:
            raise InvalidArgument(f"duplicate mount point: {r.destination}")
        seen.add(r.destination)
    return requests


@contextlib.contextmanager
def with_volumes(ctx: CliContext, manager: ContainerManager, image: str, options: ContainerOptions,
                 requests: Sequence[MountRequest]) -> Iterator[ContainerOptions]:
    """``options`` with the requested mounts and the image's VOLUME entries
    (anonymous volumes where no mount is given), the volumes made (a named
    one on first use) and mounted if their driver options say so.  Volumes
    cannot be removed until the block ends (the container's record is
    written in it); anonymous ones made here are removed if it fails."""
    from hawser._dataclass import replace
    from hawser.runtime import BindMount, TmpfsMount
    from hawser.volumes import ANONYMOUS_LABEL

    image_volumes = manager.images.runnable(image).config.volumes
    if not requests and not image_volumes:
        yield options
        return
    import posixpath

    taken = {m.destination for m in options.mounts} | {t.destination for t in options.tmpfs} | {
        r.destination for r in requests}
    wanted = list(requests)
    from hawser.volumes import MountRequest as Request

    for path in image_volumes:
        dst = posixpath.normpath("/" + path.strip("/")) if path.strip("/") else ""
        if dst and dst not in taken:
            wanted.append(Request(type="volume", destination=dst))
            taken.add(dst)
    store = _store(ctx)
    made: list[str] = []
    try:
        with store.in_use():
            binds, tmpfs = [], []
            for r in wanted:
                if r.type == "bind":
                    binds.append(BindMount(source=r.source, destination=r.destination, readonly=r.readonly,
                                           propagation=r.propagation))
                elif r.type == "tmpfs":
                    tmpfs.append(TmpfsMount(destination=r.destination, size=r.tmpfs_size,
                                            mode=0o1777 if r.tmpfs_mode is None else r.tmpfs_mode,
                                            options=("ro",) if r.readonly else ()))
                else:
                    labels = dict(r.volume_labels)
                    if not r.source:
                        labels[ANONYMOUS_LABEL] = ""
                    volume = store.create(r.source or None, labels=labels, options=r.volume_options)
                    if not r.source:
                        made.append(volume.name)
                    binds.append(BindMount(source=store.activate(volume), destination=r.destination,
                                           readonly=r.readonly, volume=volume.name, copy_up=not r.nocopy))
            yield replace(options, mounts=options.mounts + tuple(binds), tmpfs=options.tmpfs + tuple(tmpfs))
    except BaseException:
        if made:
            store.remove(made, force=True)
        raise


def remove_anonymous(ctx: CliContext, config: Mapping[str, Any]) -> None:
    """Remove the anonymous volumes a removed container had (``rm -v``,
    ``run --rm``); named ones stay, as do ones another container uses."""
    from hawser.errors import FailedPrecondition, HawserError, NotFound
    from hawser.volumes import volume_names

    names = volume_names(config)
    if not names:
        return
    store = _store(ctx)
    anonymous = []
    for name in names:
        with contextlib.suppress(NotFound):
            if store.get(name).anonymous:
                anonymous.append(name)
    for name, error in store.remove(anonymous, force=True):
        if error is not None and not isinstance(error, FailedPrecondition):
            msg = str(error) if isinstance(error, HawserError) else f"{type(error).__name__}: {error}"
            echo(f"hawser: volume {name}: {msg}", err=True)


def remove_container(ctx: CliContext, manager: ContainerManager, text: str, *, force: bool,
                     volumes: bool) -> str:
    """``manager.remove``, then with ``volumes`` the container's anonymous volumes."""
    record = manager.lookup(text)
    id_ = manager.remove(record.id, force=force)
    if volumes:
        remove_anonymous(ctx, record.config)
    return id_


# --- the volume commands ----------------------------------------------------------


def volume(p: Parser) -> Handler:
    """Manage volumes."""
    return group(p, {"create": create, "ls": ls, "inspect": inspect, "rm": rm, "prune": prune})


def create(p: Parser) -> Handler:
    """Create a volume; print its name."""
    p.add_argument("--label", "-l", dest="labels", action="append", default=[], metavar="K=V",
                   help="Set a label on the volume.")
    p.add_argument("-o", "--opt", dest="opts", action="append", default=[], metavar="K=V",
                   help="Driver options: type=tmpfs, device=tmpfs, o=size=64m (mounted on first use).")
    p.add_argument("-d", "--driver", default="local", metavar="local", help="Volume driver (only local).")
    p.add_argument("name", nargs="?", metavar="NAME", help="The volume's name [default: a random one].")
    return _create


def _create(ctx: CliContext, a: Namespace) -> None:
    from hawser.errors import InvalidArgument
    from hawser.volumes import parse_volume_options

    if a.driver != "local":
        raise InvalidArgument(f"volume driver {a.driver!r} is not available: only local")
    options = parse_volume_options(a.opts)
    echo(_store(ctx).create(a.name, labels=_pairs(a.labels, "label"), options=options).name)


def _filters(items: Sequence[str]) -> dict[str, list[str]]:
    from hawser.errors import InvalidArgument

    out: dict[str, list[str]] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or k not in ("name", "label", "dangling", "driver"):
            raise InvalidArgument(f"invalid filter {item!r}", hint="use name=, label=KEY[=VALUE], dangling=, driver=")
        out.setdefault(k, []).append(v)
    return out


def _label_filter(values: Sequence[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for v in values:
        k, sep, val = v.partition("=")
        out[k] = val if sep else None
    return out


def _selected(volumes: list[Volume], filters: Mapping[str, Sequence[str]], used: set[str]) -> list[Volume]:
    from hawser.errors import InvalidArgument
    from hawser.volumes import matches_labels

    out = []
    for v in volumes:
        if "name" in filters and not any(f in v.name for f in filters["name"]):
            continue  # docker's name filter matches a substring
        if "label" in filters and not matches_labels(v, _label_filter(filters["label"])):
            continue
        if "driver" in filters and "local" not in filters["driver"]:
            continue
        if "dangling" in filters:
            want = filters["dangling"][-1].lower()
            if want not in ("true", "1", "false", "0"):
                raise InvalidArgument(f"invalid filter dangling={want!r}: true or false")
            if (v.name not in used) != (want in ("true", "1")):
                continue
        out.append(v)
    return out


def ls(p: Parser) -> Handler:
    """List volumes."""
    p.add_argument("-q", "--quiet", action="store_true", help="Only names.")
    p.add_argument("-f", "--filter", dest="filters", action="append", default=[], metavar="K=V",
                   help="name=, label=KEY[=VALUE], dangling=true|false, driver=local.")
    p.add_argument("--format", metavar="FORMAT",
                   help="A Go template ('{{.Name}}'), 'table TEMPLATE', 'table' or 'json'.")
    return _ls


_LS_TABLE = "table {{.Driver}}\t{{.Name}}"


def _ls_row(v: Volume) -> dict[str, Any]:
    """docker's volume context: the fields a ``volume ls --format`` template sees."""
    from hawser.cli._template import GoMap

    labels = dict(v.labels)
    return GoMap({"Name": v.name, "Driver": "local", "Scope": "local", "Mountpoint": v.mountpoint,
                  "Labels": ",".join(f"{k}={val}" for k, val in sorted(labels.items())),
                  "Label": lambda key: labels.get(str(key), ""), "Links": "N/A", "Size": "N/A",
                  "Availability": "N/A", "Group": "N/A", "Status": "N/A"})


def _ls(ctx: CliContext, a: Namespace) -> None:
    store = _store(ctx)
    filters = _filters(a.filters)
    used = set(store.users()) if "dangling" in filters else set()
    volumes = _selected(store.volumes(), filters, used)
    if a.quiet:
        for v in volumes:
            echo(v.name)
        return
    from hawser.cli._filters import render
    from hawser.cli._template import GoMap, render_rows

    headers = GoMap({"Name": "VOLUME NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Mountpoint": "MOUNTPOINT",
                     "Labels": "LABELS", "Label": lambda *_: "LABEL", "Links": "LINKS", "Size": "SIZE",
                     "Availability": "AVAILABILITY", "Group": "GROUP", "Status": "STATUS"})
    fmt = _LS_TABLE if a.format in (None, "table") else a.format
    echo(render(render_rows, fmt, [_ls_row(v) for v in volumes], headers), end="")


def inspect(p: Parser) -> Handler:
    """Show volumes as JSON."""
    p.add_argument("-f", "--format", metavar="FORMAT", help="A Go template ('{{.Mountpoint}}') or 'json'.")
    p.add_argument("names", nargs="+", metavar="NAMES")
    return _inspect


def _inspect(ctx: CliContext, a: Namespace) -> int | None:
    import json

    from hawser.errors import NotFound

    store = _store(ctx)
    out, failed = [], False
    for name in a.names:  # as docker: the ones found are shown, each missing one is a line on stderr
        try:
            out.append(store.get(name).to_json())
        except NotFound as exc:
            echo(f"hawser: {exc}", err=True)
            failed = True
    if a.format is None or a.format == "json":
        echo(json.dumps(out, indent=4))
    else:
        from hawser.cli._filters import format_one

        echo("".join(format_one(a.format, o) for o in out), end="")
    return 1 if failed else None


def rm(p: Parser) -> Handler:
    """Remove volumes (not while a container uses them)."""
    p.add_argument("-f", "--force", action="store_true", help="No error for a volume that does not exist.")
    p.add_argument("names", nargs="+", metavar="NAMES")
    return _rm


def _rm(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.errors import HawserError

    failed = False
    for name, error in _store(ctx).remove(a.names, force=a.force):
        if error is None:
            echo(name)
        else:
            echo(f"hawser: {error}" if isinstance(error, HawserError) else f"hawser: volume {name}: {error}",
                 err=True)
            failed = True
    return 1 if failed else None


def prune(p: Parser) -> Handler:
    """Remove volumes no container uses (only anonymous ones without --all)."""
    p.add_argument("-a", "--all", action="store_true", help="Named volumes too, not only anonymous ones.")
    p.add_argument("-f", "--force", action="store_true", help="Do not ask for confirmation.")
    p.add_argument("--filter", dest="filters", action="append", default=[], metavar="K=V",
                   help="label=KEY[=VALUE]: only volumes with the label; all=true as --all.")
    return _prune


def _prune(ctx: CliContext, a: Namespace) -> int | None:
    import sys

    from hawser.errors import InvalidArgument

    labels: dict[str, str | None] = {}
    all_ = a.all
    for item in a.filters:
        k, sep, v = item.partition("=")
        if k == "label" and sep:
            labels.update(_label_filter([v]))
        elif k == "all" and sep:
            all_ = all_ or v.lower() in ("true", "1")
        else:
            raise InvalidArgument(f"invalid filter {item!r}", hint="use label=KEY[=VALUE] or all=true")
    if not a.force:
        what = "all volumes" if all_ else "all anonymous volumes"
        echo(f"WARNING! This will remove {what} not used by at least one container.")
        if not sys.stdin.isatty():
            echo("Are you sure you want to continue? [y/N] (not a terminal: use -f)", err=True)
            return 1
        if input("Are you sure you want to continue? [y/N] ").strip().lower() not in ("y", "yes"):
            return 1
    removed = _store(ctx).prune(all_=all_, labels=labels)
    if removed:
        echo("Deleted Volumes:")
        for name, _ in removed:
            echo(name)
        echo()
    echo(f"Total reclaimed space: {_human(sum(size for _, size in removed))}")
    return None


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.4g}{unit}" if unit != "B" else f"{int(size)}B"
        size /= 1000
    return f"{size:.4g}GB"


def usage(ctx: CliContext) -> dict[str, int]:
    """``system df``'s volumes: how many, their size, how many no container uses."""
    from hawser.volumes import disk_usage

    store = _store(ctx)
    volumes = store.volumes()
    used = store.users()
    return {"count": len(volumes), "size": sum(disk_usage(v.mountpoint) for v in volumes),
            "unused": sum(1 for v in volumes if v.name not in used)}


def prune_anonymous(ctx: CliContext) -> int:
    """``system prune --volumes``: the anonymous volumes no container uses go
    (listed as docker does); the bytes reclaimed."""
    removed = _store(ctx).prune()
    if removed:
        echo("Deleted Volumes:")
        for name, _ in removed:
            echo(name)
        echo()
    return sum(size for _, size in removed)
