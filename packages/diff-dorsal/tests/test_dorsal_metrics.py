"""Check 11 of the diff-dorsal spec: exact identities of the image and segmentation metrics, plus
the baselines and bad-input messages."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from diff_dorsal.metrics import (
    adjusted_rand_index,
    fg_ari,
    laplacian_energy,
    mean_image_baseline,
    miou,
    nearest_view_baseline,
    psnr,
    sharpness_ratio,
    ssim,
)


def _scene_like(rng: np.random.Generator, n: int = 4, size: int = 32) -> np.ndarray:
    """Views with flat regions and sharp edges (discs on a checker floor), as the renders have."""
    yy, xx = np.mgrid[:size, :size]
    out = np.empty((n, size, size, 3))
    for v in range(n):
        img = np.where(((yy // 4 + xx // 4) % 2)[..., None] == 0, 0.75, 0.55) * np.ones(3)
        for _ in range(3):
            cy, cx, r = rng.uniform(6, size - 6), rng.uniform(6, size - 6), rng.uniform(3, 7)
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0.15, 1.0, 3)
        out[v] = img
    return out


def _ari_sklearn_formula(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-learn's adjusted_rand_score written out (pair confusion matrix form)."""
    a = np.asarray(a).ravel()
    b = np.asarray(b).ravel()
    n = a.size
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    c = np.zeros((ai.max() + 1, bi.max() + 1), dtype=np.int64)
    np.add.at(c, (ai, bi), 1)
    n_c = c.sum(axis=1)
    n_k = c.sum(axis=0)
    sum_squares = int((c.astype(np.int64) ** 2).sum())
    c11 = sum_squares - n
    c01 = int(c.dot(n_k).sum()) - sum_squares
    c10 = int(c.T.dot(n_c).sum()) - sum_squares
    c00 = n * n - c01 - c10 - sum_squares
    tn, fp, fn, tp = c00, c01, c10, c11
    if fn == 0 and fp == 0:
        return 1.0
    return 2.0 * (tp * tn - fn * fp) / ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn))


@pytest.mark.smoke
def test_psnr_exact_20db() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 0.9, size=(3, 5, 16, 16, 3))
    assert abs(psnr(x, x + 0.1) - 20.0) < 1e-9
    per = psnr(x, x + 0.1, per_view=True)
    assert per.shape == (3, 5)
    assert np.max(np.abs(per - 20.0)) < 1e-9
    # averaging is over views (not one pooled MSE): views with errors 0.1 and 0.01 -> (20 + 40) / 2
    y = x[0, :2].copy()
    z = y + np.array([0.1, 0.01])[:, None, None, None]
    assert abs(psnr(y, z) - 30.0) < 1e-9
    assert abs(psnr(2 * x, 2 * x + 0.2, data_range=2.0) - 20.0) < 1e-9
    assert psnr(x, x) == np.inf


def test_ssim_identity_and_order() -> None:
    rng = np.random.default_rng(1)
    x = _scene_like(rng)
    assert abs(ssim(x, x) - 1.0) < 1e-12
    noisy1 = np.clip(x + 0.05 * rng.standard_normal(x.shape), 0, 1)
    noisy2 = np.clip(x + 0.2 * rng.standard_normal(x.shape), 0, 1)
    assert 1.0 > ssim(x, noisy1) > ssim(x, noisy2)
    from skimage.metrics import structural_similarity

    ref = structural_similarity(x[2], noisy1[2], channel_axis=-1, data_range=1.0, win_size=7)
    assert abs(ssim(x, noisy1, per_view=True)[2] - ref) < 1e-12


@pytest.mark.smoke
def test_fg_ari_relabelling_and_formula() -> None:
    rng = np.random.default_rng(2)
    true = rng.integers(-1, 5, size=(2, 5, 8, 8))
    perm = np.array([7, 3, 9, 4, 11, 2, 8])  # any injective relabelling of ids -1..5
    relabelled = perm[true + 1]
    assert fg_ari(relabelled, true) == 1.0
    assert fg_ari(relabelled, true, per_scene=True) == 1.0
    # background labels do not count: scrambling them leaves FG-ARI at 1
    scrambled = np.where(true >= 1, relabelled, rng.integers(0, 20, size=true.shape))
    assert fg_ari(scrambled, true) == 1.0
    for trial in range(20):
        k_a, k_b = rng.integers(1, 8, size=2)
        n = int(rng.integers(2, 400))
        a = rng.integers(0, k_a, size=n)
        b = rng.integers(0, k_b, size=n)
        assert abs(adjusted_rand_index(a, b) - _ari_sklearn_formula(a, b)) < 1e-12, trial
        t = rng.integers(-1, 4, size=n)
        fg = t >= 1
        if fg.sum() >= 1:
            assert abs(fg_ari(a, t) - _ari_sklearn_formula(a[fg], t[fg])) < 1e-12
    # a clearly imperfect labelling is below 1, a near-random one near 0
    assert fg_ari(np.zeros_like(true), true) == pytest.approx(0.0, abs=1e-12)
    big_a = rng.integers(0, 4, size=20000)
    big_b = rng.integers(0, 4, size=20000)
    assert abs(adjusted_rand_index(big_a, big_b)) < 0.01
    assert np.isnan(fg_ari(np.zeros((4, 4)), -np.ones((4, 4), dtype=int)))


