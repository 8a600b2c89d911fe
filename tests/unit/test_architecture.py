"""The architecture, enforced: which part may import which, and no part reaches
into another part's private modules. ARCHITECTURE.md explains the layers; this
test keeps the code to them without review."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "hawser"

# The parts, and the parts each may import. Everything may import the shared
# modules at the package's top (errors, config, _logging, ...).
ALLOWED: dict[str, set[str]] = {
    "oci": set(),
    "host": set(),
    "content": {"oci", "host"},
    # GC walks the content store and the snapshotters, as containerd's metadata does.
    "metadata": {"oci", "host", "content", "snapshots"},
    "registry": {"oci", "host"},
    "snapshots": {"oci", "host"},
    "store": {"oci", "host", "content", "metadata", "snapshots"},
    "images": {"oci", "host", "content", "metadata", "snapshots", "registry", "store"},
    "network": {"oci", "host"},
    "runtime": {"oci", "host", "content", "metadata", "snapshots", "store"},
    # docker's local volumes of a store's namespace; the CLI binds them into containers.
    "volumes": {"oci", "host", "metadata", "store"},
    "pods": {"oci", "host", "metadata", "snapshots", "store", "network", "runtime"},
    # The event journal: every front end appends to it and reads it.
    "events": {"host"},
    "check": {"oci", "host", "content", "metadata", "snapshots", "store", "images", "network", "runtime", "pods",
              "volumes"},
    # hawserd's Prometheus metrics: collectors over the records the parts below keep.
    "metrics": {"oci", "host", "metadata", "store", "runtime", "pods"},
    # No host: the CRI is a protocol adapter over the services.
    "cri": {"oci", "metadata", "registry", "snapshots", "store", "images", "runtime", "network", "pods", "events"},
    # containerd's API: a protocol adapter over the store's roles and the services, as cri is.
    "containerd": {"oci", "content", "metadata", "snapshots", "registry", "store", "images", "runtime", "pods",
                   "events"},
    "daemon": {"oci", "host", "content", "metadata", "snapshots", "registry", "store", "images", "network",
               "runtime", "pods", "check", "cri", "containerd", "events", "metrics", "volumes"},
    "cli": {"oci", "host", "content", "metadata", "snapshots", "registry", "store", "images", "network",
            "runtime", "pods", "check", "events", "volumes"},
}
SHARED = {"errors", "config", "_logging", "_dataclass", "_failpoints", "_lazy", "_grpc"}


def part_of(module: str) -> str | None:
    """'hawser.cri.streaming._spdy' -> 'cri'; None for the shared top-level modules."""
    parts = module.split(".")
    if len(parts) < 2 or parts[1] in SHARED:
        return None
    return parts[1]


def module_name(path: Path, root: Path = SRC) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    names = list(rel.parts)
    if names[-1] == "__init__":
        names.pop()
    return ".".join(names)


def imports_of(path: Path, root: Path = SRC) -> Iterator[tuple[int, str]]:
    """Every hawser module ``path`` imports, absolute, with its line; relative imports resolved."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("hawser"):
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            elif node.module and node.module.startswith("hawser"):
                target = node.module
            else:
                continue
            yield node.lineno, target
            # `from hawser.x import _private` names a private module too.
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    yield node.lineno, f"{target}.{alias.name}"


def is_private_to(target: str, importer_part: str | None) -> bool:
    """A `_name` module of another part: hawser.<part>.(...)._name."""
    names = target.split(".")
    if len(names) < 3 or part_of(target) == importer_part:
        return False
    return any(n.startswith("_") and not n.startswith("__") for n in names[2:])


