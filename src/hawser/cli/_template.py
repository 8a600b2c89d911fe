"""Go's text/template, as docker's ``--format`` runs it: a lexer, a parser to a
tree, and an evaluator with text/template's built-in functions and docker's
own (``json``, ``join``, ``split``, ``lower``, ``upper``, ``title``, ``pad``,
``truncate``).

Values are Python's: a ``dict`` stands for a Go struct (an unknown field is an
error, printed ``{v1 v2}``), a ``GoMap`` for a Go map (a missing key is
``<no value>``, printed ``map[k:v]``), lists for slices.  A callable field is
a method (``{{.Label "k"}}``).  ``define``/``template``/``block`` are refused.

``render(format, data)`` and ``Template(format).execute(data)``; ``render_rows``
lays out docker's ``table`` formats with a header row and tab-aligned columns.
"""

from __future__ import annotations

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from typing import Any


class TemplateError(Exception):
    """A template that does not parse, or fails on the data it is given."""


class GoMap(dict):  # type: ignore[type-arg]
    """A Go map: a missing key is ``<no value>``, not an error; printed and
    ranged over in key order."""


class _Missing:
    def __repr__(self) -> str:
        return "<no value>"


MISSING: Any = _Missing()


# --- lexer -----------------------------------------------------------------------

_SPACE = " \t\r\n"


class _Tok:
    __slots__ = ("kind", "pos", "value")

    def __init__(self, kind: str, value: Any, pos: int) -> None:
        self.kind, self.value, self.pos = kind, value, pos

    def __repr__(self) -> str:
        return f"{self.kind}:{self.value!r}"


def _line_col(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1)
    return f"{line}:{col}"


def _segments(text: str) -> list[tuple[str, str, int]]:
    """Split into ("text", s, pos) and ("action", body, pos), trim markers applied."""
    out: list[tuple[str, str, int]] = []
    i = 0
    trim_next = False
    while True:
        start = text.find("{{", i)
        chunk = text[i:] if start < 0 else text[i:start]
        if trim_next:
            chunk = chunk.lstrip(_SPACE)
        if start < 0:
            if chunk:
                out.append(("text", chunk, i))
            return out
        body_start = start + 2
        trim_left = text.startswith("- ", body_start) or text.startswith(("-\t", "-\n", "-\r"), body_start)
        if trim_left:
            chunk = chunk.rstrip(_SPACE)
            body_start += 1
        if chunk:
            out.append(("text", chunk, i))
        # Find the closing }}, skipping strings and comments.
        j = body_start
        while True:
            if j >= len(text):
                raise TemplateError(f"template: :{_line_col(text, start)}: unclosed action")
            c = text[j]
            if text.startswith("/*", j):
                end = text.find("*/", j + 2)
                if end < 0:
                    raise TemplateError(f"template: :{_line_col(text, j)}: unclosed comment")
                j = end + 2
                continue
            if c in "\"'`":
                j = _skip_quoted(text, j)
                continue
            if text.startswith("}}", j):
                break
            j += 1
        body_end = j
        trim_next = False
        if body_end - 2 >= body_start and text[body_end - 1] == "-" and text[body_end - 2] in _SPACE:
            trim_next = True
            body_end -= 1
        out.append(("action", text[body_start:body_end], body_start))
        i = j + 2


def _skip_quoted(text: str, j: int) -> int:
    quote = text[j]
    k = j + 1
    while k < len(text):
        if text[k] == "\\" and quote != "`":
            k += 2
            continue
        if text[k] == quote:
            return k + 1
        if text[k] == "\n" and quote != "`":
            break
        k += 1
    raise TemplateError(f"template: :{_line_col(text, j)}: unterminated quoted string")


_IDENT_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"


