"""The README: its API table names only public names, and its Python example runs as written."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import diff_semantica

README = Path(__file__).resolve().parents[1] / "README.md"


def example(tag: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if b.startswith(f"# README example: {tag}\n")]
    assert len(found) == 1, f"README must hold one block tagged {tag!r}, found {len(found)}"
    return found[0]


def test_api_table_names_are_exported():
    text = README.read_text(encoding="utf-8")
    table = text[text.index("## What is inside") : text.index("## Measured results")]
    names = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", table))
    modules = {n for n in names if n.endswith("_py")}
    public = set(diff_semantica.__all__) | {
        "global_vector",
        "DIGITS_RUN",
        "micro_model",
        "for_digits",
        "for_shapes",
        "Cond",
        "Predicts",
        "Trainer",
    }
    missing = sorted(n for n in names - modules if n not in public and not n.islower())
    assert not missing, missing
    assert "RESULTS_PLACEHOLDER" not in text


@pytest.mark.slow
def test_readme_quickstart_example(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "readme_example"}
    exec(compile(example("quickstart"), "README[quickstart]", "exec"), ns)  # noqa: S102
    x = np.asarray(ns["x"])
    assert x.shape == (4, 3, 8, 8, 1) and np.isfinite(x).all()
