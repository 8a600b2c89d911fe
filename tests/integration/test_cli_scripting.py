"""Scripting with the CLI as with docker's: ``--format`` Go templates and
``--filter`` on ps (against podman's output for the same containers),
inspect's docker layout, ``--env-file`` and ``-e VAR``, and docker's exit
codes for run, create, start -a and exec (125, 126, 127, the container's own)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.integration.conftest import Env, one_line
from tests.support.podman import Podman, tools_available

pytestmark = pytest.mark.integration

# podman on this host: runc (crun is not there) and rlimits it may set without CAP_SYS_RESOURCE
PODMAN_RUN = ("--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
              "--network", "none")

# name -> how it is made: (run|create, detach, command)
CONTAINERS = [
    ("s-created", "create", ("true",)),
    ("s-ok", "run", ("true",)),
    ("s-three", "run", ("sh", "-c", "exit 3")),
    ("s-up", "run-d", ("sleep", "1000")),
]


def _make(cli: object, ref: str, extra: tuple[str, ...] = ()) -> None:
    for name, how, command in CONTAINERS:
        verb = "create" if how == "create" else "run"
        flags = ("-d",) if how == "run-d" else ()
        proc = cli(verb, *flags, *extra, "--name", name, "--label", f"kind={how}", ref, *command,  # type: ignore[operator]
                   check=False)
        assert proc.returncode == (3 if name == "s-three" else 0), proc.stderr


@pytest.mark.skipif(not tools_available(), reason="podman is not installed (scripts/setup.sh installs it)")
def test_ps_format_and_filter_equal_podmans(ctr: tuple[Env, str], podman: Podman) -> None:
    env, ref = ctr
    podman("pull", "-q", "--tls-verify=false", ref)
    _make(podman, ref, PODMAN_RUN)
    _make(env.cli, ref, ("--network", "none"))
    for args in (["-a", "--format", "{{.Names}}"],
                 ["-a", "--filter", "status=exited", "--format", "{{.Names}}"],
                 ["--filter", "status=exited", "--format", "{{.Names}}"],
                 ["--format", "{{.Names}}"],  # running only (podman's .State is docker's .Status)
                 ["-a", "--filter", "label=kind=run", "--format", "{{.Names}}"],
                 ["-a", "--filter", "name=s-t", "--filter", "name=up", "--format", "{{.Names}}"],
                 ["-a", "--filter", "exited=3", "--format", "{{.Names}}"],
                 ["-a", "--filter", "status=created", "--filter", "status=running", "--format", "{{.Names}}"]):
        ours, theirs = env.cli("ps", *args).stdout, podman("ps", *args).stdout
        # The same lines; the order is docker's (newest first), podman 4.3 lists the oldest first.
        assert ours.splitlines() == theirs.splitlines()[::-1], (args, ours, theirs)
        assert ours, args


def test_ps_templates_tables_and_options(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    _make(env.cli, ref, ("--network", "none"))
    table = env.cli("ps", "-a", "--format", "table {{.Names}}\t{{.Status}}").stdout.splitlines()
    assert re.fullmatch(r"NAMES {7}STATUS", table[0]), table[0]  # tab-aligned as docker's tabwriter
    assert table[1].startswith("s-up        Up ") and table[-1] == "s-created   Created"
    rows = [json.loads(line) for line in env.cli("ps", "-a", "--format", "{{json .}}").stdout.splitlines()]
    assert [r["Names"] for r in rows] == ["s-up", "s-three", "s-ok", "s-created"]  # newest first
    assert {"ID", "Image", "Command", "CreatedAt", "RunningFor", "Ports", "State", "Status", "Size", "Names",
            "Labels", "Mounts", "Networks"} <= set(rows[0])
    assert rows[1]["Status"].startswith("Exited (3) ") and rows[1]["Labels"] == "kind=run"
    assert env.cli("ps", "-a", "--format", '{{.Label "kind"}}|{{.ID | len}}|{{upper .State}}').stdout.split() == [
        "run-d|12|RUNNING", "run|12|EXITED", "run|12|EXITED", "create|12|CREATED"]
    header = env.cli("ps").stdout.splitlines()[0].split()
    assert header == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"]
    assert env.cli("ps", "-n", "2", "--format", "{{.Names}}").stdout.split() == ["s-up", "s-three"]
    assert env.cli("ps", "-l", "-q").stdout.split() == [rows[0]["ID"]]
    assert env.cli("ps", "-a", "--filter", "before=s-ok", "--format", "{{.Names}}").stdout.split() == ["s-created"]
    assert env.cli("ps", "-a", "--filter", "since=s-ok", "--format", "{{.Names}}").stdout.split() == \
        ["s-up", "s-three"]
    assert env.cli("ps", "-a", "-q", "--filter", f"id={rows[2]['ID'][:6]}").stdout.split() == [rows[2]["ID"]]
    assert env.cli("ps", "-a", "-q", "--filter", f"ancestor={ref}").stdout.split() == [r["ID"] for r in rows]
    sized = env.cli("ps", "-s", "--format", "{{.Names}} {{.Size}}").stdout.strip()
    assert re.fullmatch(r"s-up \d+(\.\d+)?k?B \(virtual \d+(\.\d+)?[kMG]?B\)", sized), sized
    # Errors: an unknown filter, a bad status, a template that does not parse or run: one line, exit 1.
    for args, words in ((["--filter", "colour=red"], "invalid filter 'colour'"),
                        (["--filter", "status=sleepy"], "invalid filter 'status=sleepy'"),
                        (["--format", "{{.Names"], "unclosed action"),
                        (["--format", "{{.Nosuch}}"], "can't evaluate field Nosuch"),
                        (["--format", "{{nofunc .ID}}"], 'function "nofunc" not defined')):
        proc = env.cli("ps", "-a", *args, check=False)
        assert proc.returncode == 1 and words in one_line(proc), (args, proc.stderr)


def test_inspect_has_dockers_layout(ctr: tuple[Env, str], tmp_path: Path) -> None:
    env, ref = ctr
    (tmp_path / "data").mkdir()
    env.cli("run", "-d", "--name", "web", "--network", "none", "-e", "A=1", "--label", "team=core", "-v",
            f"{tmp_path / 'data'}:/data:ro", "--memory", "64m", "--cpus", "0.5", ref, "sleep", "1000")
    [info] = json.loads(env.cli("inspect", "web").stdout)
    assert len(info["Id"]) == 64 and info["Name"] == "/web" and info["Image"].startswith("sha256:")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", info["Created"]), info["Created"]
    assert (info["Path"], info["Args"]) == ("sleep", ["1000"])
    state = info["State"]
    assert {k: state[k] for k in ("Status", "Running", "Paused", "Restarting", "OOMKilled", "Dead", "ExitCode",
                                  "Error", "FinishedAt")} == {
        "Status": "running", "Running": True, "Paused": False, "Restarting": False, "OOMKilled": False,
        "Dead": False, "ExitCode": 0, "Error": "", "FinishedAt": "0001-01-01T00:00:00Z"}
    assert state["Pid"] > 0 and state["StartedAt"] >= info["Created"]
    config = info["Config"]
    assert config["Cmd"] == ["sleep", "1000"] and config["Image"] == ref and config["Labels"]["team"] == "core"
    assert "A=1" in config["Env"] and any(e.startswith("PATH=") for e in config["Env"])  # the image's too
    assert config["Hostname"] == info["Id"][:12] and config["Tty"] is False and config["OpenStdin"] is False
    assert info["Mounts"] == [{"Type": "bind", "Source": str(tmp_path / "data"), "Destination": "/data",
                               "Mode": "ro", "RW": False, "Propagation": "rprivate"}]
    host = info["HostConfig"]
    assert host["NetworkMode"] == "none" and host["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert host["Memory"] == 64 << 20 and host["NanoCpus"] == 500_000_000 and host["AutoRemove"] is False
    assert host["Binds"] == [f"{tmp_path / 'data'}:/data:ro"] and host["Privileged"] is False
    assert {"Ports", "Networks", "IPAddress"} <= set(info["NetworkSettings"])
    # Templates over it, as docker's -f.
    shown = env.cli("inspect", "-f", '{{.State.Status}} {{index .Config.Labels "team"}} {{json .Config.Cmd}} '
                    "{{range .Mounts}}{{.Destination}}{{end}} {{.Name}}", "web").stdout
    assert shown == 'running core ["sleep","1000"] /data /web\n'
    stats = env.cli("stats", "--no-stream", "--format", "{{.Name}} {{.MemPerc}} {{.PIDs}}", "web").stdout
    assert re.fullmatch(r"web \d+\.\d\d% 1\n", stats), stats
    lines = env.cli("stats", "--no-stream", "--format", "table {{.Name}}\t{{.CPUPerc}}").stdout.splitlines()
    assert lines[0] == "NAME      CPU %" and lines[1].startswith("web       "), lines
    env.cli("stop", "-t", "0", "web")
    assert env.cli("inspect", "--format", "{{.State.ExitCode}} {{.State.Running}}", "web").stdout == "137 false\n"
    proc = env.cli("inspect", "-f", "{{.State.Nosuch}}", "web", check=False)
    assert proc.returncode == 1 and "can't evaluate field Nosuch" in one_line(proc)
    # An image, in docker's layout too.
    [image] = json.loads(env.cli("inspect", ref).stdout)
    assert image["Id"] == info["Image"] and image["RepoTags"] == [ref] and image["Os"] == "linux"
    assert image["RootFS"]["Type"] == "layers" and all(d.startswith("sha256:") for d in image["RootFS"]["Layers"])
    assert env.cli("inspect", "--type", "image", "-f", "{{.Os}}/{{.Architecture}}", ref).stdout.startswith("linux/")


def test_env_file_and_host_values(ctr: tuple[Env, str], tmp_path: Path) -> None:
    env, ref = ctr
    envfile = tmp_path / "vars.env"
    envfile.write_text("# comment\n\nA=1\nB=two words\nFROM_HOST\nNOT_ON_HOST\nC=\n  D=x=y\n")
    host = {"FROM_HOST": "hostvalue", "ALSO_HOST": "h2"}
    out = env.cli("run", "--rm", "--network", "none", "--env-file", str(envfile), "-e", "ALSO_HOST", "-e",
                  "UNSET_HERE", "-e", "A=override", ref, "env", env=host).stdout.splitlines()
    assert {"A=override", "B=two words", "FROM_HOST=hostvalue", "C=", "D=x=y", "ALSO_HOST=h2"} <= set(out), out
    assert not any(line.startswith(("NOT_ON_HOST", "UNSET_HERE", "#")) for line in out), out
    id_ = env.cli("run", "-d", "--network", "none", ref, "sleep", "1000").stdout.strip()
    out = env.cli("exec", "--env-file", str(envfile), "-e", "ALSO_HOST", id_, "env", env=host).stdout.splitlines()
    assert {"A=1", "FROM_HOST=hostvalue", "ALSO_HOST=h2"} <= set(out), out
    proc = env.cli("run", "--rm", "--env-file", str(tmp_path / "missing.env"), ref, "true", check=False)
    assert proc.returncode == 125 and "missing.env" in one_line(proc)


def test_dockers_exit_codes(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    run = ("run", "--rm", "--network", "none")
    cases = [
        ((*run, ref, "sh", "-c", "exit 42"), 42, None),  # the container's own
        ((*run, ref, "nosuch"), 127, "not found"),
        ((*run, ref, "/etc"), 126, "/etc"),  # a directory
        ((*run, ref, "/etc/passwd"), 126, "/etc/passwd"),  # not executable
        ((*run, ref, "/no/such/file"), 127, "/no/such/file"),
        ((*run, "--no-such-flag", ref, "true"), 125, "unrecognized arguments"),
        ((*run, "--memory", "lots", ref, "true"), 125, "lots"),  # an invalid option
        ((*run, "Not/A:Valid:Name", "true"), 125, None),  # hawser's own error (an image it cannot name)
        (("create", "--network", "none", "--cpus", "x", ref), 125, None),
        (("container", "run", "--rm", "--network", "none", ref, "nosuch"), 127, "not found"),
    ]
    for args, code, words in cases:
        proc = env.cli(*args, check=False)
        assert proc.returncode == code, (args, proc.returncode, proc.stderr)
        if words is not None:  # one line (a usage error's hint after it)
            assert words in proc.stderr.splitlines()[0], (args, proc.stderr)
    # start -a: the container's code
    id_ = env.cli("create", "--network", "none", ref, "sh", "-c", "exit 5").stdout.strip()
    assert env.cli("start", "-a", id_, check=False).returncode == 5
    # exec: 126 and 127 as docker's, the command's own code otherwise; other errors 1
    id_ = env.cli("run", "-d", "--network", "none", ref, "sleep", "1000").stdout.strip()
    for args, code in (((id_, "nosuch"), 127), ((id_, "/etc"), 126), ((id_, "sh", "-c", "exit 9"), 9),
                       (("nosuch-container", "true"), 1)):
        proc = subprocess.run(env._argv(("exec", *args)), capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
        assert proc.returncode == code, (args, proc.returncode, proc.stderr)
        if code != 9:
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_images_format_filter_and_repository(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    repository = ref.rpartition(":")[0]
    other = f"{repository}:second"
    env.cli("tag", ref, other)
    assert env.cli("images", "--format", "{{.Repository}} {{.Tag}}").stdout.splitlines() == [
        f"{repository} latest", f"{repository} second"]
    table = env.cli("images", "--format", "table {{.Tag}}\t{{.ID}}").stdout.splitlines()
    assert table[0].split() == ["TAG", "IMAGE", "ID"] and len(table) == 3
    assert re.fullmatch(r"[0-9a-f]{12}", table[1].split()[1])
    assert env.cli("images", "-q", "--filter", "reference=*:second").stdout.split() == [table[2].split()[1]]
    assert env.cli("images", "--format", "{{.Tag}}", other).stdout == "second\n"
    assert env.cli("images", "--format", "{{.Tag}}", repository).stdout == "latest\nsecond\n"
    assert env.cli("images", "--format", "{{.Tag}}", "--filter", "dangling=true").stdout == ""
    assert env.cli("images", "--format", "{{.Tag}}", "--filter", "dangling=false", "--filter",
                   "reference=*latest").stdout == "latest\n"
    proc = env.cli("images", "--filter", "colour=red", check=False)
    assert proc.returncode == 1 and "invalid filter 'colour'" in one_line(proc)


def test_inspect_volumes_restart_and_health_read_with_defaults(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("create", "--name", "v", "--network", "none", "-v", "scriptvol:/v", "--restart", "on-failure:2", ref,
            "true")
    [info] = json.loads(env.cli("inspect", "v").stdout)
    [mount] = info["Mounts"]
    assert (mount["Type"], mount["Name"], mount["Destination"], mount["RW"]) == ("volume", "scriptvol", "/v", True)
    assert info["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 2}
    assert info["State"]["Health"] is None and info["State"]["Status"] == "created"
    shown = env.cli("inspect", "-f", "{{if .State.Health}}checked{{else}}no check{{end}} "
                    "{{range .Mounts}}{{.Type}}:{{.Name}}{{end}}", "v").stdout
    assert shown == "no check volume:scriptvol\n"
    assert env.cli("ps", "-a", "--format", "{{.Mounts}} {{.LocalVolumes}}").stdout == "scriptvol 1\n"
    assert env.cli("ps", "-a", "-q", "--filter", "volume=scriptvol").stdout.strip() == info["Id"][:12]
    env.cli("rm", "v")
    env.cli("volume", "rm", "scriptvol")



def test_network_ls_format(ctr: tuple[Env, str]) -> None:
    env, _ = ctr
    env.cli("network", "create", "--label", "team=core", "scriptnet")
    try:
        assert env.cli("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Labels}}").stdout.splitlines() == [
            "bridge bridge ", "scriptnet bridge team=core"]
        table = env.cli("network", "ls", "--format", "table {{.Name}}\t{{.Scope}}").stdout.splitlines()
        assert table == ["NAME        SCOPE", "bridge      local", "scriptnet   local"]
        rows = [json.loads(line) for line in env.cli("network", "ls", "--format", "json").stdout.splitlines()]
        assert [r["Name"] for r in rows] == ["bridge", "scriptnet"] and len(rows[1]["ID"]) == 12
    finally:
        env.cli("network", "rm", "scriptnet")