def _lex_action(body: str, base: int, source: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        pos = base + i
        if c in _SPACE:
            i += 1
            continue
        if body.startswith("/*", i):
            end = body.find("*/", i + 2)
            i = end + 2
            continue
        if c in "|(),":
            toks.append(_Tok(c, c, pos))
            i += 1
            continue
        if body.startswith(":=", i):
            toks.append(_Tok(":=", ":=", pos))
            i += 2
            continue
        if c == "=":
            toks.append(_Tok("=", "=", pos))
            i += 1
            continue
        if c in "\"`":
            end = _skip_quoted(body, i)
            raw = body[i:end]
            toks.append(_Tok("lit", _unquote(raw, source, pos), pos))
            i = end
            continue
        if c == "'":
            end = _skip_quoted(body, i)
            s = _unquote('"' + body[i + 1:end - 1].replace('"', '\\"') + '"', source, pos)
            if len(s) != 1:
                raise TemplateError(f"template: :{_line_col(source, pos)}: malformed character constant")
            toks.append(_Tok("lit", ord(s), pos))
            i = end
            continue
        if c == "." and (i + 1 >= n or body[i + 1] not in _IDENT_CHARS or body[i + 1].isdigit()):
            if i + 1 < n and body[i + 1].isdigit():
                j = _number_end(body, i)
                toks.append(_Tok("lit", _number(body[i:j], source, pos), pos))
                i = j
                continue
            toks.append(_Tok("dot", ".", pos))
            i += 1
            continue
        if c == ".":
            j = i + 1
            while j < n and body[j] in _IDENT_CHARS:
                j += 1
            toks.append(_Tok("field", body[i + 1:j], pos))
            i = j
            continue
        if c == "$":
            j = i + 1
            while j < n and body[j] in _IDENT_CHARS:
                j += 1
            toks.append(_Tok("var", body[i:j], pos))
            i = j
            continue
        if c.isdigit() or (c in "+-" and i + 1 < n and (body[i + 1].isdigit() or body[i + 1] == ".")):
            j = _number_end(body, i)
            toks.append(_Tok("lit", _number(body[i:j], source, pos), pos))
            i = j
            continue
        if c in _IDENT_CHARS:
            j = i
            while j < n and body[j] in _IDENT_CHARS:
                j += 1
            word = body[i:j]
            if word in ("true", "false"):
                toks.append(_Tok("lit", word == "true", pos))
            elif word == "nil":
                toks.append(_Tok("nil", None, pos))
            else:
                toks.append(_Tok("ident", word, pos))
            i = j
            continue
        raise TemplateError(f"template: :{_line_col(source, pos)}: unexpected {c!r} in command")
    return toks


def _number_end(body: str, i: int) -> int:
    j = i + 1
    while j < len(body) and (body[j] in _IDENT_CHARS or body[j] == "." or
                             (body[j] in "+-" and body[j - 1] in "eEpP" and not body[i:j].lower().startswith(
                                 ("0x", "-0x", "+0x")))):
        j += 1
    return j


def _number(text: str, source: str, pos: int) -> int | float:
    clean = text.replace("_", "")
    try:
        if any(c in clean for c in ".eE") and not clean.lower().lstrip("+-").startswith("0x"):
            return float(clean)
        return int(clean, 0)
    except ValueError:
        raise TemplateError(f"template: :{_line_col(source, pos)}: bad number syntax: {text!r}") from None


def _unquote(raw: str, source: str, pos: int) -> str:
    if raw[0] == "`":
        return raw[1:-1]
    import json

    try:
        value: str = json.loads(raw.replace("\\'", "'").replace("\\a", "\\u0007").replace("\\v", "\\u000b"))
    except ValueError:
        raise TemplateError(f"template: :{_line_col(source, pos)}: bad quoted string {raw}") from None
    return value


# --- parse tree ------------------------------------------------------------------


class _Node:
    __slots__ = ("pos",)


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _Pipe(_Node):
    """``$x := cmd | cmd``: declared (or assigned) variables and the commands."""

    __slots__ = ("assign", "cmds", "names", "source")

    def __init__(self, names: list[str], assign: bool, cmds: list[list[Any]], source: str) -> None:
        self.names, self.assign, self.cmds, self.source = names, assign, cmds, source


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pipe: _Pipe) -> None:
        self.pipe = pipe


