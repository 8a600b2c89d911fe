"""``hawser system check`` on the command line: exit codes, table and json output, lazy import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CLI = [sys.executable, "-m", "hawser.cli._run"]


@pytest.fixture
def argv(tmp_path: Path) -> list[str]:
    config = tmp_path / "config.toml"
    # A cgroup parent of its own: nothing else on the host is looked at.
    config.write_text(f'[gc]\ngrace_period = 0\n[runtime]\ncgroup_parent = "/hawser-unit-{os.urandom(4).hex()}"\n')
    return [*CLI, "--config", str(config), "--root", str(tmp_path / "root"), "--state", str(tmp_path / "state"),
            "--snapshotter", "native"]


def _run(argv: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv, "system", "check", *args], capture_output=True, text=True, timeout=60)


def test_a_clean_store_exits_0(argv: list[str]) -> None:
    proc = _run(argv)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("no problems found")
    proc = _run(argv, "--format", "json")
    assert proc.returncode == 0 and json.loads(proc.stdout) == []


def test_a_problem_exits_1_until_repaired(argv: list[str], tmp_path: Path) -> None:
    exits = tmp_path / "state" / "exits"
    exits.mkdir(parents=True)
    leftover = exits / ("a" * 64)
    leftover.write_text("0")
    proc = _run(argv)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:3] == ["problem", "exit-file-orphan", f"{leftover}:"]
    assert lines[-1].startswith("1 problem ")
    findings = json.loads(_run(argv, "--format", "json").stdout)
    assert findings == [{"kind": "exit-file-orphan", "subject": str(leftover), "detail": findings[0]["detail"],
                         "severity": "problem", "repaired": False, "error": None}]
    proc = _run(argv, "--repair")
    assert proc.returncode == 0 and proc.stdout.split()[0] == "repaired"
    assert "1 problem: 1 repaired, 0 remaining" in proc.stdout
    assert not leftover.exists() and _run(argv).returncode == 0


def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    proc = _run(argv, "--format", "yaml")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def _modules_after(*args: str) -> set[str]:
    code = (f"import sys; sys.argv = ['hawser', *{list(args)!r}]\n"
            "from hawser.cli._main import run\n"
            "try:\n run()\nexcept SystemExit: pass\n"
            "print(sorted(sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return set(eval(proc.stderr.strip().splitlines()[-1]))


def test_only_the_check_command_imports_the_check_package() -> None:
    for args in (("--version",), ("run", "--help"), ("system", "--help"), ("system", "check", "--help")):
        assert not any(m.startswith("hawser.check") for m in _modules_after(*args)), args
