from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from hawser._dataclass import asdict, fields, is_dataclass
from hawser.cli._context import CliContext
from hawser.config import (
    _DOCS,
    CONFIG_VERSION,
    Config,
    ConfigFiles,
    DaemonConfig,
    _build,
    apply_overrides,
    default_toml,
    load_config,
    parse_config,
    read_config,
)
from hawser.daemon._config import Settings, load_settings
from hawser.daemon._main import overrides, parser
from hawser.errors import InvalidArgument


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def dotted_keys(value: object, prefix: str = "") -> list[str]:
    keys = []
    for f in fields(value):
        item = getattr(value, f.name)
        keys += dotted_keys(item, f"{prefix}{f.name}.") if is_dataclass(item) else [f"{prefix}{f.name}"]
    return keys


# --- the default file ------------------------------------------------------------------


def test_default_file_is_the_defaults() -> None:
    assert parse_config(default_toml()) == Config()


def test_default_file_writes_every_key_under_its_comment() -> None:
    text = default_toml()
    assert tomllib.loads(text) == asdict(Config())  # every key, no other
    assert text.startswith("# hawser configuration") and text.endswith("\n")
    keys = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert keys[0] == f"version = {CONFIG_VERSION}"  # at the top, as containerd's
    # Each key has its comment ("" shares the comment above); none describes a key that is gone.
    assert list(_DOCS) == dotted_keys(Config())
    for key, doc in _DOCS.items():
        if doc:
            assert f"# {doc.splitlines()[0]}\n" in text, key


# --- one file --------------------------------------------------------------------------


def test_values_and_overrides() -> None:
    config = parse_config('root = "/x"\n[registry]\nmax_concurrent_downloads = 8\nstall_timeout = 5\n')
    assert config.root == "/x" and config.registry.max_concurrent_downloads == 8
    assert config.registry.stall_timeout == 5.0
    assert apply_overrides(config, {"root": None, "state": "/s"}).state == "/s"
    assert apply_overrides(config, {"root": None, "state": "/s"}).root == "/x"


@pytest.mark.parametrize("text", [
    "rooot = '/x'", "root = 1", "[registry]\nmax_concurrent_downloads = 0", "snapshotter = 'zfs'",
    "[registry]\nnope = 1", "registry = 3", "root = ", "[registry]\nmax_retries = true",
    "[daemon]\naddress = 'relative.sock'", "[daemon]\nlog_level = 'loud'", "[cri]\nstream_port = 70000",
    "[cri]\nstream_port = '1'", "[cni]\nconf = '/x'", "daemon = 'x'",
])
def test_bad_config_is_a_clear_error(text: str) -> None:
    with pytest.raises(InvalidArgument, match="config"):
        parse_config(text)


@pytest.mark.parametrize(("text", "message"), [
    ("rooot = '/x'", "my.toml: unknown key 'rooot'"),
    ("[registry]\nnope = 1", "my.toml: unknown key 'registry.nope'"),
    ("[cri]\nstream_port = 70000", "my.toml: cri.stream_port must be within 0..65535, not 70000"),
    ("[gc]\ngrace_period = 'soon'", "my.toml: gc.grace_period must be float, not str"),
    ("gc = 1", "my.toml: gc must be a table, not int"),
])
def test_errors_name_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_config(text, source="my.toml")
    assert caught.value.message == message


def test_the_daemon_tables_are_part_of_the_one_model() -> None:
    config = parse_config('root = "/r"\n[daemon]\nlog_level = "debug"\n[cri]\nstream_port = 10010\n'
                          '[cni]\nbin_dir = "/opt/cni/bin"\n')
    assert (config.root, config.daemon.log_level, config.cri.stream_port) == ("/r", "debug", 10010)
    assert config.cni.bin_dir == "/opt/cni/bin" and config.cni.conf_dir == "/etc/cni/net.d"


def test_the_pull_process_rebuilds_a_config_from_its_dict() -> None:
    config = apply_overrides(Config(), {"root": "/r", "cri.stream_port": 5, "gc.grace_period": 1.5})
    assert _build(Config, asdict(config), "") == config


