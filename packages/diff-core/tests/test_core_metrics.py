"""Metrics (core spec §3.10, check 29) and the distance-ratio spread of §3.11a."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diff_core.analytic import GaussianMixture, gaussian
from diff_core.metrics import (
    expected_distance_factor,
    frechet_distance,
    frechet_distance_gaussians,
    frechet_distance_to,
    mixture_log_likelihood,
    mmd2,
    mode_distance_ratio,
    mode_spread,
    mode_tv,
    mode_weights,
    sliced_wasserstein,
)
from diff_core.testing import problem
from diff_protocol.testing import backend

BANDWIDTHS = (0.05, 0.1, 0.2, 0.5, 1.0)


@pytest.mark.smoke
def test_frechet_distance_closed_forms():
    d = frechet_distance_gaussians(np.zeros(2), [[2.0, 1.0], [1.0, 2.0]], np.zeros(2), np.eye(2))
    assert abs(d - (4 - 2 * math.sqrt(3))) < 1e-12 and abs(d - 0.5358984) < 1e-7
    d = frechet_distance_gaussians([0, 0], np.diag([1.0, 4.0]), [0, 0], np.diag([4.0, 1.0]))
    assert abs(d - 2.0) < 1e-12
    # means enter as ‖m1 − m2‖²; identical Gaussians are at distance 0
    c = np.array([[1.0, 0.3, 0.0], [0.3, 2.0, 0.5], [0.0, 0.5, 1.5]])
    m1, m2 = np.array([1.0, 2.0, 3.0]), np.array([0.0, 2.0, 5.0])
    assert abs(frechet_distance_gaussians(m1, c, m2, c) - 5.0) < 1e-12
    # commuting covariances: Σ (√λ1 − √λ2)² over the shared eigenbasis
    q = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))[0]
    l1, l2 = np.array([1.0, 2.0, 3.0]), np.array([4.0, 0.5, 3.0])
    d = frechet_distance_gaussians(
        np.zeros(3), q @ np.diag(l1) @ q.T, np.zeros(3), q @ np.diag(l2) @ q.T
    )
    assert abs(d - np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)) < 1e-12


def test_frechet_distance_of_samples():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((500, 3)), 1.0 + 2.0 * rng.standard_normal((400, 3))
    expected = frechet_distance_gaussians(x.mean(0), np.cov(x.T), y.mean(0), np.cov(y.T))
    assert abs(frechet_distance(x, y) - expected) < 1e-12
    assert abs(frechet_distance_to(x, y.mean(0), np.cov(y.T)) - expected) < 1e-12
    mix = problem("hadamard16").mixture
    assert frechet_distance_to(mix.sample(20000, seed=2)[0], mix.mean(), mix.covariance()) < 0.01


def test_frechet_distance_of_rank_deficient_covariances():
    """Fewer samples than dimensions: the null space's rounding-level eigenvalues contribute
    nothing (their square roots once made d(x, y) and d(y, x) differ by ~1e-9 relative)."""
    rng = np.random.default_rng(4)
    for _ in range(10):
        x = rng.standard_normal((40, 128)) * rng.uniform(0.1, 1.0, 128)
        y = 0.3 * rng.standard_normal((30, 128))
        d = frechet_distance(x, y)
        assert abs(d - frechet_distance(y, x)) <= 1e-13 * d
        assert abs(frechet_distance(x, x)) < 1e-12 * np.trace(np.cov(x.T))
    # covariances of rank 3 and 2 on orthogonal subspaces of R^16: C1^½ C2 C1^½ = 0, so the
    # distance is exactly |m1 - m2|² + tr C1 + tr C2
    q = np.linalg.qr(rng.standard_normal((16, 16)))[0]
    c1 = q[:, :3] @ np.diag([1.0, 2.0, 3.0]) @ q[:, :3].T
    c2 = q[:, 3:5] @ np.diag([0.5, 4.0]) @ q[:, 3:5].T
    m1, m2 = np.zeros(16), np.full(16, 0.25)
    expected = 16 * 0.25**2 + 6.0 + 4.5
    for a, b in (((m1, c1), (m2, c2)), ((m2, c2), (m1, c1))):
        assert abs(frechet_distance_gaussians(*a, *b) - expected) < 1e-12


def test_sliced_wasserstein_shifts_and_sizes():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 2))
    c = np.array([0.3, -0.7])
    assert abs(sliced_wasserstein(x, x + c) - np.linalg.norm(c) / math.sqrt(2)) < 1e-12
    assert (
        abs(sliced_wasserstein(x, x + c, n_directions=5) - np.linalg.norm(c) / math.sqrt(2)) < 1e-12
    )
    # Gaussian directions in d = 5: SW2² = mean_j (θ_j·c)² for the directions of PCG64(seed)
    x5, c5 = rng.standard_normal((200, 5)), rng.standard_normal(5)
    theta = np.random.Generator(np.random.PCG64(7)).standard_normal((64, 5))
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    expected = math.sqrt(np.mean((theta @ c5) ** 2))
    assert abs(sliced_wasserstein(x5, x5 + c5, n_directions=64, seed=7) - expected) < 1e-12
    # unequal sizes are compared at quantiles: a set and its duplicate are at distance 0
    assert sliced_wasserstein(x, np.concatenate([x, x])) < 1e-15
    assert sliced_wasserstein(x, x[::-1]) < 1e-15


@pytest.mark.parametrize("unbiased", [False, True])
def test_mmd_between_point_masses(unbiased):
    a, b = np.array([0.3, 0.1]), np.array([-0.2, 0.4])
    expected = sum(2 * (1 - math.exp(-np.sum((a - b) ** 2) / (2 * h * h))) for h in BANDWIDTHS)
    got = mmd2(np.tile(a, (5, 1)), np.tile(b, (7, 1)), unbiased=unbiased)
    assert abs(got - expected) < 1e-12


def test_mmd_against_direct_kernel_sums():
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((40, 3)), 0.5 + rng.standard_normal((30, 3))

    def k(a, b):
        d2 = np.sum((a[:, None] - b[None]) ** 2, axis=-1)
        return sum(np.exp(-d2 / (2 * h * h)) for h in BANDWIDTHS)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    biased = kxx.mean() + kyy.mean() - 2 * kxy.mean()
    unbiased = (
        (kxx.sum() - np.trace(kxx)) / (40 * 39)
        + (kyy.sum() - np.trace(kyy)) / (30 * 29)
        - 2 * kxy.mean()
    )
    assert abs(mmd2(x, y, unbiased=False) - biased) < 1e-12
    assert abs(mmd2(x, y) - unbiased) < 1e-12
    assert abs(mmd2(x, y, max_samples=20) - mmd2(x[:20], y[:20])) < 1e-15


def test_log_likelihood_and_mode_statistics_exact():
    s, d = 0.3, 4
    g = gaussian(np.full(d, 0.7), s)
    assert (
        abs(
            mixture_log_likelihood(np.full((3, d), 0.7), g) + 0.5 * d * math.log(2 * math.pi * s**2)
        )
        < 1e-12
    )
    # a labelling built by hand: 3, 1, 0, 4 samples placed on the four means
    mix = GaussianMixture(
        [0.1, 0.2, 0.3, 0.4], [[0.0, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]], [0.1, 0.2, 0.3, 0.4]
    )
    counts = np.array([3, 1, 0, 4])
    x = np.repeat(mix.means, counts, axis=0)
    np.testing.assert_array_equal(mode_weights(x, mix), counts / 8)
    assert abs(mode_tv(x, mix) - 0.5 * np.sum(np.abs(counts / 8 - mix.weights))) < 1e-15
    assert mode_tv(x, mix, reference=counts / 8) == 0.0
    # offsets of known size: spread = r²/D, distance ratio = r/c_D
    r = 1.7
    offsets = r * mix.stds[np.repeat(np.arange(4), counts)][:, None] * np.array([[0.6, 0.8]])
    assert abs(mode_spread(x + offsets, mix) - r**2 / 2) < 1e-12
    assert abs(mode_distance_ratio(x + offsets, mix) - r / expected_distance_factor(2)) < 1e-12
    assert abs(expected_distance_factor(2) - math.sqrt(math.pi / 2)) < 1e-15
    assert abs(expected_distance_factor(1) - math.sqrt(2 / math.pi)) < 1e-15


@pytest.mark.parametrize("name", ["ring8", "mix64"])
def test_distance_ratio_is_one_on_true_samples(name):
    mix = problem(name).mixture
    x = mix.sample(10**5, seed=311)[0]
    assert abs(mode_distance_ratio(x, mix) - 1) < 0.01  # measured 1.0016 (ring8), 0.9997 (mix64)
    assert abs(mode_spread(x, mix) - 1) < 0.02
    assert mode_tv(x, mix) < 0.01


@pytest.mark.parametrize("name", ["torch", "jax", "array_api_strict"])
def test_inputs_from_any_backend(name):
    _, asarray = backend(name)
    rng = np.random.default_rng(5)
    x, y = rng.standard_normal((50, 2)), rng.standard_normal((60, 2)) + 0.2
    mix = problem("ring6").mixture
    xb, yb = asarray(x, "float32"), asarray(y, "float32")
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    assert mmd2(xb, yb) == mmd2(x32, y32)
    assert sliced_wasserstein(xb, yb) == sliced_wasserstein(x32, y32)
    assert frechet_distance(xb, yb) == frechet_distance(x32, y32)
    assert mode_tv(xb, mix) == mode_tv(x32, mix)


def test_bad_input_messages():
    x = np.zeros((10, 2))
    with pytest.raises(
        ValueError, match="sliced_wasserstein: y must be of dimension 2 like x, got dimension 3"
    ):
        sliced_wasserstein(x, np.zeros((10, 3)))
    with pytest.raises(ValueError, match="mmd2: bandwidths must be positive finite floats"):
        mmd2(x, x, bandwidths=(0.1, -1.0))
    with pytest.raises(ValueError, match="mmd2: x must be at least 2 samples"):
        mmd2(x[:1], x)
    with pytest.raises(ValueError, match="frechet_distance_gaussians: c2 must be shaped"):
        frechet_distance_gaussians([0, 0], np.eye(2), [0, 0], np.eye(3))
    with pytest.raises(ValueError, match="mode_tv: x must be samples of dimension 2"):
        mode_tv(np.zeros((4, 3)), problem("ring6").mixture)
    with pytest.raises(ValueError, match="mmd2: x must be finite"):
        mmd2(np.full((3, 2), np.nan), x)
    with pytest.raises(TypeError, match="mode_weights: mixture must be a GaussianMixture"):
        mode_weights(x, object())
