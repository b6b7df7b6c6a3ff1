"""Time sampling: strata, low discrepancy, variance reduction (check 15), invariance (check 12)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from diff_core.schedules import (
    CosineSchedule,
    InterpolatedCosineSchedule,
    KarrasSchedule,
    ShiftedCosineSchedule,
)
from diff_core.timesampling import low_discrepancy_times, stratified_times, uniform_times
from diff_protocol.testing import BACKENDS, backend, to_numpy


def _softplus(v: float) -> float:
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


def _sig(v):
    return 1.0 / (1.0 + np.exp(-v))


def _estimate(schedule, t, b):
    """Monte-Carlo estimate of ∫ (−λ') sigmoid(b − λ) dt = ∫ sigmoid(b − λ) dλ."""
    return float(np.mean(-schedule.dlogsnr_dt(t) * _sig(b - schedule.logsnr(t))))


@pytest.mark.parametrize("name", BACKENDS)
def test_stratified_one_time_per_stratum_every_backend(name):
    xp, asarray = backend(name)
    rng = np.random.default_rng(0)
    n = 4096
    u = rng.random(n).astype(np.float32)
    u[::7] = np.nextafter(np.float32(1.0), np.float32(0.0))  # the largest float32 below 1
    u[1::7] = 0.0
    t = stratified_times(asarray(u))
    assert t.dtype == asarray(u).dtype
    t_host = to_numpy(t).astype(np.float64)
    # B is a power of two, so t·B is exact: stratum i holds exactly t_i
    np.testing.assert_array_equal(np.floor(t_host * n), np.arange(n))
    assert t_host.max() < 1.0 and t_host[1] == 1 / n  # u = 0 gives the stratum's left end
    np.testing.assert_allclose(t_host, (np.arange(n) + u) / n, rtol=0, atol=2e-7)
    t0 = to_numpy(low_discrepancy_times(asarray(np.array(0.9, np.float32)), 8))
    np.testing.assert_allclose(t0, (0.9 + np.arange(8) / 8) % 1.0, atol=1e-7)
    assert to_numpy(uniform_times(asarray(u))).tobytes() == u.tobytes()


def test_stratified_float64_any_batch_size():
    rng = np.random.default_rng(1)
    for n in (1, 3, 1000, 65536):
        u = rng.random(n)
        u[-1] = np.nextafter(1.0, 0.0)
        t = stratified_times(u)
        lo, hi = np.arange(n) / n, (np.arange(n) + 1.0) / n
        assert np.all((lo <= t) & (t < hi))
        np.testing.assert_allclose(t, (np.arange(n) + u) / n, rtol=0, atol=1e-15)


def test_low_discrepancy_times():
    t = low_discrepancy_times(0.3, 5)
    np.testing.assert_allclose(t, [0.3, 0.5, 0.7, 0.9, 0.1], atol=1e-15)
    t = low_discrepancy_times(np.array([0.0]), 4)
    np.testing.assert_array_equal(t, [0.0, 0.25, 0.5, 0.75])
    t = low_discrepancy_times(np.nextafter(1.0, 0.0), 1024)
    assert np.all((t >= 0) & (t < 1))
    gaps = np.diff(np.sort(t))
    np.testing.assert_allclose(gaps, 1 / 1024, atol=1e-12)  # evenly spread, one per stratum


def test_variance_reduction_check15():
    """Estimator of check 12 at B = 4096 over 200 seeds: stratified variance ≤ 5% of uniform."""
    s, b = CosineSchedule(-15.0, 15.0), -1.0
    strat, unif, low = [], [], []
    for seed in range(200):
        u = np.random.default_rng(seed).random(4096)
        strat.append(_estimate(s, stratified_times(u), b))
        unif.append(_estimate(s, uniform_times(u), b))
        low.append(_estimate(s, low_discrepancy_times(u[0], 4096), b))
    ratio = np.var(strat) / np.var(unif)
    assert ratio <= 0.05, ratio
    # one shared offset is less effective here (the λ' spike at t → 1 is ~1 grid step wide)
    assert np.var(low) / np.var(unif) <= 0.15
    exact = _softplus(b + 15.0) - _softplus(b - 15.0)
    # all three are unbiased: means within 4 standard errors of the exact integral
    for est in (strat, unif, low):
        assert abs(np.mean(est) - exact) < 4 * np.std(est) / math.sqrt(200) + 1e-9


SCHEDULES_12 = [
    CosineSchedule(-15.0, 15.0),
    ShiftedCosineSchedule(256),
    ShiftedCosineSchedule(256, clip="fixed_range"),
    InterpolatedCosineSchedule(256),
    InterpolatedCosineSchedule(256, clip="fixed_range"),
    KarrasSchedule(),
]


@pytest.mark.parametrize(
    "schedule", SCHEDULES_12, ids=lambda s: f"{s.name}-{getattr(s, 'clip', '')}"
)
def test_schedule_invariance_check12(schedule):
    """∫ (−λ') sigmoid(b − λ) dt = softplus(b − λ(1)) − softplus(b − λ(0)) on any schedule."""
    t = stratified_times(np.random.default_rng(12).random(2**16))
    lam_1, lam_0 = schedule.logsnr_range
    for b in (0.0, -1.0, -3.0):
        exact = _softplus(b - lam_1) - _softplus(b - lam_0)
        est = _estimate(schedule, t, b)
        assert abs(est / exact - 1) <= 0.002, (b, est, exact)
    if schedule == CosineSchedule(-15.0, 15.0):
        assert abs(_softplus(-1.0 + 15.0) - _softplus(-1.0 - 15.0) - 14.0000007) < 1e-7


def test_time_sampling_errors():
    with pytest.raises(ValueError, match=r"uniform_times: u must lie in \[0, 1\), got max 1"):
        uniform_times(np.array([0.2, 1.0]))
    with pytest.raises(ValueError, match=r"stratified_times: u must lie in \[0, 1\), got min -0.5"):
        stratified_times(np.array([0.2, -0.5]))
    with pytest.raises(ValueError, match="got nan"):
        uniform_times(np.array([np.nan]))
    with pytest.raises(ValueError, match=r"stratified_times: u must have shape \(B,\)"):
        stratified_times(np.zeros((2, 2)))
    with pytest.raises(
        ValueError, match="low_discrepancy_times: batch_size must be a positive integer, got 0"
    ):
        low_discrepancy_times(0.5, 0)
    with pytest.raises(
        TypeError, match="low_discrepancy_times: batch_size must be a positive integer"
    ):
        low_discrepancy_times(0.5, 2.0)
    with pytest.raises(
        ValueError, match=r"low_discrepancy_times: u0 must be 0-d or of shape \(1,\)"
    ):
        low_discrepancy_times(np.array([0.1, 0.2]), 4)
    with pytest.raises(
        TypeError, match="uniform_times: u must be a real floating array, got dtype int64"
    ):
        uniform_times(np.array([0, 1]))
