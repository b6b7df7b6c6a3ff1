"""PFD-rand (diff_pixel.metrics.photo_features): random-network features and their distance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from diff_pixel.data import photos
from diff_pixel.metrics.photo_features import (
    FEATURE_DIM,
    photo_feature_distance,
    random_conv_features,
)


@pytest.fixture(scope="module")
def crop_sets():
    src = photos(crop=32)
    n = 512
    a = np.stack([src.crop_at(i, 0)[0] for i in range(n)])
    b = np.stack([src.crop_at(i, 1)[0] for i in range(n)])
    return a, b


def test_features_are_deterministic_and_seeded(crop_sets):
    x = crop_sets[0][:20]
    f = random_conv_features(x)
    assert f.shape == (20, FEATURE_DIM) == (20, 64) and f.dtype == np.float32
    assert np.all(np.isfinite(f)) and np.all(f >= 0.0) and f.std() > 0.01  # pooled ReLUs
    np.testing.assert_array_equal(random_conv_features(x), f)
    # the batch split (the last batch padded) does not matter
    np.testing.assert_allclose(random_conv_features(x, batch_size=7), f, rtol=1e-5, atol=1e-7)
    # another seed is another network
    g = random_conv_features(x, seed=1)
    assert np.max(np.abs(g - f)) > 0.1 * np.abs(f).max()
    np.testing.assert_array_equal(random_conv_features(x, seed=1), g)
    # grey images run through the same network, repeated to 3 channels; any H, W >= 8
    grey = x[..., :1]
    np.testing.assert_allclose(
        random_conv_features(grey), random_conv_features(np.repeat(grey, 3, axis=-1)), rtol=1e-6
    )
    assert random_conv_features(x[:3, :8, :13]).shape == (3, FEATURE_DIM)


def test_distance_levels(crop_sets):
    a, b = crop_sets
    # measured (seed 0, 512 crops each): self 1.7e-11, floor 0.0138, blur σ = 2: 0.0407,
    # σ = 4: 0.104, grey copies 0.518, clip(N(0, 1)) noise 3.85 (280 x floor)
    noise = np.clip(np.random.default_rng(0).standard_normal(a.shape), -1.0, 1.0)
    noise = noise.astype(np.float32)
    d_noise = photo_feature_distance(noise, a)
    assert abs(photo_feature_distance(a, a)) < 1e-6 * d_noise
    floor = photo_feature_distance(b, a)  # two independent crop sets of the same photos
    assert 0.0 < floor and d_noise >= 10.0 * floor
    blurred = [
        photo_feature_distance(gaussian_filter(b, sigma=(0, s, s, 0)).astype(np.float32), a)
        for s in (2.0, 4.0)
    ]
    assert 2.0 * floor < blurred[0] < blurred[1] < 0.1 * d_noise
    # the distance is symmetric up to rounding, and grey crops are farther than the colour ones
    assert photo_feature_distance(a, b) == pytest.approx(floor, rel=1e-6)
    grey = np.repeat(b.mean(axis=-1, keepdims=True), 3, axis=-1)
    assert photo_feature_distance(grey, a) > 5.0 * floor


def test_bad_inputs(crop_sets):
    x = crop_sets[0][:4]
    with pytest.raises(TypeError, match="random_conv_features: images must be a float array"):
        random_conv_features([[0.0]])
    with pytest.raises(TypeError, match="random_conv_features: images must be a float array"):
        random_conv_features(np.zeros((2, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match=r"random_conv_features: images must be 4-D .*C in"):
        random_conv_features(np.zeros((2, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match=r"random_conv_features: images must be 4-D"):
        random_conv_features(x[0])
    with pytest.raises(ValueError, match="images must be at least 8×8 pixels, got 7×8"):
        random_conv_features(np.zeros((2, 7, 8, 3), np.float32))
    with pytest.raises(ValueError, match="random_conv_features: images must be finite"):
        random_conv_features(np.full((2, 8, 8, 1), np.nan, np.float32))
    with pytest.raises(ValueError, match="random_conv_features: seed must be a non-negative"):
        random_conv_features(x, seed=-1)
    with pytest.raises(TypeError, match="random_conv_features: seed must be a non-negative"):
        random_conv_features(x, seed=1.0)
    with pytest.raises(ValueError, match="random_conv_features: batch_size must be a positive"):
        random_conv_features(x, batch_size=0)
    with pytest.raises(ValueError, match="photo_feature_distance: images must hold at least 2"):
        photo_feature_distance(x[:1], x)
    with pytest.raises(ValueError, match="photo_feature_distance: reference must hold at least"):
        photo_feature_distance(x, x[:1])
    with pytest.raises(ValueError, match=r"photo_feature_distance: reference must have the"):
        photo_feature_distance(x, x[:, :16, :16])
    with pytest.raises(ValueError, match=r"photo_feature_distance: reference must have the"):
        photo_feature_distance(x, x[..., :1])
