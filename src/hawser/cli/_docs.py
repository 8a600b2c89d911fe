"""Shell completion scripts (bash, zsh) and man pages, generated from the command table.

Every command in ``_main._COMMANDS`` is built on a parser of its own, as when
it runs, and so is every subcommand of a group (``image ls``): the scripts and
pages are rendered from those parsers' actions and the builders' docstrings, so
they cannot drift from the CLI.  A command module that fails to import is
reported in ``CommandDoc.error`` (the unit tests fail on it) and still gets its
name and summary.

``hawser completion bash|zsh`` prints a script; ``python -m hawser.cli._docs
man DIR`` writes the man pages (scripts/setup.sh installs all three).
"""

from __future__ import annotations

import re
import sys
from argparse import REMAINDER, Action
from dataclasses import dataclass

from hawser.cli._context import echo
from hawser.cli._parser import Parser

TYPE_CHECKING = False  # see _parser: the CLI never imports typing
if TYPE_CHECKING:
    from argparse import Namespace
    from collections.abc import Iterator

    from hawser.cli._context import CliContext
    from hawser.cli._parser import Builder, Handler

SHELLS = ("bash", "zsh")

CONTAINERS = "containers"
IMAGES = "images"
ANY = "any"
"""What a positional argument names, for the completion of its values (by its metavar)."""
_KINDS = {"CONTAINER": CONTAINERS, "CONTAINERS": CONTAINERS, "IMAGE": IMAGES, "IMAGES": IMAGES,
          "REFERENCES": IMAGES, "NAMES": ANY}


def completion(p: Parser) -> Handler:
    """Print a shell completion script for hawser.

    bash: ``source <(hawser completion bash)``, or save it as
    /usr/share/bash-completion/completions/hawser. zsh: save it as ``_hawser``
    in a directory of $fpath. scripts/setup.sh installs both.
    """
    p.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash or zsh.")
    return _completion


def _completion(ctx: CliContext, a: Namespace) -> None:
    del ctx
    docs = command_docs()
    echo(bash_script(docs) if a.shell == "bash" else zsh_script(docs), end="")


# --- the model -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OptionDoc:
    """One option: its spellings, the metavar of its value (None: a flag), its choices."""

    names: tuple[str, ...]
    metavar: str | None
    help: str
    choices: tuple[str, ...] = ()
    repeatable: bool = False


@dataclass(frozen=True, slots=True)
class CommandDoc:
    """A command (``path`` = ("run",)) or a group's subcommand (("image", "ls")); ("",) is hawser itself."""

    path: tuple[str, ...]
    summary: str
    description: str = ""
    usage: str = ""
    options: tuple[OptionDoc, ...] = ()
    positionals: tuple[str, ...] = ()
    """What each positional names: CONTAINERS, IMAGES, ANY, its choices ("bash|zsh") or "" (nothing to complete)."""
    remainder: bool = False
    """The last positional takes the rest of the line (a command to run in the container)."""
    subcommands: tuple[CommandDoc, ...] = ()
    error: str | None = None
    """Why the command's module could not be built (its name and summary are all there is)."""

    @property
    def name(self) -> str:
        return " ".join(p for p in ("hawser", *self.path) if p)

    @property
    def key(self) -> str:
        """``image_ls``: the name of its functions in the completion scripts."""
        return "_".join(p for p in self.path if p)

    def walk(self) -> Iterator[CommandDoc]:
        """This command, then its subcommands, depth first."""
        yield self
        for sub in self.subcommands:
            yield from sub.walk()


def command_docs() -> CommandDoc:
    """hawser's top-level command, with every command of the table (and their subcommands) built."""
    from hawser.cli import _main

    top = _main._parser()
    subs = []
    for name, (_, _, summary) in _main._COMMANDS.items():
        try:
            build = _main._load(name)
        except Exception as exc:  # a module half written by someone: reported, not fatal
            subs.append(CommandDoc(path=(name,), summary=summary, error=f"{type(exc).__name__}: {exc}"))
            continue
        subs.append(_document((name,), build, summary))
    return _from_parser(("",), top, top.description or "", top.description or "", tuple(subs))


