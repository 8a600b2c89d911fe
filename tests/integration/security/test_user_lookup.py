"""The image's /etc/passwd and /etc/group are read by hawser itself, as root
on the host, before the container exists: a hostile image can make them a
FIFO, a device node or a symlink out of the rootfs."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path

import pytest

from hawser.errors import InvalidArgument
from hawser.runtime import resolve_user

pytestmark = pytest.mark.integration


def _rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "group").write_text("root:x:0:\napp:x:1000:\n")
    return root


def test_a_fifo_passwd_is_never_opened(tmp_path: Path) -> None:
    """Opening it would wake a writer blocked on the other end; the same open
    of a device node (a watchdog, a tape) would act on the host's hardware."""
    root = _rootfs(tmp_path)
    fifo = root / "etc" / "passwd"
    os.mkfifo(fifo)
    opened = threading.Event()

    def writer() -> None:
        fd = os.open(fifo, os.O_WRONLY)  # blocks until someone opens it for reading
        opened.set()
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.3)  # let it block in open() first, or a reader that came and went is missed
    try:
        with pytest.raises(InvalidArgument, match=r"the image's /etc/passwd is not a regular file"):
            resolve_user(str(root), "app")
        assert not opened.wait(0.3), "hawser opened the image's FIFO"
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # release the writer
        thread.join(5)


def test_a_device_node_passwd_is_refused(tmp_path: Path) -> None:
    root = _rootfs(tmp_path)
    os.mknod(root / "etc" / "passwd", stat.S_IFCHR | 0o644, os.makedev(1, 5))  # /dev/zero: endless
    with pytest.raises(InvalidArgument, match=r"the image's /etc/passwd is not a regular file"):
        resolve_user(str(root), "app")


def test_a_passwd_symlink_out_of_the_rootfs_stays_inside(tmp_path: Path) -> None:
    """/etc/passwd -> ../../../../../../etc/passwd resolves to the image's own
    /etc/passwd path again (a loop) or inside it, never the host's: a user
    only the host knows is unknown."""
    root = _rootfs(tmp_path)
    (root / "etc" / "passwd").symlink_to("../../../../../../../../etc/real-passwd")
    (root / "etc" / "real-passwd").write_text("app:x:1000:1000::/home/app:/bin/sh\n")
    assert resolve_user(str(root), "app").uid == 1000
    host_only = next(line.split(":")[0] for line in Path("/etc/passwd").read_text().splitlines()
                     if line and line.split(":")[0] not in ("root", "app"))
    with pytest.raises(InvalidArgument, match="unknown user"):
        resolve_user(str(root), host_only)
