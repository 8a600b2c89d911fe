"""attach (and docker's Ctrl-P Ctrl-Q detach), rename, top, cp and the
``container`` group, with real runc and conmon through the CLI (``ctr``: at
teardown no conmon, mount or cgroup of the test may be left).  cp is checked
against symlinks in the container that point out of its root, both ways."""

from __future__ import annotations

import io
import os
import pty
import select
import signal
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.integration.conftest import Env, one_line

pytestmark = pytest.mark.integration

LOOP = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
DETACH = b"\x10\x11"  # ctrl-p ctrl-q


class Pty:
    """A CLI run with a terminal for its stdin, stdout and stderr, driven by the test."""

    def __init__(self, env: Env, *args: str) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(env._argv(args), stdin=slave, stdout=slave, stderr=slave,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.output = b""

    def expect(self, text: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"{text!r} not seen in {self.output!r}"
            ready, _, _ = select.select([self.master], [], [], 0.5)
            if ready:
                try:
                    self.output += os.read(self.master, 4096)
                except OSError:  # EIO: the process is gone
                    assert text in self.output, f"{text!r} not seen in {self.output!r}"

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


def _state(env: Env, name: str) -> str:
    return env.cli("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


def test_attach_relays_and_ctrl_p_ctrl_q_detaches(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    # run -it: the detach keys leave it running, the client exits 0.
    term = Pty(env, "run", "-it", "--name", "shell", ref, "sh")
    term.expect(b"# ")
    term.send(b"echo one$((1+1))\r")
    term.expect(b"one2")
    term.send(DETACH)
    assert term.wait() == 0
    assert _state(env, "shell") == "running"
    # attach: the same shell, its input still open; a custom sequence detaches, docker's syntax.
    term = Pty(env, "attach", "--detach-keys", "ctrl-x,e", "shell")
    term.send(b"echo two$((1+2))\r")
    term.expect(b"two3")
    term.send(b"\x18e")
    assert term.wait() == 0
    assert _state(env, "shell") == "running"
    # attach again, and leave with exit: the container's own code.
    term = Pty(env, "attach", "shell")
    term.send(b"exit 5\r")
    assert term.wait() == 5
    assert _state(env, "shell") == "exited"
    # start -ai of the exited one: attached again, detachable.
    term = Pty(env, "start", "-ai", "shell")
    term.send(b"echo three$((1+3))\r")
    term.expect(b"three4")
    term.send(DETACH)
    assert term.wait() == 0
    assert _state(env, "shell") == "running"
    env.cli("rm", "-f", "shell")
    proc = env.cli("attach", "--detach-keys", "ctrl-", "nosuch", check=False)
    assert proc.returncode != 0
    # run --rm -it, detached from: removed all the same once it exits.
    term = Pty(env, "run", "--rm", "-it", "--name", "gone", ref, "sh")
    term.expect(b"# ")
    term.send(DETACH)
    assert term.wait() == 0
    assert _state(env, "gone") == "running"
    env.cli("kill", "gone")
    deadline = time.monotonic() + 30
    while "gone" in env.cli("ps", "-a", "--format", "{{.Names}}").stdout.split():
        assert time.monotonic() < deadline, "run --rm -it, detached, left the container after it exited"
        time.sleep(0.2)


def test_attach_without_a_terminal(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    # Output of a non-tty container relayed; SIGINT goes to it (its trap picks the code).
    env.cli("run", "-d", "--name", "ticker", ref, "sh", "-c",
            "trap 'exit 7' INT; while :; do echo tick; sleep 0.1; done")
    with env.popen("attach", "ticker") as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "tick\n"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 7
    assert _state(env, "ticker") == "exited"
    # stdin relayed until its end: cat's input closes, so it ends.
    env.cli("run", "-d", "-i", "--name", "cat", ref, "cat")
    proc2 = subprocess.run(env._argv(("attach", "cat")), input="through attach\n", capture_output=True, text=True,
                           timeout=30)
    assert proc2.returncode == 0 and proc2.stdout == "through attach\n", proc2
    refused = env.cli("attach", "cat", check=False)
    assert refused.returncode != 0 and "stopped container" in one_line(refused)


def test_rename(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "-d", "--name", "old", ref, "sh", "-c", LOOP)
    env.cli("run", "-d", "--name", "other", ref, "true")
    env.cli("rename", "old", "new")  # running
    names = env.cli("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "new" in names and "old" not in names
    assert _state(env, "new") == "running"
    env.cli("run", "-d", "--name", "old", ref, "true")  # the old name is free
    taken = env.cli("rename", "new", "other", check=False)
    assert taken.returncode != 0 and "already in use" in one_line(taken)
    invalid = env.cli("rename", "new", "bad/name", check=False)
    assert invalid.returncode != 0 and "invalid container name" in one_line(invalid)
    assert env.cli("rename", "nosuch", "x", check=False).returncode != 0
    env.cli("stop", "-t", "5", "new")


def test_top_lists_the_container_processes(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    env.cli("run", "-d", "--name", "t", ref, "sh", "-c", "sleep 1001 & sleep 1002 & " + LOOP)
    deadline = time.monotonic() + 10
    while "sleep 1002" not in (out := env.cli("top", "t").stdout) and time.monotonic() < deadline:
        time.sleep(0.2)
    lines = out.splitlines()
    assert lines[0].split() == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    commands = " ".join(lines[1:])
    assert "sleep 1001" in commands and "sleep 1002" in commands and "sh -c" in commands
    assert "pytest" not in commands  # only the container's
    custom = env.cli("top", "t", "-o", "pid,comm").stdout.splitlines()
    assert custom[0].split() == ["PID", "COMMAND"]
    assert sorted(line.split()[1] for line in custom[1:]).count("sleep") >= 2
    env.cli("stop", "-t", "5", "t")
    assert env.cli("top", "t", check=False).returncode != 0


def _exec(env: Env, name: str, script: str) -> str:
    return env.cli("exec", name, "sh", "-c", script).stdout


def test_cp_both_ways(ctr: tuple[Env, str], tmp_path: Path) -> None:
    env, ref = ctr
    volume = tmp_path / "vol"
    volume.mkdir()
    (volume / "v").write_text("in a volume\n")
    env.cli("run", "-d", "--name", "c", "-v", f"{volume}:/vol", ref, "sh", "-c", LOOP)
    _exec(env, "c", "mkdir -p /data/sub && echo hi > /data/sub/f && echo top > /data/t && ln -s sub/f /data/l "
                    "&& chown 1234:5678 /data/t")
    out = tmp_path / "out"
    out.mkdir()
    # A file into a directory, a file onto a new name, a directory (with its symlink) into a directory.
    env.cli("cp", "c:/data/t", str(out))
    assert (out / "t").read_text() == "top\n"
    env.cli("cp", "c:/data/sub/f", str(out / "renamed"))
    assert (out / "renamed").read_text() == "hi\n"
    env.cli("cp", "c:/data", str(out))
    assert (out / "data" / "sub" / "f").read_text() == "hi\n"
    assert os.readlink(out / "data" / "l") == "sub/f"
    assert (out / "data" / "t").stat().st_uid == 0  # without -a: this user's
    env.cli("cp", "-a", "c:/data/t", str(out / "kept"))
    assert ((out / "kept").stat().st_uid, (out / "kept").stat().st_gid) == (1234, 5678)
    # A new directory name gets the contents; dir/. into an existing one too.
    env.cli("cp", "c:/data", str(out / "copy"))
    assert (out / "copy" / "sub" / "f").read_text() == "hi\n"
    (out / "existing").mkdir()
    env.cli("cp", "c:/data/.", str(out / "existing"))
    assert (out / "existing" / "t").read_text() == "top\n"
    # -L: a symlink as the source is what it points at.
    env.cli("cp", "c:/data/l", str(out / "link"))
    assert os.readlink(out / "link") == "sub/f"
    env.cli("cp", "-L", "c:/data/l", str(out / "followed"))
    assert (out / "followed").read_text() == "hi\n"
    # Errors: a missing source, a directory onto a file, a missing destination directory.
    assert "no such file" in one_line(env.cli("cp", "c:/nosuch", str(out), check=False))
    assert "directory to a file" in one_line(env.cli("cp", "c:/data", str(out / "t"), check=False))
    assert env.cli("cp", "c:/data/t", str(out / "no" / "where"), check=False).returncode != 0

    # Into the container: a file, over a file, a directory into a directory, with -a.
    src = tmp_path / "src"
    (src / "deep").mkdir(parents=True)
    (src / "deep" / "x").write_text("x\n")
    (src / "file").write_text("host file\n")
    os.chown(src / "file", 4321, 8765)
    env.cli("cp", str(src / "file"), "c:/data/")
    assert _exec(env, "c", "cat /data/file; stat -c %u:%g /data/file") == "host file\n0:0\n"
    env.cli("cp", "-a", str(src / "file"), "c:/data/t")
    assert _exec(env, "c", "cat /data/t; stat -c %u:%g /data/t") == "host file\n4321:8765\n"
    env.cli("cp", str(src), "c:/tmp")
    assert _exec(env, "c", "cat /tmp/src/deep/x") == "x\n"
    env.cli("cp", str(src / "deep"), "c:/newdir")
    assert _exec(env, "c", "cat /newdir/x") == "x\n"

    # A running container's mounts are seen as in it (its own mount tree).
    env.cli("cp", "c:/vol/v", str(out / "v"))
    assert (out / "v").read_text() == "in a volume\n"
    env.cli("cp", str(src / "file"), "c:/vol/")
    assert (volume / "file").read_text() == "host file\n"

    # '-': a tar stream out and in.
    tar_out = subprocess.run(env._argv(("cp", "c:/data/sub", "-")), capture_output=True, timeout=60, check=True)
    with tarfile.open(fileobj=io.BytesIO(tar_out.stdout)) as tar:
        assert sorted(tar.getnames()) == ["sub", "sub/f"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = b"from a tar\n"
        info = tarfile.TarInfo("in/tarred")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    subprocess.run(env._argv(("cp", "-", "c:/tmp")), input=buf.getvalue(), capture_output=True, timeout=60,
                   check=True)
    assert _exec(env, "c", "cat /tmp/in/tarred") == "from a tar\n"

    # A stopped container's files (its rootfs stays mounted until rm).
    env.cli("stop", "-t", "5", "c")
    env.cli("cp", "c:/data/sub/f", str(out / "after-stop"))
    assert (out / "after-stop").read_text() == "hi\n"
    env.cli("cp", str(src / "file"), "c:/data/stopped")
    env.cli("cp", "c:/data/stopped", str(out / "stopped"))
    assert (out / "stopped").read_text() == "host file\n"
    # Its rootfs unmounted (as after a reboot): the snapshot is mounted for the copy, seen by no one else.
    id_ = env.cli("inspect", "--format", "{{.Id}}", "c").stdout.strip()
    rootfs = os.path.join(env.state, "containers", id_, "rootfs")
    subprocess.run(["umount", rootfs], check=True)
    env.cli("cp", str(src / "file"), "c:/data/unmounted")
    env.cli("cp", "c:/data/unmounted", str(out / "unmounted"))
    assert (out / "unmounted").read_text() == "host file\n"
    assert not os.path.ismount(rootfs)
    env.cli("start", "c")
    assert _exec(env, "c", "cat /data/unmounted") == "host file\n"
    env.cli("stop", "-t", "5", "c")


def test_cp_never_leaves_the_container_root(ctr: tuple[Env, str], tmp_path: Path) -> None:
    env, ref = ctr
    host = tmp_path / "hostside"
    host.mkdir()
    (host / "secret").write_text("HOST SECRET\n")
    up = "../" * 12
    env.cli("run", "-d", "--name", "c", ref, "sh", "-c", LOOP)
    _exec(env, "c", f"ln -s {host}/secret /abs && ln -s {up}{str(host).lstrip('/')}/secret /rel "
                    f"&& ln -s {host} /absdir && ln -s {up}{str(host).lstrip('/')} /reldir "
                    f"&& mkdir -p /mine && ln -s / /mine/root")
    out = tmp_path / "out"
    out.mkdir()
    # Reading through a link that points out: the container's file (here none), never the host's.
    for source in ("c:/abs", "c:/rel", "c:/absdir/secret", "c:/reldir/secret", "c:/mine/root" + str(host) + "/secret"):
        for flags in ((), ("-L",)):
            target = out / "got"
            proc = env.cli("cp", *flags, source, str(target), check=False)
            if target.is_symlink():
                target.unlink()  # the link itself was copied (no -L): its text, nothing read through it
            else:
                assert proc.returncode != 0, (source, flags)
                assert not target.exists(), (source, flags)
    tar_out = subprocess.run(env._argv(("cp", "-L", "c:/abs", "-")), capture_output=True, timeout=60)
    assert b"HOST SECRET" not in tar_out.stdout and tar_out.returncode != 0
    # With the same path in the container, that is what is read.
    _exec(env, "c", f"mkdir -p {host} && echo container secret > {host}/secret")
    for source in ("c:/absdir/secret", "c:/reldir/secret"):
        env.cli("cp", source, str(out / "got"))
        assert (out / "got").read_text() == "container secret\n"
        (out / "got").unlink()
    env.cli("cp", "-L", "c:/rel", str(out / "got"))
    assert (out / "got").read_text() == "container secret\n"
    _exec(env, "c", f"rm -r {host}")

    # Writing through such links: never a file on the host.
    (tmp_path / "payload").write_text("payload\n")
    for dest in ("c:/absdir/", "c:/reldir/", "c:/absdir/new", "c:/reldir/new", "c:/mine/root" + str(host) + "/new"):
        proc = env.cli("cp", str(tmp_path / "payload"), dest, check=False)
        assert proc.returncode != 0 and "does not exist" in one_line(proc), dest
        assert sorted(os.listdir(host)) == ["secret"], dest
    env.cli("cp", str(tmp_path / "payload"), "c:/abs", check=False)  # replaces the link, in the container
    env.cli("cp", str(tmp_path / "payload"), "c:/rel", check=False)
    assert (host / "secret").read_text() == "HOST SECRET\n"
    assert _exec(env, "c", "cat /abs") == "payload\n"
    # A tar whose link points out, then a file through it; and one with '..'.
    for members in (("link", str(host)), ("up", "..")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            link = tarfile.TarInfo(members[0])
            link.type, link.linkname = tarfile.SYMTYPE, members[1]
            tar.addfile(link)
            data = b"evil\n"
            info = tarfile.TarInfo(f"{members[0]}/evil")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        subprocess.run(env._argv(("cp", "-", "c:/tmp")), input=buf.getvalue(), capture_output=True, timeout=60)
        assert sorted(os.listdir(host)) == ["secret"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("../../../../../../../.." + str(host) + "/dotdot")
        tar.addfile(info, io.BytesIO(b""))
    proc = subprocess.run(env._argv(("cp", "-", "c:/tmp")), input=buf.getvalue(), capture_output=True, timeout=60)
    assert proc.returncode != 0 and sorted(os.listdir(host)) == ["secret"]
    assert (host / "secret").read_text() == "HOST SECRET\n"


def test_container_group(ctr: tuple[Env, str]) -> None:
    env, ref = ctr
    help_text = env.cli("container", "--help").stdout
    for command in ("ls", "run", "create", "start", "stop", "kill", "rm", "inspect", "logs", "exec", "attach", "cp",
                    "top", "rename", "pause", "unpause", "wait", "stats", "prune", "commit", "diff", "export"):
        assert f"\n  {command} " in help_text, command
    assert env.cli("container", "run", "--rm", ref, "echo", "hi").stdout == "hi\n"
    env.cli("container", "run", "-d", "--name", "up", ref, "sh", "-c", LOOP)
    env.cli("container", "create", "--name", "made", ref, "true")
    env.cli("container", "run", "--name", "done", ref, "sh", "-c", "echo x > /file")
    assert env.cli("container", "ls", "--format", "{{.Names}}").stdout.split() == ["up"]
    assert sorted(env.cli("container", "ps", "-a", "--format", "{{.Names}}").stdout.split()) == ["done", "made", "up"]
    assert env.cli("container", "logs", "up").returncode == 0
    proc = env.cli("container", "prune", check=False)  # not a terminal: asks for -f
    assert proc.returncode != 0 and "WARNING! This will remove all stopped containers." in proc.stdout
    ids = {n: env.cli("inspect", "--format", "{{.Id}}", n).stdout.strip() for n in ("done", "made")}
    out = env.cli("container", "prune", "-f").stdout
    assert out.startswith("Deleted Containers:\n") and "Total reclaimed space:" in out
    assert set(out.split("\n\n")[0].splitlines()[1:]) == set(ids.values())
    assert env.cli("container", "ls", "-a", "--format", "{{.Names}}").stdout.split() == ["up"]
    env.cli("container", "stop", "-t", "5", "up")
    assert env.cli("container", "nosuch", check=False).returncode == 2
