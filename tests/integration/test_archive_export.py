"""``hawser export`` (a container's filesystem as a tar) and ``hawser import``
(such a tar as a one-layer image), with both snapshotters: export, import,
run the import and see the container's changes."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

from tests.integration.conftest import Env, one_line
from tests.support.images import BuiltImage

CHANGES = "echo hi > /root/new; rm /etc/motd; mkdir -p /data && echo x > /data/y; ln /data/y /data/z"


def test_export_then_import_and_run(env: Env, busybox: tuple[str, BuiltImage], tmp_path: Path) -> None:
    ref, _ = busybox
    env.cli("pull", "--plain-http", "-q", ref)
    env.cli("run", "--name", "exported", ref, "sh", "-c", CHANGES)
    try:
        archive = tmp_path / "exported.tar"
        env.cli("export", "-o", str(archive), "exported")
        piped = subprocess.run(env._argv(("export", "exported")), capture_output=True, timeout=60, check=True)
        assert piped.stdout == archive.read_bytes()  # stdout as the file, and the same tar twice

        with tarfile.open(archive) as tar:
            names = set(tar.getnames())
            assert {"root/new", "data/y", "data/z", "bin/busybox", "opt/app/olddir/fresh.txt"} <= names
            assert not {"etc/motd", "opt/app/old.txt", "opt/app/olddir/stale.txt"} & names  # deleted stays deleted
            assert tar.getmember("data/z").islnk()
            assert tar.getmember("opt/app/null").ischr()
            assert not [n for n in names if ".wh." in n]

        name = "127.0.0.1/test/imported:1"
        assert env.cli("import", "-q", str(archive), name).stdout.split() == [name]
        out = env.cli("run", "--rm", name, "/bin/sh", "-c", "cat /root/new /data/y; test ! -e /etc/motd && echo gone")
        assert out.stdout == "hi\nx\ngone\n"
        # From standard input, the same tar is the same image.
        piped_import = subprocess.run(env._argv(("import", "-q", "-", "127.0.0.1/test/imported:2")),
                                      input=archive.read_bytes(), capture_output=True, timeout=60, check=True)
        assert piped_import.stdout.decode().split() == ["127.0.0.1/test/imported:2"]
        first, second = (json.loads(env.cli("image", "inspect", f"127.0.0.1/test/imported:{n}").stdout)[0]["RootFS"]
                         for n in (1, 2))
        assert first == second and len(first["Layers"]) == 1  # one layer, the same blob (only "created" differs)

        not_tar = tmp_path / "not.tar"
        not_tar.write_bytes(b"\x1f\x8b" + bytes(4000))
        line = one_line(env.cli("import", str(not_tar), "127.0.0.1/test/bad:1", check=False))
        assert "is not an uncompressed tar archive" in line
        bad = io.BytesIO()
        with tarfile.open(fileobj=bad, mode="w") as tar:
            entry = tarfile.TarInfo("../escape")
            entry.size = 1
            tar.addfile(entry, io.BytesIO(b"x"))
        (tmp_path / "hostile.tar").write_bytes(bad.getvalue())
        assert one_line(env.cli("import", str(tmp_path / "hostile.tar"), "127.0.0.1/test/bad:2", check=False))
        assert "127.0.0.1/test/bad" not in env.cli("images").stdout
        assert not (tmp_path.parent / "escape").exists()
    finally:
        env.cli("rm", "-f", "exported", check=False)
