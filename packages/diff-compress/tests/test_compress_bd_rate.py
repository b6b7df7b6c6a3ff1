"""Bjøntegaard deltas (``bd_rate``, ``bd_psnr``): exact identities, a hand-integrated case, the
numpy PCHIP against SciPy's ``PchipInterpolator`` (values and exact integrals), and every refusal."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diff_compress import bd_psnr, bd_rate
from diff_compress.metrics import _pchip_eval, _pchip_integral, _pchip_slopes

# A JPEG-like reference curve (bpp, dB), unevenly spaced in both axes.
RATE = np.array([0.18, 0.22, 0.36, 0.66, 1.05, 2.41])
PSNR = np.array([21.6, 23.5, 26.6, 29.2, 31.1, 35.5])


def _random_curve(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """n points with strictly increasing rate and PSNR, irregular spacing and curvature."""
    rate = np.exp(np.cumsum(rng.uniform(0.3, 1.0, n)) - 2.0)
    psnr = 20.0 + np.cumsum(rng.exponential(2.0, n) + 0.5)
    order = rng.permutation(n)  # any order: the functions sort by rate
    return rate[order], psnr[order]


@pytest.mark.smoke
@pytest.mark.parametrize("k", [0.5, 0.8, 1.0, 1.25, 3.0])
def test_rates_scaled_by_k_give_exactly_100_k_minus_1(k):
    # ln(k·R) − ln R = ln k at every PSNR, so the average is ln k and BD-rate = 100(k − 1).
    assert abs(bd_rate(RATE, PSNR, k * RATE, PSNR) - 100.0 * (k - 1.0)) < 1e-12
    # ... and BD-PSNR of the same pair is minus the PSNR gained by the reference at the same rate,
    # which for k = 1 is exactly 0.
    if k == 1.0:
        assert bd_psnr(RATE, PSNR, RATE, PSNR) == 0.0


@pytest.mark.parametrize("d", [-3.0, -0.25, 0.0, 0.7, 10.0])
def test_psnr_shifted_by_d_gives_exactly_d(d):
    assert abs(bd_psnr(RATE, PSNR, RATE, PSNR + d) - d) < 1e-12


def test_swapping_the_curves_inverts_the_relation():
    rng = np.random.default_rng(3)
    for _ in range(20):
        r1, p1 = _random_curve(rng, int(rng.integers(2, 8)))
        r2, p2 = r1 * rng.uniform(0.8, 1.25), p1 + rng.uniform(-0.4, 0.4)
        a, b = bd_rate(r1, p1, r2, p2), bd_rate(r2, p2, r1, p1)
        assert abs((1 + a / 100) * (1 + b / 100) - 1) < 1e-13
        assert abs(bd_psnr(r1, p1, r2, p2) + bd_psnr(r2, p2, r1, p1)) < 1e-13


def test_linear_log_rate_case_integrated_by_hand():
    # ref: ln R = −9 + 0.25 P at P = 30, 33, 36, 40; test: ln R = −8 + 0.2 P at P = 32, 35, 39, 44.
    # PCHIP reproduces a straight line exactly (every slope is the common secant).
    p_ref, p_test = np.array([30.0, 33.0, 36.0, 40.0]), np.array([32.0, 35.0, 39.0, 44.0])
    r_ref, r_test = np.exp(-9 + 0.25 * p_ref), np.exp(-8 + 0.2 * p_test)
    # Common PSNR interval [32, 40]; the difference 1 − 0.05 P is linear, so its mean is its value
    # at the midpoint 36: 1 − 1.8 = −0.8, and BD-rate = 100 (e^−0.8 − 1) = −55.067 %.
    assert abs(bd_rate(r_ref, p_ref, r_test, p_test) - 100 * (math.exp(-0.8) - 1)) < 1e-12
    # In log-rate L: P_ref = 4 L + 36 on [−1.5, 1.0], P_test = 5 L + 40 on [−1.6, 0.8]; common
    # interval [−1.5, 0.8], difference L + 4, mean at the midpoint −0.35: 3.65 dB.
    assert abs(bd_psnr(r_ref, p_ref, r_test, p_test) - 3.65) < 1e-12


def test_point_order_does_not_matter():
    rng = np.random.default_rng(5)
    i, j = rng.permutation(RATE.size), rng.permutation(RATE.size)
    r2, p2 = RATE * 1.7, PSNR - 0.4
    assert bd_rate(RATE[i], PSNR[i], r2[j], p2[j]) == bd_rate(RATE, PSNR, r2, p2)
    assert bd_psnr(RATE[i], PSNR[i], r2[j], p2[j]) == bd_psnr(RATE, PSNR, r2, p2)


def test_pchip_matches_scipy_values_slopes_and_exact_integrals():
    from scipy.interpolate import PchipInterpolator

    rng = np.random.default_rng(0)
    for trial in range(300):
        n = int(rng.integers(2, 12))
        x = np.sort(rng.uniform(-5.0, 5.0, n))
        if np.any(np.diff(x) < 1e-3):
            continue
        # monotone data (increasing or decreasing, with flat steps) and some non-monotone
        kind = trial % 3
        if kind == 0:
            y = np.cumsum(rng.exponential(1.0, n))
        elif kind == 1:
            y = -np.cumsum(rng.exponential(1.0, n) * (rng.random(n) < 0.7))
        else:
            y = rng.normal(size=n)
        ref = PchipInterpolator(x, y)
        np.testing.assert_allclose(_pchip_slopes(x, y), ref.derivative()(x), rtol=1e-12, atol=1e-12)
        t = np.concatenate([x, rng.uniform(x[0], x[-1], 50)])
        np.testing.assert_allclose(_pchip_eval(x, y, t), ref(t), rtol=1e-12, atol=1e-12)
        a, b = np.sort(rng.uniform(x[0], x[-1], 2))
        for lo, hi in ((a, b), (x[0], x[-1]), (a, x[-1])):
            assert abs(_pchip_integral(x, y, lo, hi) - ref.integrate(lo, hi)) < 1e-12 * max(
                1.0, abs(ref.integrate(lo, hi))
            )


def test_bd_figures_match_a_scipy_computation():
    # The same definition written with SciPy's PCHIP and its exact piecewise-polynomial integral.
    from scipy.interpolate import PchipInterpolator

    def peer_rate(r1, p1, r2, p2):
        i, j = np.argsort(r1), np.argsort(r2)
        r1, p1, r2, p2 = r1[i], p1[i], r2[j], p2[j]
        lo, hi = max(p1.min(), p2.min()), min(p1.max(), p2.max())
        f1, f2 = PchipInterpolator(p1, np.log(r1)), PchipInterpolator(p2, np.log(r2))
        return 100 * math.expm1((f2.integrate(lo, hi) - f1.integrate(lo, hi)) / (hi - lo))

    def peer_psnr(r1, p1, r2, p2):
        i, j = np.argsort(r1), np.argsort(r2)
        r1, p1, r2, p2 = r1[i], p1[i], r2[j], p2[j]
        l1, l2 = np.log(r1), np.log(r2)
        lo, hi = max(l1.min(), l2.min()), min(l1.max(), l2.max())
        f1, f2 = PchipInterpolator(l1, p1), PchipInterpolator(l2, p2)
        return (f2.integrate(lo, hi) - f1.integrate(lo, hi)) / (hi - lo)

    rng = np.random.default_rng(11)
    checked = [0, 0]
    for _ in range(50):
        r1, p1 = _random_curve(rng, int(rng.integers(2, 9)))
        r2, p2 = _random_curve(rng, int(rng.integers(2, 9)))
        r2 = r2 * rng.uniform(0.5, 2.0)
        p2 = p2 + (p1.mean() - p2.mean()) + rng.uniform(-1.0, 1.0)
        try:
            got = bd_rate(r1, p1, r2, p2)
        except ValueError:
            got = None
        if got is not None:
            assert abs(got - peer_rate(r1, p1, r2, p2)) < 1e-10 * max(1.0, abs(got))
            checked[0] += 1
        try:
            got = bd_psnr(r1, p1, r2, p2)
        except ValueError:
            continue
        assert abs(got - peer_psnr(r1, p1, r2, p2)) < 1e-10
        checked[1] += 1
    assert min(checked) >= 25, checked  # most random pairs overlap


@pytest.mark.parametrize(
    "args, match",
    [
        (
            ([0.1, 0.2, 0.4], [30, 32], RATE, PSNR),
            r"rate_ref and psnr_ref must have one length.*3 and 2",
        ),
        (
            (RATE, PSNR, [0.3], [30.0]),
            r"rate_test and psnr_test must hold at least 2 points.*got 1",
        ),
        ((RATE, PSNR, [0.3, np.nan], [30.0, 31]), r"rate_test must be finite, got nan at index 1"),
        (
            (RATE, [21.6, 23.5, 26.6, np.inf, 31.1, 35.5], RATE, PSNR),
            r"psnr_ref must be finite.*inf",
        ),
        (([0.0, 0.2], [30, 31], RATE, PSNR), r"rate_ref must be > 0.*got 0.0 at index 0"),
        ((RATE, PSNR, [0.5, -1.0], [30, 31]), r"rate_test must be > 0.*got -1.0 at index 1"),
        ((RATE, PSNR, [0.5, 0.5, 1.0], [30, 31, 32]), r"rate_test must hold distinct rates"),
        (
            ([0.2, 0.4, 0.8], [30, 29, 33], RATE, PSNR),
            r"psnr_ref must increase strictly with the rate.*got 30.0 dB at rate 0.2 and 29.0 dB",
        ),
        ((RATE, PSNR, [0.8, 0.4], [31, 31]), r"psnr_test must increase strictly"),
        (([[0.1, 0.2]], [30, 31], RATE, PSNR), r"rate_ref must be 1-D.*\(1, 2\)"),
    ],
)
@pytest.mark.parametrize("func", [bd_rate, bd_psnr])
def test_refusals_name_the_argument(func, args, match):
    with pytest.raises(ValueError, match=rf"^{func.__name__}: {match}"):
        func(*args)


def test_non_numbers_are_a_type_error():
    with pytest.raises(TypeError, match=r"bd_rate: psnr_test must be a 1-D sequence of real"):
        bd_rate(RATE, PSNR, RATE, ["a"] * RATE.size)


def test_no_overlap_is_refused_with_both_ranges():
    # PSNR ranges disjoint (a codec 10 dB behind): BD-rate undefined, BD-PSNR defined over rate.
    low = PSNR - 20.0
    with pytest.raises(
        ValueError,
        match=r"bd_rate: psnr_test must overlap psnr_ref.*\[21.6, 35.5\] dB.*\[1.6, 15.5\] dB",
    ):
        bd_rate(RATE, PSNR, RATE, low)
    assert abs(bd_psnr(RATE, PSNR, RATE, low) + 20.0) < 1e-12
    # rate ranges disjoint: BD-PSNR undefined, BD-rate defined over PSNR.
    with pytest.raises(
        ValueError, match=r"bd_psnr: rate_test must overlap rate_ref.*\[0.18, 2.41\].*\[18, 241\]"
    ):
        bd_psnr(RATE, PSNR, 100 * RATE, PSNR)
    assert abs(bd_rate(RATE, PSNR, 100 * RATE, PSNR) - 9900.0) < 1e-9
    # touching in one point is no interval to average over
    with pytest.raises(ValueError, match=r"bd_rate: psnr_test must overlap"):
        bd_rate([1, 2], [30, 32], [1, 2], [32, 34])
