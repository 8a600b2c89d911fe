"""User and executable lookup inside an image root, never escaping it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hawser.errors import InvalidArgument
from hawser.runtime._user import ResolvedUser, find_executable, resolve_in_root, resolve_user


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        ("", ResolvedUser(uid=0, gid=0, additional_gids=(0, 10), home="/root")),
        ("root", ResolvedUser(uid=0, gid=0, additional_gids=(0, 10), home="/root")),
        ("0", ResolvedUser(uid=0, gid=0, additional_gids=(0, 10), home="/root")),
        ("app", ResolvedUser(uid=1000, gid=1000, additional_gids=(1000, 10, 29), home="/home/app")),
        ("1000", ResolvedUser(uid=1000, gid=1000, additional_gids=(1000, 10, 29), home="/home/app")),
        ("app:staff", ResolvedUser(uid=1000, gid=50, additional_gids=(50, 10, 29), home="/home/app")),
        ("app:29", ResolvedUser(uid=1000, gid=29, additional_gids=(29, 10), home="/home/app")),
        ("1000:4242", ResolvedUser(uid=1000, gid=4242, additional_gids=(4242, 10, 29), home="/home/app")),
        # A uid the image does not list is fine: gid 0, no groups, home "/".
        ("4321", ResolvedUser(uid=4321, gid=0, additional_gids=(0,), home="/")),
        ("4321:staff", ResolvedUser(uid=4321, gid=50, additional_gids=(50,), home="/")),
        ("daemon", ResolvedUser(uid=1, gid=1, additional_gids=(1, 50), home="/usr/sbin")),
        ("nobody", ResolvedUser(uid=65534, gid=65534, additional_gids=(65534,), home="/nonexistent")),
    ],
)
def test_resolve_user(rootfs: Path, user: str, expected: ResolvedUser) -> None:
    assert resolve_user(str(rootfs), user) == expected


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ("ghost", "unknown user 'ghost': not in the image's /etc/passwd"),
        ("ghost:staff", "unknown user 'ghost': not in the image's /etc/passwd"),
        ("app:ghosts", "unknown group 'ghosts': not in the image's /etc/group"),
        ("broken", "unknown user 'broken'"),  # its passwd line is malformed, so skipped
        ("app:", "empty group"),
        (":staff", "empty user"),
        ("4294967295", "out of range"),
    ],
)
def test_resolve_user_errors(rootfs: Path, user: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        resolve_user(str(rootfs), user)
    assert message in info.value.message


def test_no_user_database(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    root.mkdir()
    assert resolve_user(str(root), "") == ResolvedUser(uid=0, gid=0, additional_gids=(0,), home="/")
    assert resolve_user(str(root), "123:456") == ResolvedUser(uid=123, gid=456, additional_gids=(456,), home="/")
    with pytest.raises(InvalidArgument, match="unknown user 'app'"):
        resolve_user(str(root), "app")


def test_absolute_etc_symlink_resolves_inside_root(tmp_path: Path) -> None:
    """/etc -> <absolute path that also exists on the host>: the image's copy wins."""
    decoy = tmp_path / "shared" / "etc"
    decoy.mkdir(parents=True)
    (decoy / "passwd").write_text("app:x:0:0:host root, wrong file:/:/bin/sh\n")
    root = tmp_path / "rootfs"
    inside = root / str(decoy).lstrip("/")
    inside.mkdir(parents=True)
    (inside / "passwd").write_text("app:x:1500:1500::/srv/app:/bin/sh\n")
    (inside / "group").write_text("app:x:1500:\nextra:x:77:app\n")
    (root / "etc").symlink_to(str(decoy))  # absolute target
    assert resolve_user(str(root), "app") == ResolvedUser(uid=1500, gid=1500, additional_gids=(1500, 77),
                                                          home="/srv/app")


def test_dotdot_symlink_cannot_escape(tmp_path: Path) -> None:
    (tmp_path / "passwd").write_text("evil:x:0:0::/:/bin/sh\n")  # outside the root
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("../../../../../../../../passwd")
    assert resolve_in_root(str(root), "/etc/passwd") == os.path.join(str(root), "passwd")
    with pytest.raises(InvalidArgument, match="unknown user 'evil'"):
        resolve_user(str(root), "evil")


def test_resolve_in_root_paths(rootfs: Path) -> None:
    root = str(rootfs)
    assert resolve_in_root(root, "/bin/sh") == f"{root}/bin/busybox"
    assert resolve_in_root(root, "bin/ls") == f"{root}/bin/busybox"
    assert resolve_in_root(root, "/../../bin/./ls") == f"{root}/bin/busybox"
    assert resolve_in_root(root, "/nope/../etc//passwd") == f"{root}/etc/passwd"
    assert resolve_in_root(root, "/") == root
    assert resolve_in_root(root, "/missing/dir/file") == f"{root}/missing/dir/file"


def test_symlink_loop_is_an_error(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(InvalidArgument, match="too many levels of symbolic links"):
        resolve_user(str(root), "app")


def test_passwd_that_is_a_directory(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "etc" / "passwd").mkdir(parents=True)
    with pytest.raises(InvalidArgument, match="not a regular file"):
        resolve_user(str(root), "app")


@pytest.mark.parametrize(
    ("argv0", "path_env", "workdir", "expected"),
    [
        ("sh", "/usr/local/bin:/bin", "/", "/bin/sh"),  # symlink to an absolute target inside the root
        ("app", "/usr/bin:/usr/local/bin:/bin", "/", "/usr/local/bin/app"),
        ("ls", "/bin", "/", "/bin/ls"),
        ("/bin/busybox", "", "/", "/bin/busybox"),
        ("./app", "/bin", "/usr/local/bin", "/usr/local/bin/app"),
        ("../bin/sh", "/bin", "/usr", "/bin/sh"),
        ("app", "local/bin", "/usr", "/usr/local/bin/app"),  # relative PATH entry: from the workdir
        ("app", ":/bin", "/usr/local/bin", "/usr/local/bin/app"),  # empty entry is the workdir
    ],
)
def test_find_executable(rootfs: Path, argv0: str, path_env: str, workdir: str, expected: str) -> None:
    assert find_executable(str(rootfs), argv0, path_env, workdir) == expected


@pytest.mark.parametrize(
    ("argv0", "path_env", "message"),
    [
        ("nothere", "/usr/local/bin:/bin", "executable 'nothere' not found in the image ($PATH /usr/local/bin:/bin)"),
        ("data.txt", "/usr/local/bin", "executable 'data.txt' not found in the image ($PATH /usr/local/bin)"),
        ("bin", "/", "executable 'bin' not found"),  # a directory is not a program
        ("/usr/local/bin/data.txt", "/bin", "cannot run '/usr/local/bin/data.txt': permission denied"),  # 126
        ("/no/such", "/bin", "executable '/no/such' not found in the image"),
        ("", "/bin", "empty command name"),
    ],
)
def test_find_executable_errors(rootfs: Path, argv0: str, path_env: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        find_executable(str(rootfs), argv0, path_env, "/")
    assert message in info.value.message


def test_find_executable_does_not_follow_links_out_of_root(tmp_path: Path) -> None:
    host_bin = tmp_path / "hostbin"
    host_bin.mkdir()
    (host_bin / "tool").write_text("#!host\n")
    os.chmod(host_bin / "tool", 0o755)
    root = tmp_path / "rootfs"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "tool").symlink_to(str(host_bin / "tool"))  # exists on the host, not in the image
    with pytest.raises(InvalidArgument, match="executable 'tool' not found"):
        find_executable(str(root), "tool", "/bin", "/")
