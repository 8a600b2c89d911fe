"""Loggers that load the logging package on first use.

``import logging`` costs ~10 ms of CPU (it pulls in traceback, linecache,
tokenize, textwrap...): a tenth of a whole ``hawser run``, which logs nothing
on its way.  Modules on the CLI's hot paths take their logger from here; it
behaves as ``logging.getLogger(name)`` once anything is logged.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    import logging
    from typing import Any


class _LazyLogger:
    __slots__ = ("_logger", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attr: str) -> Any:
        if self._logger is None:
            import logging

            self._logger = logging.getLogger(self._name)
        return getattr(self._logger, attr)


def get_logger(name: str) -> logging.Logger:
    """``logging.getLogger(name)``, imported when first used."""
    return _LazyLogger(name)  # type: ignore[return-value]  # a Logger in all but name
