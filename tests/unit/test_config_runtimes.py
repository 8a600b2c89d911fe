"""Runtime handlers in the config: ``[runtimes.NAME]`` tables, ``runtime.default_runtime``,
and the daemon's start-up check that each handler's binary exists (issue 16)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hawser._dataclass import asdict
from hawser.config import (
    Config,
    RuntimeConfig,
    RuntimeHandlerConfig,
    apply_overrides,
    config_from_dict,
    default_toml,
    parse_config,
    read_config,
    runtime_binary,
    runtime_root,
)
from hawser.daemon._config import load_settings
from hawser.errors import InvalidArgument


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def executable(path: Path) -> Path:
    write(path, "#!/bin/sh\nexit 0\n").chmod(0o755)
    return path


def test_the_default_is_runc_alone_as_before() -> None:
    config = Config()
    assert config.runtime.default_runtime == "runc"
    assert config.runtimes == {"runc": RuntimeHandlerConfig()}
    assert runtime_binary(config, "runc") == "runc"
    assert runtime_root(config, "runc") == "/run/hawser/runc"  # where hawser's runc always kept its state
    handler = config.runtimes["runc"]
    assert (handler.options, handler.allowed_annotations) == ([], ["*"])
    # A config written before handlers existed reads the same; runtime.runc is still runc's binary.
    old = parse_config('[runtime]\nrunc = "/opt/runc"\n')
    assert old.runtimes == Config().runtimes and runtime_binary(old, "runc") == "/opt/runc"


def test_handler_tables_are_merged_over_the_default() -> None:
    config = parse_config(
        'state = "/s"\n[runtime]\ndefault_runtime = "runc-b"\n'
        '[runtimes.runc-b]\nbinary = "runc"\nroot = "/run/runc-b"\noptions = ["--debug"]\n'
        'allowed_annotations = ["io.kubernetes.cri.", "example.com/*"]\n'
        '[runtimes.crun]\n')
    assert sorted(config.runtimes) == ["crun", "runc", "runc-b"]
    b = config.runtimes["runc-b"]
    assert (b.binary, b.root, b.options) == ("runc", "/run/runc-b", ["--debug"])
    assert b.allowed_annotations == ["io.kubernetes.cri.", "example.com/*"]
    assert config.runtime.default_runtime == "runc-b"
    # Unset: the binary is the handler's name; the root is under the state dir.
    assert (runtime_binary(config, "crun"), runtime_root(config, "crun")) == ("crun", "/s/runtimes/crun")
    assert runtime_root(config, "runc") == "/s/runc"
    # [runtimes.runc]'s binary wins over the older runtime.runc.
    both = parse_config('[runtime]\nrunc = "/old/runc"\n[runtimes.runc]\nbinary = "/new/runc"\n')
    assert runtime_binary(both, "runc") == "/new/runc"


def test_drop_ins_add_handlers_and_may_name_one_another_defines(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", '[runtimes.runc]\noptions = ["--debug"]\n')
    write(tmp_path / "config.d" / "10-crun.toml", '[runtimes.crun]\nbinary = "/usr/bin/crun"\n')
    write(tmp_path / "config.d" / "20-default.toml", '[runtime]\ndefault_runtime = "crun"\n')
    write(tmp_path / "config.d" / "30-runc.toml", '[runtimes.runc]\nroot = "/r"\n')
    config, _ = read_config(str(main))
    assert config.runtime.default_runtime == "crun"
    assert config.runtimes["crun"].binary == "/usr/bin/crun"
    # Tables merge key by key across files, as every other table does.
    assert (config.runtimes["runc"].options, config.runtimes["runc"].root) == (["--debug"], "/r")


def test_round_trips_the_pull_worker_and_the_flags_use() -> None:
    config = parse_config('[runtimes.b]\noptions = ["--debug"]\nallowed_annotations = []\n')
    assert config_from_dict(json.loads(json.dumps(asdict(config)))) == config
    assert apply_overrides(config, {"root": "/r"}).runtimes == config.runtimes
    # The default file lists the default handler and parses back to the defaults.
    text = default_toml()
    assert "[runtimes.runc]\n" in text and 'default_runtime = "runc"' in text
    assert parse_config(text) == Config()
    hash(config)  # a Config stays hashable


@pytest.mark.parametrize(("text", "message"), [
    ("[runtimes.b]\nbinry = 'runc'", "c.toml: unknown key 'runtimes.b.binry'"),
    ("[runtimes.b]\nroot = 'relative'", "c.toml: runtimes.b.root must be an absolute path, not 'relative'"),
    ("[runtimes.b]\nbinary = 'bin/runc'",
     "c.toml: runtimes.b.binary must be an absolute path or a name found on PATH, not 'bin/runc'"),
    ("[runtimes.b]\noptions = 'x'", "c.toml: runtimes.b.options must be list, not str"),
    ("[runtimes.b]\noptions = [1]", "c.toml: runtimes.b.options must be a list of strings, not of int"),
    ("[runtimes.b]\noptions = ['create']", "c.toml: runtimes.b.options must be flags (each starts with '-'), "
                                           "not 'create'"),
    ("[runtimes.b]\nallowed_annotations = ['']", "c.toml: runtimes.b.allowed_annotations must not hold an "
                                                 "empty string"),
    ("[runtimes.B_2]\n", "c.toml: [runtimes.B_2]: the name must be a DNS label"),
    ("runtimes = 1", "c.toml: runtimes must be a table of tables ([runtimes.NAME]), not int"),
    ("[runtimes]\nb = 1", "c.toml: runtimes.b must be a table, not int"),
    ("[runtime]\ndefault_runtime = 'kata'", "c.toml: runtime.default_runtime 'kata' names no [runtimes.NAME] table"),
    ("[runtime]\ndefault_runtime = 'Kata'", "c.toml: runtime.default_runtime must be a DNS label"),
])
def test_bad_handler_tables_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_config(text, source="c.toml")
    assert caught.value.message.startswith(message)


def test_an_unknown_default_handler_names_the_configured_ones() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_config("[runtime]\ndefault_runtime = 'kata'\n[runtimes.crun]\n")
    assert caught.value.hint == "configured: crun, runc"
    with pytest.raises(InvalidArgument, match=r"^command line: runtime\.default_runtime 'x' names no"):
        apply_overrides(Config(), {"runtime.default_runtime": "x"})


# --- the daemon's start-up check ------------------------------------------------------------


def test_the_daemon_finds_each_handlers_binary(tmp_path: Path) -> None:
    fake = executable(tmp_path / "bin" / "fake-runtime")
    main = write(tmp_path / "config.toml", f'[runtimes.fake]\nbinary = "{fake}"\n[runtimes.runc-b]\nbinary = "runc"\n')
    settings = load_settings(str(main), {})
    assert sorted(settings.config.runtimes) == ["fake", "runc", "runc-b"]
    assert settings.effective()["runtimes"]["fake"]["binary"] == str(fake)


@pytest.mark.parametrize(("text", "message", "hint"), [
    ('[runtimes.crun]\nbinary = "no-such-runtime-x"\n',
     "runtime handler 'crun': runtimes.crun.binary 'no-such-runtime-x' is not found on PATH",
     "install it, or set runtimes.crun.binary to its absolute path, or remove [runtimes.crun]"),
    ('[runtimes.no-such-runtime-y]\n',
     "runtime handler 'no-such-runtime-y': runtimes.no-such-runtime-y.binary 'no-such-runtime-y' is not found on PATH",
     None),
    ('[runtimes.b]\nbinary = "/nonexistent/runc"\n',
     "runtime handler 'b': runtimes.b.binary '/nonexistent/runc' is not an executable file", None),
    ('[runtime]\nrunc = "/nonexistent/runc"\n',
     "runtime handler 'runc': runtime.runc '/nonexistent/runc' is not an executable file",
     "install it, or set runtime.runc to its absolute path"),
])
def test_a_missing_binary_is_a_config_error_at_start(tmp_path: Path, text: str, message: str,
                                                     hint: str | None) -> None:
    main = write(tmp_path / "config.toml", text)
    with pytest.raises(InvalidArgument) as caught:
        load_settings(str(main), {})
    assert caught.value.message == f"{main}: {message}"
    if hint is not None:
        assert caught.value.hint == hint


def test_a_file_that_is_not_executable_is_refused(tmp_path: Path) -> None:
    plain = write(tmp_path / "runtime", "")
    main = write(tmp_path / "config.toml", f'[runtimes.b]\nbinary = "{plain}"\n')
    with pytest.raises(InvalidArgument, match="is not an executable file"):
        load_settings(str(main), {})


def test_hawserd_reports_it_as_a_bad_configuration_and_exits_2(tmp_path: Path) -> None:
    main = write(tmp_path / "config.toml", '[runtimes.crun]\nbinary = "/nonexistent/crun"\n')
    env = {**os.environ, "HAWSER_CONFIG": ""}
    proc = subprocess.run([sys.executable, "-m", "hawser.daemon", "--config", str(main), "--root",
                           str(tmp_path / "root"), "--state", str(tmp_path / "state")],
                          capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 2, proc.stderr
    assert "bad configuration" in proc.stderr
    assert "runtimes.crun.binary '/nonexistent/crun' is not an executable file" in proc.stderr
    assert not (tmp_path / "state").exists()  # nothing was started


def test_runtime_config_keeps_its_fields() -> None:
    # The older keys of [runtime] stay, beside the new default_runtime and default_network.
    assert {"runc", "conmon", "cgroup_parent", "stop_timeout", "log_size_max", "default_runtime",
            "default_network"} == set(
        asdict(RuntimeConfig()))
