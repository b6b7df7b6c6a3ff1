"""Tier (a) check 8: the teacher-step curriculum, the segment indices and the fine grids; the
configuration's validation and presets."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff_consistency import (
    ConsistencyConfig,
    n_teacher,
    sample_segment_times,
    segments,
    teacher_grid,
    teacher_times,
)
from diff_core.schedules import CosineSchedule

SCHEDULE = CosineSchedule(-15.0, 15.0)


@pytest.mark.smoke
def test_n_teacher_geometric_annealing():
    """N(0) = 64, N(anneal_steps) = 1280 (and beyond), N(anneal/2) = √(64·1280) = 286.2 (1e-9);
    the traced version agrees (float32); segments rounds N/S."""
    assert n_teacher(0) == pytest.approx(64.0, rel=1e-12)
    assert n_teacher(100_000) == pytest.approx(1280.0, rel=1e-12)
    assert n_teacher(250_000) == pytest.approx(1280.0, rel=1e-12)
    assert abs(n_teacher(50_000) - math.sqrt(64 * 1280)) < 1e-9
    traced = jax.jit(lambda i: n_teacher(i))(jnp.int32(50_000))
    assert float(traced) == pytest.approx(math.sqrt(64 * 1280), rel=1e-6)
    assert segments(286.2, 8) == (36, 288)
    assert segments(3.0, 8) == (1, 8)  # at least one teacher step per segment
    n_seg, big_t = jax.jit(lambda n: segments(n, 8))(jnp.float32(286.2))
    assert (int(n_seg), int(big_t)) == (36, 288)


def test_n_teacher_doubling_stages():
    """The iCT-like schedule doubles N from 10 to 1280 in 8 equal stages over anneal_steps."""
    values = [
        n_teacher(i, n_start=10, n_end=1280, anneal_steps=800, kind="doubling")
        for i in range(0, 900, 100)
    ]
    assert values == [10, 20, 40, 80, 160, 320, 640, 1280, 1280]
    with pytest.raises(ValueError, match="kind"):
        n_teacher(0, kind="linear")


def test_segment_indices_invariants_and_uniformity():
    """10⁵ draws: t_step ≤ s < t ≤ t_step + 1/S, n_rel = 1 ⇔ s = t_step, n_rel uniform on
    {1..n_seg} (χ² p > 0.001), j uniform on {0..S−1}."""
    from scipy import stats

    s_steps, n_seg = 8, 37
    big_t = s_steps * n_seg
    idx = jax.jit(lambda k: sample_segment_times(k, 100_000, s_steps, n_seg))(jax.random.key(0))
    i_t, i_s, i_step, n_rel = (np.asarray(a) for a in idx)
    tau = teacher_grid(big_t)
    t, s, t_step = tau[i_t], tau[i_s], tau[i_step]
    assert np.all(t_step <= s) and np.all(s < t) and np.all(t <= t_step + 1 / s_steps + 1e-15)
    assert np.array_equal(n_rel == 1, s == t_step)
    counts = np.bincount(n_rel, minlength=n_seg + 1)[1:]
    assert stats.chisquare(counts).pvalue > 0.001
    seg = np.bincount(i_step // n_seg, minlength=s_steps)
    assert stats.chisquare(seg).pvalue > 0.001
    # traced n_seg (the curriculum changes it without recompiling)
    draw = jax.jit(lambda k, n: sample_segment_times(k, 1000, s_steps, n))
    for n in (1, 5, 160):
        out = draw(jax.random.key(1), jnp.int32(n))
        assert int(out.n_rel.max()) <= n and int(out.n_rel.min()) >= 1
    assert draw._cache_size() == 1


def test_uniform_and_karras_grids():
    """Uniform τ_k = k/T (traced and host agree); the Karras grid is strictly increasing, starts
    at 0, ends at t = 1 (appended, AMENDMENTS B) and maps back to EDM's σ grid to 1e-9."""
    np.testing.assert_array_equal(teacher_grid(8), np.arange(9) / 8)
    big_t = 40
    with jax.enable_x64(True):
        tau = teacher_grid(big_t, "karras", schedule=SCHEDULE)
        assert tau.shape == (big_t + 1,) and tau[0] == 0.0 and tau[-1] == 1.0
        assert np.all(np.diff(tau) > 0)
        k = np.arange(1, big_t)
        rho, lo, hi = 7.0, 0.002, 80.0
        sigma = (
            lo ** (1 / rho) + (k - 1) / (big_t - 2) * (hi ** (1 / rho) - lo ** (1 / rho))
        ) ** rho
        back = np.exp(-0.5 * SCHEDULE.logsnr(tau[1:-1]))
        np.testing.assert_allclose(back, sigma, rtol=1e-9)
        traced = np.asarray(
            teacher_times(jnp.arange(big_t + 1), big_t, "karras", schedule=SCHEDULE)
        )
        np.testing.assert_allclose(traced, tau, rtol=1e-12, atol=1e-15)
    with pytest.raises(ValueError, match="schedule"):
        teacher_grid(8, "karras")
    with pytest.raises(ValueError, match="kind"):
        teacher_grid(8, "cosine")


def test_config_validation_and_round_trip():
    """Every choice field lists the allowed values; n_start > n_end, bad ints and TRACT schedules
    are refused naming the field; presets and JSON round trips."""
    for field, bad in (
        ("teacher_grid", "linear"),
        ("norm", "l1"),
        ("loss_space", "eps"),
        ("weight", "snr"),
        ("target_mode", "polyak"),
        ("mode", "pd"),
    ):
        with pytest.raises(ValueError, match=f"{field} must be one of"):
            ConsistencyConfig(**{field: bad})
    with pytest.raises(ValueError, match="n_start must be <= n_end"):
        ConsistencyConfig(n_start=128, n_end=64)
    with pytest.raises(ValueError, match="student_steps must be >= 1"):
        ConsistencyConfig(student_steps=0)
    with pytest.raises(TypeError, match="student_steps must be an int"):
        ConsistencyConfig(student_steps=2.5)
    with pytest.raises(ValueError, match="schedule must be strictly decreasing, got 32,64"):
        ConsistencyConfig(tract_schedule=(32, 64))
    with pytest.raises(ValueError, match="schedule must have each entry divide.*1024,48,1"):
        ConsistencyConfig(tract_schedule=(1024, 48, 1))
    for name in ("mcm-cd", "mcm-ct", "cm", "ict", "tract", "toy-2d", "toy-64d", "digits"):
        cfg = ConsistencyConfig.preset(name)
        assert ConsistencyConfig.from_json(cfg.to_json()) == cfg
    assert ConsistencyConfig.preset("cm").student_steps == 1
    with pytest.raises(ValueError, match="unknown fields"):
        ConsistencyConfig.from_dict({"steps": 3})
    with pytest.raises(ValueError, match="name must be one of"):
        ConsistencyConfig.preset("mcm")
