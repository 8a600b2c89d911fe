"""Generate the Python stubs of containerd's v1 gRPC API from containerd's own
.proto files, as Debian installs them (golang-github-containerd-containerd-dev,
golang-github-containerd-cgroups-dev, golang-github-gogo-googleapis-dev).

The repository holds this script, not copies of containerd's files.  The
.proto files are staged under the Python package they become
(``hawser/containerd/_api/...``), their imports rewritten to match (Go import
paths such as ``github.com/...`` are not Python package names), and the options
of Go's code generators (gogoproto's, containerd's fieldpath plugin's) dropped
with the imports of the files that declare them: Python reads none of them, and
a stub loads every file its .proto names (those two load protobuf's own
descriptor.proto stubs, ~0.5 MB of hawserd's memory, for nothing); then
grpcio-tools compiles them into ``src/hawser/containerd/_api``.  A ``STAMP``
there holds the hash of the inputs: ``--check`` (and a test in the suite)
fails when the stubs are missing or older than their inputs.

    python scripts/containerd_protos.py           # generate (setup.sh runs it)
    python scripts/containerd_protos.py --check   # exit 1 if missing or stale
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import sys
import tempfile
from pathlib import Path

GOCODE = Path("/usr/share/gocode/src")
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "src" / "hawser" / "containerd" / "_api"
PACKAGE = "hawser/containerd/_api"

# Go import path (as the .proto files name each other) -> where it is staged.
SOURCES = {
    "github.com/containerd/containerd/api/": f"{PACKAGE}/",
    "google/rpc/status.proto": f"{PACKAGE}/rpc/status.proto",
    # The cgroup v1 metrics a task's Metrics answer carries (io.containerd.cgroups.v1.Metrics).
    "github.com/containerd/cgroups/stats/v1/metrics.proto": f"{PACKAGE}/cgroups/v1/metrics.proto",
}
# Where Debian puts each (relative to GOCODE).
FILES_AT = {
    "google/rpc/status.proto": "github.com/gogo/googleapis/google/rpc/status.proto",
}
# The services of containerd's v1 API and the types they use.
API_FILES = [
    "types/descriptor.proto", "types/mount.proto", "types/platform.proto", "types/metrics.proto",
    "types/task/task.proto",
    "services/containers/v1/containers.proto", "services/content/v1/content.proto",
    "services/diff/v1/diff.proto", "services/events/v1/events.proto", "services/images/v1/images.proto",
    "services/introspection/v1/introspection.proto", "services/leases/v1/leases.proto",
    "services/namespaces/v1/namespace.proto", "services/snapshots/v1/snapshots.proto",
    "services/tasks/v1/tasks.proto", "services/version/v1/version.proto",
    "events/container.proto", "events/content.proto", "events/image.proto", "events/namespace.proto",
    "events/snapshot.proto", "events/task.proto",
]
PACKAGES = {"containerd": "golang-github-containerd-containerd-dev",
            "cgroups": "golang-github-containerd-cgroups-dev",
            "googleapis": "golang-github-gogo-googleapis-dev"}
IMPORT = re.compile(r'^import\s+(weak\s+|public\s+)?"([^"]+)";', re.M)
# What only Go's code generators read: the files declaring their options, and the options.
GO_ONLY = {"gogoproto/gogo.proto", "github.com/containerd/containerd/protobuf/plugin/fieldpath.proto"}
GO_OPTION = r'\((?:gogoproto|containerd\.plugin)\.\w+\)\s*=\s*(?:"[^"]*"|[\w.]+)'
GO_OPTION_STATEMENT = re.compile(rf"^[ \t]*option\s+{GO_OPTION}\s*;[ \t]*\n", re.M)
FIELD_OPTIONS = re.compile(r"\s*\[([^\]]*)\](?=\s*;)")


def inputs() -> dict[str, Path]:
    """Staged path -> the Debian file it comes from."""
    found = {f"{PACKAGE}/{name}": GOCODE / "github.com/containerd/containerd/api" / name for name in API_FILES}
    for go_path, staged in SOURCES.items():
        if not go_path.endswith("/"):
            found[staged] = GOCODE / FILES_AT.get(go_path, go_path)
    missing = [str(p) for p in found.values() if not p.is_file()]
    if missing:
        sys.exit(f"containerd_protos: missing {', '.join(missing[:3])}: "
                 f"install {' '.join(PACKAGES.values())} (scripts/setup.sh does)")
    return found


def staged_name(go_path: str) -> str:
    if go_path.startswith("google/protobuf/"):
        return go_path  # protobuf's own, shipped with grpcio-tools
    for prefix, staged in SOURCES.items():
        if go_path == prefix or (prefix.endswith("/") and go_path.startswith(prefix)):
            return staged + go_path[len(prefix):] if prefix.endswith("/") else staged
    raise SystemExit(f"containerd_protos: no place for the import {go_path!r}")


def rewrite(text: str) -> str:
    text = FIELD_OPTIONS.sub(_without_go_options, GO_OPTION_STATEMENT.sub("", text))
    left = [line for line in text.splitlines() if re.search(r"\((?:gogoproto|containerd\.plugin)\.", line.split("//")[0])]
    if left:
        raise SystemExit(f"containerd_protos: a Go option this script does not drop: {left[0].strip()!r}")
    return IMPORT.sub(lambda m: "" if m.group(2) in GO_ONLY else f'import "{staged_name(m.group(2))}";', text)


def _without_go_options(match: re.Match[str]) -> str:
    """A field's ``[...]`` options without Go's; nothing when none is left."""
    entries = [e.strip() for e in match.group(1).split(",")]
    kept = [e for e in entries if not re.fullmatch(GO_OPTION, e)]
    if len(kept) == len(entries):
        return match.group(0)
    return f" [{', '.join(kept)}]" if kept else ""


def stamp(files: dict[str, Path]) -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for staged in sorted(files):
        digest.update(staged.encode() + b"\0" + files[staged].read_bytes())
    return digest.hexdigest()


def generate(files: dict[str, Path]) -> None:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory(prefix="hawser-protos-") as tmp:
        stage, out = Path(tmp) / "stage", Path(tmp) / "out"
        out.mkdir()
        for staged, source in files.items():
            target = stage / staged
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rewrite(source.read_text()))
        args = ["protoc", f"-I{stage}", f"-I{include}", f"--python_out={out}", f"--pyi_out={out}",
                f"--grpc_python_out={out}", *sorted(files)]
        if protoc.main(args) != 0:
            raise SystemExit("containerd_protos: protoc failed")
        generated = out / PACKAGE
        for directory in [generated, *(d for d in generated.rglob("*") if d.is_dir())]:
            (directory / "__init__.py").touch()
        (generated / "STAMP").write_text(stamp(files) + "\n")
        if OUT.exists():
            shutil.rmtree(OUT)
        shutil.copytree(generated, OUT)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the stubs are missing or stale")
    args = parser.parse_args()
    files = inputs()
    try:
        current = (OUT / "STAMP").read_text().strip()
    except FileNotFoundError:
        current = ""
    wanted = stamp(files)
    if args.check:
        if current != wanted:
            print(f"containerd_protos: the stubs in {OUT} are {'stale' if current else 'missing'}: "
                  "run python scripts/containerd_protos.py", file=sys.stderr)
            return 1
        return 0
    if current != wanted:
        generate(files)
    return 0


if __name__ == "__main__":
    sys.exit(main())
