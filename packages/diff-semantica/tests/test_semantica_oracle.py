"""Exact checks through the real sampling path (check 1): the pair oracle and the copy oracle
sampled with DDIM-256 and guidance on held-out digits validate sampling, guidance plumbing and
every metric end to end."""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import pytest

from diff_core import EmpiricalDistribution
from diff_pixel import Cond
from diff_semantica import (
    class_agreement,
    copy_distance,
    copy_oracle_denoiser,
    copy_rate,
    memorisation_rate,
    oracle_extra,
    pair_oracle_denoiser,
    reference_pair_rmse,
    sample_variations,
)
from diff_semantica.metrics import nearest_rmse
from diff_semantica.model import SemanticaConfig


@pytest.fixture(scope="module")
def schedule():
    return SemanticaConfig.for_digits(token_dim=24).schedule_obj()


def test_pair_oracle_equals_empirical_distribution_on_the_group(train):
    oracle = pair_oracle_denoiser(train)
    g, exclude = 4, int(np.flatnonzero(train.groups == 4)[3])
    members = np.flatnonzero((train.groups == g) & (np.arange(len(train)) != exclude))
    ref = EmpiricalDistribution(train.images[members]).denoiser("x")
    rng = np.random.default_rng(0)
    z = rng.normal(size=(6, 8, 8, 1)).astype(np.float32)
    lam = np.array([-4.0, -1.0, 0.0, 2.0, 5.0, 8.0], np.float32)
    cond = Cond(extra={"group": jnp.full((6,), g), "exclude": jnp.full((6,), exclude)})
    np.testing.assert_allclose(
        np.asarray(oracle(jnp.asarray(z), jnp.asarray(lam), cond)),
        ref(z.astype(np.float64), lam.astype(np.float64)),
        atol=2e-5,
    )
    # dropped examples see every training image (the unconditional model)
    full = EmpiricalDistribution(train.images).denoiser("x")
    out = oracle(jnp.asarray(z), jnp.asarray(lam), cond.replace(drop=jnp.ones((6,), bool)))
    np.testing.assert_allclose(
        np.asarray(out), full(z.astype(np.float64), lam.astype(np.float64)), atol=2e-5
    )


@pytest.mark.smoke
@pytest.mark.parametrize("guidance", [1.0, 2.0])
def test_oracle_metrics_end_to_end(train, test_digits, pca, classifier, schedule, guidance):
    cond = test_digits.subset(np.arange(80))
    extra = oracle_extra(cond.images, cond.groups)
    s = sample_variations(
        pair_oracle_denoiser(train),
        cond.images,
        encoder=pca,
        n_per_image=2,
        guidance=guidance,
        steps=256,
        schedule=schedule,
        image_shape=(8, 8, 1),
        extra=extra,
        seed=1,
    )
    flat = s.reshape(-1, 8, 8, 1)
    d, idx = nearest_rmse(flat, train.images)
    assert d.max() < 1e-2  # every sample is a training image ...
    groups = np.repeat(cond.groups, 2)
    assert np.all(train.groups[idx] == groups)  # ... of the conditioning image's group
    acc_on_returned = float(np.mean(classifier.predict(train.images[idx]) == groups))
    assert abs(class_agreement(s, cond.groups, classifier) - acc_on_returned) <= 0.02
    assert copy_rate(s, cond.images, cond.groups, train) == 0.0
    assert memorisation_rate(s, train.images) == 1.0


def test_copy_oracle_copies(train, test_digits, pca, schedule):
    cond = test_digits.subset(np.arange(40))
    s = sample_variations(
        copy_oracle_denoiser(),
        cond.images,
        encoder=pca,
        n_per_image=2,
        guidance=1.0,
        steps=64,
        schedule=schedule,
        image_shape=(8, 8, 1),
        extra={"image": cond.images},
    )
    assert copy_rate(s, cond.images, cond.groups, train) == 1.0
    assert copy_distance(s, cond.images, reference_pair_rmse(train)) < 1e-2
    # the threshold is per conditioning group: a reference set without that group is refused
    seen = train.of_groups(range(7))
    held = sorted({int(g) for g in cond.groups} - set(range(7)))
    with pytest.raises(
        ValueError, match=re.escape(f"got none of groups {held} (data has [0, 1, 2, 3, 4, 5, 6])")
    ):
        copy_rate(s, cond.images, cond.groups, seen)


def test_samples_do_not_depend_on_chunking(train, test_digits, pca, schedule):
    cond = test_digits.subset(np.arange(5))
    kw = dict(
        encoder=pca,
        n_per_image=3,
        guidance=2.0,
        steps=16,
        schedule=schedule,
        image_shape=(8, 8, 1),
        extra=oracle_extra(cond.images, cond.groups),
        seed=4,
    )
    a = sample_variations(pair_oracle_denoiser(train), cond.images, chunk=15, **kw)
    b = sample_variations(pair_oracle_denoiser(train), cond.images, chunk=4, **kw)
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(
        ValueError,
        match=r"sample_variations: cond_images must be \(n, 8, 8, 1\) like the training data, got \(n, 16, 16, 1\)",
    ):
        sample_variations(pair_oracle_denoiser(train), np.zeros((2, 16, 16, 1)), **kw)
