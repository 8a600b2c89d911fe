"""More of docker's commands: history, image prune, info, update, and run's
and create's ``--volumes-from``."""

from __future__ import annotations

import sys

from hawser.cli._context import CliContext, echo

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Sequence
    from typing import Any

    from hawser.cli._parser import Handler, Parser
    from hawser.volumes import MountRequest


def docker_size(size: float) -> str:
    """docker's ``units.HumanSizeWithPrecision(size, 3)``: ``0B``, ``123B``, ``4.26MB``."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if size < 1000 or unit == "PB":
            text = f"{size:.3g}"
            if "e" in text:  # 999.6 rounds to "1e+03" (Go prints that too): a plain number reads better
                text = f"{size:.0f}"
            return f"{text}{unit}"
        size /= 1000
    return f"{size:.3g}PB"


def ellipsis(text: str, width: int) -> str:
    """docker's ``stringutils.Ellipsis``: at most ``width`` characters, the last one ``…`` when cut."""
    return text if len(text) <= width else text[:width - 1] + "…"


# --- history ---------------------------------------------------------------------

HISTORY_HEADERS = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
                   "Size": "SIZE", "Comment": "COMMENT"}
_HISTORY_TABLE = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
_CREATED_BY_WIDTH = 45  # docker's truncation of CREATED BY


def history(p: Parser) -> Handler:
    """Show the history of an image: the step that made each layer, newest first."""
    p.add_argument("-H", "--human", default="true", choices=("true", "false"), metavar="BOOL",
                   help="Sizes and dates in human readable form [default: true].")
    p.add_argument("--no-trunc", action="store_true", help="Do not truncate the output.")
    p.add_argument("-q", "--quiet", action="store_true", help="Only image IDs.")
    p.add_argument("--format", metavar="FORMAT",
                   help="A Go template ('{{.CreatedBy}}'), 'table TEMPLATE', 'table' or 'json'.")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="The platform of a multi-platform image.")
    p.add_argument("image", metavar="IMAGE")
    return _history


def history_rows(image_id: str, entries: Sequence[Any], *, no_trunc: bool, human: bool, now: float
                 ) -> list[dict[str, Any]]:
    """docker's history fields (``.ID .CreatedSince .CreatedAt .CreatedBy .Size .Comment``) of the
    entries (``images.HistoryEntry``, newest first): the image's ID on the top row, ``<missing>`` below."""
    import time

    from hawser.cli._inspect import human_duration
    from hawser.cli._scripting import _created

    rows = []
    for index, entry in enumerate(entries):
        shown_id = "<missing>"
        if index == 0:
            shown_id = image_id if no_trunc else image_id.removeprefix("sha256:")[:12]
        when = _created(entry.created)
        if when is None:
            since = at = "N/A"
        elif human:
            since, at = f"{human_duration(max(now - when, 0))} ago", time.strftime(
                "%Y-%m-%dT%H:%M:%S%z", time.localtime(when))
        else:
            since = at = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))
        created_by = entry.created_by.replace("\t", " ")
        rows.append({"ID": shown_id, "CreatedSince": since, "CreatedAt": at,
                     "CreatedBy": created_by if no_trunc else ellipsis(created_by, _CREATED_BY_WIDTH),
                     "Size": docker_size(entry.size) if human else str(entry.size), "Comment": entry.comment})
    return rows


def _history(ctx: CliContext, a: Namespace) -> None:
    import time

    from hawser.cli._filters import render
    from hawser.cli._template import GoMap, render_rows
    from hawser.images import image_history
    from hawser.oci import Platform

    image_id, entries = image_history(ctx.images(), a.image, Platform.parse(a.platform) if a.platform else None)
    rows = history_rows(image_id, entries, no_trunc=a.no_trunc, human=a.human == "true", now=time.time())
    if a.quiet:
        for row in rows:
            echo(row["ID"])
        return
    fmt = a.format if a.format not in (None, "", "table") else _HISTORY_TABLE
    echo(render(render_rows, fmt, rows, GoMap(HISTORY_HEADERS)), end="")


# --- image prune -----------------------------------------------------------------


def image_prune(p: Parser) -> Handler:
    """Remove unused images: dangling ones, or with -a every image no container uses."""
    p.add_argument("-a", "--all", action="store_true", help="Remove every image no container uses.")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation.")
    p.add_argument("--filter", dest="filters", action="append", default=[], metavar="KEY=VALUE",
                   help="Only images that match: until=TIMESTAMP|DURATION, label=KEY[=VALUE], label!=KEY[=VALUE].")
    return _image_prune


def until_time(value: str, now: float) -> float:
    """docker's ``until=``: a Unix timestamp, an RFC 3339 date, or a Go duration before now (``24h``, ``90m``)."""
    import datetime as _dt
    import re

    from hawser.errors import InvalidArgument

    if re.fullmatch(r"\d+(\.\d+)?", value):
        return float(value)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", value)
    if parts and "".join(n + u for n, u in parts) == value:
        scale = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
        return now - sum(float(n) * scale[u] for n, u in parts)
    try:
        when = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(f"invalid filter 'until={value}'",
                              hint="give a Unix timestamp, an RFC 3339 date or a duration (24h)") from None
    if when.tzinfo is None:
        when = when.astimezone()
    return when.timestamp()


