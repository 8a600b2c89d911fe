"""hawserd's ``--log-format json``: one JSON object per record, the same fields as the key=value lines."""

from __future__ import annotations

import io
import json
import logging
import math
from pathlib import Path

import pytest

from hawser.config import DaemonConfig, parse_config
from hawser.daemon._log import JsonFormatter, KeyValueFormatter, setup_logging
from hawser.daemon._main import overrides, parser
from hawser.errors import InvalidArgument


def record(msg: str = "pull done", *args: object, exc: BaseException | None = None,
           **extra: object) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    r = logging.LogRecord("hawser.cri.image_pull", logging.INFO, __file__, 1, msg, args, exc_info)
    r.created = 1735787045.678
    r.msecs = 678.0
    for key, value in extra.items():
        setattr(r, key, value)
    return r


def test_the_four_fields_then_every_extra() -> None:
    line = JsonFormatter().format(record("pulled %s", "busybox", image="busybox:1", duration=1.25, layers=3))
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2025-01-02T03:04:05.678Z", "level": "info", "logger": "hawser.cri.image_pull",
        "msg": "pulled busybox", "image": "busybox:1", "duration": 1.25, "layers": 3}
    assert list(json.loads(line))[:4] == ["time", "level", "logger", "msg"]


def test_values_json_cannot_write_become_text() -> None:
    event = json.loads(JsonFormatter().format(record(
        path=Path("/x"), nan=math.nan, pairs={"a": Path("/a")}, ids=("1", 2), flag=True, none=None)))
    assert event["path"] == "/x"
    assert event["nan"] == "nan"
    assert event["pairs"] == {"a": "/a"}
    assert event["ids"] == ["1", 2]
    assert (event["flag"], event["none"]) == (True, None)


def test_an_extra_cannot_replace_the_fixed_fields() -> None:
    event = json.loads(JsonFormatter().format(record(level="forged", logger="forged", time="forged")))
    assert (event["level"], event["logger"], event["time"]) == ("info", "hawser.cri.image_pull",
                                                                  "2025-01-02T03:04:05.678Z")


def test_an_exception_is_an_error_and_a_traceback_on_the_same_line() -> None:
    try:
        raise ValueError('bad "quote"\nand a newline')
    except ValueError as exc:
        line = JsonFormatter().format(record("failed", exc=exc))
    assert line.count("\n") == 0
    event = json.loads(line)
    assert event["error"] == 'ValueError: bad "quote"\nand a newline'
    assert event["traceback"].startswith("Traceback (most recent call last)")


def test_text_and_json_carry_the_same_fields() -> None:
    r = record("done", image="busybox")
    text = KeyValueFormatter().format(r)
    assert text.startswith("time=2025-01-02T03:04:05.678Z level=info logger=hawser.cri.image_pull")
    assert set(json.loads(JsonFormatter().format(r))) == {p.split("=", 1)[0] for p in text.split(" ")}


@pytest.mark.parametrize(("log_format", "formatter"), [("text", KeyValueFormatter), ("json", JsonFormatter)])
def test_setup_logging_installs_the_format(log_format: str, formatter: type[logging.Formatter],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    try:
        setup_logging("info", log_format)
        assert [type(h.formatter) for h in root.handlers] == [formatter]
        logging.getLogger("hawser.test").info("hello", extra={"n": 1})
        line = stream.getvalue().strip()
        if log_format == "json":
            assert json.loads(line)["n"] == 1
        else:
            assert line.endswith("msg=hello n=1")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved:
            root.addHandler(h)
        root.setLevel(level)


def test_config_key_defaults_to_text_and_takes_only_text_or_json() -> None:
    assert DaemonConfig().log_format == "text"
    assert parse_config('[daemon]\nlog_format = "json"\n').daemon.log_format == "json"
    with pytest.raises(InvalidArgument, match="log_format"):
        parse_config('[daemon]\nlog_format = "xml"\n')


def test_the_flag_overrides_the_config_key() -> None:
    assert overrides(parser().parse_args(["--log-format", "json"]))["daemon.log_format"] == "json"
    assert overrides(parser().parse_args([]))["daemon.log_format"] is None
    with pytest.raises(SystemExit):
        parser().parse_args(["--log-format", "xml"])
