"""Optional dependencies of the data sources, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise ``ImportError`` saying which diff-pixel extra provides it.

    >>> require("numpy", "digits", "digits()").__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{what} needs {module.split('.')[0]}, which is not installed: "
            f"pip install 'diff-pixel[{extra}]' (or 'diff-pixel[all]')"
        ) from err
