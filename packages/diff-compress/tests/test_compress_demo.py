"""The demo runs end to end (slow, demo scale): both stages, evaluation files."""

from __future__ import annotations

import json

import pytest

from diff_compress.cli import main


@pytest.mark.slow
@pytest.mark.demo
def test_demo_quick_writes_the_evaluation(tmp_path):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    ev = tmp_path / "demo" / "eval"
    for f in ("metrics.json", "metrics.md", "rd_curve.png", "comparison.png"):
        assert (ev / f).is_file()
    res = json.loads((ev / "metrics.json").read_text())
    rows = res["models"]["model"]
    assert set(rows) == {"coffee", "china", "flower"}
    for r in rows.values():
        assert r["bpp"] > 0 and "diffusion_16" in r and "jpeg_matched" in r
