"""Pieces of the CLI's scripting support that need no container: env files,
docker's human durations and sizes, image names as REPOSITORY/TAG, RFC 3339
times, and which commands exit 125 for their own errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hawser.cli._inspect import container, human_duration, human_size, ps_row, rfc3339
from hawser.cli._main import _failure_code
from hawser.cli._scripting import environment, read_env_file, split_name
from hawser.errors import InvalidArgument
from hawser.metadata import Container
from hawser.runtime import ContainerInfo, ContainerStatus


def test_env_file_as_dockers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "h v")
    monkeypatch.delenv("NOT_SET", raising=False)
    path = tmp_path / "vars.env"
    path.write_text("\ufeff# comment\n\n  A=1\nB= spaced value \nC=x=y\nFROM_HOST\nNOT_SET\n\t# indented comment\nE=\n")
    assert read_env_file(str(path)) == ["A=1", "B= spaced value ", "C=x=y", "FROM_HOST=h v", "E="]
    path.write_text("BAD NAME=1\n")
    with pytest.raises(InvalidArgument, match="contains whitespaces"):
        read_env_file(str(path))
    path.write_text("=nothing\n")
    with pytest.raises(InvalidArgument, match="line 1: no variable name"):
        read_env_file(str(path))
    with pytest.raises(InvalidArgument, match="cannot read env file"):
        read_env_file(str(tmp_path / "missing"))


def test_environment_order_and_host_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTVAR", "from-host")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    path = tmp_path / "e.env"
    path.write_text("A=file\n")
    # the file first, -e after it (a later entry wins in the container); -e NAME takes the host's or is dropped
    assert environment(["A=flag", "HOSTVAR", "UNSET_VAR"], [str(path)]) == ("A=file", "A=flag", "HOSTVAR=from-host")


@pytest.mark.parametrize(("seconds", "text"), [
    (0.4, "Less than a second"), (1, "1 second"), (59, "59 seconds"), (60, "About a minute"),
    (150, "2 minutes"), (3600, "About an hour"), (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
    (20 * 86400, "2 weeks"), (90 * 86400, "3 months"), (800 * 86400, "2 years"),
])
def test_human_duration_as_go_units(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_human_size_and_times() -> None:
    assert [human_size(n) for n in (0, 12, 999, 1000, 4_270_000, 1_234_567_890)] == [
        "0B", "12B", "999B", "1kB", "4.27MB", "1.23GB"]
    assert rfc3339(None) == "0001-01-01T00:00:00Z"
    assert rfc3339(1_700_000_000.5) == "2023-11-14T22:13:20.500000000Z"


def test_split_name() -> None:
    assert split_name("docker.io/library/busybox:latest") == ("docker.io/library/busybox", "latest", "<none>")
    assert split_name("127.0.0.1:5000/team/app:1") == ("127.0.0.1:5000/team/app", "1", "<none>")
    assert split_name("127.0.0.1:5000/team/app") == ("127.0.0.1:5000/team/app", "<none>", "<none>")
    assert split_name("r/app@sha256:abc") == ("r/app", "<none>", "sha256:abc")


def test_run_and_create_exit_125_for_their_own_errors() -> None:
    assert [_failure_code(c, a) for c, a in (("run", []), ("create", []), ("container", ["run", "x"]),
                                              ("container", ["ls"]), ("exec", []), ("ps", []), (None, []))] == [
        125, 125, 125, 1, 1, 1, 1]


def _info(config: dict[str, object], state: str = "running") -> ContainerInfo:
    record = Container(namespace="default", id="ab" * 32, name="web", image="127.0.0.1/app:1",
                       image_id="sha256:" + "cd" * 32, snapshotter="overlayfs", snapshot_key="ab" * 32,
                       config=config, labels={"team": "core"}, created_at=1_700_000_000.0)
    status = ContainerStatus(state, pid=42 if state == "running" else 0, started_at=1_700_000_001.0,
                             exit_code=None if state == "running" else 3,
                             finished_at=None if state == "running" else 1_700_000_002.0)
    return ContainerInfo(record=record, status=status, bundle="/nonexistent/bundle", log_path="/nonexistent/log")


def test_layouts_of_published_ports_and_networks() -> None:
    """What the CLI's networking keeps in the record, as docker's ps and inspect show it."""
    config = {"command": {"entrypoint": [], "cmd": ["httpd", "-f"]},
              "network": {"mode": "bridge", "dns": ["192.0.2.53"], "add_hosts": ["db:10.0.0.5"]},
              "networks": {"bridge": {"ip": "10.87.0.2", "prefix_len": 24, "gateway": "10.87.0.1",
                                      "mac": "aa:bb:cc:dd:ee:ff"}},
              "ports": [{"host_ip": "127.0.0.1", "host_port": 8080, "container_port": 80, "protocol": "tcp"},
                        {"host_ip": "", "host_port": 5353, "container_port": 53, "protocol": "udp"}]}
    row = ps_row(_info(config), now=1_700_000_100.0, no_trunc=False)
    assert row["Ports"] == "127.0.0.1:8080->80/tcp, 0.0.0.0:5353->53/udp" and row["Networks"] == "bridge"
    assert (row["Command"], row["Status"], row["RunningFor"]) == ('"httpd -f"', "Up About a minute", "About a minute ago")
    shown = container(_info(config), None)
    settings = shown["NetworkSettings"]
    assert settings["Ports"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                 "53/udp": [{"HostIp": "", "HostPort": "5353"}]}
    assert (settings["IPAddress"], settings["IPPrefixLen"], settings["Gateway"]) == ("10.87.0.2", 24, "10.87.0.1")
    assert settings["Networks"]["bridge"]["MacAddress"] == "aa:bb:cc:dd:ee:ff"
    host = shown["HostConfig"]
    assert (host["NetworkMode"], host["Dns"], host["ExtraHosts"]) == ("bridge", ["192.0.2.53"], ["db:10.0.0.5"])
    assert sorted(shown["Config"]["ExposedPorts"]) == ["53/udp", "80/tcp"]


def test_layouts_of_an_old_record_have_every_field() -> None:
    """A record without what later features keep (networks, ports, restarts, health) still shows docker's fields."""
    shown = container(_info({}, state="exited"), None)
    assert shown["State"]["Status"] == "exited" and shown["State"]["ExitCode"] == 3
    assert shown["State"]["Health"] is None and shown["RestartCount"] == 0
    assert shown["HostConfig"]["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert shown["HostConfig"]["NetworkMode"] == "none" and shown["Mounts"] == [] and shown["Name"] == "/web"
    assert (shown["Path"], shown["Args"], shown["Config"]["Env"]) == ("", [], [])
    row = ps_row(_info({}, state="exited"), now=1_700_000_062.0, no_trunc=True)
    assert (row["ID"], row["Status"], row["Ports"], row["Labels"]) == ("ab" * 32, "Exited (3) About a minute ago", "",
                                                                        "team=core")
