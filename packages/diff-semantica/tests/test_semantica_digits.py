"""Learned behaviour on the digits (checks 6-13 of the spec), slow tier.

A session fixture trains the four models of :mod:`diff_semantica.recipes` once (seed 0, the
calibrated budget DIGITS_RUN) and evaluates them with DDIM-25 on the 360 held-out digits × 4
variations. Thresholds come from ``tests/thresholds.json`` (calibrated over seeds 0-2 with
``benchmarks/calibrate_train.py`` + ``calibrate_evaluate.py``, distill.md §11 rule); a spec bar
that the calibration seeds miss is kept and marked ``xfail(strict=True)`` with the measured
values (rule 3).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from diff_pixel.train import RunCheckpoints
from diff_pixel.train.logging import read_metrics
from diff_semantica.encoders import _flat_arrays
from diff_semantica.evaluate import seen_groups_heldout_images, subset_adaptation
from diff_semantica.metrics import reference_pair_rmse
from diff_semantica.recipes import DIGITS_RUN, train_digits_variant

pytestmark = pytest.mark.slow

THRESHOLDS = json.loads((Path(__file__).parent / "thresholds.json").read_text())
T = THRESHOLDS["thresholds"]
P = THRESHOLDS["predicted"]
M = THRESHOLDS["calibration"]["measured"]


@pytest.fixture(scope="session")
def runs(tmp_path_factory, train, classifier):
    root = tmp_path_factory.mktemp("semantica-digits")
    ref = reference_pair_rmse(train)
    out = {}
    for v in ("clean", "corrupt60", "filtered60", "self"):
        trainer = train_digits_variant(v, root / v, 0)
        model = trainer.ema_model()
        rec = {"trainer": trainer, "dir": root / v}
        scales = (2.0,) if v == "self" else (1.0, 2.0, 4.0)
        rec["seen"] = seen_groups_heldout_images(
            model, classifier, n_per_image=4, steps=25, guidance_scales=scales, reference=ref
        )["scales"]
        if v != "self":
            rec["subset_tv"] = subset_adaptation(
                model,
                classifier,
                (0, 1, 2),
                n_per_image=4,
                steps=25,
                guidance_scales=(2.0,),
                reference=ref,
            )["scales"]["2.0"]["subset_tv"]
        out[v] = rec
    for v, rec in out.items():  # printed for the record
        print(v, json.dumps(rec["seen"]), rec.get("subset_tv"))
    return out


def test_learning_smoke(runs, classifier, test_digits):
    """Check 6: the loss falls >= 30 % from its first-50-step mean; agreement at scale 2 on the
    held-out digits beats the calibrated bar (chance 0.1)."""
    log = read_metrics(runs["clean"]["dir"] / "metrics.jsonl")
    assert log[-1]["loss"] <= 0.7 * log[0]["loss"]
    assert runs["clean"]["seen"]["2.0"]["agreement"] >= T["agreement_clean_2"]


def test_conditioning_works_calibrated(runs):
    """Check 7 at the calibrated bar."""
    assert runs["clean"]["seen"]["2.0"]["agreement"] >= T["agreement_clean_2"]


@pytest.mark.xfail(
    strict=True,
    reason=f"spec bar 0.85 at 2000 steps; measured at {DIGITS_RUN.steps} steps: {M['agreement_clean_2']}",
)
def test_conditioning_works_spec_bar(runs):
    assert runs["clean"]["seen"]["2.0"]["agreement"] >= P["agreement_clean_2"]


def test_variations_not_copies(runs):
    """Check 8."""
    m = runs["clean"]["seen"]["2.0"]
    print(
        "copy_distance",
        m["copy_distance"],
        "copy_rate",
        m["copy_rate"],
        "diversity",
        m["diversity"],
    )
    assert m["copy_distance"] >= 0.8 and m["copy_rate"] <= 0.05 and m["diversity"] >= 0.5


def test_subset_adaptation_calibrated(runs):
    """Check 9 at the calibrated bar."""
    assert runs["clean"]["subset_tv"] <= T["subset_tv_clean_2"]


@pytest.mark.xfail(strict=True, reason=f"spec bar 0.12; measured: {M['subset_tv_clean_2']}")
def test_subset_adaptation_spec_bar(runs):
    assert runs["clean"]["subset_tv"] <= P["subset_tv_clean_2"]


def test_filtering_matters(runs):
    """Check 10: agreement gain of filtering with 60 % random pairs, the filter's clean share, and
    the filtered model's subset TV below the unfiltered one's."""
    gain = (
        runs["filtered60"]["seen"]["2.0"]["agreement"]
        - runs["corrupt60"]["seen"]["2.0"]["agreement"]
    )
    assert gain >= T["filter_gain_2"]
    report = json.loads((runs["filtered60"]["dir"] / "filter_report.json").read_text())
    assert report["same_group_after"] >= 0.75
    assert runs["filtered60"]["subset_tv"] < runs["corrupt60"]["subset_tv"]


def test_guidance_is_monotone(runs):
    """Check 11."""
    for v in ("clean", "filtered60"):
        a = [runs[v]["seen"][s]["agreement"] for s in ("1.0", "2.0", "4.0")]
        assert a[0] <= a[1] <= a[2], (v, a)


def test_pairs_vs_self_reconstruction(runs):
    """Check 12 (the v3 finding), distance part: self-pairs land closer to their condition."""
    s, c = runs["self"]["seen"]["2.0"], runs["clean"]["seen"]["2.0"]
    print("copy distance ratio self/clean", s["copy_distance"] / c["copy_distance"])
    assert s["copy_distance"] < c["copy_distance"]


@pytest.mark.xfail(
    strict=True,
    reason="check 12, copy-rate part: at the 800-step budget neither model makes near copies "
    "(copy rate 0.0 for self and clean pairs, seed 0)",
)
def test_self_reconstruction_copies_more_often(runs):
    s, c = runs["self"]["seen"]["2.0"], runs["clean"]["seen"]["2.0"]
    assert s["copy_rate"] > c["copy_rate"]


def test_resume_at_half_bitwise(runs, tmp_path):
    """Check 13 under the real cosine schedule: a copy of the clean run's folder cut back to its
    half-way checkpoint (what a run killed after it leaves behind), restarted with the same call,
    ends bitwise where the uninterrupted run ended (400 steps instead of a second 800-step run;
    the interruption itself is checked by test_semantica_resume.py)."""
    half, end = DIGITS_RUN.steps // 2, DIGITS_RUN.steps
    shutil.copytree(runs["clean"]["dir"], tmp_path / "r")
    ckpts = RunCheckpoints(tmp_path / "r")
    try:
        assert half in ckpts.steps() and ckpts.latest_step() == end
        for step in ckpts.steps():
            if step > half:
                shutil.rmtree(ckpts.path(step))
    finally:
        ckpts.close()
    done = train_digits_variant("clean", tmp_path / "r", 0)
    assert done.restored_step == half and done.step_count == end
    a = _flat_arrays(runs["clean"]["trainer"].model())
    b = _flat_arrays(done.model())
    assert all(a[k].tobytes() == b[k].tobytes() for k in a)


def test_demo_quick(tmp_path):
    """Check 14."""
    from diff_semantica.cli import main

    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    m = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert set(m["scales"]) == {"1.0", "2.0", "4.0"}
    assert all("agreement" in v for v in m["scales"].values())
    for f in ("pairs.png", "grid.png", "metrics.json"):
        assert (tmp_path / "demo" / f).exists()
    assert np.isfinite(m["scales"]["2.0"]["agreement"])
