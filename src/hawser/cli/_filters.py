"""docker's ``-f/--filter KEY=VALUE`` and ``--format`` for listings.

Filters with one key are alternatives, filters with different keys must all
hold (docker's filters.Args).  A key a listing does not know is an error, as
docker's "invalid filter".  ``listing`` is the one call a list command makes:
filter its rows, then print them through ``--format`` (a Go template,
``table ...``, ``json``) or its default table.
"""

from __future__ import annotations

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any, TypeVar

    T = TypeVar("T")
    Predicate = Callable[[Any, str], bool]


def parse_filters(items: Sequence[str]) -> dict[str, list[str]]:
    """``["status=exited", "label=a=b"]`` -> ``{"status": ["exited"], "label": ["a=b"]}``."""
    from hawser.errors import InvalidArgument

    out: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {item!r}")
        out.setdefault(key, []).append(value)
    return out


def check_keys(filters: Mapping[str, Sequence[str]], accepted: Iterable[str]) -> None:
    from hawser.errors import InvalidArgument

    known = set(accepted)
    for key in filters:
        if key not in known:
            raise InvalidArgument(f"invalid filter {key!r}", hint=f"filters here: {', '.join(sorted(known))}")


def select(items: Iterable[T], filters: Mapping[str, Sequence[str]], accept: Mapping[str, Predicate]) -> list[T]:
    """The items every filter key accepts (any of its values)."""
    check_keys(filters, accept)
    tests = [(accept[key], values) for key, values in filters.items()]
    return [item for item in items if all(any(test(item, v) for v in values) for test, values in tests)]


# --- predicates shared by the listings ---------------------------------------------


def label_matches(labels: Mapping[str, str], value: str) -> bool:
    """``label=KEY`` (present) or ``label=KEY=VALUE``."""
    key, sep, want = value.partition("=")
    if key not in labels:
        return False
    return not sep or labels[key] == want


def name_matches(name: str, value: str) -> bool:
    """docker's name filter: a regular expression searched in the name (a leading / allowed, as docker's names)."""
    import re

    try:
        return re.search(value, name) is not None or re.search(value, "/" + name) is not None
    except re.error:
        return value in name


def boolean(key: str, value: str) -> bool:
    from hawser.errors import InvalidArgument

    lowered = value.lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise InvalidArgument(f"invalid filter '{key}={value}': use true or false")


def row_filters(*, name: str = "Name", labels: str = "Labels", extra: Mapping[str, Predicate] | None = None
                ) -> dict[str, Predicate]:
    """Filters over plain rows (dicts, as a volume's or a network's listing): ``name`` (a regular
    expression in the row's ``name`` field), ``label``, plus ``extra``."""

    def labels_of(row: Mapping[str, Any]) -> Mapping[str, str]:
        value = row.get(labels) or {}
        return value if isinstance(value, dict) else {}

    accept: dict[str, Predicate] = {
        "name": lambda row, v: name_matches(str(row.get(name, "")), v),
        "label": lambda row, v: label_matches(labels_of(row), v),
    }
    accept.update(extra or {})
    return accept


# --- output ----------------------------------------------------------------------


def listing(rows: Sequence[Mapping[str, Any]], *, fmt: str | None, default: str,
            headers: Mapping[str, str], filters: Sequence[str] = (), accept: Mapping[str, Predicate] | None = None,
            quiet: str | None = None) -> str:
    """A list command's output in one call: ``rows`` (each a dict of docker's
    field names for the object, e.g. {"Name": ..., "Driver": ..., "Labels": {...}})
    filtered by ``filters`` (``-f`` values; ``accept``: the keys allowed and
    their tests, default ``row_filters()``), then laid out by ``fmt``
    (``--format``: a Go template, ``table TEMPLATE``, ``json``, None for
    ``default``, itself a ``table ...`` format); ``quiet``: the field printed
    alone for ``-q``.  ``headers``: field name -> column title.  Raises
    InvalidArgument for a bad filter or template."""
    from hawser.cli._template import GoMap, render_rows

    chosen = select(rows, parse_filters(filters), accept if accept is not None else row_filters())
    if quiet is not None:
        return "".join(f"{row.get(quiet, '')}\n" for row in chosen)
    return render(render_rows, fmt or default, [template_row(r) for r in chosen], GoMap(headers))


def template_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row as a template sees it: nested dicts of labels and such are Go maps."""
    from hawser.cli._template import GoMap

    return {k: GoMap(v) if isinstance(v, dict) and not isinstance(v, GoMap) else v for k, v in row.items()}


def render(render_rows: Callable[..., str], fmt: str, rows: Sequence[Any], headers: Any) -> str:
    """``json`` as docker's keyword (``{{json .}}`` per line); template errors as InvalidArgument."""
    from hawser.cli._template import TemplateError
    from hawser.errors import InvalidArgument

    if fmt == "json":
        fmt = "{{json .}}"
    try:
        return str(render_rows(fmt, rows, headers=headers))
    except TemplateError as exc:
        raise InvalidArgument(f"template parsing error: {exc}") from None


def format_one(fmt: str, data: Any) -> str:
    """One object through ``-f/--format`` (inspect's), with a newline; ``json``: its JSON."""
    from hawser.cli._template import TemplateError, render
    from hawser.errors import InvalidArgument

    if fmt == "json":
        fmt = "{{json .}}"
    try:
        return render(fmt, data) + "\n"
    except TemplateError as exc:
        raise InvalidArgument(f"template parsing error: {exc}") from None
