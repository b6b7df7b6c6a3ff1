"""The digits demo (spec §12.3): the quick pipeline (slow) writes its grid, table and figures;
the full demo (opt-in, ``-m "slow and demo"``) checks the predictions P."""

from __future__ import annotations

import json

import numpy as np
import pytest


@pytest.mark.slow
def test_quick_demo_writes_its_outputs(tmp_path):
    from diff_distill.demo import run_demo

    fig = run_demo(tmp_path, quick=True, progress=False)
    for name in ("metrics.json", "results.md", "k8.png"):
        assert (tmp_path / name).stat().st_size > 100, name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert {"rows", "teacher_fine", "glossary", "meta"} <= set(saved)
    row = fig["rows"][0]
    for key in ("teacher_ddim", "teacher_ddpm", "student"):
        assert np.isfinite(row[key]["dfd"]) and 0 <= row[key]["class_accuracy"] <= 1
    # the student is a real sampler: far from the DFD of noise
    assert row["student"]["dfd"] < fig["dfd_noise"]
    with pytest.raises(FileExistsError):
        run_demo(tmp_path, quick=True, progress=False)


@pytest.mark.slow
@pytest.mark.demo
def test_full_demo_predictions(tmp_path):
    """P of §12.3: the k = 8 student's DFD is below the teacher's DDIM-8 and DDPM-8 and within
    1.5x of the teacher's fine sampler, with class accuracy >= 0.90."""
    from diff_distill.demo import run_demo

    fig = run_demo(tmp_path, progress=False)
    row = fig["rows"][0]
    s = row["student"]
    assert s["dfd"] < row["teacher_ddim"]["dfd"] and s["dfd"] < row["teacher_ddpm"]["dfd"]
    assert s["dfd"] <= 1.5 * fig["teacher_fine"]["dfd"]
    assert s["class_accuracy"] >= 0.90
