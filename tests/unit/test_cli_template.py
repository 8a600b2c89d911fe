"""The Go template engine of ``--format`` (hawser.cli._template) and the
shared filters of the listings (hawser.cli._filters)."""

from __future__ import annotations

from typing import Any

import pytest

from hawser.cli._filters import format_one, label_matches, listing, name_matches, parse_filters, row_filters, select
from hawser.cli._template import GoMap, Template, TemplateError, go_str, render, render_rows, tabulate
from hawser.errors import InvalidArgument

DATA: dict[str, Any] = {
    "ID": "abc", "Names": "web", "Count": 3, "Zero": 0, "Empty": "", "Nil": None, "Flag": True,
    "State": {"Status": "running", "Running": True, "ExitCode": 0},
    "Config": {"Labels": GoMap({"k": "v", "a": "b"}), "Env": ["A=1", "B=2"], "Cmd": ["sh", "-c", "x"]},
    "Label": lambda key: {"k": "v"}.get(key, ""),
}


@pytest.mark.parametrize(("template", "expected"), [
    ("{{.ID}}", "abc"),
    ("plain text", "plain text"),
    ("{{.State.Status}}", "running"),
    ("{{ .State.Running }}", "true"),
    ("{{.Count}}", "3"),
    ("{{json .State}}", '{"Status":"running","Running":true,"ExitCode":0}'),
    ("{{json .Config.Labels}}", '{"a":"b","k":"v"}'),
    ("{{json .Config.Cmd}}", '["sh","-c","x"]'),
    ('{{index .Config.Labels "k"}}', "v"),
    ('{{index .Config.Labels "nosuch"}}', "<no value>"),
    ("{{.Config.Labels.k}}", "v"),
    ("{{.Config.Labels.nosuch}}", "<no value>"),
    ("{{index .Config.Env 1}}", "B=2"),
    ("{{.Config.Labels}}", "map[a:b k:v]"),
    ("{{.Config.Env}}", "[A=1 B=2]"),
    ("{{.State}}", "{running true 0}"),
    ("{{.Nil}}", "<nil>"),
    ("{{range .Config.Env}}[{{.}}]{{end}}", "[A=1][B=2]"),
    ("{{range $i, $e := .Config.Env}}{{$i}}:{{$e}} {{end}}", "0:A=1 1:B=2 "),
    ("{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}", "a=b;k=v;"),
    ("{{range .Nil}}x{{else}}none{{end}}", "none"),
    ("{{range .Config.Env}}{{if eq . \"B=2\"}}{{break}}{{end}}{{.}}{{end}}", "A=1"),
    ("{{range .Config.Env}}{{if eq . \"A=1\"}}{{continue}}{{end}}{{.}}{{end}}", "B=2"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .Zero}}a{{else if .Empty}}b{{else if .Flag}}c{{end}}", "c"),
    ("{{if not .Empty}}empty{{end}}", "empty"),
    ("{{if and .ID .Zero}}y{{else}}n{{end}}", "n"),
    ("{{or .Empty .Zero .ID}}", "abc"),
    ("{{and .ID .Count}}", "3"),
    ("{{with .State}}{{.Status}}{{end}}", "running"),
    ("{{with .Empty}}x{{else}}nothing{{end}}", "nothing"),
    ("{{$x := .ID}}{{$x}}-{{$x | upper}}", "abc-ABC"),
    ("{{$x := 1}}{{if .Flag}}{{$x = 2}}{{end}}{{$x}}", "2"),
    ("{{range .Config.Env}}{{$.ID}}{{end}}", "abcabc"),
    ("{{.ID | upper | lower}}", "abc"),
    ("{{upper .Names}}", "WEB"),
    ('{{join .Config.Env ","}}', "A=1,B=2"),
    ('{{split "a,b,c" ","}}', "[a b c]"),
    ('{{title "hello world"}}', "Hello World"),
    ("{{pad .ID 1 2}}|", " abc  |"),
    ("{{truncate .Names 2}}", "we"),
    ("{{len .Config.Env}} {{len .ID}}", "2 3"),
    ('{{printf "%-6s|%3d|%q|%v|%t" .ID .Count .Names .Config.Env .Flag}}', 'abc   |  3|"web"|[A=1 B=2]|true'),
    ('{{printf "%05.1f" 3.14159}}', "003.1"),
    ("{{println .ID .Count}}", "abc 3\n"),
    ('{{print .ID .Count 1 2 "x"}}', "abc3 1 2x"),
    ('{{eq .Count 3}} {{ne .ID "abc"}} {{lt 1 2}} {{ge .Count 4}} {{eq .ID "x" "abc"}}', "true false true false true"),
    ("{{/* a comment */}}x", "x"),
    ("a  {{- .ID -}}  \n b", "aabcb"),
    ('{{"quoted \\"string\\""}} {{`raw \\n`}}', 'quoted "string" raw \\n'),
    ("{{(index .Config.Env 0)}}", "A=1"),
    ("{{(.State).Status}}", "running"),
    ('{{.Label "k"}}|{{.Label "z"}}', "v|"),
    ("{{len (slice .Config.Cmd 1)}}", "2"),
    ("{{html \"<a>\"}} {{urlquery \"a b\"}}", "&lt;a&gt; a+b"),
])
def test_renders_as_go_text_template(template: str, expected: str) -> None:
    assert Template(template).execute(DATA) == expected


