"""The rough edges of issue 18, each pinned through the CLI with real runc and conmon (the ``ctr``
fixture: at teardown no conmon, mount or cgroup of the test may be left)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import Env
from tests.support.terminal import run_on_pty

pytestmark = pytest.mark.integration


def _no_tty(env: Env, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """A CLI run whose stdin is not a terminal (whatever pytest's is)."""
    return subprocess.run(env._argv(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _on_pty(env: Env, *args: str, typed: bytes = b"") -> tuple[int, str]:
    """A CLI run on a terminal, ``typed`` waiting in its input: its status and what the terminal shows."""
    return run_on_pty(env._argv(args), typed=typed)


def _sleeper(env: Env, ref: str, *args: str) -> str:
    return env.cli("run", "-d", "--network", "none", *args, ref, "sleep", "600").stdout.strip()


def _ids(env: Env) -> list[str]:
    return env.cli("ps", "-a", "-q", "--no-trunc").stdout.split()


def test_pause_of_a_paused_container_and_unpause_of_a_running_one(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    _sleeper(env, ref, "--name", "frozen")
    env.cli("pause", "frozen")
    again = _no_tty(env, "pause", "frozen")
    assert again.returncode != 0
    assert "container frozen is already paused" in again.stderr and "not running" not in again.stderr
    env.cli("unpause", "frozen")
    thawed = _no_tty(env, "unpause", "frozen")
    assert thawed.returncode != 0 and "container frozen is not paused" in thawed.stderr
    env.cli("rm", "-f", "frozen")


def test_stats_table_is_docker_s(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    id_ = _sleeper(env, ref, "--name", "measured", "-m", "64m")
    lines = env.cli("stats", "--no-stream").stdout.splitlines()
    header, row = lines[0], lines[1]
    titles = ["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"]
    assert re.fullmatch(r"\s+".join(re.escape(t) for t in titles), header)
    starts = [header.index(t) for t in titles]
    # Every column of the row starts where its title does (docker's tabwriter: padding 3).
    cells = [row[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)]
    assert all(row[s - 1] == " " for s in starts[1:]), (header, row)
    assert cells[0] == id_[:12] and cells[1] == "measured"
    assert re.fullmatch(r"\d+\.\d\d%", cells[2])
    used, limit = cells[3].split(" / ")
    assert re.fullmatch(r"[\d.]+(B|KiB|MiB)", used) and limit == "64MiB"
    assert re.fullmatch(r"\d+\.\d\d%", cells[4])
    assert cells[5] == "0B / 0B"  # --network none: a loopback only, which docker does not count
    assert re.fullmatch(r"[\d.]+[kMG]?B / [\d.]+[kMG]?B", cells[6])
    assert cells[7] == "1"
    env.cli("rm", "-f", id_)


def test_stats_sizes_and_network_counters() -> None:
    from hawser.cli._stats_table import binary_size, decimal_size, net_io, tab_lines

    assert [decimal_size(n) for n in (0, 999, 12_000, 1_234_567, 3 * 10**9)] == ["0B", "999B", "12kB", "1.23MB",
                                                                                  "3GB"]
    assert [binary_size(n) for n in (0, 1536, 1_572_864, 8 * 2**30)] == ["0B", "1.5KiB", "1.5MiB", "8GiB"]
    assert tab_lines([("A", "LONGER TITLE", "X"), ("value", "b", "last")]) == [
        "A         LONGER TITLE   X", "value     b              last"]
    assert net_io(0) == (0, 0) and net_io(2**22 + 7) == (0, 0)  # no such process
    received, sent = net_io(os.getpid())
    assert received >= 0 and sent >= 0


def test_pull_messages_are_printed_as_they_are_on_a_terminal() -> None:
    """rich's highlighter took a digest's hex for an IPv6 address and coloured it."""
    from rich.console import Console
    from rich.progress import Progress

    from hawser.cli._progress import RichProgress
    from hawser.images import PullMessage

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, color_system="truecolor", width=200)
    digest = "sha256:" + "ab12cd34" * 8
    with Progress(console=console, transient=True) as progress:
        RichProgress(progress)(PullMessage(f"resolved 127.0.0.1:5000/busybox:latest to {digest} [x]"))
    text = out.getvalue()
    assert f"resolved 127.0.0.1:5000/busybox:latest to {digest} [x]" in text  # no escape inside, no markup eaten


def test_one_final_line_per_layer_without_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    from hawser.cli._progress import LineProgress
    from hawser.images import LayerProgress, PullMessage

    lines = LineProgress()
    a, b, c = ("sha256:" + ch * 64 for ch in "abc")
    lines(LayerProgress(a, "fetching", 0, 10))
    lines(LayerProgress(a, "done", 10, 10))  # fetched
    lines(LayerProgress(a, "exists", 10, 10))  # and found unpacked already: not a second final line
    lines(LayerProgress(b, "fetching", 0, 5))
    lines(LayerProgress(b, "done", 5, 5))  # fetched, then unpacked: the last "done" is the final one
    lines(LayerProgress(b, "unpacking", 5, 5))
    lines(LayerProgress(b, "done", 5, 5))
    lines(LayerProgress(c, "exists", 7, 7))
    lines(PullMessage("stored image x"))
    lines(LayerProgress(c, "done", 7, 7))  # after its final line: nothing
    lines.flush()
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" in ")[0] for line in out] == [
        "aaaaaaaaaaaa: fetching", "bbbbbbbbbbbb: fetching", "bbbbbbbbbbbb: unpacking",
        "aaaaaaaaaaaa: done 10 bytes", "bbbbbbbbbbbb: done 5 bytes", "cccccccccccc: exists 7 bytes",
        "stored image x"]


def test_pull_by_digest_one_final_line_per_layer_and_narrow_images(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    digest = json.loads(env.cli("images", "--format", "json").stdout)[0]["digest"]
    by_digest = f"{ref.rsplit(':', 1)[0]}@{digest}"
    out = _no_tty(env, "pull", "--plain-http", by_digest)
    assert out.returncode == 0, out.stderr
    finals: dict[str, int] = {}
    for line in out.stdout.splitlines():
        layer, _, stage = line.partition(": ")
        if stage.split(" ")[0] in ("done", "exists"):
            finals[layer] = finals.get(layer, 0) + 1
    assert finals and set(finals.values()) == {1}, out.stdout
    table = env.cli("images").stdout.splitlines()
    assert len(table) == 3
    assert max(len(line) for line in table) < 120, table
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]  # docker's columns
    assert any(line.split()[1] == "<none>" for line in table[1:]), table  # pulled by digest: no tag
    assert digest in env.cli("images", "--digests").stdout


def test_an_invalid_name_is_refused_before_any_pull(ctr: tuple[Env, str]) -> None:
    env, _ = ctr
    for args in (("run", "--rm", "BAD NAME"), ("create", "Busybox")):
        proc = _no_tty(env, *args)
        assert proc.returncode != 0
        assert "Unable to find image" not in proc.stderr
        assert "invalid reference" in proc.stderr
    assert _ids(env) == []


def test_group_help_summaries_are_whole(ctr: tuple[Env, str]) -> None:
    env, _ = ctr
    for group in ("system", "image"):
        text = env.cli(group, "--help").stdout.split("Commands:", 1)[1]
        entries = re.split(r"\n  (?=\S)", "\n" + text.strip("\n"))
        for entry in filter(None, (e.strip() for e in entries)):
            assert " ".join(entry.split()).endswith("."), (group, entry)
    assert "record references, orphan snapshots" in " ".join(env.cli("system", "--help").stdout.split())


def test_system_prune_removes_stopped_containers(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "--network", "none", ref, "true")
    [exited] = _ids(env)
    created = env.cli("create", "--network", "none", ref, "true").stdout.strip()
    running = _sleeper(env, ref)
    assert sorted(_ids(env)) == sorted([exited, created, running])

    dry = _no_tty(env, "system", "prune", "--dry-run")
    assert f"would remove container {exited}" in dry.stdout and f"would remove container {created}" in dry.stdout
    # Without a terminal to ask on and without -f: garbage only, the containers kept, and said so.
    kept = _no_tty(env, "system", "prune")
    assert kept.returncode == 0 and "kept 2 stopped containers" in kept.stderr
    assert len(_ids(env)) == 3
    # On a terminal it asks, with docker's warning; "n" cancels.
    code, shown = _on_pty(env, "system", "prune", typed=b"n\n")
    assert code == 1 and "WARNING! This will remove:" in shown and "all stopped containers" in shown
    assert "Are you sure you want to continue? [y/N]" in shown and "cancelled" in shown
    assert len(_ids(env)) == 3
    code, shown = _on_pty(env, "system", "prune", typed=b"y\n")
    assert code == 0 and "Deleted Containers:" in shown
    assert exited in shown and created in shown and running not in shown
    assert _ids(env) == [running]
    # -f: no question.
    env.cli("stop", "-t", "1", running)
    forced = _no_tty(env, "system", "prune", "-f")
    assert forced.returncode == 0 and forced.stdout.startswith(f"Deleted Containers:\n{running}\n"), forced.stdout
    assert _ids(env) == []


def test_cli_docs_module_builds_every_command(tmp_path: Path) -> None:
    """The completion and man pages cover the table as it is now (the unit tests check them in detail)."""
    from hawser.cli._docs import broken, command_docs

    assert broken(command_docs()) == {}
