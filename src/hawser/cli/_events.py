"""``hawser events``: the store's event journal, as ``docker events`` and
``podman events`` show theirs: what happened since a time, then what happens,
live, until interrupted (or until ``--until``)."""

from __future__ import annotations

from hawser.cli._context import CliContext, echo

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Handler, Parser
    from hawser.events import Event

# --filter keys, and the event field each compares.
FILTERS = ("type", "event", "container", "image", "namespace")


def events(p: Parser) -> Handler:
    """Show events: images pulled and removed, containers created, started, exited, removed."""
    p.add_argument("--since", metavar="T", help="Replay events since T (10m, RFC 3339, Unix time).")
    p.add_argument("--until", metavar="T", help="Stop at T instead of following.")
    p.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                   help=f"Only matching events ({', '.join(FILTERS)}); repeated keys are alternatives.")
    p.add_argument("--format", choices=("table", "json"), default="table", help="Output format [default: table].")
    return _events


def _events(ctx: CliContext, a: Namespace) -> None:
    import json
    import sys
    import time

    from hawser.errors import InvalidArgument
    from hawser.runtime import parse_since

    wanted: dict[str, set[str]] = {}
    for text in a.filter:
        key, sep, value = text.partition("=")
        if not sep or key not in FILTERS:
            raise InvalidArgument(f"invalid filter {text!r}", hint=f"use KEY=VALUE with KEY one of {', '.join(FILTERS)}")
        wanted.setdefault(key, set()).add(value)
    since = parse_since(a.since) if a.since else None
    until = parse_since(a.until) if a.until else None
    journal = ctx.journal()
    if until is not None and until <= time.time():
        found = journal.read(since=since, until=until)
    else:
        found = journal.follow(since=since, stop=until)
    for event in found:
        if not _matches(event, wanted):
            continue
        if a.format == "json":
            echo(json.dumps(event.to_json()))
        else:
            echo(_line(event))
        sys.stdout.flush()  # a follower reads each event as it happens


def _matches(event: Event, wanted: dict[str, set[str]]) -> bool:
    fields = {"type": {event.type}, "event": {event.action}, "namespace": {event.namespace},
              "container": {event.id, event.id[:12], event.name} if event.type == "container" else set(),
              "image": {event.name, event.attributes.get("image", "")} - {""}}
    return all(fields[key] & values for key, values in wanted.items())


def _line(event: Event) -> str:
    import time

    when = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event.time)) + f".{int(event.time % 1 * 1e9):09d}Z"
    attributes = {"name": event.name, **event.attributes} if event.name else dict(event.attributes)
    details = ", ".join(f"{k}={v}" for k, v in attributes.items())
    return f"{when} {event.type} {event.action} {event.id[:64]}" + (f" ({details})" if details else "")