class _Branch(_Node):
    """if, range, with: the pipe, its list and the else list."""

    __slots__ = ("body", "kind", "orelse", "pipe")

    def __init__(self, kind: str, pipe: _Pipe, body: list[_Node], orelse: list[_Node]) -> None:
        self.kind, self.pipe, self.body, self.orelse = kind, pipe, body, orelse


class _Jump(_Node):
    __slots__ = ("kind",)

    def __init__(self, kind: str) -> None:
        self.kind = kind


# Operands of a command: ("field", chain), ("var", name, chain), ("dot",), ("lit", value),
# ("ident", name), ("nil",), ("pipe", _Pipe, chain).


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.segments = _segments(source)
        self.i = 0
        self.range_depth = 0

    def error(self, pos: int, message: str) -> TemplateError:
        return TemplateError(f"template: :{_line_col(self.source, pos)}: {message}")

    def parse(self) -> list[_Node]:
        nodes, end = self.list_until(())
        if end is not None:
            raise self.error(end[1], f"unexpected {{{{{end[0]}}}}}")
        return nodes

    def list_until(self, stops: tuple[str, ...]) -> tuple[list[_Node], tuple[str, int, list[_Tok]] | None]:
        """Nodes up to one of ``stops`` (end, else); returns them and the stop met."""
        nodes: list[_Node] = []
        while self.i < len(self.segments):
            kind, body, pos = self.segments[self.i]
            self.i += 1
            if kind == "text":
                nodes.append(_Text(body))
                continue
            toks = _lex_action(body, pos, self.source)
            if not toks:
                if body.strip(_SPACE).startswith("/*"):
                    continue  # a comment
                raise self.error(pos, "missing value for command")
            head = toks[0]
            if head.kind == "ident" and head.value in ("end", "else"):
                if head.value not in stops:
                    raise self.error(head.pos, f"unexpected {{{{{head.value}}}}}")
                return nodes, (head.value, head.pos, toks[1:])
            if head.kind == "ident" and head.value in ("if", "range", "with"):
                nodes.append(self.branch(head.value, toks[1:], head.pos))
                continue
            if head.kind == "ident" and head.value in ("break", "continue"):
                if self.range_depth == 0:
                    raise self.error(head.pos, f"{{{{{head.value}}}}} outside {{{{range}}}}")
                nodes.append(_Jump(head.value))
                continue
            if head.kind == "ident" and head.value in ("define", "template", "block"):
                raise self.error(head.pos, f"{{{{{head.value}}}}} is not supported in --format")
            nodes.append(_Action(self.pipeline(toks, pos, declare=True)))
        if stops:
            raise TemplateError(f"template: :{_line_col(self.source, len(self.source))}: unexpected EOF")
        return nodes, None

    def branch(self, kind: str, toks: list[_Tok], pos: int) -> _Branch:
        pipe = self.pipeline(toks, pos, declare=True, range_=kind == "range")
        if kind == "range":
            self.range_depth += 1
        body, stop = self.list_until(("end", "else"))
        if kind == "range":
            self.range_depth -= 1
        assert stop is not None
        orelse: list[_Node] = []
        if stop[0] == "else":
            rest = stop[2]
            if rest and rest[0].kind == "ident" and rest[0].value in ("if", "with") and kind in ("if", "with"):
                # {{else if x}}: an if inside the else, sharing its {{end}}
                orelse = [self.branch(rest[0].value, rest[1:], rest[0].pos)]
                return _Branch(kind, pipe, body, orelse)
            if rest:
                raise self.error(rest[0].pos, "unexpected tokens after {{else}}")
            orelse, stop = self.list_until(("end",))
            assert stop is not None
        if stop[2]:
            raise self.error(stop[2][0].pos, "unexpected tokens after {{end}}")
        return _Branch(kind, pipe, body, orelse)

    def pipeline(self, toks: list[_Tok], pos: int, *, declare: bool, range_: bool = False) -> _Pipe:
        names: list[str] = []
        assign = False
        # $x := ..., $i, $e := ... (range only), $x = ...
        if declare and toks and toks[0].kind == "var":
            if len(toks) > 1 and toks[1].kind in (":=", "="):
                names, assign, toks = [toks[0].value], toks[1].kind == "=", toks[2:]
            elif range_ and len(toks) > 3 and toks[1].kind == "," and toks[2].kind == "var" and \
                    toks[3].kind in (":=", "="):
                names, assign, toks = [toks[0].value, toks[2].value], toks[3].kind == "=", toks[4:]
        cmds: list[list[Any]] = []
        cmd: list[Any] = []
        k = 0
        while k < len(toks):
            t = toks[k]
            if t.kind == "|":
                if not cmd:
                    raise self.error(t.pos, "missing command before '|'")
                cmds.append(cmd)
                cmd = []
                k += 1
                continue
            operand, k = self.operand(toks, k)
            cmd.append(operand)
        if cmd:
            cmds.append(cmd)
        elif cmds:
            raise self.error(pos, "missing command after '|'")
        if not cmds:
            raise self.error(pos, "missing value for command")
        return _Pipe(names, assign, cmds, self.source[pos:pos + 60].split("}}")[0].strip())

    def operand(self, toks: list[_Tok], k: int) -> tuple[Any, int]:
        t = toks[k]
        if t.kind == "(":
            depth, j = 1, k + 1
            while j < len(toks) and depth:
                depth += {"(": 1, ")": -1}.get(toks[j].kind, 0)
                j += 1
            if depth:
                raise self.error(t.pos, "unclosed left paren")
            inner = self.pipeline(toks[k + 1:j - 1], t.pos, declare=False)
            chain, j = self.chain(toks, j)
            return ("pipe", inner, chain), j
        if t.kind == "field":
            chain, j = self.chain(toks, k + 1)
            return ("field", [t.value, *chain]), j
        if t.kind == "var":
            chain, j = self.chain(toks, k + 1)
            return ("var", t.value, chain), j
        if t.kind == "dot":
            return ("dot",), k + 1
        if t.kind == "lit":
            return ("lit", t.value), k + 1
        if t.kind == "nil":
            return ("nil",), k + 1
        if t.kind == "ident":
            if t.value not in FUNCTIONS:
                raise self.error(t.pos, f'function "{t.value}" not defined')
            return ("ident", t.value), k + 1
        raise self.error(t.pos, f"unexpected {t.value!r} in operand")

    def chain(self, toks: list[_Tok], k: int) -> tuple[list[str], int]:
        """Fields right after an operand with no space between: ``$x.A.B``, ``(pipe).A``."""
        chain: list[str] = []
        while k < len(toks) and toks[k].kind == "field" and toks[k].pos == toks[k - 1].pos + _width(toks[k - 1]):
            chain.append(toks[k].value)
            k += 1
        return chain, k


