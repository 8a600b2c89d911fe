"""More of docker's commands through the CLI with real runc and conmon:
history, the image group (tag, push, pull, save, load, prune), info, update
(limits and the restart policy) and --volumes-from."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hawser import __version__
from tests.integration.conftest import Env
from tests.support.podman import Podman, tools_available

pytestmark = pytest.mark.integration


def _inspect(env: Env, name: str, template: str) -> str:
    return env.cli("inspect", "--format", template, name).stdout.strip()


def _wait_for(env: Env, name: str, template: str, want: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    got = ""
    while time.monotonic() < deadline:
        got = _inspect(env, name, template)
        if got == want:
            return got
        time.sleep(0.1)
    return got


def test_history_as_docker_shows_it(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    image_id = env.cli("images", "-q", "--no-trunc").stdout.strip()
    out = env.cli("history", ref).stdout.splitlines()
    header = out[0]
    assert [header.index(c) for c in ("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT")] == sorted(
        header.index(c) for c in ("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"))
    rows = out[1:]
    assert len(rows) == 3  # the test image's three layers, each with its history entry
    assert rows[0].startswith(image_id.removeprefix("sha256:")[:12])
    assert all(r.startswith("<missing>") for r in rows[1:])
    fields = env.cli("history", "--format", "{{.ID}}|{{.CreatedBy}}|{{.Size}}", ref).stdout.splitlines()
    assert [f.split("|")[1] for f in fields] == ["layer 2", "layer 1", "layer 0"]
    assert all(f.split("|")[2] not in ("", "0B") for f in fields)  # each entry made a layer: its unpacked size
    assert env.cli("history", "-q", "--no-trunc", ref).stdout.split() == [image_id, "<missing>", "<missing>"]
    # image history is the same command; a missing image is one line, exit 1
    assert env.cli("image", "history", ref).stdout.splitlines() == out
    # A committed image: its new entry on top, with its message as the comment and a time docker's way.
    env.cli("run", "--name", "c", ref, "sh", "-c", "echo x > /new")
    env.cli("commit", "-m", "one file", "c", "localhost/committed:1")
    env.cli("rm", "c")
    top = env.cli("history", "--format", "{{.ID}}|{{.CreatedSince}}|{{.Size}}|{{.Comment}}",
                  "localhost/committed:1").stdout.splitlines()
    assert len(top) == 4 and top[1].startswith("<missing>|N/A|")
    new_id, since, _, comment = top[0].split("|")
    assert new_id != image_id.removeprefix("sha256:")[:12] and since.endswith(" ago") and comment == "one file"
    missing = env.cli("history", "nosuch:1", check=False)
    assert missing.returncode == 1 and "not found" in missing.stderr


def test_image_group_tag_push_pull_save_load_prune(ctr: tuple[Env, str], tmp_path: Path) -> None:
    env, ref = ctr
    image_id = env.cli("images", "-q", "--no-trunc").stdout.strip()
    assert env.cli("image", "tag", ref, "localhost/copy:1").stdout.strip() == "localhost/copy:1"
    assert "localhost/copy:1" in env.cli("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    assert env.cli("image", "push", "--plain-http", "-q", ref).stdout.startswith("sha256:")
    assert env.cli("image", "pull", "--plain-http", "-q", ref).stdout.strip()
    archive = tmp_path / "copy.tar"
    env.cli("image", "save", "-o", str(archive), "localhost/copy:1")
    env.cli("image", "rm", "localhost/copy:1")
    loaded = env.cli("image", "load", "-q", "-i", str(archive)).stdout.split()
    assert loaded == ["localhost/copy:1"]
    # Nothing dangling (hawser keeps no untagged image): prune without -a removes nothing.
    plain = env.cli("image", "prune", "-f").stdout
    assert "Deleted Images:" not in plain and "Total reclaimed space: " in plain
    refused = env.cli("image", "prune", "-a", check=False)  # no terminal to confirm on
    assert refused.returncode == 1 and "WARNING!" in refused.stdout
    # -a: every image no container uses; a container's image (by ID: its other names too) stays.
    env.cli("create", "--name", "user", ref, "true")
    kept = env.cli("image", "prune", "-a", "-f").stdout
    assert "Deleted Images:" not in kept
    assert len(env.cli("images", "-q").stdout.split()) == 2
    env.cli("rm", "user")
    assert "untagged" not in env.cli("image", "prune", "-a", "-f", "--filter", "until=1000000000").stdout
    out = env.cli("image", "prune", "-a", "-f").stdout.splitlines()
    assert out[0] == "Deleted Images:"
    assert sorted(out[1:3]) == sorted([f"untagged: {ref}", "untagged: localhost/copy:1"])
    assert out[3] == f"deleted: {image_id}"
    assert out[-1].startswith("Total reclaimed space: ") and out[-1] != "Total reclaimed space: 0B"
    assert env.cli("images", "-q").stdout.strip() == ""


def test_info_and_its_format(ctr: tuple[Env, str]) -> None:
    env, _ = ctr
    text = env.cli("info").stdout
    assert text.startswith(f"Version: {__version__}") and "Snapshotter: overlayfs" in text
    assert env.cli("info", "--format", "{{.ServerVersion}} {{.Images}} {{.Driver}}").stdout == (
        f"{__version__} 1 overlayfs\n")
    data = json.loads(env.cli("info", "--format", "json").stdout)
    assert data["Containers"] == 0 and data["Hawser"]["storage"]["root"] == env.root
    assert env.cli("system", "info").stdout.splitlines()[0] == text.splitlines()[0]
    bad = env.cli("info", "--format", "{{.Nope}}", check=False)
    assert bad.returncode == 1 and "template" in bad.stderr


def test_update_limits_and_errors(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "-d", "--name", "u1", ref, "sleep", "300")
    env.cli("create", "--name", "u2", ref, "true")
    out = env.cli("update", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "64", "u1", "u2").stdout
    assert out.split() == ["u1", "u2"]
    for name in ("u1", "u2"):
        assert _inspect(env, name, "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}}") == (
            f"{64 << 20} 500000000 64")
    # the limit is the running container's cgroup's
    assert env.cli("stats", "--no-stream", "--format", "{{.MemUsage}}", "u1").stdout.strip().endswith(" / 64MiB")
    assert env.cli("container", "update", "--cpu-shares", "512", "u1").stdout.strip() == "u1"
    assert _inspect(env, "u1", "{{.HostConfig.CpuShares}}") == "512"
    none = env.cli("update", "u1", check=False)
    assert none.returncode == 2 and "one or more flags" in none.stderr
    missing = env.cli("update", "--memory", "64m", "nosuch", "u1", check=False)
    assert missing.returncode == 1 and missing.stdout.split() == ["u1"] and "nosuch" in missing.stderr
    env.cli("stop", "-t", "1", "u1")
    exited = env.cli("update", "--memory", "32m", "u1", check=False)
    assert exited.returncode == 1 and "exited" in exited.stderr


def test_update_restart_policy(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    # Created without a policy, exited: its next start is given the exit command, and the policy applies.
    env.cli("run", "-d", "--name", "r1", ref, "sh", "-c", "exit 3")
    assert _wait_for(env, "r1", "{{.State.Status}}", "exited") == "exited"
    updated = env.cli("update", "--restart", "on-failure:2", "r1")
    assert updated.stdout.strip() == "r1" and updated.stderr == ""
    assert _inspect(env, "r1", "{{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}"
                    ) == "on-failure:2"
    env.cli("start", "r1")
    assert _wait_for(env, "r1", "{{.RestartCount}}", "2") == "2"
    assert _wait_for(env, "r1", "{{.State.Status}} {{.State.ExitCode}}", "exited 3") == "exited 3"
    # Created with one: its conmon runs the cleanup, which reads the policy updated meanwhile.
    env.cli("run", "-d", "--restart", "on-failure", "--name", "r2", ref, "sh", "-c", "sleep 1; exit 1")
    quiet = env.cli("update", "--restart", "no", "r2")
    assert quiet.stdout.strip() == "r2" and quiet.stderr == ""
    assert _wait_for(env, "r2", "{{.State.Status}}", "exited") == "exited"
    time.sleep(1)  # a restart would come 100 ms after the exit
    assert _inspect(env, "r2", "{{.State.Status}} {{.RestartCount}}") == "exited 0"
    # docker's refusal: a container removed when it exits cannot get a policy.
    env.cli("run", "-d", "--rm", "--name", "r3", ref, "sleep", "300")
    refused = env.cli("update", "--restart", "always", "r3", check=False)
    assert refused.returncode == 1 and "AutoRemove" in refused.stderr
    bad = env.cli("update", "--restart", "sometimes", "r3", check=False)
    assert bad.returncode == 1 and "invalid restart policy" in bad.stderr
    env.cli("rm", "-f", "r3")
    # A created container's conmon (started at create) has none either: the policy waits for a start after its exit.
    env.cli("create", "--name", "r4", ref, "true")
    assert "once it has exited" in env.cli("update", "--restart", "always", "r4").stderr
    # A running one given a policy keeps the copy of its spec that a reboot restarts it from.
    env.cli("run", "-d", "--name", "r5", ref, "sleep", "300")
    later = env.cli("update", "--restart", "unless-stopped", "--memory", "48m", "r5").stderr
    assert "from the container's next start" in later
    assert "next start" in env.cli("update", "--restart", "always", "r5").stderr  # still this conmon's run
    id_ = _inspect(env, "r5", "{{.Id}}")
    copies = [p for p in Path(env.root).rglob("config.json") if id_ in str(p)]
    assert len(copies) == 1
    assert json.loads(copies[0].read_text())["linux"]["resources"]["memory"]["limit"] == 48 << 20


def test_volumes_from(ctr: tuple[Env, str], tmp_path: Path) -> None:
    env, ref = ctr
    host = tmp_path / "host"
    host.mkdir()
    (host / "f").write_text("from the host\n")
    env.cli("create", "--name", "src", "-v", "shared:/data", "-v", f"{host}:/hostdir:ro", ref, "true")
    out = env.cli("run", "--rm", "--volumes-from", "src", ref, "sh", "-c",
                  "echo hi > /data/x && cat /hostdir/f && cat /data/x").stdout
    assert out == "from the host\nhi\n"
    # the mode of the source stays without one given; :ro makes every one read-only, :rw writable
    assert env.cli("run", "--rm", "--volumes-from", "src", ref, "sh", "-c", "echo x > /hostdir/g",
                   check=False).returncode != 0
    assert env.cli("run", "--rm", "--volumes-from", "src:ro", ref, "sh", "-c", "echo x > /data/y",
                   check=False).returncode != 0
    env.cli("create", "--name", "user", "--volumes-from", "src:rw", "-v", "other:/data", ref, "true")
    mounts = json.loads(_inspect(env, "user", "{{json .Mounts}}"))
    assert sorted((m["Destination"], m.get("Name", m["Source"]), m["RW"]) for m in mounts) == [
        ("/data", "other", True), ("/hostdir", str(host), True)]  # -v's /data wins over src's
    missing = env.cli("run", "--rm", "--volumes-from", "nosuch", ref, "true", check=False)
    assert missing.returncode == 125 and "nosuch" in missing.stderr
    env.cli("rm", "user", "src")
    env.cli("volume", "rm", "shared", "other")


@pytest.mark.skipif(not tools_available(), reason="podman is not installed (scripts/setup.sh installs it)")
def test_history_equals_podmans(ctr: tuple[Env, str], podman: Podman) -> None:
    env, ref = ctr
    podman("pull", "-q", "--tls-verify=false", ref)
    for args in (["--format", "{{.ID}}|{{.CreatedBy}}|{{.Comment}}"], ["-q"]):
        assert env.cli("history", *args, ref).stdout == podman("history", *args, ref).stdout, args
    # docker's full ID keeps its sha256: (podman's drops it)
    assert env.cli("history", "-q", "--no-trunc", ref).stdout.replace("sha256:", "") == podman(
        "history", "-q", "--no-trunc", ref).stdout
    # SIZE is docker's (the files in the layer), not podman's (the layer's tar): not compared