def _document(path: tuple[str, ...], build: Builder, summary: str) -> CommandDoc:
    try:
        parser = Parser(" ".join(("hawser", *path)), description=build.__doc__)
        build(parser)
        parser.add_help_option()
    except Exception as exc:
        return CommandDoc(path=path, summary=summary, error=f"{type(exc).__name__}: {exc}")
    subs = tuple(_document((*path, name), sub, parser.commands.get(name, ""))
                 for name, sub in sorted(parser.builders.items()))
    return _from_parser(path, parser, summary, build.__doc__ or "", subs)


def _from_parser(path: tuple[str, ...], parser: Parser, summary: str, doc: str,
                 subs: tuple[CommandDoc, ...]) -> CommandDoc:
    options, positionals, remainder = [], [], False
    for action in parser._actions:
        if action.option_strings:
            options.append(_option(action))
        elif subs and action.dest in ("command", "arguments"):
            continue  # a group's COMMAND [ARGS]...: the subcommands
        else:
            metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
            if action.choices:
                positionals.append("|".join(str(c) for c in action.choices))
            else:
                positionals.append(_KINDS.get(metavar.split()[0], ""))
            remainder = remainder or action.nargs == REMAINDER
    usage = (parser.usage or parser._default_usage()) % {"prog": parser.prog}
    return CommandDoc(path=path, summary=summary, description=_dedent(doc), usage=usage, options=tuple(options),
                      positionals=tuple(positionals), remainder=remainder, subcommands=subs)


def _option(action: Action) -> OptionDoc:
    names = tuple(sorted(action.option_strings, key=lambda n: (n.startswith("--"), n)))
    metavar = None
    if action.nargs != 0:
        metavar = action.metavar if isinstance(action.metavar, str) else action.dest.upper()
    choices = tuple(str(c) for c in action.choices) if action.choices else ()
    repeatable = type(action).__name__ in ("_AppendAction", "_CountAction", "_ExtendAction")
    return OptionDoc(names=names, metavar=metavar, help=" ".join((action.help or "").split()), choices=choices,
                     repeatable=repeatable)


def _dedent(doc: str) -> str:
    """A docstring as paragraphs of one line each."""
    paragraphs = re.split(r"\n\s*\n", doc.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs if p.strip())


def broken(top: CommandDoc) -> dict[str, str]:
    """Commands that could not be built, and why."""
    return {doc.name: doc.error for doc in top.walk() if doc.error is not None}


# --- bash ----------------------------------------------------------------------------------

_BASH_HEAD = r"""# bash completion for hawser; generated from its parser by `hawser completion bash`.

# Names of containers and images, from hawser itself: cheap, and silent when it fails.
__hawser_names() {
    local kind=$1
    shift
    if [[ $kind == containers || $kind == any ]]; then
        hawser "$@" ps -a --format '{{.Names}}' 2>/dev/null ||
            hawser "$@" ps -a 2>/dev/null | awk 'NR > 1 { print $NF }'
    fi
    if [[ $kind == images || $kind == any ]]; then
        hawser "$@" images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null ||
            hawser "$@" images 2>/dev/null | awk 'NR > 1 { print $1 }'
    fi
}

# Sets opts (every option), valued (options taking a value), subs (subcommands),
# args (what the positionals name) and rest (1: the last one takes the rest of the line).
__hawser_spec() {
    opts="" valued="" subs="" args="" rest=0
    case $1 in
"""

