"""Data-free distillation (``distill(source="teacher_samples")``): the retain images are the
original model's own samples, drawn once into the trainer's state, and the run never reads the
retain images of the task."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from diff_pixel.data.loader import ArraySource
from diff_unlearn import (
    SamplingSpec,
    UnlearnConfig,
    make_method,
    same_noise_samples,
    unlearn_trainer,
)
from diff_unlearn.losses import TEACHER_SEED_OFFSET

HP = {"source": "teacher_samples", "teacher_n": 6, "teacher_steps": 3}


def _without_retain_images(task):
    """The task with every retain image replaced by uniform noise (forget images kept)."""
    src = task.train
    keep = np.isin(src.labels, task.forget_classes)
    noise = np.random.default_rng(0).uniform(-1, 1, src.images.shape)
    images = np.where(keep[:, None, None, None], src.images, noise).astype(src.images.dtype)
    train = ArraySource(images, src.labels, num_classes=src.num_classes, name="noise-retain")
    return dataclasses.replace(task, train=train)


@pytest.mark.slow
def test_teacher_samples_replace_the_retain_data(tmp_path, theta0, task, recipe, setup):
    method = make_method("distill", setup, **HP)
    config = UnlearnConfig(
        steps=3, forget_batch=4, retain_batch=8, seed=2, checkpoint_every=0, log_every=3
    )

    def run(t, name):
        tr = unlearn_trainer(theta0, method, t, recipe, tmp_path / name, config, progress=False)
        bank = np.asarray(jax.device_get(tr.state.extra["teacher_x"]))
        tr.run()
        return tr, bank

    real, bank = run(task, "real")
    blind, bank2 = run(_without_retain_images(task), "noise")
    # the bank is θ₀'s DDIM samples of each retain class, seed offset from the run's seed
    spec = SamplingSpec(
        recipe.schedule(), n_per_cond=6, seed=TEACHER_SEED_OFFSET + 2, steps=3, guidance=1.0
    )
    assert bank.shape == (9, 6, 8, 8, 1)
    assert np.array_equal(bank, same_noise_samples(theta0, task.retain_classes, spec))
    assert np.array_equal(bank, bank2)
    # retain images never read: noise instead of retain images gives bitwise the same parameters
    a = jax.tree.leaves(jax.device_get(real.state.variables))
    b = jax.tree.leaves(jax.device_get(blind.state.variables))
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert all(np.all(np.isfinite(x)) for x in a)
    moved = jax.tree.leaves(jax.device_get(real.model()))
    assert any(not np.array_equal(x, y) for x, y in zip(moved, jax.tree.leaves(theta0)))


def test_source_arguments(setup):
    with pytest.raises(
        ValueError, match=r"distill: source must be one of \('data', 'teacher_samples'\)"
    ):
        make_method("distill", setup, source="dream")
    with pytest.raises(ValueError, match="distill: teacher_n must be an int >= 1, got 0"):
        make_method("distill", setup, source="teacher_samples", teacher_n=0)
