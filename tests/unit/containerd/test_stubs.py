"""The containerd API stubs are generated from Debian's .proto files at setup;
the suite fails when they are missing or older than their inputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "scripts" / "containerd_protos.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("containerd_protos", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check(module: ModuleType, monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr(sys, "argv", ["containerd_protos.py", "--check"])
    return int(module.main())


def test_the_generated_stubs_are_current(monkeypatch: pytest.MonkeyPatch) -> None:
    assert check(load_script(), monkeypatch) == 0


def test_missing_or_stale_stubs_fail_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    module = load_script()
    module.OUT = tmp_path / "_api"
    assert check(module, monkeypatch) == 1 and "missing" in capsys.readouterr().err
    module.OUT.mkdir()
    (module.OUT / "STAMP").write_text("0" * 64 + "\n")
    assert check(module, monkeypatch) == 1 and "stale" in capsys.readouterr().err


def test_the_stubs_load_beside_the_cri_ones() -> None:
    from cri_api.v1 import api_pb2

    from hawser.containerd._api.services.content.v1 import content_pb2
    from hawser.containerd._api.services.namespaces.v1 import namespace_pb2

    assert namespace_pb2.DESCRIPTOR.services_by_name["Namespaces"].full_name == \
        "containerd.services.namespaces.v1.Namespaces"
    assert content_pb2.WriteAction.Value("COMMIT") == 2 and api_pb2.DESCRIPTOR.package == "runtime.v1"
