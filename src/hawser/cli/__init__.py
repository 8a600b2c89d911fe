"""The ``hawser`` command."""

from __future__ import annotations


def main() -> None:
    from hawser.cli._main import run

    run()
