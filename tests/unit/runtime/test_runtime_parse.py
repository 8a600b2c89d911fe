"""Small parsers (stop signal, sizes, CPU counts), option checks and HostLimits."""

from __future__ import annotations

import signal

import pytest

from hawser.errors import InvalidArgument
from hawser.oci import ImageConfig, Platform
from hawser.runtime._options import BindMount, ContainerOptions, HostLimits, TmpfsMount
from hawser.runtime._spec import normalize_capability, parse_cpus, parse_memory, parse_signal, stop_signal

IMAGE = ImageConfig(platform=Platform(os="linux", architecture="amd64"), diff_ids=())


@pytest.mark.parametrize(
    ("text", "number"),
    [("SIGTERM", 15), ("TERM", 15), ("term", 15), ("15", 15), ("SIGKILL", 9), (" sigint ", 2), ("SIGQUIT", 3),
     ("SIGUSR1", 10), ("SIGWINCH", 28), ("SIGRTMIN", int(signal.SIGRTMIN)), ("RTMIN+3", int(signal.SIGRTMIN) + 3),
     ("SIGRTMAX-1", int(signal.SIGRTMAX) - 1), ("64", 64), ("1", 1)],
)
def test_parse_signal(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["", "SIGFOO", "0", "65", "-9", "SIG", "RTMAX+1", "RTMIN-1", "15.0", "SIGTERM2"])
def test_parse_signal_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid signal"):
        parse_signal(text)


@pytest.mark.parametrize(
    ("image_signal", "option", "expected"),
    [("", None, 15), ("SIGQUIT", None, 3), ("SIGQUIT", "SIGINT", 2), ("", "9", 9), ("37", None, 37)],
)
def test_stop_signal(image_signal: str, option: str | None, expected: int) -> None:
    image = ImageConfig(platform=IMAGE.platform, diff_ids=(), stop_signal=image_signal)
    assert stop_signal(image, ContainerOptions(stop_signal=option)) == expected


def test_stop_signal_invalid_in_image() -> None:
    image = ImageConfig(platform=IMAGE.platform, diff_ids=(), stop_signal="SIGNOPE")
    with pytest.raises(InvalidArgument, match="invalid signal 'SIGNOPE'"):
        stop_signal(image, ContainerOptions())


@pytest.mark.parametrize(
    ("text", "size"),
    [("100", 100), ("0", 0), ("100b", 100), ("512k", 512 << 10), ("512K", 512 << 10), ("64m", 64 << 20),
     ("64M", 64 << 20), ("64mb", 64 << 20), ("64MiB", 64 << 20), ("1g", 1 << 30), ("1.5g", 3 << 29),
     ("2t", 2 << 40), ("1p", 1 << 50), (" 8m ", 8 << 20), ("10 m", 10 << 20), ("0.5k", 512)],
)
def test_parse_memory(text: str, size: int) -> None:
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["", "m", "-1", "-64m", "64x", "1e3", "64ib", "1..5g", "64 mm", "one"])
def test_parse_memory_rejects(text: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid size"):
        parse_memory(text)


@pytest.mark.parametrize(
    ("text", "quota"),
    [("0.5", 50000), ("1", 100000), ("1.5", 150000), ("2", 200000), ("0.01", 1000), ("16", 1600000),
     ("0.333", 33300)],
)
def test_parse_cpus(text: str, quota: int) -> None:
    assert parse_cpus(text) == (quota, 100000)


@pytest.mark.parametrize(("text", "message"),
                         [("0", "must be positive"), ("-1", "must be positive"), ("abc", "invalid CPU count"),
                          ("", "invalid CPU count"), ("0.001", "the minimum is 0.01"), ("nan", "must be positive"),
                          ("inf", "must be positive")])
def test_parse_cpus_rejects(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_cpus(text)
    assert message in info.value.message


@pytest.mark.parametrize(("name", "full"), [("net_admin", "CAP_NET_ADMIN"), ("CAP_SYS_ADMIN", "CAP_SYS_ADMIN"),
                                            ("cap_chown", "CAP_CHOWN"), ("all", "ALL"), ("ALL", "ALL"),
                                            ("checkpoint_restore", "CAP_CHECKPOINT_RESTORE")])
def test_normalize_capability(name: str, full: str) -> None:
    assert normalize_capability(name) == full


@pytest.mark.parametrize("name", ["", "CAP_", "NET_WIZARD", "CAP_ALL", "sys-admin"])
def test_normalize_capability_rejects(name: str) -> None:
    with pytest.raises(InvalidArgument, match="unknown capability"):
        normalize_capability(name)


def test_option_checks_at_construction() -> None:
    with pytest.raises(InvalidArgument, match="invalid propagation 'bogus'"):
        BindMount(source="/a", destination="/b", propagation="bogus")
    with pytest.raises(InvalidArgument, match="invalid tmpfs size 0"):
        TmpfsMount(destination="/t", size=0)
    with pytest.raises(InvalidArgument, match="invalid tmpfs mode"):
        TmpfsMount(destination="/t", mode=0o17777)
    for propagation in ("private", "rprivate", "shared", "rshared", "slave", "rslave"):
        assert BindMount(source="/a", destination="/b", propagation=propagation).propagation == propagation


def test_options_are_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        ContainerOptions(("sh",))  # type: ignore[misc]
    options = ContainerOptions()
    with pytest.raises(AttributeError):
        options.tty = True  # type: ignore[misc]


def test_host_limits_current() -> None:
    host = HostLimits.current()
    soft, hard = host.rlimits["RLIMIT_NOFILE"]
    assert hard == -1 or 0 < soft <= hard
    assert -1000 <= host.min_oom_score_adj <= 1000
    assert host.cap_last_cap >= 36
    assert host.machine