def _width(tok: _Tok) -> int:
    if tok.kind == "field":
        return len(tok.value) + 1
    if tok.kind == "var":
        return len(tok.value)
    return 1  # ")"


# --- printing values as Go's fmt does ---------------------------------------------


def go_str(value: Any) -> str:
    """``%v`` of a value."""
    if value is MISSING:
        return "<no value>"
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, GoMap):
        return "map[" + " ".join(f"{go_str(k)}:{go_str(v)}" for k, v in sorted(value.items()) if not callable(v)) + "]"
    if isinstance(value, dict):
        return "{" + " ".join(go_str(v) for v in value.values() if not callable(v)) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_str(v) for v in value) + "]"
    return str(value)


def truth(value: Any) -> bool:
    """text/template's truth: false, 0, nil and empty values are false; a struct is true."""
    if value is None or value is MISSING:
        return False
    if isinstance(value, GoMap):
        return bool(value)
    if isinstance(value, dict):
        return True
    return bool(value)


def _json(value: Any) -> str:
    import json

    return json.dumps(_plain(value), ensure_ascii=False, separators=(",", ":"))


def _plain(value: Any) -> Any:
    if value is MISSING:
        return None
    # methods (callable fields such as ps's Label) are not data: left out, as Go's json leaves them
    if isinstance(value, GoMap):
        return {str(k): _plain(v) for k, v in sorted(value.items()) if not callable(v)}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if not callable(v)}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if callable(value):
        return None
    return value


