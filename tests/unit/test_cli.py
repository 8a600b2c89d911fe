import subprocess
import sys

from hawser import __version__
from hawser.config import DEFAULT_TOML

CLI = [sys.executable, "-m", "hawser.cli._run"]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def test_version_and_help() -> None:
    assert run("--version").stdout.strip() == f"hawser version {__version__}"
    out = run("--help").stdout
    for command in ("pull", "images", "rmi", "image", "system", "config"):
        assert command in out


def test_version_imports_nothing_heavy() -> None:
    code = ("import sys; sys.argv=['hawser','--version']\n"
            "from hawser.cli._main import run\n"
            "try:\n run()\nexcept SystemExit: pass\n"
            "heavy = [m for m in ('httpx', 'rich', 'sqlite3', 'hawser.images._store', 'isal') if m in sys.modules]\n"
            "print(heavy, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stderr.strip().endswith("[]"), proc.stderr


def test_config_default_is_documented_toml() -> None:
    assert run("config", "default").stdout == DEFAULT_TOML


def test_bad_config_file_is_one_clear_line(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "config.toml"
    path.write_text("rooot = 1\n")
    proc = run("--config", str(path), "config", "show")
    assert proc.returncode == 1
    assert proc.stderr.startswith("hawser: config: unknown key 'rooot'") and proc.stderr.count("\n") == 1
    proc = run("--config", str(path) + ".missing", "config", "show")
    assert proc.returncode == 1 and "does not exist" in proc.stderr


def test_bad_reference_is_one_clear_line(tmp_path: object) -> None:
    proc = run("--root", str(tmp_path), "--state", str(tmp_path), "pull", "Not A Reference")
    assert proc.returncode == 1 and proc.stderr.startswith("hawser: invalid reference")
    assert "Traceback" not in proc.stderr
