"""Volumes of CLI containers (issue 18): ``hawser volume`` create, ls,
inspect, rm, prune; ``-v NAME:/dst``, ``-v /dst``, ``--mount`` of each type;
copy-up of the image's content into a new volume, safe against symlinks in
the image; anonymous volumes removed by ``rm -v`` and ``run --rm``.  Real
runc and conmon through the CLI (``ctr``: nothing may be left at teardown)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import Env, one_line, system_check
from tests.support.images import build_image, write_layout
from tests.support.layers import LayerBuilder, busybox_layers

pytestmark = pytest.mark.integration


def _run(env: Env, *args: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(env._argv(args), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
                          cwd=cwd)


def _inspect(env: Env, *names: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = json.loads(env.cli("volume", "inspect", *names).stdout)
    return out


def _mountpoint(env: Env, name: str) -> Path:
    return Path(_inspect(env, name)[0]["Mountpoint"])


def _volumes(env: Env, *args: str) -> list[str]:
    return env.cli("volume", "ls", "-q", *args).stdout.split()


def test_named_volume_survives_and_is_copied_up_once(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    # busybox's /etc copied into the new volume: passwd is there; a write and a removal stay.
    proc = env.cli("run", "--rm", "-v", "v1:/etc", ref, "sh", "-c",
                   "cat /etc/passwd && echo kept > /etc/new && rm /etc/motd")
    assert proc.stdout.startswith("root:x:0:0:")
    data = _mountpoint(env, "v1")
    assert (data / "new").read_text() == "kept\n" and (data / "passwd").exists()
    assert data.parent.name == "v1" and data.name == "_data"
    # A second container sees the first's writes and no second copy-up (motd stays gone).
    proc = env.cli("run", "--rm", "-v", "v1:/etc", ref, "sh", "-c", "cat /etc/new; test -e /etc/motd || echo gone")
    assert proc.stdout == "kept\ngone\n"
    assert _volumes(env) == ["v1"]
    env.cli("volume", "rm", "v1")
    assert not data.exists()


def test_copy_up_keeps_owners_modes_links_devices_and_xattrs(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    cid = env.cli("create", "-v", "app:/opt/app", ref, "true").stdout.strip()
    data = _mountpoint(env, "app")
    st = data.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1000, 0o755)
    assert (data / "config.txt").read_text() == "colour=blue\n"
    assert (data / "config.txt").stat().st_uid == 1000
    assert (data / "run.sh").stat().st_ino == (data / "run-link.sh").stat().st_ino  # a hard link stays one
    assert os.readlink(data / "current") == "data"
    assert stat.S_IMODE((data / "data").stat().st_mode) == 0o750
    null = (data / "null").lstat()
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert os.getxattr(data / "tagged.txt", "user.hawser.test") == b"layer2"
    assert stat.S_IMODE((data / "setuid").stat().st_mode) == 0o4755
    assert (data / "olddir" / "fresh.txt").exists() and not (data / "old.txt").exists()
    # The record keeps what the container mounts (inspect's Mounts reads it).
    from hawser.volumes import container_mounts

    with env.store() as store:
        record = store.metadata.containers.get(cid)
    assert container_mounts(record.config) == [
        {"Type": "volume", "Name": "app", "Source": str(data), "Destination": "/opt/app", "Driver": "local",
         "Mode": "", "RW": True, "Propagation": ""}]
    env.cli("rm", "-v", cid)  # a named volume stays
    assert _volumes(env) == ["app"]
    env.cli("volume", "rm", "app")


def test_nocopy(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    assert env.cli("run", "--rm", "-v", "nc1:/opt/app:nocopy", ref, "/bin/ls", "-A", "/opt/app").stdout == ""
    assert env.cli("run", "--rm", "--mount", "type=volume,src=nc2,dst=/opt/app,volume-nocopy", ref,
                   "/bin/ls", "-A", "/opt/app").stdout == ""
    env.cli("volume", "rm", "nc1", "nc2")


def test_anonymous_volumes(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    assert env.cli("run", "--rm", "-v", "/data", ref, "sh", "-c", "echo x > /data/f").returncode == 0
    assert _volumes(env) == []  # run --rm took it
    kept = env.cli("create", "-v", "/data", ref, "true").stdout.strip()
    (anon,) = _volumes(env)
    assert len(anon) == 64 and _inspect(env, anon)[0]["Labels"] == {"com.docker.volume.anonymous": ""}
    env.cli("rm", kept)  # plain rm keeps it
    assert _volumes(env) == [anon]
    gone = env.cli("create", "-v", "/data", ref, "true").stdout.strip()
    assert len(_volumes(env)) == 2
    env.cli("rm", "-v", gone)
    assert _volumes(env) == [anon]
    df = json.loads(env.cli("system", "df", "--format", "json").stdout)
    assert (df["volumes"]["count"], df["volumes"]["unused"]) == (1, 1)
    env.cli("volume", "create", "named")
    proc = env.cli("volume", "prune", "-f")  # docker 23+: anonymous ones only
    assert anon in proc.stdout and "Total reclaimed space" in proc.stdout
    assert _volumes(env) == ["named"]
    env.cli("volume", "prune", "-f", "-a")
    assert _volumes(env) == []
    # A container that cannot be made takes the anonymous volume made for it along.
    proc = env.cli("run", "--rm", "-v", "/data", ref, "/nonexistent", check=False)
    assert proc.returncode != 0 and _volumes(env) == []
    # run -d --rm: the exit command removes it too.
    env.cli("run", "-d", "--rm", "-v", "/data", ref, "true")
    deadline = time.monotonic() + 20
    while (_volumes(env) or env.cli("ps", "-a", "-q").stdout) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _volumes(env) == [] and env.cli("ps", "-a", "-q").stdout == ""
    # system prune --volumes: the stopped container, then its anonymous volume.
    env.cli("create", "-v", "/data", ref, "true")
    proc = env.cli("system", "prune", "-f", "--volumes")
    assert "Deleted Volumes:" in proc.stdout and _volumes(env) == []


def test_mount_of_each_type(ctr: tuple[Env, str], tmp_path: Path) -> None:
    env, ref = ctr
    host = tmp_path / "host"
    host.mkdir()
    proc = env.cli("run", "--rm", "--mount", f"type=bind,source={host},target=/b",
                   "--mount", "type=volume,src=mv,destination=/v,ro",
                   "--mount", "type=tmpfs,dst=/t,tmpfs-size=1m,tmpfs-mode=1770",
                   "--mount", f"type=bind,src={host},dst=/bro,readonly,bind-propagation=rslave",
                   ref, "sh", "-c",
                   "touch /b/x; touch /v/y 2>/dev/null || echo v-ro; touch /bro/z 2>/dev/null || echo b-ro;"
                   "grep ' /t ' /proc/mounts; stat -c %a /t")
    lines = proc.stdout.splitlines()
    assert lines[:2] == ["v-ro", "b-ro"]
    assert lines[2].startswith("tmpfs /t tmpfs ") and "size=1024k" in lines[2]
    assert lines[3] == "1770"
    assert (host / "x").exists() and not (host / "z").exists()
    assert _volumes(env) == ["mv"]
    for bad, why in (("type=bind,target=/x", "absolute"), ("type=tmpfs,src=a,target=/x", "no source"),
                     ("type=volume,src=v,target=/x,tmpfs-size=1m", "tmpfs-*"), ("type=nfs,target=/x", "type"),
                     ("type=volume,src=v", "target")):
        proc = env.cli("run", "--rm", "--mount", bad, ref, "true", check=False)
        assert proc.returncode != 0 and why in one_line(proc), (bad, proc.stderr)
    env.cli("volume", "rm", "mv")


def test_relative_paths_are_refused(ctr: tuple[Env, str], tmp_path: Path) -> None:
    env, ref = ctr
    cwd = tmp_path / "cwd"
    (cwd / "a").mkdir(parents=True)
    for flag, spec in (("-v", "./data:/data"), ("-v", "a/b:/data"), ("-v", "../x:/data"),
                       ("--mount", "type=bind,src=a,dst=/data"), ("--mount", "type=volume,src=./a,dst=/data")):
        proc = _run(env, "run", "--rm", flag, spec, ref, "touch", "/data/written", cwd=str(cwd))
        line = one_line(proc)
        assert proc.returncode == 125, line  # docker's code for run's own errors
        assert "local volume name" in line or "absolute" in line, line
    assert sorted(p.name for p in cwd.rglob("*")) == ["a"]
    assert _volumes(env) == [] and env.cli("ps", "-a", "-q").stdout == ""


def test_volume_rm_refuses_one_in_use(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    cid = env.cli("run", "-d", "-v", "used:/d", ref, "sleep", "60").stdout.strip()
    stopped = env.cli("create", "-v", "kept:/d", ref, "true").stdout.strip()
    (_mountpoint(env, "used") / "data").write_text("precious\n")
    proc = env.cli("volume", "rm", "used", "kept", "nosuch", check=False)
    assert proc.returncode == 1
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 3, proc.stderr
    assert "in use" in errors[0] and "in use" in errors[1] and "nosuch" in errors[2]
    assert (_mountpoint(env, "used") / "data").read_text() == "precious\n"
    # -f quiets only "no such volume"; a used one is still refused.
    proc = env.cli("volume", "rm", "-f", "nosuch", "used", check=False)
    assert proc.returncode == 1 and proc.stdout == "nosuch\n" and "in use" in one_line(proc)
    env.cli("rm", "-f", cid, stopped)
    assert env.cli("volume", "rm", "used", "kept").stdout == "used\nkept\n"
    assert _volumes(env) == []


def test_ls_inspect_filters_and_tmpfs_options(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    assert env.cli("volume", "create", "--label", "team=a", "--label", "tier", "lab1").stdout == "lab1\n"
    env.cli("volume", "create", "plain1")
    env.cli("volume", "create", "plain1")  # as docker: creating an existing one is fine
    random = env.cli("volume", "create").stdout.strip()
    assert len(random) == 64 and all(c in "0123456789abcdef" for c in random)
    env.cli("volume", "create", "-o", "type=tmpfs,device=tmpfs,o=size=2m,mode=0750", "tmp1")
    assert _volumes(env) == sorted(["lab1", "plain1", random, "tmp1"])
    assert _volumes(env, "--filter", "name=lab") == ["lab1"]
    assert _volumes(env, "--filter", "label=team") == ["lab1"]
    assert _volumes(env, "--filter", "label=team=a", "--filter", "label=tier") == ["lab1"]
    assert _volumes(env, "--filter", "label=team=b") == []
    (info,) = _inspect(env, "lab1")
    assert info["Name"] == "lab1" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"team": "a", "tier": ""} and info["Options"] is None
    assert info["CreatedAt"].endswith("Z") and info["Mountpoint"].endswith("/volumes/default/lab1/_data")
    assert _inspect(env, "tmp1")[0]["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=2m,mode=0750"}
    proc = env.cli("volume", "inspect", "lab1", "nosuch", check=False)
    assert proc.returncode == 1 and [v["Name"] for v in json.loads(proc.stdout)] == ["lab1"]
    assert env.cli("volume", "ls", "--filter", "name=plain").stdout.splitlines() == [
        "DRIVER    VOLUME NAME", "local     plain1"]
    assert env.cli("volume", "ls", "--filter", "name=lab", "--format", '{{.Name}} {{.Label "team"}} {{.Labels}}'
                   ).stdout == "lab1 a team=a,tier=\n"
    assert json.loads(env.cli("volume", "ls", "--filter", "name=lab", "--format", "json").stdout)["Name"] == "lab1"
    assert env.cli("volume", "inspect", "-f", "{{.Name}}:{{.Driver}}", "lab1", "plain1").stdout == \
        "lab1:local\nplain1:local\n"
    # A tmpfs volume is mounted when first used, and its data kept until it is removed.
    cid = env.cli("run", "-d", "-v", "tmp1:/t", ref, "sh", "-c", "grep ' /t ' /proc/mounts; echo x > /t/f; "
                  "sleep 60").stdout.strip()
    assert _volumes(env, "--filter", "dangling=true") == sorted(["lab1", "plain1", random])
    assert _volumes(env, "--filter", "dangling=false") == ["tmp1"]
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        assert any(line.split()[4] == str(_mountpoint(env, "tmp1")) and " - tmpfs " in line for line in f)
    env.cli("rm", "-f", cid)
    assert (_mountpoint(env, "tmp1") / "f").read_text() == "x\n"
    _, findings = system_check(env)  # the volume's own mount is no leftover of a container
    assert not [f for f in findings if "/volumes/" in f["subject"]], findings
    # Invalid names and filters are refused.
    assert "local volume name" in one_line(env.cli("volume", "create", "a/b", check=False))
    assert "filter" in one_line(env.cli("volume", "ls", "--filter", "colour=red", check=False))
    # prune: anonymous only by default (none here), then by label with --all, then all.
    assert "Deleted" not in env.cli("volume", "prune", "-f").stdout
    proc = env.cli("volume", "prune", "-f", "-a", "--filter", "label=team=a")
    assert proc.stdout.splitlines()[:2] == ["Deleted Volumes:", "lab1"]
    env.cli("volume", "prune", "-f", "--all")
    assert _volumes(env) == []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        assert "/volumes/default/tmp1/" not in f.read()  # unmounted on removal


def test_namespaces_have_their_own_volumes(ctr: tuple[Env, str]) -> None:
    env, _ = ctr
    env.cli("volume", "create", "shared-name")
    assert env.cli("-n", "other", "volume", "ls", "-q").stdout == ""
    env.cli("-n", "other", "volume", "create", "shared-name")
    env.cli("volume", "rm", "shared-name")
    assert env.cli("-n", "other", "volume", "ls", "-q").stdout == "shared-name\n"
    env.cli("-n", "other", "volume", "rm", "shared-name")


@pytest.fixture
def evil_image(ctr: tuple[Env, str], tmp_path: Path) -> tuple[Env, str, Path]:
    """busybox plus a layer whose symlinks point at a host directory (holding a
    secret), absolutely and through ``..``; VOLUME /data (with a seed file and
    a symlink out) in its config."""
    env, _ = ctr
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "secret").write_text("host secret\n")
    layer = LayerBuilder()
    layer.add_dir("data")
    layer.add_file("data/seed.txt", b"seed\n")
    layer.add_symlink("data/out", str(host))
    layer.add_symlink("evil", str(host))
    layer.add_symlink("evil2", "../../../../../../../../.." + str(host))
    image = build_image([*busybox_layers(), layer.build()], volumes=("/data",))
    name = "localhost/test/evil:1"
    env.cli("image", "import", write_layout(str(tmp_path / "evil.tar"), [(name, image)], as_tar=True))
    return env, name, host


def test_image_volume_gets_an_anonymous_volume(evil_image: tuple[Env, str, Path]) -> None:
    env, image, host = evil_image
    assert env.cli("run", "--rm", image, "cat", "/data/seed.txt").stdout == "seed\n"
    assert _volumes(env) == []  # run --rm removed its anonymous volume
    cid = env.cli("create", image, "true").stdout.strip()
    (anon,) = _volumes(env)
    data = _mountpoint(env, anon)
    assert (data / "seed.txt").read_text() == "seed\n"
    assert os.readlink(data / "out") == str(host)  # copied as a link, never followed
    env.cli("rm", "-v", cid)
    # A mount at that path replaces the image's volume.
    cid = env.cli("create", "-v", "mine:/data", image, "true").stdout.strip()
    assert _volumes(env) == ["mine"]
    env.cli("rm", "-v", cid)
    env.cli("volume", "rm", "mine")
    assert sorted(p.name for p in host.iterdir()) == ["secret"]


def test_copy_up_never_leaves_the_rootfs(evil_image: tuple[Env, str, Path]) -> None:
    env, image, host = evil_image
    for name, dst in (("e1", "/evil"), ("e2", "/evil2")):
        proc = env.cli("run", "--rm", "-v", f"{name}:{dst}", image, "sh", "-c", f"ls -A {dst}; echo w > {dst}/w")
        assert proc.stdout == "", proc.stdout  # the host's secret was not copied in
        assert sorted(p.name for p in _mountpoint(env, name).iterdir()) == ["w"]
    assert sorted(p.name for p in host.iterdir()) == ["secret"]  # and nothing written there
    assert (host / "secret").read_text() == "host secret\n"
    env.cli("volume", "rm", "e1", "e2")
