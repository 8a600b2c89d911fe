"""Run one atheris (libFuzzer) fuzzer over a target of tests/fuzz/targets.py.

    python -m tests.fuzz.run TARGET [--seconds 60] [--out build/fuzz]

Starts from the checked-in seeds in fuzz/corpus/TARGET (read only); new
inputs go to OUT/corpus/TARGET and crashing inputs to OUT/crashes/TARGET/.
A crash exits non-zero: turn the file into a regression test next to the
target's property test, fix it, and add the file to the seed corpus.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target")
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "fuzz")
    args, extra = parser.parse_known_args()

    import atheris

    with atheris.instrument_imports(include=["hawser"]):
        from tests.fuzz.targets import TARGETS
    if args.target not in TARGETS:
        parser.error(f"unknown target {args.target!r}; one of {', '.join(TARGETS)}")
    work = args.out / "corpus" / args.target
    crashes = args.out / "crashes" / args.target
    work.mkdir(parents=True, exist_ok=True)
    crashes.mkdir(parents=True, exist_ok=True)
    # libFuzzer ends the process without Python's exit handlers: the targets' scratch files go under --out.
    scratch = args.out / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    tempfile.tempdir = str(scratch)
    seeds = REPO / "fuzz" / "corpus" / args.target
    # libFuzzer writes new inputs into the first corpus dir only: the seeds stay as checked in.
    argv = [sys.argv[0], str(work), str(seeds), f"-max_total_time={args.seconds}",
            f"-artifact_prefix={crashes}/", "-timeout=10", "-rss_limit_mb=2048", "-print_final_stats=1", *extra]
    atheris.Setup(argv, TARGETS[args.target])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