def _printf(fmt: str, *args: Any) -> str:
    out: list[str] = []
    i = n = 0
    while i < len(fmt):
        c = fmt[i]
        if c != "%":
            out.append(c)
            i += 1
            continue
        j = i + 1
        while j < len(fmt) and fmt[j] in "+-# 0":
            j += 1
        while j < len(fmt) and (fmt[j].isdigit() or fmt[j] == "."):
            j += 1
        if j >= len(fmt):
            out.append("%!(NOVERB)")
            break
        spec, verb = fmt[i + 1:j], fmt[j]
        i = j + 1
        if verb == "%":
            out.append("%")
            continue
        if n >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        arg = args[n]
        n += 1
        out.append(_format_one(spec, verb, arg))
    if n < len(args):
        out.append("%!(EXTRA " + ", ".join(f"{type(a).__name__}={go_str(a)}" for a in args[n:]) + ")")
    return "".join(out)


def _format_one(spec: str, verb: str, arg: Any) -> str:
    try:
        if verb in "vs":
            return format(go_str(arg), _pad_spec(spec))
        if verb == "q":
            import json

            return format(json.dumps(go_str(arg), ensure_ascii=False), _pad_spec(spec))
        if verb == "t" and isinstance(arg, bool):
            return format(go_str(arg), _pad_spec(spec))
        if verb in "dxXob" and isinstance(arg, int) and not isinstance(arg, bool):
            return format(arg, _num_spec(spec) + ("" if verb == "d" else verb))
        if verb in "feEgG" and isinstance(arg, (int, float)) and not isinstance(arg, bool):
            return format(float(arg), _num_spec(spec) + verb)
        if verb in "xX" and isinstance(arg, str):
            return format(arg.encode().hex() if verb == "x" else arg.encode().hex().upper(), _pad_spec(spec))
    except ValueError:
        pass
    return f"%!{verb}({type(arg).__name__}={go_str(arg)})"


def _pad_spec(spec: str) -> str:
    """Go's ``%-10s`` / ``%10s`` as Python's format spec (strings pad right-aligned by default in Go)."""
    left = "-" in spec
    digits = spec.lstrip("+-# 0")
    width, _, precision = digits.partition(".")
    return ("<" if left else ">") + width + (f".{precision}" if precision else "")


def _num_spec(spec: str) -> str:
    left = "-" in spec
    zero = spec.lstrip("+- #").startswith("0") and not left
    digits = spec.lstrip("+-# 0")
    sign = "+" if "+" in spec else ""
    return ("<" if left else "") + sign + ("0" if zero else "") + digits


# --- functions ---------------------------------------------------------------------


def _index(item: Any, *keys: Any) -> Any:
    for key in keys:
        if isinstance(item, dict):
            item = item.get(key, MISSING)
        elif isinstance(item, (list, tuple, str)):
            if not isinstance(key, int) or not 0 <= key < len(item):
                raise TemplateError(f"error calling index: index out of range: {go_str(key)}")
            item = item[key]
        elif item is None or item is MISSING:
            raise TemplateError("error calling index: index of untyped nil")
        else:
            raise TemplateError(f"error calling index: can't index item of type {type(item).__name__}")
    return item


def _slice(item: Any, *bounds: int) -> Any:
    if len(bounds) > 2:
        raise TemplateError("error calling slice: too many slice indexes")
    return item[bounds[0]:bounds[1] if len(bounds) > 1 else None] if bounds else item


def _len(item: Any) -> int:
    try:
        return len(item)
    except TypeError:
        raise TemplateError(f"error calling len: len of type {type(item).__name__}") from None


