"""hawser._failpoints: the HAWSER_FAILPOINTS grammar, the actions, the hit
counts, the log, what importing it costs, and that the documented points are
exactly the ones the code calls."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hawser import _failpoints
from hawser._failpoints import ENV, LOG_ENV, POINTS, FailpointError, failpoint, parse
from hawser.errors import InvalidArgument, Unavailable

SRC = Path(_failpoints.__file__).parent


@pytest.fixture
def armed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """HAWSER_FAILPOINTS set (by each test) for this process; forgotten afterwards."""
    log = tmp_path / "fired.log"
    monkeypatch.setenv(LOG_ENV, str(log))
    _failpoints.reload()
    yield log
    monkeypatch.delenv(ENV, raising=False)
    _failpoints.reload()


def test_grammar() -> None:
    assert parse("") == {}
    assert parse(" create.after-mount=kill , cni.add.after-plugin=raise@2,") == {
        "create.after-mount": ("kill", 1), "cni.add.after-plugin": ("raise", 2)}
    assert parse("gc.after-files=sleep:0.5@3") == {"gc.after-files": ("sleep:0.5", 3)}


@pytest.mark.parametrize(("text", "message"), [
    ("create.after-nothing=kill", "unknown failpoint"),
    ("create.after-mount", "unknown failpoint"),
    ("create.after-mount=explode", "unknown action"),
    ("create.after-mount=sleep:soon", "unknown action"),
    ("create.after-mount=kill@0", "count"),
    ("create.after-mount=kill@x", "count"),
])
def test_bad_specs_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse(text)


def test_unset_does_nothing(armed: Path) -> None:
    for name in POINTS:
        failpoint(name)
    assert not armed.exists()


def test_raise_fires_on_the_nth_hit_only(armed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "unpack.after-layer=raise@2")
    failpoint("unpack.after-layer")
    failpoint("create.after-mount")
    with pytest.raises(FailpointError, match=r"injected failure at failpoint unpack\.after-layer") as caught:
        failpoint("unpack.after-layer")
    assert isinstance(caught.value, Unavailable)
    failpoint("unpack.after-layer")  # once only
    assert armed.read_text() == f"unpack.after-layer raise {os.getpid()}\n"


def test_the_environment_is_read_once(armed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    failpoint("gc.after-records")
    monkeypatch.setenv(ENV, "gc.after-records=raise")
    failpoint("gc.after-records")  # the first call read it unset
    _failpoints.reload()
    with pytest.raises(FailpointError):
        failpoint("gc.after-records")


def test_a_bad_spec_fails_the_first_call(armed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "nope=kill")
    with pytest.raises(InvalidArgument, match="HAWSER_FAILPOINTS"):
        failpoint("gc.after-records")


def test_sleep(armed: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, "gc.after-files=sleep:0")
    failpoint("gc.after-files")
    assert armed.read_text().startswith("gc.after-files sleep:0 ")


def test_kill_is_sigkill_after_the_log_line(tmp_path: Path) -> None:
    log = tmp_path / "fired.log"
    code = "from hawser._failpoints import failpoint\nfailpoint('create.after-record')\nprint('survived')\n"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, ENV: "create.after-record=kill", LOG_ENV: str(log)})
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and out == ""
    assert log.read_text() == f"create.after-record kill {proc.pid}\n"


def test_importing_costs_nothing() -> None:
    code = ("import sys\nbefore = set(sys.modules)\nimport hawser._failpoints\n"
            "print(' '.join(sorted(set(sys.modules) - before)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert set(out.split()) <= {"__future__", "hawser", "hawser.errors", "hawser._failpoints"}, out


def test_documented_points_are_the_called_points() -> None:
    doc = _failpoints.__doc__ or ""
    rows = doc[doc.index("====") :].splitlines()
    documented = {line.split()[0] for line in rows[3:-1] if line[:1].strip()}
    assert documented == POINTS
    called: dict[str, int] = {}
    for path in SRC.rglob("*.py"):
        for name in re.findall(r'failpoint\("([^"]+)"\)', path.read_text()):
            called[name] = called.get(name, 0) + 1
    assert set(called) == POINTS, set(called) ^ POINTS
