"""The digits training run (spec check 19; slow, a few CPU minutes).

``diff-pixel demo`` settings: ``tiny-16`` class-conditional, SiD2 recipe for d = 16, batch 128,
lr 2e−3, 1500 steps, EMA 0.999 with warm-up; 360 samples (36 per class), ancestral 32 steps.
Thresholds from the spec: class accuracy ≥ 0.90 at w = 1 and ≥ 0.97 at w = 3; DFD ≤ 3 × floor
at w = 1; DFD with w = 3 on λ ∈ [−3, 5) lower than with w = 3 everywhere.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from diff_pixel.sid.cli import demo


@pytest.mark.slow
def test_digits_run_reaches_the_spec_accuracy(tmp_path):
    from diff_pixel.metrics import DigitsClassifier, evaluate_digits_model
    from diff_pixel.sid import RUN_PRESETS
    from diff_pixel.train import Trainer

    out = tmp_path / "demo"
    metrics = demo(str(out), quick=False, progress=False)
    assert metrics["steps"] == 1500
    assert metrics["classifier_test_accuracy"] >= 0.98
    assert metrics["class_accuracy"] >= 0.90
    assert metrics["digits_feature_distance"] <= 3 * metrics["dfd_floor"]
    assert (
        json.loads((out / "metrics.json").read_text())["class_accuracy"]
        == metrics["class_accuracy"]
    )
    # a 10×10 grid of 16×16 digits scaled ×4, one labelled row per class, gaps between tiles
    from diff_pixel.images import make_grid

    labelled = make_grid(np.zeros((100, 16, 16)), labels=np.repeat(np.arange(10), 10), scale=4)
    assert np.asarray(Image.open(out / "samples.png")).shape == labelled.shape[:2]
    assert set(json.loads((out / "metrics.json").read_text())["glossary"]) == set(metrics)

    _, ema, _ = Trainer.restore(out / "run")
    clf = DigitsClassifier.load(out / "run" / "digits_classifier_16.npz")
    recipe = RUN_PRESETS["digits"].recipe()
    levels = {k: metrics[k] for k in ("dfd_floor", "dfd_noise")}
    common = dict(steps=recipe.sampler_steps, baselines=levels)
    everywhere, _, _ = evaluate_digits_model(
        ema, recipe.schedule(), clf, guidance=3.0, interval=(-math.inf, math.inf), **common
    )
    inside, _, _ = evaluate_digits_model(
        ema, recipe.schedule(), clf, guidance=3.0, interval=(-3.0, 5.0), **common
    )
    assert everywhere["class_accuracy"] >= 0.97
    assert inside["digits_feature_distance"] < everywhere["digits_feature_distance"]
    print(
        json.dumps(
            {
                "w1": metrics,
                "w3_everywhere": everywhere,
                "w3_interval": inside,
            }
        )
    )