_BASH_TAIL = r"""    esac
}

# The values an option takes, when they are a fixed set.
__hawser_choices() {
    case $1 in
%(choices)s    esac
}

_hawser() {
    # The words as the user sees them: bash splits busybox:latest and --network=x at
    # COMP_WORDBREAKS' ":" and "="; the line up to the cursor, split at blanks, does not.
    local -a words=("${COMP_WORDS[@]:0:COMP_CWORD + 1}")
    if [[ -n ${COMP_LINE-} ]]; then
        local line=${COMP_LINE:0:COMP_POINT}
        read -ra words <<<"$line"
        [[ -z $line || $line == *[[:blank:]] ]] && words+=("")
    fi
    local cword=$((${#words[@]} - 1))
    local cur=${words[cword]} prev=""
    ((cword > 0)) && prev=${words[cword - 1]}
    if [[ $cur == -*=* ]]; then  # --network=b: the option's value
        prev=${cur%%=*} cur=${cur#*=}
    fi
    local opts valued subs args rest key="" npos=0 skip=0 i w
    local -a global=()
    __hawser_spec ""
    for ((i = 1; i < cword; i++)); do
        w=${words[i]}
        if [[ $w == -*=* ]]; then
            [[ -z $key ]] && global+=("$w")
            continue
        fi
        if ((skip)); then
            skip=0
            [[ -z $key ]] && global+=("$w")
            continue
        fi
        if [[ $w == -* ]]; then
            if [[ " $valued " == *" $w "* ]]; then
                skip=1
                [[ -z $key ]] && global+=("$w")
            fi
            continue
        fi
        if [[ -n $subs && " $subs " == *" $w "* && $npos == 0 ]]; then
            key=${key:+${key}_}$w
            __hawser_spec "$key"
            continue
        fi
        npos=$((npos + 1))
    done
    COMPREPLY=()
    if [[ " $valued " == *" $prev "* && $prev == -* ]]; then
        local choices
        choices=$(__hawser_choices "$key $prev")
        [[ -n $choices ]] && COMPREPLY=($(compgen -W "$choices" -- "$cur"))
        return 0  # nothing: bash's default (file names)
    fi
    local -a kinds=($args)
    if ((rest && npos >= ${#kinds[@]})); then
        return 0  # the command run in the container: file names
    fi
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ -n $subs && $npos == 0 ]]; then
        COMPREPLY=($(compgen -W "$subs" -- "$cur"))
    else
        local kind=${kinds[npos]:-${kinds[${#kinds[@]} - 1]}}
        if [[ $kind == *'|'* ]]; then
            COMPREPLY=($(compgen -W "${kind//|/ }" -- "$cur"))
        elif [[ -n $kind && $kind != - ]]; then
            COMPREPLY=($(compgen -W "$(__hawser_names "$kind" "${global[@]}")" -- "$cur"))
            if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
                # bash replaces only what follows the last ":" of the word.
                local colon=${cur%"${cur##*:}"}
                COMPREPLY=("${COMPREPLY[@]#"$colon"}")
            fi
        fi
    fi
    return 0
}

complete -o bashdefault -o default -F _hawser hawser
"""


def bash_script(top: CommandDoc) -> str:
    """A bash completion script: commands, subcommands, options, their fixed values, and names."""
    cases, choices = [], []
    for doc in top.walk():
        opts = " ".join(n for o in doc.options for n in o.names)
        valued = " ".join(n for o in doc.options if o.metavar is not None for n in o.names)
        subs = " ".join(s.path[-1] for s in doc.subcommands)
        args = " ".join(k or "-" for k in doc.positionals)
        cases.append(f'    "{doc.key}") opts="{opts}" valued="{valued}" subs="{subs}" args="{args}" '
                     f"rest={int(doc.remainder)} ;;\n")
        for o in doc.options:
            if o.choices:
                pattern = "|".join(f'"{doc.key} {n}"' for n in o.names)
                choices.append(f"    {pattern}) echo {_sh_quote(' '.join(o.choices))} ;;\n")
    return _BASH_HEAD + "".join(cases) + _BASH_TAIL.replace("%(choices)s", "".join(choices))


def _sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# --- zsh -----------------------------------------------------------------------------------