@pytest.mark.parametrize(("template", "message"), [
    ("{{.ID", "unclosed action"),
    ("{{if .ID}}x", "unexpected EOF"),
    ("{{end}}", "unexpected {{end}}"),
    ("{{else}}", "unexpected {{else}}"),
    ("{{nofunc .ID}}", 'function "nofunc" not defined'),
    ("{{break}}", "outside {{range}}"),
    ("{{.ID | }}", "missing command"),
    ('{{"unterminated}}', "unterminated quoted string"),
    ("{{define \"x\"}}{{end}}", "not supported"),
])
def test_parse_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError, match="template: ") as caught:
        Template(template)
    assert message in str(caught.value)


@pytest.mark.parametrize(("template", "message"), [
    ("{{.Nosuch}}", "can't evaluate field Nosuch"),
    ("{{.ID.Deeper}}", "can't evaluate field Deeper in type string"),
    ("{{.Nil.Field}}", "nil pointer evaluating Field"),
    ("{{$nosuch}}", "undefined variable: $nosuch"),
    ("{{index .Config.Env 5}}", "index out of range"),
    ("{{lt .ID 1}}", "incompatible types for comparison"),
    ("{{.ID 1}}", "ID is not a method but has arguments"),
    ("{{$.ID 1}}", "ID is not a method but has arguments"),
    ("{{1 2}}", "can't give argument to non-function 1"),
    ("{{range .State}}x{{end}}", "range can't iterate"),
])
def test_execution_errors(template: str, message: str) -> None:
    with pytest.raises(TemplateError) as caught:
        Template(template).execute(DATA)
    assert message in str(caught.value)


def test_methods_are_not_data() -> None:
    assert Template("{{json .}}").execute({"A": 1, "Label": lambda k: k}) == '{"A":1}'
    assert Template("{{.}}").execute({"A": 1, "Label": lambda k: k}) == "{1}"


def test_go_printing() -> None:
    assert [go_str(v) for v in (True, 1.0, 2.5, None, GoMap(b=1, a=[1, 2]), {"x": "y"})] == [
        "true", "1", "2.5", "<nil>", "map[a:[1 2] b:1]", "{y}"]