def _sprint(*args: Any) -> str:
    """Go's Sprint: a space between operands when neither is a string."""
    out = ""
    for k, a in enumerate(args):
        if k and not isinstance(a, str) and not isinstance(args[k - 1], str):
            out += " "
        out += go_str(a)
    return out


def _compare(op: str) -> Callable[..., bool]:
    import operator

    fn = {"lt": operator.lt, "le": operator.le, "gt": operator.gt, "ge": operator.ge}[op]

    def compare(a: Any, b: Any) -> bool:
        if isinstance(a, bool) or isinstance(b, bool) or \
                isinstance(a, str) != isinstance(b, str) or not isinstance(a, (int, float, str)):
            raise TemplateError(f"error calling {op}: incompatible types for comparison")
        return bool(fn(a, b))

    return compare


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise TemplateError("error calling eq: missing argument for comparison")
    return any(_plain(a) == _plain(b) for b in others)


def _truncate(s: str, n: int) -> str:
    return s[:n] if len(s) > n else s


def _split(s: str, sep: str) -> list[str]:
    return list(s) if sep == "" else s.split(sep)


def _join(items: Sequence[Any], sep: str) -> str:
    return sep.join(go_str(i) for i in items)


def _title(s: str) -> str:
    import re

    return re.sub(r"(^|[^\w])(\w)", lambda m: m.group(1) + m.group(2).upper(), s)


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_sprint(*args))


def _html(*args: Any) -> str:
    import html

    return html.escape(_sprint(*args)).replace("&#x27;", "&#39;")


def _js(*args: Any) -> str:
    import json

    return json.dumps(_sprint(*args))[1:-1].replace("'", "\\'").replace("<", "\\u003C").replace(">", "\\u003E")


FUNCTIONS: dict[str, Callable[..., Any]] = {
    # text/template's own
    "not": lambda a: not truth(a),
    "len": _len, "index": _index, "slice": _slice,
    "print": _sprint, "printf": _printf,
    "println": lambda *a: " ".join(go_str(x) for x in a) + "\n",
    "eq": _eq, "ne": lambda a, b: not _eq(a, b),
    "lt": _compare("lt"), "le": _compare("le"), "gt": _compare("gt"), "ge": _compare("ge"),
    "html": _html, "js": _js, "urlquery": _urlquery,
    "and": lambda *a: a[-1], "or": lambda *a: a[-1],  # evaluated lazily in _call
    # docker's (cli/templates/templates.go)
    "json": _json, "split": _split, "join": _join, "title": _title,
    "lower": lambda s: go_str(s).lower(), "upper": lambda s: go_str(s).upper(),
    "pad": lambda s, before, after: " " * before + go_str(s) + " " * after,
    "truncate": _truncate,
}


# --- evaluation --------------------------------------------------------------------


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


