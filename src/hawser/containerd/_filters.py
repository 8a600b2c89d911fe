"""containerd's filter syntax, as its List calls and ``ctr ... ls`` take it.

A request carries filters; an object matches when any one filter matches
(OR), and a filter matches when every selector in it does (AND, comma
separated).  A selector is a field path (``name``, ``labels.app``,
``labels."a.b/c"``), then optionally an operator and a value: ``==``, ``!=``
or ``~=`` (a regular expression, searched).  A bare field path matches when
the field is present and not empty.  Values and path parts may be quoted
with ``"`` (backslash escapes) to hold commas, dots or spaces.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from hawser._dataclass import dataclass
from hawser.errors import InvalidArgument

# The object's value at a field path, or None when it has no such field.
Adaptor = Callable[[Sequence[str]], str | None]


@dataclass(frozen=True, slots=True)
class Selector:
    path: tuple[str, ...]
    op: str  # "" (present), "==", "!=", "~="
    value: str = ""
    pattern: re.Pattern[str] | None = None

    def matches(self, field: Adaptor) -> bool:
        have = field(self.path)
        if self.op == "":
            return bool(have)
        if self.op == "==":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        assert self.pattern is not None
        return have is not None and self.pattern.search(have) is not None


@dataclass(frozen=True, slots=True)
class Filter:
    """Any of the alternatives, each all of its selectors; no alternative: everything."""

    alternatives: tuple[tuple[Selector, ...], ...] = ()

    def matches(self, field: Adaptor) -> bool:
        return not self.alternatives or any(all(s.matches(field) for s in alt) for alt in self.alternatives)


def parse_filters(filters: Sequence[str]) -> Filter:
    """The filter of a List request. InvalidArgument for a malformed one."""
    return Filter(tuple(_parse_one(text) for text in filters if text.strip()))


_TOKEN = re.compile(r'\s*(?:(?P<quoted>"(?:[^"\\]|\\.)*")|(?P<op>==|!=|~=)|(?P<punct>[.,])|(?P<word>[^\s.,="!~]+))')
_VALUE = re.compile(r'\s*(?:(?P<quoted>"(?:[^"\\]|\\.)*")|(?P<bare>[^,]*))')


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def _parse_one(text: str) -> tuple[Selector, ...]:
    selectors: list[Selector] = []
    pos = 0
    while True:
        path: list[str] = []
        while True:
            m = _TOKEN.match(text, pos)
            if m is None or not (m.group("quoted") or m.group("word")):
                raise InvalidArgument(f"invalid filter {text!r}: a field name is expected at {pos}")
            path.append(_unquote(m.group("quoted")) if m.group("quoted") else m.group("word"))
            pos = m.end()
            m = _TOKEN.match(text, pos)
            if m is None or m.group("punct") != ".":
                break
            pos = m.end()
        m = _TOKEN.match(text, pos)
        op, value = "", ""
        if m is not None and m.group("op"):
            op = m.group("op")
            v = _VALUE.match(text, m.end())
            assert v is not None
            value = _unquote(v.group("quoted")) if v.group("quoted") else (v.group("bare") or "").strip()
            pos = v.end()
            m = _TOKEN.match(text, pos)
        pattern = None
        if op == "~=":
            try:
                pattern = re.compile(value)
            except re.error as exc:
                raise InvalidArgument(f"invalid filter {text!r}: bad regular expression {value!r}: {exc}") from None
        selectors.append(Selector(tuple(path), op, value, pattern))
        if m is None or pos >= len(text.rstrip()):
            return tuple(selectors)
        if m.group("punct") != ",":
            raise InvalidArgument(f"invalid filter {text!r}: unexpected {text[pos:].strip()[:20]!r}")
        pos = m.end()


def labels_adaptor(fields: dict[str, str], labels: dict[str, str]) -> Adaptor:
    """An adaptor over plain fields and ``labels.<key>``."""

    def field(path: Sequence[str]) -> str | None:
        if not path:
            return None
        if path[0] == "labels":
            return labels.get(".".join(path[1:])) if len(path) > 1 else None
        return fields.get(".".join(path))

    return field
