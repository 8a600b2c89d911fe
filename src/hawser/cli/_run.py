"""``python -m hawser.cli._run``: the CLI without the console script (tests use it)."""

from hawser.cli import main

main()
