"""Tier (a) checks 6 and 7: the exact student f* of a teacher reproduces the fine teacher through
the multistep sampler, and is a fixed point of the CD loss up to the teacher-step error."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diff_consistency import (
    consistency_loss,
    consistency_target,
    oracle_student,
    sample,
    segment_indices,
)
from diff_core import grids, samplers
from diff_core import sample as core_sample
from diff_core.analytic import GaussianMixture
from diff_core.testing import problem
from diff_protocol import denoise

RING8 = problem("ring8")
MIX = GaussianMixture(
    RING8.mixture.weights, RING8.mixture.means, RING8.mixture.stds, method="matmul"
)
TEACHER = MIX.denoiser("x")


@pytest.mark.slow
def test_oracle_student_reproduces_the_fine_teacher():
    """Check 6: ring8, ``oracle_student(sub_steps=4096)``, S ∈ {1, 2, 4, 8}: the S-step multistep
    sampler gives the 4096-step DDIM teacher's sample from the same z_1 to 1e-9 in float64, for
    1,000 samples. A student evaluated one teacher step early (at t − 1/T) fails by > 1e-2.

    float32: both chains are compared with the float64 teacher, to 1e-3. (The spec's 1e-5
    between two float32 chains assumes identical operation order; two correct float32 evaluations
    of the 4096-step chain differ by 2.3e-4 here, the driver's own chain from float64 by 2.3e-4
    and the oracle's by 3.9e-4, measured.)
    """
    z1 = np.random.default_rng(0).standard_normal((1000, 2))
    grid = grids.uniform_t(RING8.schedule, 4096)
    with jax.enable_x64(True):
        z64 = jnp.asarray(z1)
        fine = core_sample(TEACHER, samplers.ddim(0.0), grid, None, z_init=z64)
        for s in (1, 2, 4, 8):
            student = oracle_student(TEACHER, RING8.schedule, s)
            got = sample(student, s, None, z_init=z64, schedule=RING8.schedule)
            err = float(jnp.max(jnp.abs(got - fine)))
            assert err < 1e-9, (s, err)
        early = _Early(oracle_student(TEACHER, RING8.schedule, 8), RING8.schedule, 1 / 4096)
        got = sample(early, 8, None, z_init=z64, schedule=RING8.schedule)
        assert float(jnp.max(jnp.abs(got - fine))) > 1e-2
        fine = np.asarray(fine)
    z32 = jnp.asarray(z1, jnp.float32)
    for s in (8,):
        got = sample(
            oracle_student(TEACHER, RING8.schedule, s), s, None, z_init=z32, schedule=RING8.schedule
        )
        assert np.max(np.abs(np.asarray(got, np.float64) - fine)) < 1e-3


class _Early:
    """A student evaluated at t − dt instead of t (the bug check 6 must catch)."""

    prediction = "x"

    def __init__(self, student, schedule, dt):
        self.student, self.schedule, self.dt = student, schedule, dt

    def __call__(self, z, logsnr, cond=None):
        t = self.schedule.t_of(logsnr)
        return self.student(z, self.schedule.logsnr(t - self.dt))


def _cd_loss_of_oracle(fstar, big_t, n=2000):
    """The CD loss (pseudo-Huber 1e-4, "v", DDIM teacher step) with f* as student and target."""
    s_steps = 4
    rng = np.random.default_rng(42)
    x = jnp.asarray(RING8.mixture.sample(n, rng)[0])
    eps = jnp.asarray(rng.standard_normal((n, 2)))
    idx = segment_indices(
        jnp.asarray(rng.random(n)), jnp.asarray(rng.random(n)), s_steps, big_t // s_steps
    )
    return float(_oracle_loss(fstar, x, eps, *idx, jnp.asarray(big_t)))


@functools.partial(jax.jit, static_argnums=0)
def _oracle_loss(fstar, x, eps, i_t, i_s, i_step, n_rel, big_t):
    """T is traced: one compilation for every T."""
    from diff_consistency import logsnr_at, teacher_times
    from diff_protocol import diffuse

    def lam(i):
        return logsnr_at(RING8.schedule, teacher_times(i, big_t), i)

    lt, ls, lstep = lam(i_t), lam(i_s), lam(i_step)
    z_t = diffuse(x, eps, lt)
    x_teach = denoise(TEACHER, z_t, lt)[0]
    x_tgt, _ = consistency_target(
        fstar, z_t, x_teach, 0.0, lt, ls, lstep, at_segment_end=n_rel == 1
    )
    return consistency_loss(fstar(z_t, lt), x_tgt, lt, eps=1e-4, loss_space="v")


def test_oracle_is_a_fixed_point_of_the_cd_loss():
    """Check 7: with f* (sub_steps 4096) as student and target network, the CD loss on ring8 at
    fixed T ∈ {64, ..., 1024} (S = 4, 2,000 examples) falls with log-log slope in [−2.3, −1.6]
    (one coarse DDIM step has O(1/T²) error in z, divided by invDDIM's O(n_rel/T) denominator),
    and at T = 4096 (the teacher step is one sub-step) it is ≤ 1e-10 (float64). Spec's
    independent float32 measurement: 4.6e-3, 1.5e-3, 4.5e-4, 1.1e-4, 2.1e-5 (slope −1.93)."""
    with jax.enable_x64(True):
        fstar = oracle_student(TEACHER, RING8.schedule, 4)
        ts = [64, 128, 256, 512, 1024]
        losses = [_cd_loss_of_oracle(fstar, t) for t in ts]
        slope = np.polyfit(np.log(ts), np.log(losses), 1)[0]
        assert -2.3 <= slope <= -1.6, (losses, slope)
        assert _cd_loss_of_oracle(fstar, 4096) <= 1e-10
