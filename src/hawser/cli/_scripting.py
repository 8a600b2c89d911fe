"""The commands scripts read: ``ps`` and ``inspect`` with docker's ``--format``
(Go templates), ``-f/--filter``, ``ps -n/-l/-s``; and ``--env-file`` for run,
create and exec."""

from __future__ import annotations

import time

from hawser.cli._context import CliContext, echo

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Mapping, Sequence
    from typing import Any

    from hawser.cli._filters import Predicate
    from hawser.cli._parser import Handler, Parser
    from hawser.runtime import ContainerInfo, ContainerManager

STATES = ("created", "restarting", "running", "removing", "paused", "exited", "dead")


def add_format(p: Parser, *, default: str | None = None) -> None:
    p.add_argument("--format", default=default, metavar="FORMAT",
                   help="A Go template ('{{.Names}}'), 'table TEMPLATE', 'table' or 'json'.")


def add_filter(p: Parser) -> None:
    p.add_argument("-f", "--filter", dest="filters", action="append", default=[], metavar="KEY=VALUE",
                   help="Only what matches (repeatable).")


# --- ps --------------------------------------------------------------------------


def ps(p: Parser) -> Handler:
    """List containers."""
    p.add_argument("-a", "--all", action="store_true", help="Show all containers, not only running ones.")
    p.add_argument("-q", "--quiet", action="store_true", help="Only ids.")
    p.add_argument("--no-trunc", action="store_true", help="Full ids and commands.")
    p.add_argument("-n", "--last", type=int, default=-1, metavar="N",
                   help="The N last created containers (all states).")
    p.add_argument("-l", "--latest", action="store_true", help="The last created container (all states).")
    p.add_argument("-s", "--size", action="store_true", help="Show the writable layer's size.")
    add_filter(p)
    add_format(p)
    return _ps


def _container_filters(infos: Sequence[ContainerInfo], image_ids: Mapping[str, str]) -> dict[str, Predicate]:
    from hawser.cli._filters import label_matches, name_matches
    from hawser.errors import InvalidArgument, NotFound

    def find(text: str) -> ContainerInfo:
        for i in infos:
            if i.record.name == text or i.id == text:
                return i
        matches = [i for i in infos if i.id.startswith(text)]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"no such container: {text}")

    def status(info: ContainerInfo, value: str) -> bool:
        from hawser.cli._inspect import restarting

        if value not in STATES:
            raise InvalidArgument(f"invalid filter 'status={value}'",
                                  hint=f"a status is one of {', '.join(STATES)}")
        if value in ("restarting", "exited") and info.status.state == "exited":
            return restarting(info) == (value == "restarting")
        return info.status.state == value

    def exited(info: ContainerInfo, value: str) -> bool:
        try:
            code = int(value)
        except ValueError:
            raise InvalidArgument(f"invalid filter 'exited={value}': an exit code is a number") from None
        return info.status.state == "exited" and info.status.exit_code == code

    def ancestor(info: ContainerInfo, value: str) -> bool:
        r = info.record
        candidates = {value, f"{value}:latest", f"docker.io/library/{value}", f"docker.io/library/{value}:latest",
                      f"docker.io/{value}", f"docker.io/{value}:latest"}
        if r.image in candidates or image_ids.get(value) == r.image_id:
            return True
        bare = value.removeprefix("sha256:")
        return len(bare) >= 4 and r.image_id.removeprefix("sha256:").startswith(bare)

    def health(info: ContainerInfo, value: str) -> bool:
        if value not in ("starting", "healthy", "unhealthy", "none"):
            raise InvalidArgument(f"invalid filter 'health={value}'",
                                  hint="use starting, healthy, unhealthy or none")
        state = None
        if "healthcheck" in info.record.config:
            try:
                from hawser.runtime.health import health_state

                found = health_state(info)
                state = str(found.get("Status") or "starting") if found else None
            except Exception:
                state = None
        return (state or "none") == value

    def network(info: ContainerInfo, value: str) -> bool:
        from hawser.cli._inspect import network_mode

        networks = info.record.config.get("networks")
        names = set(networks) if isinstance(networks, dict) else {network_mode(info.record.config)}
        return value in names

    def volume(info: ContainerInfo, value: str) -> bool:
        mounts = info.record.config.get("mounts") or []
        return any(isinstance(m, dict) and value in (m.get("volume"), m.get("destination"), m.get("source"))
                   for m in mounts)

    def publish(info: ContainerInfo, value: str) -> bool:
        from hawser.cli._inspect import ports

        port, _, proto = value.partition("/")
        return any(str(p["container_port"]) == port and p["protocol"] == (proto or p["protocol"])
                   for p in ports(info.record.config))

    return {
        "id": lambda i, v: i.id.startswith(v),
        "name": lambda i, v: name_matches(i.record.name, v),
        "label": lambda i, v: label_matches(i.record.labels, v),
        "status": status, "exited": exited, "ancestor": ancestor, "health": health,
        "before": lambda i, v: i.record.created_at < find(v).record.created_at,
        "since": lambda i, v: i.record.created_at > find(v).record.created_at,
        "network": network, "volume": volume, "publish": publish,
    }