class Template:
    """A parsed template; ``execute(data)`` renders it. TemplateError at parse or execution."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tree = _Parser(text).parse()

    def execute(self, data: Any) -> str:
        out: list[str] = []
        variables: list[tuple[str, Any]] = [("$", data)]
        self._walk(self.tree, data, variables, out)
        return "".join(out)

    def _walk(self, nodes: list[_Node], dot: Any, variables: list[tuple[str, Any]], out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                value = self._pipe(node.pipe, dot, variables)
                if not node.pipe.names:  # a declaration prints nothing
                    out.append(go_str(value))
            elif isinstance(node, _Branch):
                self._branch(node, dot, variables, out)
            elif isinstance(node, _Jump):
                raise _Break() if node.kind == "break" else _Continue()

    def _branch(self, node: _Branch, dot: Any, variables: list[tuple[str, Any]], out: list[str]) -> None:
        mark = len(variables)
        try:
            if node.kind == "range":
                self._range(node, dot, variables, out)
                return
            value = self._pipe(node.pipe, dot, variables)
            if truth(value):
                self._walk(node.body, value if node.kind == "with" else dot, variables, out)
            else:
                del variables[mark:]
                self._walk(node.orelse, dot, variables, out)
        finally:
            del variables[mark:]

    def _range(self, node: _Branch, dot: Any, variables: list[tuple[str, Any]], out: list[str]) -> None:
        pipe = node.pipe
        value = self._pipe(_Pipe([], False, pipe.cmds, pipe.source), dot, variables)
        if value is None or value is MISSING:
            items: list[tuple[Any, Any]] = []
        elif isinstance(value, GoMap):
            items = sorted(value.items())
        elif isinstance(value, (list, tuple)):
            items = list(enumerate(value))
        elif isinstance(value, int) and not isinstance(value, bool):
            items = [(i, i) for i in range(value)]
        else:
            raise TemplateError(f"template: :{pipe.source}: range can't iterate over {go_str(value)}")
        if not items:
            self._walk(node.orelse, dot, variables, out)
            return
        mark = len(variables)
        for key, item in items:
            del variables[mark:]
            if len(pipe.names) == 1:
                variables.append((pipe.names[0], item))
            elif len(pipe.names) == 2:
                variables.extend(((pipe.names[0], key), (pipe.names[1], item)))
            try:
                self._walk(node.body, item, variables, out)
            except _Break:
                break
            except _Continue:
                continue

    def _pipe(self, pipe: _Pipe, dot: Any, variables: list[tuple[str, Any]]) -> Any:
        value: Any = MISSING
        final = False
        for cmd in pipe.cmds:
            value = self._command(cmd, dot, variables, value if final else _NOTHING, pipe)
            final = True
        for name in pipe.names[:1]:
            if pipe.assign:
                for k in range(len(variables) - 1, -1, -1):
                    if variables[k][0] == name:
                        variables[k] = (name, value)
                        break
                else:
                    raise TemplateError(f"template: undefined variable: {name}")
            else:
                variables.append((name, value))
        return value

    def _command(self, cmd: list[Any], dot: Any, variables: list[tuple[str, Any]], final: Any,
                 pipe: _Pipe) -> Any:
        head = cmd[0]
        where = f'executing "" at <{pipe.source}>'
        try:
            if head[0] == "ident":
                name = head[1]
                if name in ("and", "or"):
                    args = cmd[1:]
                    if not args and final is _NOTHING:
                        raise TemplateError(f"wrong number of args for {name}: want at least 1 got 0")
                    result: Any = MISSING
                    for a in args:
                        result = self._arg(a, dot, variables)
                        if truth(result) != (name == "and"):
                            return result
                    return final if final is not _NOTHING else result
                args = [self._arg(a, dot, variables) for a in cmd[1:]]
                if final is not _NOTHING:
                    args.append(final)
                try:
                    return FUNCTIONS[name](*args)
                except TypeError as exc:
                    raise TemplateError(f"wrong number of args for {name}: {exc}") from None
                except (AttributeError, ValueError) as exc:
                    raise TemplateError(f"error calling {name}: {exc}") from None
            args = [self._arg(a, dot, variables) for a in cmd[1:]]
            if final is not _NOTHING:
                args.append(final)
            value = self._arg(head, dot, variables, call_args=args)
            return value
        except TemplateError as exc:
            if str(exc).startswith("template:"):
                raise
            raise TemplateError(f"template: {where}: {exc}") from None

    def _arg(self, operand: Any, dot: Any, variables: list[tuple[str, Any]], call_args: list[Any] | None = None
             ) -> Any:
        kind = operand[0]
        if kind == "lit":
            value = operand[1]
        elif kind == "nil":
            value = None
        elif kind == "dot":
            value = dot
        elif kind == "ident":
            value = FUNCTIONS[operand[1]]()  # a niladic function as an argument
        elif kind == "field":
            return self._fields(dot, operand[1], call_args)
        elif kind == "var":
            for name, v in reversed(variables):
                if name == operand[1]:
                    return self._fields(v, operand[2], call_args) if operand[2] else self._no_args(v, call_args)
            raise TemplateError(f"undefined variable: {operand[1]}")
        elif kind == "pipe":
            value = self._pipe(operand[1], dot, variables)
            if operand[2]:
                return self._fields(value, operand[2], call_args)
        else:
            raise TemplateError(f"bad operand {operand!r}")
        return self._no_args(value, call_args)

    @staticmethod
    def _no_args(value: Any, call_args: list[Any] | None) -> Any:
        if call_args:
            raise TemplateError(f"can't give argument to non-function {go_str(value)}")
        return value

    @staticmethod
    def _fields(value: Any, chain: Sequence[str], call_args: list[Any] | None) -> Any:
        for k, name in enumerate(chain):
            last = k == len(chain) - 1
            if value is None or value is MISSING:
                raise TemplateError(f"nil pointer evaluating {name}")
            if isinstance(value, GoMap):
                value = value.get(name, MISSING)
            elif isinstance(value, dict):
                if name not in value:
                    raise TemplateError(f"can't evaluate field {name}")
                value = value[name]
            else:
                raise TemplateError(f"can't evaluate field {name} in type {_go_type(value)}")
            if callable(value):
                value = value(*(call_args or ())) if last else value()
                if last:
                    return value
        if call_args:
            raise TemplateError(f"{chain[-1]} is not a method but has arguments")
        return value


_NOTHING: Any = object()


def _go_type(value: Any) -> str:
    return {str: "string", int: "int", float: "float64", bool: "bool", list: "[]interface {}"}.get(
        type(value), type(value).__name__)


# --- docker's formats ---------------------------------------------------------------


def is_table(fmt: str) -> bool:
    return fmt == "table" or fmt.startswith("table ")


def prepare(fmt: str) -> str:
    """docker's preFormat: ``table `` dropped, spaces trimmed, ``\\t`` and ``\\n`` made real."""
    if is_table(fmt):
        fmt = fmt[len("table"):]
    return fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")


