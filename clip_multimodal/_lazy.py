"""Lazy package exports (PEP 562): a name's module is imported on first access.

Packages use it so that importing them (and the CLI's --help) does not import torch.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    module_name: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module's `__getattr__` and `__dir__` for names that live in other modules.

    Args:
        module_name: The package's `__name__`.
        exports: Each lazily exported name -> the module that defines it.

    Returns:
        `__getattr__`, which imports a name's module on first access and caches the value
        in the package, and `__dir__`, the package's sorted `__all__`.
    """

    def __getattr__(name: str) -> Any:
        source = exports.get(name)
        if source is None:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        setattr(sys.modules[module_name], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(sys.modules[module_name].__all__)

    return __getattr__, __dir__