def _ps(ctx: CliContext, a: Namespace) -> None:
    from hawser.cli._filters import parse_filters, render, select
    from hawser.cli._inspect import PS_HEADERS, PS_TABLE, ps_row
    from hawser.cli._template import render_rows

    manager = _lister(ctx)
    filters = parse_filters(a.filters)
    last = 1 if a.latest else a.last
    # docker: a status filter, -n, -l, before and since show stopped containers too
    everything = a.all or last > 0 or any(k in filters for k in ("status", "before", "since", "exited"))
    infos = sorted(manager.list(all_=True), key=lambda i: i.record.created_at, reverse=True)
    image_ids: dict[str, str] = {}
    if "ancestor" in filters:
        store = ctx.images()
        for value in filters["ancestor"]:
            try:
                name = store.resolve_name(value)
            except Exception:
                continue
            image_ids[value] = next((str(i.image_id) for i in store.list_images() if i.name == name), "")
    chosen = select(infos, filters, _container_filters(infos, image_ids))
    if not everything:
        chosen = [i for i in chosen if i.status.state in ("running", "paused")]
    if last > 0:
        chosen = chosen[:last]
    if a.quiet:
        for i in chosen:
            echo(i.id if a.no_trunc else i.id[:12])
        return
    fmt = a.format
    if fmt == "json":  # hawser's record view, an array (as podman's --format json)
        import json

        echo(json.dumps([i.to_json() for i in chosen], indent=2))
        return
    sizes = _sizes(ctx, chosen) if a.size or (fmt is not None and ".Size" in fmt) else {}
    now = time.time()
    rows = [ps_row(i, now=now, no_trunc=a.no_trunc, size=sizes.get(i.id, "")) for i in chosen]
    if fmt is None or fmt == "table":
        fmt = PS_TABLE + ("\t{{.Size}}" if a.size else "")
    out = render(render_rows, fmt, rows, PS_HEADERS)
    echo(out, end="")


def _lister(ctx: CliContext) -> ContainerManager:
    """A container manager for reading states only: ``ctx.containers()`` without
    the wiring of what ps never does (networking's import alone is ~30 ms of the
    100 ms ps may take): exits it is the first to see still go to the journal."""
    from hawser.events import container_observer
    from hawser.runtime import ContainerManager

    images = ctx.images()
    manager = ContainerManager.of(images.store, images)
    manager.observers.append(container_observer(ctx.journal()))
    return manager


def _sizes(ctx: CliContext, infos: Sequence[ContainerInfo]) -> dict[str, str]:
    """docker's ``ps -s``: the writable layer's usage, and with the image's "(virtual ...)"."""
    from hawser.cli._inspect import human_size
    from hawser.runtime import ContainerStatsReader

    manager = _lister(ctx)
    reader = ContainerStatsReader.of(manager)
    image_sizes = {str(i.image_id): i.size for i in ctx.images().list_images()}
    out = {}
    for info in infos:
        layer = reader.read(info.record).writable_layer
        used = layer.used_bytes if layer is not None else 0
        virtual = used + image_sizes.get(info.record.image_id, 0)
        out[info.id] = f"{human_size(used)} (virtual {human_size(virtual)})"
    return out