def render_rows(fmt: str, rows: Iterable[Any], *, headers: Any = None) -> str:
    """Each row through the template, one per line; a ``table`` format gets a
    header row (the template run on ``headers``: field name -> column title)
    and columns aligned as docker's tabwriter does (min width 10, padding 3)."""
    template = Template(prepare(fmt))
    lines = [template.execute(row) for row in rows]
    if not is_table(fmt):
        return "".join(line + "\n" for line in lines)
    header = template.execute(headers if headers is not None else GoMap())
    return tabulate([header, *lines])


def tabulate(lines: Sequence[str], *, minwidth: int = 10, padding: int = 3) -> str:
    """Go's tabwriter (minwidth 10, tabwidth 1, padding 3, blanks): a cell ended by a tab is padded to
    its column's width; the last cell of a line is not.  Columns are aligned over consecutive lines."""
    table = [[cell.split("\t") for cell in line.split("\n")] for line in lines]
    rows = [cells for block in table for cells in block]
    out: list[str] = []
    # A column is aligned over a run of consecutive rows that have a tab-ended cell in it.
    widths: list[list[int]] = [[0] * max(len(r) - 1, 0) for r in rows]
    for col in range(max((len(r) for r in rows), default=0)):
        start = 0
        while start < len(rows):
            if len(rows[start]) - 1 <= col:
                start += 1
                continue
            end = start
            while end < len(rows) and len(rows[end]) - 1 > col:
                end += 1
            width = max(len(rows[r][col]) for r in range(start, end)) + padding
            width = max(width, minwidth)
            for r in range(start, end):
                widths[r][col] = width
            start = end
    for r, cells in enumerate(rows):
        text = "".join(cell.ljust(widths[r][c]) for c, cell in enumerate(cells[:-1])) + cells[-1]
        out.append(text)
    return "".join(line + "\n" for line in out)


def render(fmt: str, data: Any) -> str:
    """One object through a format (inspect's ``-f``)."""
    return Template(prepare(fmt)).execute(data)
