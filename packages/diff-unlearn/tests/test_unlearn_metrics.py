"""The retention metric: distances and the same-noise identities (spec checks 1–4)."""

from __future__ import annotations

import numpy as np
import pytest

from diff_pixel import Loader, TrainConfig, Trainer, build_model
from diff_pixel.sid import recipe_loss
from diff_unlearn import (
    SamplingSpec,
    cfd,
    load_run,
    one_minus_ssim,
    pixel_rmse,
    retention,
    same_noise_samples,
)
from diff_unlearn.metrics import ssim_window
from diff_unlearn.testing import assert_retention_zero, perturbed


def _images(seed, n=6, size=8):
    return np.clip(np.random.default_rng(seed).normal(0, 0.6, (n, size, size, 1)), -1, 1)


@pytest.mark.smoke
def test_distances_symmetric_and_zero_on_identical_images(random_cnn):
    a, b = _images(0), _images(1)
    assert np.array_equal(pixel_rmse(a, b), pixel_rmse(b, a))
    assert np.all(pixel_rmse(a, a) == 0.0)
    np.testing.assert_allclose(pixel_rmse(a, a + 0.25), 0.25, rtol=1e-6)
    np.testing.assert_allclose(one_minus_ssim(a, b), one_minus_ssim(b, a), rtol=0, atol=1e-12)
    assert np.all(one_minus_ssim(a, a) == 0.0)
    assert np.all(one_minus_ssim(a, b) > 0.1)
    assert np.all(cfd(a, a, random_cnn) == 0.0)
    np.testing.assert_allclose(cfd(a, b, random_cnn), cfd(b, a, random_cnn), rtol=0, atol=1e-7)
    assert np.all(cfd(a, b, random_cnn) > 0)
    # channel-normalised features: each layer contributes at most 4 (two unit vectors apart)
    assert np.all(cfd(a, -a, random_cnn) <= 8.0 + 1e-9)


def test_ssim_window_follows_image_size():
    assert ssim_window((8, 8, 1)) == "uniform 7×7"
    assert ssim_window((32, 32, 1)) == "gaussian σ=1.5"
    a, b = _images(2, 3, 16), _images(3, 3, 16)
    assert np.all(np.isfinite(one_minus_ssim(a, b)))


@pytest.mark.smoke
@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_identical_models_give_exactly_zero(theta0, recipe, random_cnn, sampler):
    report = assert_retention_zero(
        theta0,
        (0, 1, 2, 4),
        schedule=recipe.schedule(),
        classifier=random_cnn,
        sampler=sampler,
        n_per_cond=7,
        steps=4,
        batch=7,
    )
    assert report.distances == {"cfd": 0.0, "rmse": 0.0, "1-ssim": 0.0}
    assert report.labels_kept == 1.0
    assert np.array_equal(report.samples0, report.samples1)
    assert np.abs(report.samples0).mean() > 0.1  # real samples, not zeros


def test_reloaded_checkpoint_gives_exactly_zero(tmp_path, theta0, task, recipe, random_cnn):
    config = TrainConfig(steps=0, batch_size=8, out_dir=str(tmp_path / "run"), progress=False)
    trainer = Trainer(
        theta0, recipe_loss(recipe), config, Loader(task.train, 8, seed=0), recipe=recipe
    )
    trainer.save_checkpoint()
    reloaded, reloaded_recipe, _ = load_run(tmp_path / "run")
    assert reloaded_recipe == recipe
    report = retention(
        theta0,
        reloaded,
        (0, 5),
        schedule=recipe.schedule(),
        classifier=random_cnn,
        n_per_cond=7,
        steps=4,
        batch=7,
        sampler="ddpm",
    )
    assert report.distances == {"cfd": 0.0, "rmse": 0.0, "1-ssim": 0.0}
    assert np.array_equal(report.samples0, report.samples1)


@pytest.mark.parametrize("batch", [7, 64])
def test_noise_is_shared_not_redrawn(theta0, recipe, batch):
    spec = SamplingSpec(recipe.schedule(), n_per_cond=70, steps=4, batch=batch)
    full = same_noise_samples(theta0, tuple(range(10)), spec)
    part = same_noise_samples(theta0, (1, 2), spec)
    assert np.array_equal(part, full[[1, 2]])
    # another seed draws other noise
    other = same_noise_samples(
        theta0, (1,), SamplingSpec(recipe.schedule(), n_per_cond=70, steps=4, batch=batch, seed=1)
    )
    assert pixel_rmse(other[0], full[1]).mean() > 0.1


def test_noise_does_not_depend_on_the_batch_size(theta0, recipe):
    a = same_noise_samples(
        theta0, (4,), SamplingSpec(recipe.schedule(), n_per_cond=70, steps=4, batch=7)
    )
    b = same_noise_samples(
        theta0, (4,), SamplingSpec(recipe.schedule(), n_per_cond=70, steps=4, batch=64)
    )
    # same noise; only the network's batched arithmetic may differ
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


def test_retention_grows_with_the_size_of_the_change(theta0, recipe, random_cnn):
    values = []
    for s in (1e-3, 1e-2, 1e-1):
        rep = retention(
            theta0,
            perturbed(theta0, s, seed=0),
            (0, 1, 2),
            schedule=recipe.schedule(),
            classifier=random_cnn,
            n_per_cond=7,
            steps=4,
            batch=7,
        )
        values.append(rep.distances)
    for name in ("cfd", "rmse", "1-ssim"):
        seq = [v[name] for v in values]
        assert seq[0] < seq[1] < seq[2], (name, seq)
    assert values[0]["rmse"] < 0.05


def test_bad_input_is_named(theta0, recipe, micro):
    other = build_model(micro.config.replace(channels=(32,), head_dim=8))
    with pytest.raises(
        ValueError,
        match="retention: model0 and model1 must share the architecture; parameter '.*' has shape",
    ):
        retention(theta0, other, (0,), schedule=recipe.schedule(), distances=("rmse",))
    with pytest.raises(ValueError, match="retention: n_per_cond must be >= 1, got 0"):
        retention(theta0, micro(1), (0,), schedule=recipe.schedule(), n_per_cond=0)
    with pytest.raises(ValueError, match="conds must be classes in"):
        retention(theta0, micro(1), (12,), schedule=recipe.schedule(), distances=("rmse",))
    with pytest.raises(ValueError, match="classifier must be given"):
        retention(theta0, micro(1), (0,), schedule=recipe.schedule(), steps=2, n_per_cond=1)
