"""The README's Python example runs as written and its 2-step student beats the exact teacher's
ancestral 2-step sampler."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def example(tag: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    found = [b for b in blocks if b.startswith(f"# README example: {tag}\n")]
    assert len(found) == 1, f"README must hold one block tagged {tag!r}, found {len(found)}"
    return found[0]


@pytest.mark.slow
def test_readme_distill_example(tmp_path, monkeypatch):
    from diff_core import metrics
    from diff_core.testing import problem

    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "readme_example"}
    exec(compile(example("distill"), "README[distill]", "exec"), ns)  # noqa: S102
    x = np.asarray(ns["x"])
    assert x.shape == (1000, 2) and np.isfinite(x).all()
    truth = problem("ring8").mixture.sample(1000, seed=3)[0]
    assert metrics.mmd2(x, truth) < 0.5  # the exact teacher's DDPM-2 is at 0.71


def test_readme_lists_every_public_name():
    import diff_distill

    text = README.read_text(encoding="utf-8")
    missing = [n for n in diff_distill.__all__ if n != "__version__" and f"`{n}`" not in text]
    assert not missing, missing
