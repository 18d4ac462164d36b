"""Package attributes resolved on first use, so that importing a package does not import its heavy modules (TVM,
numpy) nor modules that would import the package's importer back (an import loop)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, Iterable[str]]
                 ) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``__all__, __getattr__, __dir__`` for the package ``package`` (its ``__name__``) exporting, for each module
    of ``exports`` (relative to the package, ``".log"``, or absolute), the names listed for it::

        __all__, __getattr__, __dir__ = lazy_exports(__name__, {".log": ("TuningLog",), ".driver": ("tune",)})
    """
    where = {name: module for module, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:  # noqa: N807 - the module-level hook
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(sys.modules[package], name, value)  # resolved once
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return sorted({*vars(sys.modules[package]), *where})

    return sorted(where), __getattr__, __dir__