_ZSH_HEAD = r"""#compdef hawser
# zsh completion for hawser; generated from its parser by `hawser completion zsh`.

# Names of containers and images, from hawser itself: cheap, and silent when it fails.
(( $+functions[__hawser_names] )) ||
__hawser_names() {
    local kind=$1
    local -a names
    if [[ $kind == containers || $kind == any ]]; then
        names+=(${(f)"$(_call_program containers hawser ps -a --format '{{.Names}}' 2>/dev/null)"})
    fi
    if [[ $kind == images || $kind == any ]]; then
        names+=(${(f)"$(_call_program images hawser images --format '{{.Repository}}:{{.Tag}}' 2>/dev/null)"})
    fi
    compadd -a names
}
"""


def zsh_script(top: CommandDoc) -> str:
    """A zsh completion function (``#compdef hawser``): _arguments per command, _describe for subcommands."""
    parts = [_ZSH_HEAD]
    for doc in top.walk():
        parts.append(_zsh_function(doc))
    parts.append('\n__hawser "$@"\n')
    return "".join(parts)


def _zsh_function(doc: CommandDoc) -> str:
    # hawser itself is __hawser: _hawser is the autoloaded file, which defines the rest, then calls it.
    name = f"_hawser_{doc.key}" if doc.key else "__hawser"
    specs = [_zsh_option(o) for o in doc.options]
    if doc.subcommands:
        specs += ["': :->command'", "'*:: :->argument'"]
    else:
        for i, kind in enumerate(doc.positionals):
            action = f"({kind.replace('|', ' ')})" if "|" in kind else f"__hawser_names {kind}" if kind else "_files"
            last = i == len(doc.positionals) - 1
            if last and doc.remainder:
                specs.append(f"'{i + 1}: :{action}'")
                specs.append("'*:: :_normal'")
            elif last:
                specs.append(f"'*: :{action}'")
            else:
                specs.append(f"'{i + 1}: :{action}'")
    lines = [f"\n(( $+functions[{name}] )) ||\n{name}() {{\n"]
    if doc.subcommands:
        lines.append("    local curcontext=$curcontext state line ret=1\n")
    args = " \\\n        ".join(specs)
    lines.append(f"    _arguments -C -S \\\n        {args}{' && ret=0' if doc.subcommands else ''}\n")
    if doc.subcommands:
        described = " ".join(_zsh_quote(f"{_zsh_escape_colon(s.path[-1])}:{s.summary}") for s in doc.subcommands)
        cases = "".join(f"                {s.path[-1]}) _hawser_{s.key} && ret=0 ;;\n" for s in doc.subcommands)
        lines.append(
            "    case $state in\n"
            "        command)\n"
            f"            local -a commands=({described})\n"
            f"            _describe -t commands '{doc.name} command' commands && ret=0\n"
            "            ;;\n"
            "        argument)\n"
            "            case $words[1] in\n"
            f"{cases}"
            "            esac\n"
            "            ;;\n"
            "    esac\n"
            "    return ret\n")
    lines.append("}\n")
    return "".join(lines)


def _zsh_option(o: OptionDoc) -> str:
    help_ = re.sub(r"([\[\]\\:])", r"\\\1", o.help)
    value = ""
    if o.metavar is not None:
        action = f"({' '.join(o.choices)})" if o.choices else " "
        value = f":{_zsh_escape_colon(o.metavar.lower())}:{action}"
    # '(-e --env)'{-e,--env}'[help]:k=v: ': zsh's brace expansion makes one spec per spelling.
    prefix = "*" if o.repeatable else f"({' '.join(o.names)})"
    names = o.names[0] if len(o.names) == 1 else "{" + ",".join(o.names) + "}"
    return f"{_zsh_quote(prefix)}{names}{_zsh_quote(f'[{help_}]{value}')}"


def _zsh_escape_colon(text: str) -> str:
    return text.replace("\\", "\\\\").replace(":", "\\:")


def _zsh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# --- man pages -----------------------------------------------------------------------------


def man_pages(top: CommandDoc, *, version: str, date: str) -> dict[str, str]:
    """``{file name: roff}``: hawser.1, and hawser-COMMAND.1 / hawser-GROUP-SUB.1 for each command."""
    return {f"{doc.name.replace(' ', '-')}.1": _man_page(doc, version=version, date=date) for doc in top.walk()}


