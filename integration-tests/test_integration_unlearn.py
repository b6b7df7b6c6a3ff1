"""diff-unlearn between diff-pixel and diff-core, as a user would mix them: a diff-pixel
backbone is unlearned with ``distill`` on diff-pixel's trainer, then the original and the
unlearned model are sampled through diff-pixel's adapter with diff-core's DPM-Solver++(2M)
(loaded by name from the ``diff.samplers`` registry) and compared with diff-unlearn's distances
under the same per-example noise."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("diff_unlearn")

from diff_pixel import Cond, build_model, sample  # noqa: E402
from diff_pixel.testing import perturb  # noqa: E402
from diff_unlearn import (  # noqa: E402
    PretrainConfig,
    UnlearnConfig,
    digits_task,
    loss_setup,
    make_method,
    pixel_rmse,
    unlearn,
)
from diff_unlearn.models import pretrain_recipe  # noqa: E402
from diff_unlearn.testing import micro_config  # noqa: E402

MICRO = micro_config(num_classes=10)  # diff-unlearn's one-block test backbone


def _samples(model, recipe, label):
    return np.asarray(
        sample(
            model,
            shape=(16, 8, 8, 1),
            key=jax.random.key(5),
            schedule=recipe.schedule(),
            steps=8,
            sampler="dpmpp_2m",
            cond=Cond(label=jnp.full((16,), label, jnp.int32)),
            guidance=2.0,
        )
    )


def test_unlearned_pixel_model_sampled_with_a_core_sampler(tmp_path):
    theta0 = build_model(MICRO)
    perturb(theta0, 0, 0.05)
    task = digits_task((3,))
    recipe = pretrain_recipe(task, PretrainConfig())
    before = {c: _samples(theta0, recipe, c) for c in (3, 5)}
    again = _samples(theta0, recipe, 5)
    assert np.array_equal(before[5], again)  # same noise, same weights: bitwise
    theta = unlearn(
        theta0,
        make_method("distill", loss_setup(task, recipe)),
        task,
        recipe,
        tmp_path / "distill",
        UnlearnConfig(steps=30, forget_batch=16, retain_batch=16, lr=2e-3),
        progress=False,
    )
    moved = {c: float(pixel_rmse(before[c], _samples(theta, recipe, c)).mean()) for c in (3, 5)}
    # the forgotten class moves, the retained one (distilled from θ₀) less
    assert moved[3] > 1e-3
    assert moved[5] < moved[3], moved
