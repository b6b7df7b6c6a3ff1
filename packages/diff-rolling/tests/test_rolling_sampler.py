"""Checks 5-8 of rolling.md §10: the window sampler with the exact linear-Gaussian denoiser
(white AR(1), φ = 0.9, W = 8, one context frame, cosine ±15), network-call counts and the noise
contract."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff_core import CosineSchedule
from diff_core.samplers import ddim, ddpm
from diff_protocol import NonFiniteError, jax_noise
from diff_rolling import (
    GaussianVideo,
    RolloutConfig,
    equal_cost_steps,
    local_time_table,
    rolling_times,
    rolling_window,
    rollout,
    standard_rollout,
    window_step,
)
from diff_rolling.testing import check_rollout_against_oracle, exact_window_covariance

SCHED = CosineSchedule(-15.0, 15.0)
GV = GaussianVideo(resolution=32, phi=0.9)
DEN = GV.exact_denoiser()


def _moments(sampler: str, steps: int, *, batch: int = 8, frames: int = 40, seed: int = 0):
    ctx = GV.sample(jax.random.key(100 + seed), batch, 1)
    cfg = RolloutConfig(window=8, context=1, steps_per_shift=steps, sampler=sampler)
    noise = jax_noise(jax.random.key(seed), (batch, 8, 32, 32, 1))
    res = rollout(DEN, ctx, frames, cfg, SCHED, noise)
    return GaussianVideo.moments(res.frames), res


@pytest.mark.smoke
def test_rolling_oracle_rollout_s32_ancestral():
    m, res = _moments("ddpm", 32)
    assert res.nfe == 8 * 32 + 32 * 39
    assert abs(m["variance"] - 1.0) < 0.04
    assert abs(m["lag_corr"][0] - 0.9) < 0.015


def test_rolling_public_oracle_check():
    out = check_rollout_against_oracle(
        steps_per_shift=16, sampler="ddim", var_tol=0.04, lag1_tol=0.015, n_frames=24
    )
    assert set(out) == {"variance", "lag1", "lag3"}


@pytest.mark.slow
@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_rolling_oracle_rollout_s128(sampler):
    m, _ = _moments(sampler, 128)
    assert abs(m["variance"] - 1.0) < 0.03
    assert abs(m["lag_corr"][0] - 0.9) < 0.01
    assert abs(m["lag_corr"][2] - 0.729) < 0.02


@pytest.mark.slow
def test_rolling_oracle_variance_converges():
    err = [abs(_moments("ddpm", s)[0]["variance"] - 1.0) for s in (2, 8, 32)]
    assert err[0] > err[1] > err[2]
    assert err[2] < err[0] / 4


def _handoff_errors(init_map=None, shift_offset=0, seed=0):
    """Max abs error of the window's empirical covariance vs the exact one at rolling_times(0),
    after the init pass and after each of 10 shifts (20000 pixels per frame position)."""
    b, n = 20, 32  # 20 × 32² = 20480 pixels
    gv = GaussianVideo(resolution=n, phi=0.9)
    ctx = gv.sample(jax.random.key(7 + seed), b, 1)
    cfg = RolloutConfig(window=8, context=1, steps_per_shift=32, sampler="ddpm")
    noise = jax_noise(jax.random.key(seed), (b, 8, n, n, 1))
    res = rollout(gv.exact_denoiser(), ctx, 11, cfg, SCHED, noise, return_windows=True)
    lam = SCHED.logsnr(np.asarray(rolling_times(0.0, 8)))
    exact = exact_window_covariance(0.9, 8, lam)
    wins = np.asarray(res.windows, np.float64)  # (B, 11, W, n, n, 1)
    errs = []
    for s in range(wins.shape[1]):
        x = np.moveaxis(wins[:, s], 1, -1).reshape(-1, 8)
        errs.append(np.max(np.abs(x.T @ x / x.shape[0] - exact)))
    return np.asarray(errs), exact


def test_rolling_handoff_and_stationary_window_covariance():
    errs, exact = _handoff_errors()
    assert errs.shape == (11,)
    assert np.all(errs < 0.05), errs
    # the gate separates wrong local times: an init map k/(W-1) + t, or a rolling map one
    # frame off, give a different exact covariance by more than the gate
    k = np.arange(8)
    wrong_init = SCHED.logsnr(np.clip(k / 7.0, 0, 1))
    wrong_roll = SCHED.logsnr(np.asarray(rolling_times(1.0, 8)))
    for lam in (wrong_init, wrong_roll):
        assert np.max(np.abs(exact_window_covariance(0.9, 8, lam) - exact)) > 0.1


@pytest.mark.slow
def test_rolling_standard_block_sampler_with_oracle():
    batch = 8
    ctx = GV.sample(jax.random.key(100), batch, 1)
    cfg = RolloutConfig(window=8, context=1, steps_per_shift=32, sampler="ddpm")
    noise = jax_noise(jax.random.key(0), (batch, 8, 32, 32, 1))
    res = standard_rollout(DEN, ctx, 40, cfg, SCHED, noise)
    assert res.nfe == 8 * 32 * 5
    m = GaussianVideo.moments(res.frames)
    assert abs(m["variance"] - 1.0) < 0.04
    assert abs(m["lag_corr"][0] - 0.9) < 0.015


class _Counting:
    """An AR(1)-mean denoiser that counts its evaluations through a host callback."""

    prediction = "x"

    def __init__(self):
        self.calls = [0]

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other

    def __call__(self, z, logsnr, cond=None):
        def bump():
            self.calls[0] += 1

        jax.debug.callback(bump, ordered=True)
        return 0.5 * z


def test_rolling_nfe_counts_exact():
    ctx = jnp.zeros((2, 1, 4, 4, 1))
    noise = jax_noise(jax.random.key(0), (2, 4, 4, 4, 1))
    s, n = 3, 7
    den = _Counting()
    cfg = RolloutConfig(window=4, context=1, steps_per_shift=s)
    res = rollout(den, ctx, n, cfg, SCHED, noise)
    jax.effects_barrier()
    assert den.calls[0] == res.nfe == cfg.n_init + s * (n - 1) == 4 * 3 + 3 * 6
    std = _Counting()
    res = standard_rollout(std, ctx, n, cfg, SCHED, noise)
    jax.effects_barrier()
    assert std.calls[0] == res.nfe == equal_cost_steps(4, s) * math.ceil(n / 4) == 24
    # steady state: S calls per extra frame for rolling, N per W frames for standard
    den.calls[0] = 0
    rollout(den, ctx, n + 4, cfg, SCHED, noise)
    jax.effects_barrier()
    assert den.calls[0] == cfg.n_init + s * (n + 3)


@pytest.mark.slow
def test_rolling_nfe_counts_custom_init_and_sizes():
    ctx = jnp.zeros((2, 1, 4, 4, 1))
    noise = jax_noise(jax.random.key(0), (2, 4, 4, 4, 1))
    for s, n, init in ((1, 5, None), (4, 12, None), (2, 6, 3)):
        den = _Counting()
        cfg = RolloutConfig(window=4, context=1, steps_per_shift=s, init_steps=init)
        res = rollout(den, ctx, n, cfg, SCHED, noise)
        jax.effects_barrier()
        assert den.calls[0] == res.nfe == (4 * s if init is None else init) + s * (n - 1)
        std = _Counting()
        res = standard_rollout(std, ctx, n, cfg, SCHED, noise)
        jax.effects_barrier()
        assert std.calls[0] == res.nfe == 4 * s * math.ceil(n / 4)


def _contract_setup():
    gv = GaussianVideo(resolution=8, phi=0.9)
    ctx = gv.sample(jax.random.key(3), 8, 2)
    cfg = RolloutConfig(window=4, context=2, steps_per_shift=3, sampler="ddpm")
    return gv.exact_denoiser(), ctx, cfg, jax.random.key(5)


@pytest.mark.slow
def test_rolling_rollout_noise_contract():
    den, ctx, cfg, key = _contract_setup()
    a = rollout(den, ctx, 12, cfg, SCHED, jax_noise(key, (8, 4, 8, 8, 1), per_example=True)).frames
    b = rollout(den, ctx, 12, cfg, SCHED, jax_noise(key, (8, 4, 8, 8, 1), per_example=True)).frames
    assert np.array_equal(np.asarray(a), np.asarray(b))
    c = rollout(den, ctx, 8, cfg, SCHED, jax_noise(key, (8, 4, 8, 8, 1), per_example=True)).frames
    assert np.array_equal(np.asarray(a[:, :8]), np.asarray(c))


@pytest.mark.slow
def test_rolling_rollout_batch_independence_and_chunking():
    den, ctx, cfg, key = _contract_setup()
    a = rollout(den, ctx, 12, cfg, SCHED, jax_noise(key, (8, 4, 8, 8, 1), per_example=True)).frames
    d = rollout(
        den, ctx[:4], 12, cfg, SCHED, jax_noise(key, (4, 4, 8, 8, 1), per_example=True)
    ).frames
    assert np.allclose(np.asarray(a[3]), np.asarray(d[3]), atol=1e-6, rtol=0)
    # chunked (progress) and unchunked scans agree bitwise
    e = rollout(
        den, ctx, 12, cfg, SCHED, jax_noise(key, (8, 4, 8, 8, 1), per_example=True), progress=True
    ).frames
    assert np.array_equal(np.asarray(a), np.asarray(e))


class _Bomb:
    """x̂ = last context frame + 1 (so emitted frame m = c0 + m); NaN once the context reaches
    c0 + 2, i.e. from shift 2 on."""

    prediction = "x"

    def __call__(self, z, logsnr, cond=None):
        last = cond["context"][:, -1:]
        out = jnp.broadcast_to(last + 1.0, z.shape)
        return jnp.where(jnp.max(last) >= 1.5, jnp.nan, out)


def test_rolling_nonfinite_names_the_shift():
    ctx = jnp.zeros((1, 1, 2, 2, 1))
    cfg = RolloutConfig(window=3, context=1, steps_per_shift=2)
    with pytest.raises(
        NonFiniteError, match=r"rollout: state is not finite at shift 2, step 0 \(frame local times"
    ):
        rollout(_Bomb(), ctx, 6, cfg, SCHED, jax_noise(jax.random.key(0), (1, 3, 2, 2, 1)))


def test_rolling_window_step_rules():
    tab = local_time_table(SCHED, 4, 2, "init")
    z = np.random.default_rng(0).normal(size=(3, 4, 2, 2, 1)).astype(np.float32)
    x_hat = np.random.default_rng(1).normal(size=z.shape).astype(np.float32)
    from diff_rolling.sampling import TableRow

    rows = [TableRow(tab.t[j], tab.logsnr[j]) for j in range(3)]
    z1, _ = window_step(ddim(), z, x_hat, rows[0], rows[1])
    # init row 0 is all 1; row 1 is (0.5, 0.75, 1, 1): frames 2, 3 keep their state bitwise
    assert np.array_equal(z1[:, 2:], z[:, 2:])
    for k in range(2):
        ref, _ = ddim().step(
            z[:, k], x_hat[:, k], float(tab.logsnr[0, k]), float(tab.logsnr[1, k]), None
        )
        assert np.allclose(z1[:, k], ref, atol=1e-6)
    z2, _ = window_step(ddpm(), z1, x_hat, rows[1], rows[2], np.zeros_like(z))
    assert np.array_equal(z2[:, 0], x_hat[:, 0])  # local time 0: the denoised frame
    step = rolling_window("ddpm")
    assert step.name == "rolling_window" and step.stochastic
    from diff_protocol import load_sampler

    assert load_sampler("rolling_window").name == "rolling_window"


def test_rolling_rollout_errors():
    ctx = jnp.zeros((2, 3, 4, 4, 1))
    cfg = RolloutConfig(window=4, context=2)
    with pytest.raises(
        ValueError, match=r"^rollout: context must have 2 frames \(axis 1\), got 3$"
    ):
        rollout(DEN, ctx, 4, cfg, SCHED, jax_noise(jax.random.key(0), (2, 4, 4, 4, 1)))
    with pytest.raises(ValueError, match="noise"):
        rollout(DEN, ctx[:, :2], 4, cfg, SCHED, jax_noise(jax.random.key(0), (2, 5, 4, 4, 1)))
    with pytest.raises(ValueError, match="steps_per_shift"):
        RolloutConfig(window=4, context=2, steps_per_shift=0)