# --- inspect --------------------------------------------------------------------------


def inspect(p: Parser) -> Handler:
    """Show containers (or images) as JSON, in docker's layout."""
    p.add_argument("-f", "--format", metavar="FORMAT", help="A Go template ('{{.State.Status}}'), or 'json'.")
    p.add_argument("--type", choices=("container", "image"), metavar="[container|image]",
                   help="Only look for this kind of object.")
    p.add_argument("-s", "--size", action="store_true", help="Ignored (docker's size of a container).")
    p.add_argument("names", nargs="+", metavar="NAMES")
    return _inspect


def _inspect(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.errors import HawserError, NotFound

    out: list[dict[str, Any]] = []
    failed = False
    manager = ctx.containers() if a.type != "image" else None
    for n in a.names:  # as docker: the ones found are shown, each one not found is a line on stderr
        try:
            if manager is not None:
                try:
                    out.append(container_json(ctx, manager.info(manager.lookup(n))))
                    continue
                except NotFound:
                    if a.type == "container":
                        raise NotFound(f"no such container: {n}") from None
            try:
                out.append(image_json(ctx, n))
            except NotFound:
                raise NotFound(f"no such {'image' if a.type == 'image' else 'container or image'}: {n}") from None
        except HawserError as exc:
            echo(f"hawser: {exc}", err=True)
            failed = True
    _print_inspect(out, a.format)
    return 1 if failed else None


def _print_inspect(objects: Sequence[Any], fmt: str | None) -> None:
    import json

    if fmt is None or fmt == "json":
        echo(json.dumps(objects, indent=4, ensure_ascii=False))
        return
    from hawser.cli._filters import format_one

    echo("".join(format_one(fmt, o) for o in objects), end="")


def container_json(ctx: CliContext, info: ContainerInfo) -> dict[str, Any]:
    from hawser.cli._inspect import container

    config = None
    try:
        store = ctx.images()
        config = store.inspect(store.resolve_name(info.record.image_id or info.record.image)).config
    except Exception:  # the image is gone: inspect shows what the record has
        config = None
    return container(info, config)


def image_json(ctx: CliContext, text: str, platform: str | None = None) -> dict[str, Any]:
    from hawser.cli._inspect import image
    from hawser.oci import Platform

    store = ctx.images()
    name = store.resolve_name(text)
    detail = store.inspect(name, Platform.parse(platform) if platform else None)
    image_id = str(detail.config_digest)
    tags, digests = [], []
    for summary in store.list_images():
        if str(summary.image_id or "") != image_id:
            continue
        if "@" in summary.name:
            digests.append(summary.name)
        else:
            tags.append(summary.name)
            digests.append(f"{summary.name.rpartition(':')[0]}@{summary.target.digest}")
    return image(detail, repo_tags=sorted(tags), repo_digests=sorted(set(digests)))


def image_inspect(p: Parser) -> Handler:
    """Show images as JSON, in docker's layout."""
    p.add_argument("-f", "--format", metavar="FORMAT", help="A Go template ('{{.Os}}'), or 'json'.")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    p.add_argument("references", nargs="+", metavar="REFERENCES")
    return _image_inspect


def _image_inspect(ctx: CliContext, a: Namespace) -> int | None:
    from hawser.errors import HawserError

    out, failed = [], False
    for reference in a.references:  # as docker: each one not found is a line on stderr, the others are shown
        try:
            out.append(image_json(ctx, reference, a.platform))
        except HawserError as exc:
            echo(f"hawser: {exc}", err=True)
            failed = True
    _print_inspect(out, a.format)
    return 1 if failed else None


# --- env files -----------------------------------------------------------------------


def read_env_file(path: str) -> list[str]:
    """docker's ``--env-file``: ``K=V`` lines, ``K`` alone takes the host's value
    (left out when unset), ``#`` comments and blank lines skipped; leading
    blanks of a name trimmed, the value kept as written (no quotes removed)."""
    import os

    from hawser.errors import InvalidArgument

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise InvalidArgument(f"cannot read env file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"env file {path} is not UTF-8 text") from None
    if lines and lines[0].startswith("\ufeff"):  # a byte-order mark, as docker drops it
        lines[0] = lines[0][1:]
    out = []
    for number, raw in enumerate(lines, 1):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not key:
            raise InvalidArgument(f"invalid env file {path} line {number}: no variable name: {raw!r}")
        if any(c.isspace() for c in key):
            raise InvalidArgument(f"invalid env file {path} line {number}: variable {key!r} contains whitespaces")
        if sep:
            out.append(f"{key}={value}")
        elif key in os.environ:
            out.append(f"{key}={os.environ[key]}")
    return out


def environment(env: Sequence[str], env_files: Sequence[str]) -> tuple[str, ...]:
    """``--env-file`` entries, then ``-e`` ones (docker's order: -e wins); ``-e K``
    without ``=`` takes the host's value, and is dropped when the host has none."""
    import os

    out = [e for path in env_files for e in read_env_file(path)]
    for item in env:
        if "=" in item:
            out.append(item)
        elif item in os.environ:
            out.append(f"{item}={os.environ[item]}")
    return tuple(out)


# --- images ---------------------------------------------------------------------------

IMAGE_HEADERS = {"ID": "IMAGE ID", "Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST",
                 "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE", "VirtualSize": "VIRTUAL SIZE",
                 "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE", "Containers": "CONTAINERS",
                 "Name": "NAME"}


def add_image_listing(p: Parser) -> None:
    """``images``' docker options beyond hawser's own: REPO[:TAG] and -f/--filter (--format is its own)."""
    add_filter(p)
    p.add_argument("repository", nargs="?", metavar="REPOSITORY[:TAG]", help="Only this repository (or tag).")


def split_name(name: str) -> tuple[str, str, str]:
    """A stored image name as docker's REPOSITORY, TAG and DIGEST ("<none>" where it has none)."""
    repository, at, digest = name.partition("@")
    if at:
        return repository, "<none>", digest
    base, colon, tag = name.rpartition(":")
    if colon and "/" not in tag:
        return base, tag, "<none>"
    return name, "<none>", "<none>"


def _created(text: str) -> float | None:
    import datetime

    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def select_images(ctx: CliContext, summaries: Sequence[Any], filters: Sequence[str], repository: str | None
                  ) -> list[Any]:
    """The images (``ImageSummary``) ``images REPO[:TAG] --filter ...`` lists, as docker's filters say:
    dangling (hawser keeps no untagged image: dangling=true matches none), label, before, since, reference."""
    import fnmatch

    from hawser.cli._filters import boolean, label_matches, parse_filters, select
    from hawser.errors import NotFound

    store = ctx.images()
    by_name = {s.name: s for s in summaries}

    def names_of(summary: Any) -> set[str]:
        """The forms a user may give: full, without the tag, and docker's familiar short ones."""
        repo, tag, _ = split_name(summary.name)
        forms = {summary.name, repo}
        for prefix in ("docker.io/library/", "docker.io/"):
            if repo.startswith(prefix):
                short = repo[len(prefix):]
                forms |= {short, f"{short}:{tag}"}
        return forms

    def reference(summary: Any, pattern: str) -> bool:
        return any(fnmatch.fnmatchcase(form, pattern) for form in names_of(summary))

    def created_of(text: str) -> float:
        name = store.resolve_name(text)
        found = by_name.get(name)
        when = _created(found.created) if found is not None else None
        if when is None:
            raise NotFound(f"no such image: {text}")
        return when

    labels_cache: dict[str, Mapping[str, str]] = {}

    def labels(summary: Any) -> Mapping[str, str]:
        if summary.name not in labels_cache:
            labels_cache[summary.name] = store.inspect(summary.name).config.labels
        return labels_cache[summary.name]

    accept: dict[str, Predicate] = {
        "dangling": lambda s, v: not boolean("dangling", v),
        "label": lambda s, v: label_matches(labels(s), v),
        "before": lambda s, v: (_created(s.created) or 0) < created_of(v),
        "since": lambda s, v: (_created(s.created) or 0) > created_of(v),
        "reference": reference,
    }
    chosen = select(summaries, parse_filters(filters), accept)
    if repository:
        repo, tag, _ = split_name(repository)
        want_tag = tag if tag != "<none>" and ":" in repository.rpartition("/")[2] else None
        chosen = [s for s in chosen if repo in names_of(s) or f"docker.io/library/{repo}" in names_of(s)
                  if want_tag is None or split_name(s.name)[1] == want_tag]
    return chosen


def image_rows(summaries: Sequence[Any], *, no_trunc: bool) -> list[dict[str, Any]]:
    """docker's image fields (``.ID .Repository .Tag .Digest .CreatedSince .CreatedAt .Size``) for templates."""
    from hawser.cli._inspect import human_duration, human_size

    now = time.time()
    rows = []
    for s in summaries:
        repository, tag, digest = split_name(s.name)
        image_id = str(s.image_id or "")
        created = _created(s.created)
        rows.append({
            "ID": image_id if no_trunc else image_id.removeprefix("sha256:")[:12], "Repository": repository,
            "Tag": tag, "Digest": str(s.target.digest) if digest == "<none>" else digest,
            "CreatedSince": f"{human_duration(now - created)} ago" if created is not None else "N/A",
            "CreatedAt": time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(created)) if created else "",
            "Size": human_size(s.size), "VirtualSize": human_size(s.size), "SharedSize": "N/A",
            "UniqueSize": "N/A", "Containers": "N/A", "Name": s.name,
        })
    return rows


def print_images(rows: Sequence[dict[str, Any]], fmt: str) -> None:
    """``images --format TEMPLATE`` (``table TEMPLATE`` with docker's headers)."""
    from hawser.cli._filters import render
    from hawser.cli._template import GoMap, render_rows

    echo(render(render_rows, fmt, rows, GoMap(IMAGE_HEADERS)), end="")


# --- stats ------------------------------------------------------------------------------

STATS_HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %",
                 "MemUsage": "MEM USAGE / LIMIT", "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O",
                 "PIDs": "PIDS"}


