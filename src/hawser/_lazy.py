"""Package exports loaded on first use.

A command imports only the modules it runs, and the unpack worker (``python -m
hawser.images._unpack_worker``) none of the store's: each package's
``__init__`` names its exports and the private module each lives in, and this
module's ``__getattr__`` imports that module when the name is first asked for.
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False  # typing stays unimported at run time (~2.5 ms of every CLI start)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps each exported
    name to the private module (``"_cgroups"``) that defines it. The value is
    kept on the package once loaded, so later lookups cost nothing."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    return __getattr__