def violations(root: Path = SRC) -> list[str]:
    found = []
    for path in sorted(root.rglob("*.py")):
        mine = part_of(module_name(path, root))
        for line, target in imports_of(path, root):
            theirs = part_of(target)
            where = f"{path.relative_to(root.parent)}:{line}: {target}"
            if mine is None:
                if theirs is not None:
                    found.append(f"{where}: a shared module imports the part {theirs}")
                continue
            if theirs is None or theirs == mine:
                continue
            if mine not in ALLOWED:
                found.append(f"{where}: {mine} is not a known part; add it to ALLOWED and ARCHITECTURE.md")
            elif theirs not in ALLOWED[mine]:
                found.append(f"{where}: {mine} may not import {theirs}")
            elif is_private_to(target, mine):
                found.append(f"{where}: a private module of {theirs}")
    return found


def test_every_part_is_known() -> None:
    on_disk = {p.name for p in SRC.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert on_disk == set(ALLOWED)


def test_imports_follow_the_layers() -> None:
    assert violations() == []


def test_allowed_parts_form_no_cycle() -> None:
    seen: dict[str, int] = {}

    def visit(part: str, path: tuple[str, ...]) -> None:
        assert part not in path, " -> ".join((*path, part))
        if seen.get(part):
            return
        for dep in ALLOWED[part]:
            visit(dep, (*path, part))
        seen[part] = 1

    for part in ALLOWED:
        visit(part, ())


@pytest.mark.parametrize(
    ("importer", "line", "why"),
    [
        ("runtime/_x.py", "from hawser.images import ImageService\n", "runtime may not import images"),
        ("cri/_x.py", "from hawser.registry._credentials import x\n", "a private module of registry"),
        ("cri/_x.py", "from ..host import mount\n", "cri may not import host"),
        ("oci/_x.py", "import hawser.cli\n", "oci may not import cli"),
        ("images/_x.py", "from hawser.snapshots import _types\n", "a private module of snapshots"),
    ],
)
def test_the_check_refuses_a_forbidden_import(tmp_path: Path, importer: str, line: str, why: str) -> None:
    root = tmp_path / "hawser"
    for part in ALLOWED:
        (root / part).mkdir(parents=True)
        (root / part / "__init__.py").write_text("")
    (root / importer).write_text(line)
    found = violations(root)
    assert len(found) == 1 and why in found[0], found


def _runtime_imports(path: Path, root: Path) -> set[str]:
    """The hawser modules ``path`` imports when it loads: module level, not under
    TYPE_CHECKING, not inside functions (those load later, on first use)."""
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            elif isinstance(node, (ast.If, ast.Try)):
                visit(node.body)
                visit(getattr(node, "orelse", []))
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)
            elif isinstance(node, ast.Import):
                found.update(a.name for a in node.names if a.name.startswith("hawser"))
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                elif node.module and node.module.startswith("hawser"):
                    target = node.module
                else:
                    continue
                found.add(target)
                found.update(f"{target}.{a.name}" for a in node.names)

    visit(ast.parse(path.read_text(), str(path)).body)
    return found


def import_cycles(root: Path = SRC) -> list[list[str]]:
    """Cycles among the modules of each part, by what they import when they load."""
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    graph = {m: {t for t in _runtime_imports(p, root) if t in modules and t != m and part_of(t) == part_of(m)}
             for m, p in modules.items()}
    cycles, state = [], dict.fromkeys(graph, 0)

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state[n] == 1:
                cycles.append([*stack[stack.index(n):], n])
            elif state[n] == 0:
                visit(n, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if state[m] == 0:
            visit(m, [])
    return cycles


def test_no_import_cycle_inside_a_part() -> None:
    assert import_cycles() == []


def test_the_cycle_check_finds_a_cycle(tmp_path: Path) -> None:
    root = tmp_path / "hawser"
    (root / "cri").mkdir(parents=True)
    (root / "cri" / "__init__.py").write_text("")
    (root / "cri" / "a.py").write_text("from hawser.cri import b\n")
    (root / "cri" / "b.py").write_text("from hawser.cri.a import x\n")
    assert import_cycles(root) == [["hawser.cri.a", "hawser.cri.b", "hawser.cri.a"]]
