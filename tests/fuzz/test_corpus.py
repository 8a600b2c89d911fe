"""Replay each atheris target's checked-in corpus (fuzz/corpus/TARGET/*):
the seeds, and every crash `make fuzz` found once it was fixed.  No mutation:
the same bytes through the same contract check as the fuzzer."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.targets import TARGETS

CORPUS = Path(__file__).resolve().parents[2] / "fuzz" / "corpus"
CASES = sorted((target, path) for target in TARGETS for path in (CORPUS / target).glob("*") if path.is_file())


def test_every_target_has_seeds() -> None:
    assert {target for target, _ in CASES} == set(TARGETS)


@pytest.mark.parametrize(("target", "path"), CASES, ids=[f"{t}/{p.name}" for t, p in CASES])
def test_replay(target: str, path: Path) -> None:
    TARGETS[target](path.read_bytes())