def _image_prune(ctx: CliContext, a: Namespace) -> int | None:
    import time

    from hawser.cli._filters import label_matches, parse_filters
    from hawser.cli._scripting import _created
    from hawser.errors import HawserError, InvalidArgument

    filters = parse_filters(a.filters)
    for key in filters:
        if key not in ("until", "label", "label!"):
            raise InvalidArgument(f"invalid filter {key!r}", hint="image prune takes until, label and label!")
    now = time.time()
    untils = [until_time(v, now) for v in filters.get("until", ())]
    if not a.force:
        echo("WARNING! This will remove all images without at least one container associated to them." if a.all
             else "WARNING! This will remove all dangling images.")
        if not sys.stdin.isatty():
            echo("Are you sure you want to continue? [y/N] (not a terminal: use -f)", err=True)
            return 1
        if input("Are you sure you want to continue? [y/N] ").strip().lower() not in ("y", "yes"):
            return 1
    store = ctx.images(to_free_space=True)
    deleted: list[str] = []
    failed = False
    if a.all:  # hawser keeps no dangling (untagged) image: only -a finds any to remove
        used_ids, used_names = set(), set()
        for info in ctx.containers().list(all_=True):
            used_ids.add(info.record.image_id)
            used_names.add(info.record.image)
        by_id: dict[str, list[Any]] = {}
        for summary in sorted(store.list_images(), key=lambda s: s.name):
            by_id.setdefault(str(summary.image_id or summary.target.digest), []).append(summary)
        for image_id, summaries in by_id.items():
            if image_id in used_ids or any(s.name in used_names for s in summaries):
                continue
            created = _created(summaries[0].created)
            if untils and (created is None or any(created >= u for u in untils)):
                continue
            labels: dict[str, str] = {}
            if "label" in filters or "label!" in filters:
                try:
                    labels = dict(store.inspect(summaries[0].name).config.labels)
                except HawserError:
                    labels = {}
            if not all(label_matches(labels, v) for v in filters.get("label", ())):
                continue
            if any(label_matches(labels, v) for v in filters.get("label!", ())):
                continue
            try:
                for summary in summaries:
                    store.untag(summary.name)
                    deleted.append(f"untagged: {summary.name}")
            except HawserError as exc:
                echo(f"hawser: {exc}", err=True)
                failed = True
                continue
            deleted.append(f"deleted: {image_id}")
    report = store.prune()
    for err in report.errors:
        echo(f"hawser: collecting what the images held: {err} (hint: hawser system prune retries)", err=True)
    if deleted:
        echo("Deleted Images:")
        for line in deleted:
            echo(line)
        echo()
    echo(f"Total reclaimed space: {docker_size(report.bytes_reclaimed)}")
    return 1 if failed or report.errors else None


# --- info ------------------------------------------------------------------------


def info(p: Parser) -> Handler:
    """Show system-wide information: hawser's version, the tools it runs, the host, the store and the daemon."""
    p.add_argument("-f", "--format", metavar="FORMAT",
                   help="A Go template of docker's fields ('{{.ServerVersion}}', '{{json .}}'), or 'json'.")
    return _info


def info_json(report: dict[str, Any], *, store_id: str) -> dict[str, Any]:
    """``system info``'s report under docker's info field names (``.ServerVersion .Images .Containers
    .Driver .KernelVersion .CgroupVersion .DockerRootDir ...``); the whole report as ``.Hawser``."""
    import os
    import platform

    objects, host = report["objects"], report["host"]
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        memory = 0
    return {
        "ID": store_id, "Name": platform.node(), "ServerVersion": report["version"],
        "Containers": objects["containers"], "Images": objects["images"],
        "Driver": report["storage"]["snapshotter"],
        "DriverStatus": [["Backing Filesystem", report["storage"]["backing_filesystem"] or "unknown"]],
        "DockerRootDir": report["storage"]["root"], "KernelVersion": host["kernel"], "OSType": "linux",
        "Architecture": platform.machine(), "NCPU": os.cpu_count() or 0, "MemTotal": memory,
        "CgroupDriver": "cgroupfs", "CgroupVersion": str(host["cgroup_version"] or ""),
        "DefaultRuntime": "runc", "Runtimes": {"runc": {"path": report["tools"]["runc"].get("path", "")}},
        "Hawser": report,
    }


