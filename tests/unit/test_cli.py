from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from hawser import __version__
from hawser.cli import _containers, _images, _volumes
from hawser.cli._parser import Parser
from hawser.config import default_toml

if TYPE_CHECKING:
    from argparse import Namespace

    from hawser.cli._parser import Builder

CLI = [sys.executable, "-m", "hawser.cli._run"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def parse(build: Builder, *argv: str) -> Namespace:
    """Parse argv the way ``hawser <command>`` does, without running the command."""
    parser = Parser("hawser test")
    build(parser)
    parser.add_help_option()
    return parser.parse_args(list(argv))


def modules_after(*argv: str) -> set[str]:
    """The modules ``hawser argv...`` has imported when it exits."""
    code = (f"import sys; sys.argv = ['hawser', *{list(argv)!r}]\n"
            "from hawser.cli._main import run\n"
            "try:\n run()\nexcept SystemExit: pass\n"
            "print(sorted(sys.modules), file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return set(eval(proc.stderr.strip().splitlines()[-1]))  # a list literal printed by the child


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"hawser version {__version__}"
    assert run("-v").stdout.strip() == f"hawser version {__version__}"
    proc = run("--help")
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: hawser [OPTIONS] COMMAND [ARGS]...")
    for command in ("pull", "images", "rmi", "image", "system", "config", "run", "exec", "ps", "stop"):
        assert f"\n  {command} " in proc.stdout
    for option in ("-v, --version", "--config FILE", "--root DIR", "--snapshotter", "--debug", "-h, --help"):
        assert option in proc.stdout
    assert run("-h").stdout == proc.stdout


def test_command_help() -> None:
    out = run("run", "--help").stdout
    assert out.startswith("Usage: hawser run [OPTIONS] IMAGE [COMMAND [ARG...]]\n")
    # -h is --hostname here, as in docker; -v is --volume.
    assert "-h, --hostname TEXT" in out and "-v, --volume [SRC:]DST[:ro]" in out and "\n  --help " in out
    assert "-m, --memory SIZE" in out and "--network bridge|host|none|NAME" in out
    out = run("exec", "--help").stdout
    assert out.startswith("Usage: hawser exec [OPTIONS] CONTAINER COMMAND [ARG...]\n") and "-h, --help" in out
    out = run("image", "--help").stdout
    assert out.startswith("Usage: hawser image [OPTIONS] COMMAND [ARGS]...")
    assert all(f"\n  {name} " in out for name in ("import", "inspect", "ls", "pull", "rm"))
    assert run("image", "ls", "--help").stdout.startswith("Usage: hawser image ls [OPTIONS] [REPOSITORY[:TAG]]\n")
    assert run("stop", "--help").stdout.startswith("Usage: hawser stop [OPTIONS] CONTAINERS...\n")


@pytest.mark.parametrize(("argv", "prog", "message"), [
    (["frobnicate"], "hawser", "no such command 'frobnicate'"),
    (["--frob", "ps"], "hawser", "unrecognized arguments: --frob"),
    (["--snapshotter", "zfs", "images"], "hawser", "argument --snapshotter: invalid choice: 'zfs'"),
    (["run"], "hawser run", "the following arguments are required: IMAGE"),
    (["run", "--cpu-shares", "x", "img"], "hawser run", "argument --cpu-shares: invalid int value: 'x'"),
    (["ps", "--last", "x"], "hawser ps", "argument -n/--last: invalid int value: 'x'"),
    (["stop"], "hawser stop", "the following arguments are required: CONTAINERS"),
    (["stop", "-t", "x", "c"], "hawser stop", "argument -t/--time: invalid float value: 'x'"),
    (["exec"], "hawser exec", "the following arguments are required: CONTAINER, COMMAND"),
    (["exec", "c"], "hawser exec", "the following arguments are required: COMMAND"),
    (["logs", "a", "b"], "hawser logs", "unrecognized arguments: b"),
    (["image", "frob"], "hawser image", "no such command 'frob'"),
    (["image", "ls", "-x"], "hawser image ls", "unrecognized arguments: -x"),
    (["start", "-a", "a", "b"], "hawser start", "--attach takes one container"),
    (["ps", "--debug"], "hawser ps", "unrecognized arguments: --debug"),  # global options go first
])
def test_usage_error_is_one_line_and_a_hint(argv: list[str], prog: str, message: str) -> None:
    proc = run(*argv)
    assert proc.returncode == (125 if argv[0] == "run" else 2) and proc.stdout == ""  # docker's 125 for run's
    line, hint = proc.stderr.splitlines()
    assert line.startswith(f"{prog}: {message}"), proc.stderr
    assert hint == f"Try '{prog} --help' for help."


@pytest.mark.parametrize("argv", [[], ["image"], ["system"], ["config"]])
def test_no_command_prints_the_help_as_a_usage_error(argv: list[str]) -> None:
    proc = run(*argv)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"Usage: {' '.join(['hawser', *argv])} [OPTIONS] COMMAND [ARGS]...")
    assert "\nCommands:\n" in proc.stderr


def test_run_takes_everything_after_the_image_as_the_command() -> None:
    a = parse(_containers.run, "-d", "--name", "web", "img", "ls", "-la", "--rm", "-e", "X=1")
    assert (a.detach, a.name, a.image, a.command) == (True, "web", "img", ["ls", "-la", "--rm", "-e", "X=1"])
    assert (a.remove, a.env) == (False, [])
    a = parse(_containers.run, "img")
    assert a.command == [] and _containers._build_options(a).args is None
    a = parse(_containers.run, "--rm", "img", "sh", "-c", "echo out; exit 3")
    assert a.remove and a.command == ["sh", "-c", "echo out; exit 3"]
    a = parse(_containers.run, "img", "--", "x")  # a -- after the image is the command's
    assert a.command == ["--", "x"]
    a = parse(_containers.run, "--", "img", "x")
    assert (a.image, a.command) == ("img", ["x"])
    a = parse(_containers.run, "img", "--memory-swap", "-1")
    assert (a.memory_swap, a.command) == (None, ["--memory-swap", "-1"])


def test_run_options_accumulate_combine_and_take_equals() -> None:
    a = parse(_containers.run, "--name=db", "-e", "A=1", "--env", "B=2", "-eC=3", "-v", "/a:/b", "--volume=/c:/d:ro",
              "--tmpfs", "/t", "--tmpfs", "/u:1m", "--cap-add", "NET_ADMIN", "--cap-add", "SYS_TIME",
              "--cap-drop", "ALL", "-l", "k=v", "--label", "k2=v2", "--security-opt", "seccomp=unconfined",
              "--sysctl", "net.ipv4.ip_forward=1", "-it", "-h", "box", "-m", "64m", "--memory-swap", "-1",
              "--cpu-shares", "512", "--pids-limit", "8", "--network", "host", "--read-only", "img", "sh")
    assert (a.name, a.env, a.volumes, a.tmpfs) == ("db", ["A=1", "B=2", "C=3"], ["/a:/b", "/c:/d:ro"], ["/t", "/u:1m"])
    assert (a.cap_add, a.cap_drop, a.labels) == (["NET_ADMIN", "SYS_TIME"], ["ALL"], ["k=v", "k2=v2"])
    assert (a.interactive, a.tty, a.hostname, a.memory, a.memory_swap) == (True, True, "box", "64m", "-1")
    assert (a.cpu_shares, a.pids_limit, a.network, a.read_only, a.command) == (512, 8, "host", True, ["sh"])
    options = _containers._build_options(a)
    assert options.env == ("A=1", "B=2", "C=3") and options.tty and options.stdin and options.read_only
    requests = _volumes.mount_requests(a)  # -v and --mount are resolved at create (named volumes)
    assert [(r.type, r.source, r.destination, r.readonly) for r in requests] == [
        ("bind", "/a", "/b", False), ("bind", "/c", "/d", True)]
    assert options.cap_add == ("NET_ADMIN", "SYS_TIME") and not options.seccomp
    assert options.resources.memory_swap == -1 and options.resources.pids_limit == 8


def test_run_defaults() -> None:
    a = parse(_containers.run, "img")
    assert (a.detach, a.remove, a.name, a.hostname, a.network, a.entrypoint) == (False, False, None, "", "", None)
    assert (a.env, a.volumes, a.tmpfs, a.cap_add, a.cap_drop, a.labels) == ([], [], [], [], [], [])
    a = parse(_containers.create, "--entrypoint", "", "img", "a", "-b")
    assert (a.image, a.command, a.entrypoint) == ("img", ["a", "-b"], "")


def test_exec_takes_everything_after_the_container_as_the_command() -> None:
    a = parse(_containers.exec_, "-it", "-u", "app", "c1", "sh", "-c", "echo -n x", "-d")
    assert (a.interactive, a.tty, a.user, a.detach) == (True, True, "app", False)
    assert (a.container, a.command) == ("c1", ["sh", "-c", "echo -n x", "-d"])
    a = parse(_containers.exec_, "-d", "-e", "A=1", "-e", "B=2", "--workdir=/tmp", "c1", "ls", "-la")
    assert (a.detach, a.env, a.workdir, a.command) == (True, ["A=1", "B=2"], "/tmp", ["ls", "-la"])
    assert parse(_containers.exec_, "c1", "sh", "--", "-x").command == ["sh", "--", "-x"]
    assert parse(_containers.exec_, "c1", "--", "sh").command == ["--", "sh"]  # as click had it


def test_container_commands_options() -> None:
    a = parse(_containers.stop, "-t", "5", "abc123", "web")
    assert (a.timeout, a.containers) == (5.0, ["abc123", "web"])
    assert parse(_containers.stop, "web", "--time=1.5").timeout == 1.5
    assert parse(_containers.stop, "web").timeout is None
    assert parse(_containers.kill, "-s", "USR1", "web").signal == "USR1"
    assert parse(_containers.kill, "web").signal == "KILL"
    a = parse(_containers.logs, "-ft", "-n", "3", "--since", "10m", "web")
    assert (a.follow, a.timestamps, a.tail, a.since, a.container) == (True, True, "3", "10m", "web")
    a = parse(_containers.ps, "-aq", "--no-trunc", "-f", "status=exited", "--format", "{{.ID}}")
    assert (a.all, a.quiet, a.no_trunc, a.format, a.filters) == (True, True, True, "{{.ID}}", ["status=exited"])
    assert parse(_containers.rm, "-f", "a", "b").containers == ["a", "b"]
    a = parse(_containers.stats, "--no-stream", "--format", "json")
    assert (a.no_stream, a.format, a.containers) == (True, "json", [])
    assert parse(_images.pull, "--plain-http", "-q", "127.0.0.1:5000/a:1").reference == "127.0.0.1:5000/a:1"
    a = parse(_images.import_, "--name", "x", "/tmp/a.tar")
    assert (a.name, a.path, a.quiet) == ("x", "/tmp/a.tar", False)


def test_version_imports_nothing_heavy() -> None:
    loaded = modules_after("--version")
    heavy = {"httpx", "rich", "sqlite3", "hawser.images._service", "hawser.store", "isal", "json", "typing", "shutil", "hawser.config"}
    assert not loaded & heavy
    assert not {m for m in loaded if m.startswith("hawser.cli.")} - {"hawser.cli._main", "hawser.cli._parser",
                                                                       "hawser.cli._context"}


def test_help_imports_no_command_module() -> None:
    loaded = modules_after("--help")
    assert not {m for m in loaded if m.startswith("hawser.cli.")} - {"hawser.cli._main", "hawser.cli._parser",
                                                                       "hawser.cli._context"}
    assert "rich" not in loaded and "json" not in loaded


def test_only_the_chosen_command_module_is_imported() -> None:
    loaded = modules_after("config", "default")
    assert "hawser.cli._config" in loaded
    assert not loaded & {"hawser.cli._containers", "hawser.cli._images", "hawser.cli._system", "rich"}


def test_run_command_imports_no_progress_or_rich() -> None:
    loaded = modules_after("run", "--help")
    assert "hawser.cli._containers" in loaded
    assert not loaded & {"hawser.cli._images", "hawser.cli._progress", "hawser.images._progress", "rich", "json"}


def test_config_default_is_documented_toml() -> None:
    assert run("config", "default").stdout == default_toml()


def test_bad_config_file_is_one_clear_line(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "config.toml"
    path.write_text("rooot = 1\n")
    proc = run("--config", str(path), "config", "show")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"hawser: {path}: unknown key 'rooot'") and proc.stderr.count("\n") == 1
    proc = run("--config", str(path) + ".missing", "config", "show")
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_bad_reference_is_one_clear_line(tmp_path: object) -> None:
    proc = run("--root", str(tmp_path), "--state", str(tmp_path), "pull", "Not A Reference")
    assert proc.returncode == 1 and proc.stderr.startswith("hawser: invalid reference")
    assert "Traceback" not in proc.stderr