def _man_page(doc: CommandDoc, *, version: str, date: str) -> str:
    page = doc.name.replace(" ", "-")
    out = [f'.TH "{_roff_word(page.upper())}" 1 "{date}" "hawser {_roff_text(version)}" "Hawser Manual"\n',
           ".nh\n", ".SH NAME\n", f"{_roff_word(page)} \\- {_roff_text(doc.summary.removeprefix('hawser: '))}\n",
           ".SH SYNOPSIS\n", _synopsis(doc)]
    if doc.description:
        out.append(".SH DESCRIPTION\n")
        out.append("\n.PP\n".join(_roff_line(p) for p in doc.description.split("\n\n")) + "\n")
    if doc.options:
        out.append(".SH OPTIONS\n")
        for o in doc.options:
            names = ", ".join(f"\\fB{_roff_word(n)}\\fR" for n in o.names)
            value = f" \\fI{_roff_text(o.metavar)}\\fR" if o.metavar is not None else ""
            out.append(f".TP\n{names}{value}\n")
            text = o.help
            if o.choices and (not text or "|" not in (o.metavar or "")):
                text = f"{text} One of: {', '.join(o.choices)}.".strip()
            out.append(_roff_line(text or "(no description)") + "\n")
    if doc.subcommands:
        out.append(".SH COMMANDS\n")
        for s in doc.subcommands:
            out.append(f".TP\n\\fB{_roff_word(s.name.replace(' ', '-'))}\\fR(1)\n{_roff_line(s.summary)}\n")
    see = [d.name.replace(" ", "-") for d in (doc.subcommands or ())]
    if doc.path != ("",):
        see.insert(0, "hawser" if len(doc.path) == 1 else "hawser-" + "-".join(doc.path[:-1]))
    if see:
        out.append(".SH SEE ALSO\n")
        out.append(",\n".join(f".BR {_roff_word(s)} (1)" for s in see) + "\n")
    return "".join(out)


def _synopsis(doc: CommandDoc) -> str:
    words = doc.usage.split()
    prog = doc.name.split()
    rest = words[len(prog):]
    line = f"\\fB{_roff_word(doc.name)}\\fR"
    if rest:
        line += " " + " ".join(_roff_word(w) if w.startswith("[") or not w.isupper() else f"\\fI{_roff_word(w)}\\fR"
                               for w in rest)
    return line + "\n"


def _roff_word(text: str) -> str:
    """Text in which every hyphen is a hyphen (option names, command names): ``\\-``."""
    return _roff_text(text).replace("-", "\\-")


def _roff_text(text: str) -> str:
    return text.replace("\\", "\\e")


def _roff_line(text: str) -> str:
    """A line of running text: escaped, and never starting with a control character."""
    text = _roff_text(text)
    return "\\&" + text if text[:1] in (".", "'") else text


def write_man_pages(directory: str) -> list[str]:
    """Write every man page into ``directory`` (created); returns their paths."""
    import datetime
    import os

    from hawser import __version__

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = datetime.datetime.fromtimestamp(int(epoch), datetime.UTC) if epoch else datetime.datetime.now(datetime.UTC)
    os.makedirs(directory, exist_ok=True)
    written = []
    for name, text in man_pages(command_docs(), version=__version__, date=when.strftime("%Y-%m-%d")).items():
        path = os.path.join(directory, name)
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(path + ".tmp", path)
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    """``python -m hawser.cli._docs man DIR | bash | zsh``: what scripts/setup.sh installs."""
    if len(argv) == 2 and argv[0] == "man":
        top = command_docs()
        for name, error in broken(top).items():
            print(f"hawser docs: {name}: {error}", file=sys.stderr)
        write_man_pages(argv[1])
        return 0
    if len(argv) == 1 and argv[0] in SHELLS:
        top = command_docs()
        sys.stdout.write(bash_script(top) if argv[0] == "bash" else zsh_script(top))
        return 0
    print("usage: python -m hawser.cli._docs man DIR | bash | zsh", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