def _info(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._system import collect_info, info_lines

    report = collect_info(ctx)
    if a.format is None or a.format == "table":
        for line in info_lines(report):
            echo(line)
        return
    from hawser.cli._filters import format_one
    from hawser.cli._template import GoMap

    data = info_json(report, store_id=ctx.store().id)
    echo(format_one(a.format, {k: GoMap(v) if isinstance(v, dict) and k == "Runtimes" else v
                               for k, v in data.items()}), end="")


# --- update ----------------------------------------------------------------------


def update(p: Parser) -> Handler:
    """Update the resource limits or the restart policy of containers."""
    p.add_argument("--memory", "-m", metavar="SIZE", help="Memory limit (e.g. 64m).")
    p.add_argument("--memory-swap", metavar="SIZE", help="Memory plus swap limit; -1: unlimited swap.")
    p.add_argument("--cpus", metavar="N", help="CPU quota in cores (e.g. 0.5).")
    p.add_argument("--cpu-shares", type=int, metavar="INTEGER", help="Relative CPU weight.")
    p.add_argument("--cpuset-cpus", metavar="LIST", help="CPUs allowed (e.g. 0-1).")
    p.add_argument("--cpuset-mems", metavar="LIST", help="Memory nodes allowed (e.g. 0).")
    p.add_argument("--pids-limit", type=int, metavar="INTEGER", help="Maximum number of processes (-1: unlimited).")
    p.add_argument("--restart", metavar="POLICY",
                   help="Restart policy: no, on-failure[:max-retries], always, unless-stopped.")
    p.add_argument("containers", nargs="+", metavar="CONTAINERS")
    return _update


def _update(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.cli._lifecycle import cleanup_command
    from hawser.cli._parser import UsageError
    from hawser.errors import HawserError
    from hawser.runtime import CREATED, Resources, parse_cpus, parse_memory
    from hawser.runtime.restart import RestartPolicy, refresh_spec_copy, update_policy

    quota = period = None
    if a.cpus:
        quota, period = parse_cpus(a.cpus)
    resources = Resources(
        memory_limit=parse_memory(a.memory) if a.memory else None,
        memory_swap=(-1 if a.memory_swap == "-1" else parse_memory(a.memory_swap)) if a.memory_swap else None,
        cpu_quota=quota, cpu_period=period, cpu_shares=a.cpu_shares, cpuset_cpus=a.cpuset_cpus,
        cpuset_mems=a.cpuset_mems, pids_limit=a.pids_limit)
    policy = RestartPolicy.parse(a.restart) if a.restart is not None else None
    if resources == Resources() and policy is None:
        raise UsageError("you must provide one or more flags when using this command")
    manager = ctx.containers()
    failed = False
    for text in a.containers:  # as docker: each one tried, each failure one line
        try:
            if resources != Resources():
                manager.update_resources(text, resources)
                refresh_spec_copy(manager, manager.lookup(text))
            applies_now = policy is None or update_policy(manager, text, policy, cleanup_command(ctx))
            if policy is not None and policy.restarts and not applies_now:
                # its conmon, started at create, has no exit command: the next one gets it
                when = ("once it has exited and is started again" if manager.status(manager.lookup(text)).state
                        == CREATED else "from the container's next start")
                echo(f"hawser: {text}: the restart policy applies {when}", err=True)
            echo(text)
        except HawserError as exc:
            echo(f"hawser: {exc}", err=True)
            failed = True
    return 1 if failed else None


# --- --volumes-from ----------------------------------------------------------------


def volumes_from_argument(p: Parser) -> None:
    p.add_argument("--volumes-from", dest="volumes_from", action="append", default=[],
                   metavar="CONTAINER[:ro|rw]", help="Mount the volumes and binds of another container.")


def volumes_from(ctx: CliContext, specs: Sequence[str], requests: Sequence[MountRequest]) -> list[MountRequest]:
    """``requests`` (``-v``, ``--mount``) and then, as docker, the mounts of
    each ``--volumes-from`` container (its record's volumes and binds, at the
    same destinations; ``:ro``/``:rw`` override their mode) that no request
    already has.  NotFound for a container that does not exist,
    InvalidArgument for a bad mode."""
    from hawser.errors import InvalidArgument
    from hawser.volumes import MountRequest as Request
    from hawser.volumes import container_mounts

    out = list(requests)
    if not specs:
        return out
    taken = {r.destination for r in out}
    manager = ctx.containers()
    for spec in specs:
        name, sep, mode = spec.rpartition(":") if spec.endswith((":ro", ":rw")) else (spec, "", "")
        if sep and mode not in ("ro", "rw"):
            raise InvalidArgument(f"invalid --volumes-from {spec!r}: the mode must be ro or rw")
        record = manager.lookup(name)
        for m in container_mounts(record.config):
            if m["Type"] not in ("volume", "bind") or m["Destination"] in taken:
                continue
            readonly = not m["RW"] if not mode else mode == "ro"
            if m["Type"] == "volume":
                out.append(Request(type="volume", source=str(m["Name"]), destination=m["Destination"],
                                   readonly=readonly, nocopy=True))
            else:
                out.append(Request(type="bind", source=m["Source"], destination=m["Destination"],
                                   readonly=readonly, propagation=m["Propagation"] or "rprivate"))
            taken.add(m["Destination"])
    return out
