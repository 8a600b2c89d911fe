"""WWW-Authenticate parsing (RFC 7235 section 4.1, with RFC 7230 quoted strings).

The grammar is ambiguous enough that naive ``split(",")`` parsers break on
realms that contain commas, on escaped quotes and on headers that carry several
challenges.  This parser walks the header once, never backtracks more than one
token and never raises: a malformed tail is dropped, the challenges parsed
before it are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from hawser._dataclass import dataclass, field

# Registries send a few hundred bytes; anything far bigger is hostile or broken.
MAX_HEADER_CHARS = 16 * 1024

# tchar from RFC 7230 section 3.2.6.
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# token68 from RFC 7235 section 2.1 (without the trailing '=' padding).
_TOKEN68 = frozenset("-._~+/0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_WS = " \t"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One challenge: a lower-cased scheme and its parameters (names lower-cased)."""

    scheme: str
    params: Mapping[str, str] = field(default_factory=dict)
    token68: str = ""

    def get(self, name: str) -> str:
        return self.params.get(name, "")


class _Scanner:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def skip_ws_and_commas(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in " \t,":
            self.pos += 1

    def token(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] in _TCHAR:
            self.pos += 1
        return self.text[start:self.pos]

    def bare_value(self) -> str:
        """An unquoted value.  RFC 7235 allows only a token, but registries
        have been seen sending bare URLs (``realm=https://...``), so anything
        up to whitespace, a comma or a quote is taken."""
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in ' \t,"' and self.text[self.pos].isprintable():
            self.pos += 1
        return self.text[start:self.pos]

    def quoted(self) -> str | None:
        """A quoted-string starting at '"'; None if it is not terminated."""
        assert self.peek() == '"'
        self.pos += 1
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\":
                # quoted-pair: the next character stands for itself.
                if self.pos + 1 >= len(self.text):
                    return None
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if ch == '"':
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        return None


def _param(sc: _Scanner) -> tuple[str, str] | None:
    """``token BWS "=" BWS ( token / quoted-string )`` at the cursor, or None
    (cursor unchanged) when what follows is not an auth-param."""
    start = sc.pos
    name = sc.token()
    if not name:
        return None
    sc.skip_ws()
    if sc.peek() != "=":
        sc.pos = start
        return None
    sc.pos += 1
    sc.skip_ws()
    if sc.peek() == '"':
        value = sc.quoted()
        if value is None:
            sc.pos = start
            return None
    else:
        value = sc.bare_value()
        if not value or value.startswith("="):
            # "realm=" with nothing after it, or token68 padding: not a param.
            sc.pos = start
            return None
    return name.lower(), value


def _token68(sc: _Scanner) -> str:
    start = sc.pos
    while sc.pos < len(sc.text) and sc.text[sc.pos] in _TOKEN68:
        sc.pos += 1
    if sc.pos == start:
        return ""
    while sc.pos < len(sc.text) and sc.text[sc.pos] == "=":
        sc.pos += 1
    end = sc.pos
    sc.skip_ws()
    if not sc.at_end() and sc.peek() != ",":
        sc.pos = start
        return ""
    return sc.text[start:end]


def _parse_one(text: str, out: list[Challenge]) -> None:
    sc = _Scanner(text)
    while True:
        sc.skip_ws_and_commas()
        if sc.at_end():
            return
        scheme = sc.token()
        if not scheme or (not sc.at_end() and sc.peek() not in " \t,"):
            # Garbage where a scheme should be (or "name=" with no scheme
            # before it): nothing after it can be trusted.
            return
        params: dict[str, str] = {}
        token68 = ""
        sc.skip_ws()
        first = _param(sc)
        if first is not None:
            params.setdefault(*first)
            while True:
                mark = sc.pos
                sc.skip_ws_and_commas()
                nxt = _param(sc)
                if nxt is None:
                    # Not "name=value": the next challenge, or the end.
                    sc.pos = mark
                    break
                # RFC 7235: a parameter occurs once per challenge; keep the
                # first, as a later duplicate is the likelier injection.
                params.setdefault(*nxt)
        else:
            token68 = _token68(sc)
        out.append(Challenge(scheme=scheme.lower(), params=params, token68=token68))


def parse_www_authenticate(values: str | Iterable[str]) -> list[Challenge]:
    """Every challenge in one or more WWW-Authenticate header values, in order.

    Never raises; malformed parts are skipped.  Scheme and parameter names are
    lower-cased (they are case-insensitive); values keep their case.
    """
    if isinstance(values, str):
        values = [values]
    out: list[Challenge] = []
    budget = MAX_HEADER_CHARS
    for value in values:
        if budget <= 0:
            break
        value = value[:budget]
        budget -= len(value)
        _parse_one(value, out)
    return out


def pick_challenge(challenges: Iterable[Challenge]) -> Challenge | None:
    """The challenge to answer: Bearer if offered, else Basic, else None."""
    basic: Challenge | None = None
    for ch in challenges:
        if ch.scheme == "bearer" and ch.get("realm"):
            return ch
        if ch.scheme == "basic" and basic is None:
            basic = ch
    return basic
