r"""The exact jump map a student should learn, built from a teacher (spec §4, check 6).

For t in segment (t_step, t_step + 1/S], t_step = (⌈tS⌉ − 1)/S:

    f*(z_t, t) = invDDIM_{t→t_step}(Φ(z_t), z_t),

with Φ the teacher's DDIM from t down to t_step on the fine grid k/sub_steps (an off-grid t first
steps to the next lower grid point; a t within ``snap`` sub-steps of a grid point counts as on it,
because λ → t round trips are not exact). ``t_step = 0`` uses λ = +∞, so Φ ends with the teacher's
x̂ and f* returns it. The multistep sampler with f* reproduces the sub_steps-step DDIM teacher
(check 6); as the target network of the CD loss f* is a fixed point up to the teacher-step error
(check 7). JAX only (one ``lax.fori_loop`` of sub_steps/S + 1 teacher evaluations per call).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diff_core import grids, transitions
from diff_protocol import check_denoiser, denoise

__all__ = ["OracleStudent", "oracle_student"]


class OracleStudent:
    """Denoiser (prediction ``"x"``) computing f* (module docstring). Hashes by identity."""

    prediction = "x"

    def __init__(
        self, teacher: Any, schedule: Any, student_steps: int, sub_steps: int, snap: float
    ):
        self.teacher = teacher
        self.schedule = schedule
        self.student_steps = student_steps
        self.sub_steps = sub_steps
        self.snap = snap
        # λ(k/sub_steps), k = 0..sub_steps, exactly the values of diff-core's uniform_t grid
        # (float64 on the host), with the endpoint convention λ(0) = +∞.
        lam = np.asarray(grids.uniform_t(schedule, sub_steps).logsnr, dtype=np.float64)[::-1].copy()
        lam[0] = np.inf
        self._table = lam

    def __repr__(self) -> str:
        return (
            f"oracle_student({self.teacher!r}, S={self.student_steps}, sub_steps={self.sub_steps})"
        )

    def _logsnr(self, k: jax.Array, dtype: Any) -> jax.Array:
        return jnp.asarray(self._table, dtype)[k]

    def __call__(self, z: Any, logsnr: Any, cond: Any = None) -> jax.Array:
        z = jnp.asarray(z)
        dtype = z.dtype
        b = z.shape[0]
        lam_t = jnp.broadcast_to(jnp.asarray(logsnr, dtype), (b,))
        n, m = self.sub_steps, self.sub_steps // self.student_steps
        kt = jnp.asarray(self.schedule.t_of(lam_t), dtype) * n
        k_round = jnp.round(kt)
        on_grid = jnp.abs(kt - k_round) <= self.snap
        k0 = jnp.where(on_grid, k_round, jnp.floor(kt)).astype(jnp.int32)
        # segment j: t in (j m, (j + 1) m] in sub-step units
        seg = jnp.where(on_grid, (k0 + m - 1) // m - 1, k0 // m)
        k_step = jnp.maximum(seg, 0) * m
        first = jnp.where(on_grid, k0 - 1, k0)

        def body(i, carry):
            zc, lam_c = carry
            target = first - i
            active = target >= k_step
            lam_next = self._logsnr(jnp.maximum(target, 0), dtype)
            lam_eval = jnp.where(jnp.isfinite(lam_c), lam_c, jnp.zeros_like(lam_c))
            x_hat, _ = denoise(self.teacher, zc, lam_eval, cond)
            lam_to = jnp.where(active, lam_next, jnp.where(jnp.isfinite(lam_c), lam_c + 1.0, 0.0))
            z_new = transitions.ddim(x_hat, zc, lam_eval, lam_to)
            act = active.reshape((b,) + (1,) * (z.ndim - 1))
            return jnp.where(act, z_new, zc), jnp.where(active, lam_next, lam_c)

        z_end, _ = jax.lax.fori_loop(0, m + 1, body, (z, lam_t))
        lam_step = self._logsnr(k_step, dtype)
        return transitions.inv_ddim(z_end, z, lam_t, lam_step)


def oracle_student(
    teacher: Any,
    schedule: Any,
    student_steps: int,
    *,
    sub_steps: int = 4096,
    snap: float = 0.01,
) -> OracleStudent:
    """The exact S-step student of ``teacher`` (module docstring).

    Args:
      teacher: any diff-protocol denoiser usable under JAX (an exact mixture, an NNX model).
      schedule: the schedule (λ of t and its inverse).
      student_steps: S. sub_steps: the fine grid (a multiple of S).
      snap: t within ``snap`` sub-steps of a grid point is treated as on it.
    """
    check_denoiser("oracle_student", teacher)
    for name, v in (("student_steps", student_steps), ("sub_steps", sub_steps)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"oracle_student: {name} must be a positive int, got {v!r}")
    if sub_steps % student_steps:
        raise ValueError(
            f"oracle_student: sub_steps must be a multiple of student_steps={student_steps}, "
            f"got {sub_steps}"
        )
    if not (isinstance(snap, (int, float)) and 0 <= snap < 0.5):
        raise ValueError(f"oracle_student: snap must be in [0, 0.5), got {snap!r}")
    return OracleStudent(teacher, schedule, student_steps, sub_steps, float(snap))
