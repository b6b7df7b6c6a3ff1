"""Helpers for the cross-package tests: the repository root and the tools/ scripts as modules."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The monorepo root (integration tests run from the source tree, never from a wheel)."""
    return REPO


@pytest.fixture(scope="session")
def tool():
    """Import a script of tools/ as a module (they import each other as top-level modules)."""

    def load(name: str) -> ModuleType:
        if str(TOOLS) not in sys.path:
            sys.path.insert(0, str(TOOLS))
        return importlib.import_module(name)

    return load