# --- version ---------------------------------------------------------------------------


def test_a_file_without_a_version_is_version_1() -> None:
    assert parse_config('root = "/x"\n').version == 1
    assert parse_config('version = 1\nroot = "/x"\n') == parse_config('root = "/x"\n')


@pytest.mark.parametrize(("text", "message"), [
    ("version = 2", "c.toml: version 2 is newer than this hawser reads (version 1): upgrade hawser, "
                    "or write the file for version 1"),
    ("version = 0", "c.toml: version 0 is not a config version (the first is 1)"),
    ("version = '1'", "c.toml: version must be int, not str"),
    ("version = true", "c.toml: version must be int, not bool"),
])
def test_an_unknown_version_is_refused(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_config(text, source="c.toml")
    assert caught.value.message == message


# --- drop-ins --------------------------------------------------------------------------


def test_drop_ins_merge_in_lexical_order_key_by_key(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml",
                 'root = "/main"\nstate = "/main-state"\n[registry]\nmax_retries = 7\nstall_bytes = 1\n')
    drop = tmp_path / "config.d"
    write(drop / "20-b.toml", 'root = "/b"\n[registry]\nmax_retries = 9\n')
    write(drop / "10-a.toml", 'root = "/a"\n[registry]\nmax_retries = 8\nstall_timeout = 2\n[cri]\nstream_port = 1\n')
    write(drop / "30-c.toml.disabled", "nonsense = [")
    write(drop / ".hidden.toml", "nonsense = [")
    config, files = read_config(str(main))
    assert config.root == "/b"  # 20-b after 10-a after the main file
    assert config.state == "/main-state"  # set by the main file only
    registry = config.registry
    assert (registry.max_retries, registry.stall_bytes, registry.stall_timeout) == (9, 1, 2.0)
    assert registry.config_path == "/etc/hawser/certs.d"  # set by no file
    assert config.cri.stream_port == 1
    assert files == ConfigFiles(main=str(main), drop_ins=(str(drop / "10-a.toml"), str(drop / "20-b.toml")))


def test_no_drop_in_directory_is_no_drop_ins(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", 'root = "/main"\n')
    assert read_config(str(main)) == (Config(root="/main"), ConfigFiles(main=str(main)))


def test_drop_ins_apply_without_a_main_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # $HAWSER_CONFIG names the file where no --config does; missing, it means defaults.
    monkeypatch.setenv("HAWSER_CONFIG", str(tmp_path / "config.toml"))
    write(tmp_path / "config.d" / "a.toml", '[daemon]\nlog_level = "warning"\n')
    config, files = read_config(None)
    assert config == Config(daemon=DaemonConfig(log_level="warning"))
    assert files == ConfigFiles(main="", drop_ins=(str(tmp_path / "config.d" / "a.toml"),))


@pytest.mark.parametrize(("text", "message"), [
    ("root = ", "invalid TOML"),
    ("[registry]\nmax_concurrent_downloads = 0", "registry.max_concurrent_downloads must be at least 1"),
    ("[gc]\ngrace = 1", "unknown key 'gc.grace'"),
    ("registry = 3", "registry must be a table"),
    ("version = 3", "version 3 is newer"),
])
def test_an_invalid_drop_in_is_named(tmp_path: Path, text: str, message: str) -> None:
    main = write(tmp_path / "config.toml", '[registry]\nmax_retries = 7\n')
    write(tmp_path / "config.d" / "10-good.toml", 'root = "/good"\n')
    bad = write(tmp_path / "config.d" / "20-bad.toml", text)
    with pytest.raises(InvalidArgument) as caught:
        load_config(str(main))
    assert caught.value.message.startswith(f"{bad}: ") and message in caught.value.message


def test_a_drop_in_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", "")
    bad = tmp_path / "config.d" / "x.toml"
    bad.parent.mkdir()
    bad.write_bytes(b'root = "\xff"\n')
    with pytest.raises(InvalidArgument, match=re.escape(f"config file {bad} is not UTF-8 text")):
        load_config(str(main))


def test_a_drop_in_path_that_is_no_directory_is_an_error(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", "")
    write(tmp_path / "config.d", "")
    with pytest.raises(InvalidArgument, match=re.escape(f"cannot read config drop-in directory {tmp_path / 'config.d'}")):
        load_config(str(main))


# --- flags: one function for hawser and hawserd ----------------------------------------


def test_overrides_check_values_as_the_file_does() -> None:
    config = apply_overrides(Config(), {"cri.stream_port": 10, "registry.config_path": "/c", "gc.grace_period": 2})
    assert (config.cri.stream_port, config.registry.config_path, config.gc.grace_period) == (10, "/c", 2.0)
    assert apply_overrides(config, {"root": None}) is config
    with pytest.raises(InvalidArgument, match=r"^command line: cri\.stream_port must be within 0\.\.65535"):
        apply_overrides(config, {"cri.stream_port": 70000})
    with pytest.raises(InvalidArgument, match=r"^command line: unknown key 'cri\.port'"):
        apply_overrides(config, {"cri.port": 1})
    with pytest.raises(InvalidArgument, match=r"^command line: daemon\.address must be an absolute path"):
        apply_overrides(config, {"daemon.address": "x.sock"})


def test_cli_flags_override_the_files(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml",
                 'root = "/file"\nstate = "/file-state"\n[registry]\nconfig_path = "/file-certs"\nmax_retries = 2\n')
    write(tmp_path / "config.d" / "a.toml", 'snapshotter = "native"\n')
    ctx = CliContext(config_path=str(main), root="/flag", state=None, registry_config_dir="/flag-certs",
                     snapshotter=None, debug=False)
    config = ctx.config
    assert (config.root, config.state, config.snapshotter) == ("/flag", "/file-state", "native")
    assert (config.registry.config_path, config.registry.max_retries) == ("/flag-certs", 2)
    bad = CliContext(config_path=str(main), root=None, state=None, registry_config_dir=None,
                     snapshotter="zfs", debug=False)
    with pytest.raises(InvalidArgument, match=r"^command line: snapshotter must be one of"):
        bad.config  # noqa: B018


def test_daemon_flags_override_the_files(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml",
                 'root = "/file"\n[daemon]\nlog_level = "info"\naddress = "/file.sock"\n'
                 '[cri]\nstream_address = "127.0.0.2"\nstream_port = 10010\n'
                 '[cni]\nconf_dir = "/file/net.d"\nbin_dir = "/file/bin"\n')
    drop_in = write(tmp_path / "config.d" / "a.toml", '[cni]\nbin_dir = "/drop-in/bin"\n')
    args = parser().parse_args(["--config", str(main), "--root", "/flag", "--log-level", "debug",
                                "--cni-conf-dir", "/flag/net.d", "--stream-port", "1234",
                                "--registry-config-dir", "/flag-certs"])
    settings = load_settings(args.config, overrides(args))
    config = settings.config
    assert (config.root, config.state, config.registry.config_path) == ("/flag", "/run/hawser", "/flag-certs")
    assert settings.daemon == config.daemon and (config.daemon.log_level, config.daemon.address) == (
        "debug", "/file.sock")
    assert (settings.cri.stream_address, settings.cri.stream_port) == ("127.0.0.2", 1234)
    assert (settings.cni.conf_dir, settings.cni.bin_dir) == ("/flag/net.d", "/drop-in/bin")
    effective = settings.effective()
    assert effective["config_file"] == settings.source == str(main)
    assert effective["config_drop_ins"] == [str(drop_in)]
    assert effective["cri"] == {"stream_address": "127.0.0.2", "stream_port": 1234}
    bad = parser().parse_args(["--config", str(main), "--stream-port", "70000"])
    with pytest.raises(InvalidArgument, match=r"^command line: cri\.stream_port"):
        load_settings(bad.config, overrides(bad))


def test_daemon_with_an_empty_file_and_no_flags_has_the_defaults(tmp_path: Path) -> None:
    args = parser().parse_args(["--config", str(write(tmp_path / "c.toml", ""))])
    assert load_settings(args.config, overrides(args)) == Settings(files=ConfigFiles(main=str(tmp_path / "c.toml")))