def print_stats(rows: Sequence[Mapping[str, Any]], pids: Mapping[str, int], fmt: str) -> None:
    """``stats --format TEMPLATE``: docker's fields (``.Container .ID .Name .CPUPerc .MemUsage .MemPerc
    .NetIO .BlockIO .PIDs``) of ``_stats``' rows; ``pids``: each container's init (its NET I/O)."""
    from hawser.cli._filters import render
    from hawser.cli._stats_table import binary_size, decimal_size, host_memory, net_io
    from hawser.cli._template import GoMap, render_rows

    total = host_memory()
    out = []
    for row in rows:
        limit = row["memory_limit"] or total
        if total and limit > total:
            limit = total
        used = row["memory_working_set"]
        received, sent = net_io(pids.get(row["id"], 0))
        out.append({"Container": row["id"][:12], "ID": row["id"], "Name": row["name"],
                    "CPUPerc": f"{row['cpu_percent']:.2f}%", "MemUsage": f"{binary_size(used)} / {binary_size(limit)}",
                    "MemPerc": f"{used * 100 / limit:.2f}%" if limit else "--",
                    "NetIO": f"{decimal_size(received)} / {decimal_size(sent)}",
                    "BlockIO": f"{decimal_size(row['block_read'])} / {decimal_size(row['block_write'])}",
                    "PIDs": str(row["pids"])})
    echo(render(render_rows, fmt, out, GoMap(STATS_HEADERS)), end="")