def test_tables_have_a_header_and_docker_tabwriter_columns() -> None:
    rows = [{"ID": "0123456789ab", "Names": "a"}, {"ID": "x", "Names": "much-longer-name"}]
    headers = GoMap(ID="CONTAINER ID", Names="NAMES")
    assert render_rows("table {{.ID}}\\t{{.Names}}", rows, headers=headers) == (
        "CONTAINER ID   NAMES\n"
        "0123456789ab   a\n"
        "x              much-longer-name\n")
    # a short column is 10 wide at least (tabwriter's minwidth), the last cell is not padded
    assert render_rows("table {{.Names}}\t{{.ID}}", rows[:1], headers=headers) == "NAMES     CONTAINER ID\na         0123456789ab\n"
    # without "table": one line per row, no header, no alignment
    assert render_rows("{{.ID}}\t{{.Names}}", rows, headers=headers) == "0123456789ab\ta\nx\tmuch-longer-name\n"
    assert tabulate(["a\tb\tc", "long-cell\tb"]) == "a           b\tc\nlong-cell   b\n".replace("b\tc", "b         c")


def test_render_one_object() -> None:
    assert render("{{.ID}}\\n{{.Names}}", DATA) == "abc\nweb"
    assert format_one("json", {"a": GoMap(z=1, y=2)}) == '{"a":{"y":2,"z":1}}\n'
    with pytest.raises(InvalidArgument, match="template parsing error: template: "):
        format_one("{{.Nosuch}}", DATA)


def test_filters() -> None:
    assert parse_filters(["status=exited", "label=a=b", "STATUS=running"]) == {
        "status": ["exited", "running"], "label": ["a=b"]}
    with pytest.raises(InvalidArgument, match="bad format of filter"):
        parse_filters(["status"])
    assert label_matches({"a": "b"}, "a") and label_matches({"a": "b"}, "a=b")
    assert not label_matches({"a": "b"}, "a=c") and not label_matches({"a": "b"}, "c")
    assert label_matches({"a": ""}, "a=")
    assert name_matches("web-1", "web") and name_matches("web-1", "^web-\\d$") and name_matches("web", "^/web$")
    assert not name_matches("db", "web")
    rows = [{"Name": "v1", "Labels": {"tier": "web"}, "Driver": "local"},
            {"Name": "v2", "Labels": {}, "Driver": "local"}, {"Name": "other", "Labels": {"tier": "db"}}]
    accept = row_filters(extra={"driver": lambda row, v: row.get("Driver") == v})
    # one key: any value; several keys: all of them
    assert [r["Name"] for r in select(rows, parse_filters(["name=v1", "name=oth"]), accept)] == ["v1", "other"]
    assert [r["Name"] for r in select(rows, parse_filters(["name=v", "label=tier"]), accept)] == ["v1"]
    assert [r["Name"] for r in select(rows, parse_filters(["driver=local"]), accept)] == ["v1", "v2"]
    with pytest.raises(InvalidArgument, match="invalid filter 'colour'"):
        select(rows, parse_filters(["colour=red"]), accept)


def test_listing_in_one_call() -> None:
    rows = [{"Name": "v1", "Driver": "local", "Labels": {"a": "1"}}, {"Name": "v2", "Driver": "local", "Labels": {}}]
    headers = {"Name": "VOLUME NAME", "Driver": "DRIVER"}
    default = "table {{.Driver}}\t{{.Name}}"
    assert listing(rows, fmt=None, default=default, headers=headers) == \
        "DRIVER    VOLUME NAME\nlocal     v1\nlocal     v2\n"
    assert listing(rows, fmt="{{.Name}}", default=default, headers=headers, filters=["label=a"]) == "v1\n"
    assert listing(rows, fmt='{{index .Labels "a"}}', default=default, headers=headers) == "1\n<no value>\n"
    assert listing(rows, fmt="json", default=default, headers=headers, filters=["name=v2"]) == \
        '{"Name":"v2","Driver":"local","Labels":{}}\n'
    assert listing(rows, fmt=None, default=default, headers=headers, quiet="Name") == "v1\nv2\n"
    with pytest.raises(InvalidArgument, match="template parsing error"):
        listing(rows, fmt="{{.Name", default=default, headers=headers)