@pytest.mark.smoke
def test_sharpness_ratio_identity_and_blur() -> None:
    rng = np.random.default_rng(3)
    for x in (_scene_like(rng), rng.uniform(size=(4, 32, 32, 3))):
        assert sharpness_ratio(x, x) == 1.0
        blurred = gaussian_filter(x, sigma=(0, 1.0, 1.0, 0))
        r = sharpness_ratio(blurred, x)
        assert r < 0.5, r
        # more blur, less sharpness
        assert sharpness_ratio(gaussian_filter(x, sigma=(0, 2.0, 2.0, 0)), x) < r
    # the 5-point Laplacian of a quadratic ramp is exactly -2(a + b) everywhere inside
    yy, xx = np.mgrid[:9, :9].astype(float)
    q = (0.5 * yy**2 + 0.25 * xx**2)[None, ..., None]
    assert laplacian_energy(q) == pytest.approx((2 * (0.5 + 0.25)) ** 2, rel=1e-12)


def test_miou_matching() -> None:
    true = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [0, 0, 3, 3], [-1, -1, 3, 3]])
    assert miou(true + 10, true) == 1.0
    # merge objects 2 and 3 into one predicted segment: object 1 -> 1, best of 2/3 -> 4/8, other 0
    pred = np.where(true >= 2, 5, true)
    assert miou(pred, true) == pytest.approx((1.0 + 0.5 + 0.0) / 3, abs=1e-12)
    # the Hungarian matching is one-to-one and optimal (not greedy per object)
    pred2 = np.array([[7, 7, 7, 8], [7, 7, 7, 8], [0, 0, 8, 8], [0, 0, 8, 8]])
    iou_1_7, iou_2_8, iou_3_8 = 4 / 6, 2 / 8, 4 / 6
    expected = (iou_1_7 + max(iou_2_8, iou_3_8)) / 3
    assert miou(pred2, true) == pytest.approx(expected, abs=1e-12)
    batch = np.stack([true, true])
    assert miou(batch + 1, batch, per_scene=True) == 1.0
    assert miou(true + 1, true, include_background=True) < 1.0  # sky and floor split in pred


def test_baselines() -> None:
    rng = np.random.default_rng(4)
    train = rng.uniform(size=(6, 3, 8, 8, 3))
    m = mean_image_baseline(train, (2, 5, 8, 8, 3))
    assert m.shape == (2, 5, 8, 8, 3)
    np.testing.assert_allclose(m[1, 3], train.mean(axis=(0, 1)), atol=1e-6)

    def pose(centre):
        p = np.zeros((3, 4))
        p[:, :3] = np.eye(3)
        p[:, 3] = centre
        return p

    inputs = rng.uniform(size=(2, 3, 8, 8, 3))
    centres = np.array([[5, 0, 1], [0, 5, 1], [-5, 0, 1]], float)
    ip = np.stack([np.stack([pose(c) for c in centres])] * 2)
    tp = np.stack([np.stack([pose([4, 1, 1]), pose([-4, -1, 2])])] * 2)
    out = nearest_view_baseline(inputs, ip, tp)
    assert out.shape == (2, 2, 8, 8, 3)
    np.testing.assert_array_equal(out[1, 0], inputs[1, 0])
    np.testing.assert_array_equal(out[1, 1], inputs[1, 2])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: psnr(np.zeros((2, 8, 8, 3)), np.zeros((2, 8, 8, 1))), "psnr: b must be shaped"),
        (lambda: psnr(np.zeros((8, 8)), np.zeros((8, 8))), "psnr: a must be an array shaped"),
        (
            lambda: psnr(np.full((1, 4, 4, 3), np.nan), np.zeros((1, 4, 4, 3))),
            "psnr: a must be finite, got 48 non-finite values",
        ),
        (lambda: psnr(np.zeros((1, 4, 4, 3)), np.ones((1, 4, 4, 3)), 0.0), "data_range"),
        (lambda: ssim(np.zeros((1, 5, 5, 3)), np.zeros((1, 5, 5, 3))), "at least 7x7"),
        (lambda: ssim(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 8, 3)), win_size=4), "odd int"),
        (
            lambda: sharpness_ratio(np.ones((1, 8, 8, 3)), np.full((1, 8, 8, 3), 0.5)),
            "sharpness_ratio: reference must be an image with some Laplacian energy",
        ),
        (
            lambda: sharpness_ratio(np.ones((1, 8, 8, 3)), np.ones((1, 9, 8, 3))),
            "sharpness_ratio: reference must be views of the images' size",
        ),
        (
            lambda: fg_ari(np.zeros((2, 4)), np.zeros((2, 5), int)),
            "fg_ari: pred_labels must be shaped like true_instance (2, 5)",
        ),
        (lambda: fg_ari(np.zeros(4) + 0.5, np.ones(4, int)), "integer-valued labels"),
        (lambda: miou(np.zeros(4, bool), np.ones(4, int)), "integer label array"),
        (
            lambda: nearest_view_baseline(
                np.zeros((2, 3, 8, 8, 3)), np.zeros((2, 2, 3, 4)), np.zeros((2, 1, 3, 4))
            ),
            "nearest_view_baseline: input_poses must be shape (2, 3, 3, 4)",
        ),
        (
            lambda: mean_image_baseline(np.zeros((2, 8, 8, 3)), (1, 4, 4, 3)),
            "mean_image_baseline: shape must be (..., 8, 8, 3)",
        ),
    ],
)
def test_bad_input(call, message) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert message in str(info.value)
