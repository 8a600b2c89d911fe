"""Completion scripts and man pages, generated from the CLI's parser: complete, valid, and working."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hawser.cli import _main
from hawser.cli._docs import CommandDoc, bash_script, broken, command_docs, man_pages, zsh_script
from hawser.cli._parser import Parser, _summary


@pytest.fixture(scope="module")
def docs() -> CommandDoc:
    return command_docs()


@pytest.fixture(scope="module")
def bash_file(docs: CommandDoc, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("completion") / "hawser.bash"
    path.write_text(bash_script(docs))
    return path


def commands(docs: CommandDoc) -> list[CommandDoc]:
    return [d for d in docs.walk() if d.path != ("",)]


def test_every_command_of_the_table_builds(docs: CommandDoc) -> None:
    assert broken(docs) == {}
    assert [d.path[0] for d in docs.subcommands] == list(_main._COMMANDS)
    groups = {d.path[0]: [s.path[1] for s in d.subcommands] for d in docs.subcommands if d.subcommands}
    assert {"image", "system"} <= set(groups)
    assert {"ls", "rm", "pull"} <= set(groups["image"])
    assert {"prune", "check", "df", "info"} <= set(groups["system"])


def test_every_command_and_subcommand_is_in_the_scripts_and_has_a_page(docs: CommandDoc) -> None:
    bash, zsh = bash_script(docs), zsh_script(docs)
    pages = man_pages(docs, version="1.0", date="2026-01-01")
    assert "hawser.1" in pages
    for doc in commands(docs):
        assert f'    "{doc.key}") opts=' in bash, doc.name
        assert f"\n_hawser_{doc.key}() {{" in zsh, doc.name
        assert f"'{doc.path[-1]}:" in zsh, doc.name  # in its group's _describe list
        page = pages[f"{doc.name.replace(' ', '-')}.1"]
        assert ".SH SYNOPSIS" in page and ".SH NAME" in page
        for option in doc.options:
            assert option.names[-1].replace("-", "\\-") in page, (doc.name, option.names)
    run = pages["hawser-run.1"]
    assert ".SH DESCRIPTION\nCreate and start a container" in run
    env = next(o for o in next(d for d in docs.subcommands if d.path == ("run",)).options if "--env" in o.names)
    assert f"\\fB\\-e\\fR, \\fB\\-\\-env\\fR \\fI{env.metavar}\\fR\n{env.help}\n" in run
    assert ".BR hawser\\-image\\-ls (1)" in pages["hawser-image.1"]


@pytest.mark.skipif(shutil.which("groff") is None, reason="groff-base is not installed (scripts/setup.sh)")
def test_man_pages_have_no_groff_warnings(docs: CommandDoc, tmp_path: Path) -> None:
    pages = man_pages(docs, version="1.0", date="2026-01-01")
    for name, text in pages.items():
        (tmp_path / name).write_text(text)
    # One groff for all pages: -ww turns on every warning, -z formats without output.
    result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", *sorted(map(str, tmp_path.iterdir()))],
                            capture_output=True, text=True, check=False)
    assert (result.returncode, result.stderr) == (0, "")
    if shutil.which("man"):
        env = {**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"}
        shown = subprocess.run(["man", "--warnings", "-l", str(tmp_path / "hawser-run.1")], capture_output=True,
                               text=True, check=False, env=env)
        assert (shown.returncode, shown.stderr) == (0, "")
        assert "-e, --env " in shown.stdout
        assert "hawser run [OPTIONS] IMAGE [COMMAND [ARG...]]" in shown.stdout


def complete(bash_file: Path, *words: str, path: str | None = None, line: str | None = None) -> list[str]:
    """COMPREPLY of _hawser for the line ``words`` (the cursor at the end of the last one); or for
    ``line`` as bash gives it in COMP_LINE (its COMP_WORDS split at ":" and "=" too)."""
    script = f'source {bash_file}; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _hawser; printf "%s\\n" "${{COMPREPLY[@]}}"'
    env = {**os.environ, "PATH": path or os.environ["PATH"]}
    if line is not None:
        env |= {"COMP_LINE": line, "COMP_POINT": str(len(line))}
        script = "export COMP_LINE COMP_POINT; " + script
        words = tuple(re.findall(r"[^\s:=]+|[:=]", line)) + (("",) if line.endswith((" ", ":", "=")) else ())
    result = subprocess.run(["bash", "--norc", "-c", script, "bash", *words], capture_output=True, text=True,
                            check=True, env=env, timeout=30)
    assert result.stderr == ""
    return [w for w in result.stdout.splitlines() if w]


def test_bash_completes_commands_subcommands_options_and_choices(bash_file: Path) -> None:
    assert complete(bash_file, "hawser", "ru") == ["run"]
    assert "--network" in complete(bash_file, "hawser", "run", "--net")  # and docker's --net, if there
    assert complete(bash_file, "hawser", "run", "--netw") == ["--network"]
    assert complete(bash_file, "hawser", "image", "") == sorted(["inspect", "import", "rm", "ls", "pull", "copy",
                                                                   "sign", "history", "tag", "push", "save", "load",
                                                                   "prune"])
    assert complete(bash_file, "hawser", "--root", "/tmp/x", "-n", "ns", "sys") == ["system"]
    assert complete(bash_file, "hawser", "system", "p") == ["prune"]
    assert complete(bash_file, "hawser", "image", "ls", "--no") == ["--no-trunc"]
    assert complete(bash_file, "hawser", "completion", "") == ["bash", "zsh"]
    assert complete(bash_file, "hawser", "--snapshotter", "") == ["overlayfs", "native"]
    assert "--format" in complete(bash_file, "hawser", "system", "df", "--")
    # After the image, the words are the container's command: bash's own (file) completion.
    assert complete(bash_file, "hawser", "run", "busybox", "--ne") == []
    # A value that is not a fixed set: bash's default completion too.
    assert complete(bash_file, "hawser", "run", "--name", "") == []


def test_bash_completes_names_from_hawser_itself(bash_file: Path, tmp_path: Path) -> None:
    """Container and image names come from ``hawser ps``/``hawser images``, with the global options given."""
    fake = tmp_path / "hawser"
    fake.write_text('#!/bin/sh\necho "$*" >> "$0.calls"\n'
                    'case "$*" in\n'
                    '  *"ps -a --format"*) printf "web\\nworker\\ndb\\n" ;;\n'
                    '  *"images --format"*) exit 2 ;;\n'  # a hawser without templates: the table then
                    '  *images*) printf "NAME   DIGEST\\nbusybox:latest   sha256:1\\nalpine:3   sha256:2\\n" ;;\n'
                    "esac\n")
    fake.chmod(0o755)
    path = f"{tmp_path}:{os.environ['PATH']}"
    assert complete(bash_file, "hawser", "--root", "/r", "stop", "w", path=path) == ["web", "worker"]
    assert "--root /r ps -a --format {{.Names}}" in (tmp_path / "hawser.calls").read_text()
    assert complete(bash_file, "hawser", "run", "-d", "--name", "x", "", path=path) == ["busybox:latest", "alpine:3"]
    assert complete(bash_file, "hawser", "rmi", "al", path=path) == ["alpine:3"]
    assert complete(bash_file, "hawser", "inspect", "d", path=path) == ["db"]
    # Words with ":" and "=", which bash splits: bash replaces what follows the last ":" only.
    assert complete(bash_file, line="hawser rmi busybox:l", path=path) == ["latest"]
    assert complete(bash_file, line="hawser run --name=x alp", path=path) == ["alpine:3"]
    assert complete(bash_file, line="hawser --snapshotter=n") == ["native"]
    assert complete(bash_file, line="hawser run ") == []  # not a command's name: an image's
    assert sorted(complete(bash_file, line="hawser ima")) == ["image", "images"]
    # hawser failing or missing: nothing, and nothing on stderr.
    fake.write_text("#!/bin/sh\necho broken >&2\nexit 125\n")
    assert complete(bash_file, "hawser", "stop", "", path=path) == []


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (scripts/setup.sh)")
def test_zsh_script_parses_and_defines_every_function(docs: CommandDoc, tmp_path: Path) -> None:
    script = tmp_path / "_hawser"
    script.write_text(zsh_script(docs))
    assert script.read_text().startswith("#compdef hawser\n")
    subprocess.run(["zsh", "-n", str(script)], check=True, timeout=30)
    # Defined, not called (the last line calls __hawser, which needs a completion context).
    body = tmp_path / "body.zsh"
    body.write_text(script.read_text().rsplit("\n__hawser", 1)[0])
    listed = subprocess.run(["zsh", "-f", "-c", f'source {body}; print -l ${{(k)functions[(I)_hawser*]}}'],
                            capture_output=True, text=True, check=True, timeout=30)
    assert listed.stderr == ""
    defined = set(listed.stdout.split())
    assert {f"_hawser_{d.key}" for d in commands(docs)} <= defined


def test_completion_command_prints_the_scripts(docs: CommandDoc) -> None:
    cli = [sys.executable, "-c", "from hawser.cli import main; main()"]
    bash = subprocess.run([*cli, "completion", "bash"], capture_output=True, text=True, check=True, timeout=60)
    assert bash.stdout == bash_script(docs)
    zsh = subprocess.run([*cli, "completion", "zsh"], capture_output=True, text=True, check=True, timeout=60)
    assert zsh.stdout.startswith("#compdef hawser")
    bad = subprocess.run([*cli, "completion", "fish"], capture_output=True, text=True, check=False, timeout=60)
    assert bad.returncode == 2


def test_docs_module_writes_the_man_pages(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "hawser.cli._docs", "man", str(tmp_path / "man1")], check=True,
                   timeout=60, env={**os.environ, "SOURCE_DATE_EPOCH": "0"})
    names = {p.name for p in (tmp_path / "man1").iterdir()}
    assert {"hawser.1", "hawser-run.1", "hawser-image-ls.1", "hawser-system-prune.1"} <= names
    assert '"1970-01-01"' in (tmp_path / "man1" / "hawser-run.1").read_text()


def test_a_group_summary_is_the_whole_first_sentence() -> None:
    def check(p: Parser) -> None:
        """Verify the store and find leftovers: blob digests, snapshot chains, record
        references, orphan snapshots. Exits 1 while a problem remains."""

    def pull(p: Parser) -> None:
        """Pull REFERENCE (e.g. 127.0.0.1:5000/app:1.0) into the store."""

    assert _summary(check) == ("Verify the store and find leftovers: blob digests, snapshot chains, record "  # type: ignore[arg-type]
                               "references, orphan snapshots.")
    assert _summary(pull) == "Pull REFERENCE (e.g. 127.0.0.1:5000/app:1.0) into the store."  # type: ignore[arg-type]
    out = subprocess.run([sys.executable, "-c", "from hawser.cli import main; main()", "system", "--help"],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    commands_part = out.split("Commands:", 1)[1]
    assert "record references, orphan snapshots, mounts" in " ".join(commands_part.split())


ZSH_DRIVER = r"""
zmodload zsh/zpty
setopt extendedglob
# Type $2 and a TAB at an interactive zsh that has the script in its fpath; wait for $3 on its terminal.
zpty z zsh -f -i
zpty -w z "PS1='> '; fpath=($1 \$fpath); autoload -U compinit; compinit -u -D; print READY"
zpty -w -n z "$2"$'\t'
out=""
for i in {1..100}; do
    while zpty -r -t z chunk; do out+=$chunk; done
    [[ ${out//$'\e'\[[0-9;?]#[a-zA-Z]/} == *"$3"* ]] && break
    sleep 0.1
done
zpty -d z
[[ ${out//$'\e'\[[0-9;?]#[a-zA-Z]/} == *"$3"* ]] || { print -r -- "${out//$'\r'/}"; exit 1 }
"""


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed (scripts/setup.sh)")
@pytest.mark.parametrize(("typed", "shown"), [
    ("hawser ru", "hawser run "),
    ("hawser --root /x image hi", "hawser --root /x image history "),
    ("hawser run --netw", "hawser run --network "),
    ("hawser system pr", "hawser system prune "),
])
def test_zsh_completes_on_a_terminal(docs: CommandDoc, tmp_path: Path, typed: str, shown: str) -> None:
    (tmp_path / "_hawser").write_text(zsh_script(docs))
    driver = tmp_path / "driver.zsh"
    driver.write_text(ZSH_DRIVER)
    result = subprocess.run(["zsh", "-f", str(driver), str(tmp_path), typed, shown], capture_output=True, text=True,
                            check=False, timeout=60, env={**os.environ, "HOME": str(tmp_path), "TERM": "xterm"})
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_command_that_cannot_be_built_is_reported_not_fatal(docs: CommandDoc) -> None:
    from hawser.cli._docs import _document

    def half_written(p: Parser) -> None:
        """Do something."""
        raise ImportError("cannot import name 'x' from 'hawser.cli._half'")

    bad = _document(("half",), half_written, "Do something.")  # type: ignore[arg-type]
    assert bad.error is not None and "cannot import name" in bad.error
    top = CommandDoc(path=("",), summary="hawser", subcommands=(*docs.subcommands, bad))
    assert broken(top) == {"hawser half": bad.error}
    assert '    "half") opts=""' in bash_script(top) and "\n_hawser_half() {" in zsh_script(top)
    assert "hawser-half.1" in man_pages(top, version="1", date="2026-01-01")
