"""Learned behaviour on digits, forget class 3 (spec checks 1, 2, 11–16; slow).

The configuration is the headline table's seed 0 (``benchmarks/digits_table.py``): ``tiny-8``
pretrained 2000 steps (``PretrainConfig()``), each method 300 steps of Adam 2e−4 at batch
64 + 64, evaluation with 50 same-noise samples per class, DDIM-25, guidance 2. Thresholds are in
``thresholds.json`` with the three seeds' measurements beside them (distill.md §11 rule).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diff_pixel import train_digits_classifier
from diff_unlearn import (
    PretrainConfig,
    SamplingSpec,
    UnlearnConfig,
    load_run,
    make_method,
    pixel_rmse,
    pretrain,
    same_noise_samples,
    unlearn,
)
from diff_unlearn.evaluate import evaluate_methods
from diff_unlearn.testing import assert_retention_zero

pytestmark = pytest.mark.slow

T = json.loads((Path(__file__).parent / "thresholds.json").read_text())["thresholds"]
METHODS = ("remap", "distill", "neg_grad")


@pytest.fixture(scope="module")
def run(tmp_path_factory, task):
    root = tmp_path_factory.mktemp("digits")
    pretrain(task, root / "original", PretrainConfig(), progress=False)
    original, recipe, _ = load_run(root / "original")
    from diff_unlearn import loss_setup

    setup = loss_setup(task, recipe)
    config = UnlearnConfig(steps=300, forget_batch=64, retain_batch=64, lr=2e-4, seed=0)
    models = {
        m: unlearn(original, make_method(m, setup), task, recipe, root / m, config, progress=False)
        for m in METHODS
    }
    clf = train_digits_classifier(8)
    assert clf.test_accuracy >= 0.95
    table = evaluate_methods(
        original,
        models,
        task,
        schedule=recipe.schedule(),
        classifier=clf,
        n_per_cond=50,
        steps=25,
        guidance=2.0,
        out_dir=root / "eval",
    )
    print(table.markdown())
    return {"root": root, "original": original, "recipe": recipe, "clf": clf, "rows": table.rows}


def test_pretrained_and_reloaded_models_give_exactly_zero(run, task):
    reloaded, _, _ = load_run(run["root"] / "original")
    assert_retention_zero(
        reloaded,
        task.retain_classes[:3],
        schedule=run["recipe"].schedule(),
        classifier=run["clf"],
        n_per_cond=10,
        steps=25,
    )


def test_without_shared_noise_the_metric_cannot_tell_a_model_from_itself(run):
    sched = run["recipe"].schedule()
    a = same_noise_samples(run["original"], (0, 1, 2), SamplingSpec(sched, n_per_cond=50, steps=25))
    b = same_noise_samples(
        run["original"], (0, 1, 2), SamplingSpec(sched, n_per_cond=50, steps=25, seed=1)
    )
    rmse = float(pixel_rmse(a.reshape(-1, 8, 8, 1), b.reshape(-1, 8, 8, 1)).mean())
    print(f"RMSE(θ₀, θ₀) with re-drawn noise: {rmse:.3f}")
    assert rmse >= 0.3


def test_forget_efficacy(run):
    for m in ("remap", "distill"):
        assert run["rows"][m]["forget_acc"] <= T["forget_acc_remap_distill"], (m, run["rows"][m])
    assert run["rows"]["original"]["forget_acc"] >= 0.9


def test_stand_ins_barely_move(run):
    base = run["rows"]["original"]
    for m in ("remap", "distill"):
        row = run["rows"][m]
        assert base["alignment"] - row["alignment"] <= T["alignment_drop"], (m, row)
        assert abs(row["fd_digits"] / base["fd_digits"] - 1) <= T["fd_digits_rel"], (m, row)


def test_integrity_distill_beats_remap(run):
    r = run["rows"]
    assert r["distill"]["rmse"] <= T["rmse_distill_over_remap"] * r["remap"]["rmse"]
    for d in ("1-ssim", "cfd"):
        assert r["distill"][d] < r["remap"][d], d


def test_the_metric_sees_what_alignment_misses(run):
    r = run["rows"]
    assert abs(r["distill"]["alignment"] - r["remap"]["alignment"]) <= T["alignment_gap"]
    assert r["remap"]["rmse"] / r["distill"]["rmse"] >= T["rmse_ratio_remap_distill"]


def test_collapse_is_caught(run):
    # among the models of this test; in the full 8-method table ESD is worse than neg_grad at
    # seed 0 (check 15 holds for the 3-seed mean only; README)
    r = run["rows"]
    for d in ("cfd", "rmse", "1-ssim"):
        assert r["neg_grad"][d] == max(row[d] for row in r.values()), d
    assert r["neg_grad"]["labels_kept"] == min(row["labels_kept"] for row in r.values())


def test_table_is_complete(run):
    root = run["root"] / "eval"
    data = json.loads((root / "table.json").read_text())
    assert set(data["rows"]) == {"original", *METHODS}
    for row in data["rows"].values():
        assert all(np.isfinite(v) for v in row.values())
    assert (root / "table.md").is_file() and (root / "forget_grid.png").is_file()
