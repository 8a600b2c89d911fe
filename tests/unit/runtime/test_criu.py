"""The criu probe (``runtime.criu``) against small stand-in programs: what a
failing ``criu check`` prints becomes the reason word for word; a working
one is usable; a missing, hanging or unstartable one is a reason too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hawser.runtime.criu import CriuStatus, find_criu, probe_criu

# Debian 12's criu 3.17.1 on kernel 6.18, as it fails here.
VDSO_ERROR = """\
Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds
Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable
Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat.
Error (criu/crtools.c:260): Could not initialize kernel features detection."""


def program(tmp_path: Path, body: str, name: str = "criu") -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def test_failing_check_gives_criu_s_own_lines(tmp_path: Path) -> None:
    criu = program(tmp_path, f"[ \"$1\" = check ] || exit 9\ncat >&2 <<'EOF'\n{VDSO_ERROR}\nEOF\nexit 1")
    status = probe_criu(criu)
    assert status == CriuStatus(usable=False, reason=f"{criu} check failed (exit status 1):\n{VDSO_ERROR}",
                                binary=criu)


def test_working_check_is_usable(tmp_path: Path) -> None:
    criu = program(tmp_path, "echo 'Looks good.'")
    assert probe_criu(criu) == CriuStatus(usable=True, binary=criu)


def test_silent_failure_and_stdout_only(tmp_path: Path) -> None:
    silent = program(tmp_path, "exit 3", name="silent")
    assert probe_criu(silent).reason == f"{silent} check failed (exit status 3) and said nothing"
    chatty = program(tmp_path, "echo 'Error: on stdout'; exit 1", name="chatty")
    assert probe_criu(chatty).reason == f"{chatty} check failed (exit status 1):\nError: on stdout"


def test_hanging_check_times_out(tmp_path: Path) -> None:
    criu = program(tmp_path, "exec sleep 30")
    status = probe_criu(criu, timeout=0.2)
    assert not status.usable and status.reason == f"{criu} check did not finish within 0.2s"


def test_unstartable_binary(tmp_path: Path) -> None:
    path = tmp_path / "criu"
    path.write_text("not a program")
    path.chmod(0o644)
    status = probe_criu(str(path))
    assert not status.usable and status.reason == f"{path} cannot be started: Permission denied"


def test_not_installed(tmp_path: Path) -> None:
    assert find_criu(str(tmp_path)) is None
    assert probe_criu(search=str(tmp_path)) == CriuStatus(usable=False, reason="criu is not installed")


def test_found_on_path_or_in_sbin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    criu = program(tmp_path, "exit 0")
    assert find_criu(str(tmp_path)) == criu
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_criu() == criu
    monkeypatch.setenv("PATH", "/nonexistent")
    assert find_criu() == shutil.which("criu", path="/usr/local/sbin:/usr/sbin:/sbin")
