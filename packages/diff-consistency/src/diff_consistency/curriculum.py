"""Teacher-step curriculum and time indices (MCM, arXiv 2403.06807, §3 and Algorithm 1).

At iteration i the teacher takes N(i) small steps over [0, 1] (annealed from ``n_start`` to
``n_end``); the S student segments hold ``n_seg = max(1, round(N/S))`` teacher steps each, so the
fine grid has ``T = n_seg·S`` steps and the student boundaries are the fine-grid points at multiples
of ``n_seg`` (``t_step = j/S`` on the uniform grid). A training example draws its segment j and
its position ``n_rel`` ∈ {1..n_seg} inside it:

    i_t = j·n_seg + n_rel,   i_s = i_t − 1,   i_step = j·n_seg,

so ``t_step ≤ s < t ≤ t_step + 1/S`` and ``n_rel = 1 ⇔ s = t_step``. N, n_seg and T are traced
values inside a jitted step: changing them never recompiles.

Endpoint convention (spec §2): the fine-grid point τ_0 = 0 has λ = +∞ (α = 1, σ = 0).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "SegmentTimes",
    "logsnr_at",
    "n_teacher",
    "sample_segment_times",
    "segment_indices",
    "segments",
    "teacher_grid",
    "teacher_times",
]

_KARRAS = {"sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0}


def _check_positive_int(func: str, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{func}: {name} must be a positive int, got {value!r}")
    return int(value)


def n_teacher(
    i: Any,
    *,
    n_start: int = 64,
    n_end: int = 1280,
    anneal_steps: int = 100_000,
    kind: str = "geometric",
) -> Any:
    """Teacher steps N at iteration ``i``.

    ``"geometric"`` (MCM): ``exp(log n_start + clip(i/anneal_steps, 0, 1)·(log n_end −
    log n_start))``.
    ``"doubling"`` (iCT-like, our default): ``n_start·2^k`` with k = 0..K in K + 1 equal stages
    over ``anneal_steps``, K = round(log2(n_end/n_start)).
    Works on Python numbers (a float) and on traced arrays.
    """
    if kind not in ("geometric", "doubling"):
        raise ValueError(f"n_teacher: kind must be 'geometric' or 'doubling', got {kind!r}")
    if not 0 < n_start <= n_end:
        raise ValueError(f"n_teacher: need 0 < n_start <= n_end, got {n_start}, {n_end}")
    concrete = isinstance(i, (int, float, np.integer, np.floating))
    xp = np if concrete else jnp
    frac = xp.clip(xp.asarray(i, xp.float64 if concrete else jnp.float32) / anneal_steps, 0.0, 1.0)
    if kind == "geometric":
        lo, hi = math.log(n_start), math.log(n_end)
        out = xp.exp(lo + frac * (hi - lo))
    else:
        k_max = round(math.log2(n_end / n_start))
        stage = xp.minimum(xp.floor(frac * (k_max + 1)), k_max)
        out = n_start * xp.exp2(stage)
    return float(out) if concrete else out


def segments(n_teacher_value: Any, student_steps: int) -> tuple[Any, Any]:
    """``(n_seg, T)`` with ``n_seg = max(1, round(N/S))`` and ``T = n_seg·S`` (int32 when traced,
    Python ints for Python numbers)."""
    s = _check_positive_int("segments", "student_steps", student_steps)
    if isinstance(n_teacher_value, (int, float, np.integer, np.floating)):
        n_seg = max(1, int(np.rint(float(n_teacher_value) / s)))
        return n_seg, n_seg * s
    n_seg = jnp.maximum(1, jnp.round(jnp.asarray(n_teacher_value) / s)).astype(jnp.int32)
    return n_seg, n_seg * s


class SegmentTimes(NamedTuple):
    """Fine-grid indices of one batch (int32, shape (B,))."""

    i_t: Any
    i_s: Any
    i_step: Any
    n_rel: Any


def segment_indices(
    u_segment: Any, u_position: Any, student_steps: int, n_seg: Any
) -> SegmentTimes:
    """Indices from uniforms in [0, 1): ``j = floor(u·S)``, ``n_rel = floor(u'·n_seg) + 1``."""
    s = int(student_steps)
    j = jnp.clip(jnp.floor(u_segment * s), 0, s - 1).astype(jnp.int32)
    n_seg = jnp.asarray(n_seg, jnp.int32)
    n_rel = jnp.clip(jnp.floor(u_position * n_seg).astype(jnp.int32) + 1, 1, n_seg)
    i_step = j * n_seg
    i_t = i_step + n_rel
    return SegmentTimes(i_t, i_t - 1, i_step, n_rel)


def sample_segment_times(
    key: jax.Array, batch: int, student_steps: int, n_seg: Any
) -> SegmentTimes:
    """Draw ``j ~ U{0..S−1}`` and ``n_rel ~ U{1..n_seg}`` for ``batch`` examples (spec §5.1)."""
    _check_positive_int("sample_segment_times", "batch", batch)
    _check_positive_int("sample_segment_times", "student_steps", student_steps)
    if isinstance(n_seg, (int, np.integer)):
        _check_positive_int("sample_segment_times", "n_seg", n_seg)
    k1, k2 = jax.random.split(key)
    return segment_indices(
        jax.random.uniform(k1, (batch,)), jax.random.uniform(k2, (batch,)), student_steps, n_seg
    )


def teacher_times(
    index: Any,
    T: Any,
    kind: str = "uniform",
    *,
    schedule: Any = None,
    sigma_min: float = _KARRAS["sigma_min"],
    sigma_max: float = _KARRAS["sigma_max"],
    rho: float = _KARRAS["rho"],
) -> jax.Array:
    """Times τ_index of the fine grid with T steps (traced-friendly; float32, or float64 under
    x64). ``"uniform"``: index/T. ``"karras"``: τ_0 = 0, τ_T = 1 and, for k = 1..T−1, the EDM σ
    grid on T − 1 points from ``sigma_min`` (k = 1) to ``sigma_max`` (k = T − 1) mapped through
    ``schedule.t_of(−2 ln σ)`` (AMENDMENTS B: diff-core's Karras grid ends below t = 1, so t = 1
    is appended)."""
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    k = jnp.asarray(index)
    T = jnp.asarray(T)
    if kind == "uniform":
        return k.astype(dtype) / T.astype(dtype)
    if kind != "karras":
        raise ValueError(f"teacher_times: kind must be 'uniform' or 'karras', got {kind!r}")
    if schedule is None:
        raise ValueError("teacher_times: schedule must be given for the 'karras' grid, got None")
    m = (T - 1).astype(dtype)
    p = (k - 1).astype(dtype) / jnp.maximum(m - 1.0, 1.0)
    a, b = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    sigma = jnp.where(m > 1, (a + p * (b - a)) ** rho, sigma_max)
    t_mid = jnp.asarray(schedule.t_of(-2.0 * jnp.log(sigma)), dtype)
    return jnp.where(k <= 0, 0.0, jnp.where(k >= T, 1.0, t_mid)).astype(dtype)


def teacher_grid(
    T: int,
    kind: str = "uniform",
    *,
    schedule: Any = None,
    sigma_min: float = _KARRAS["sigma_min"],
    sigma_max: float = _KARRAS["sigma_max"],
    rho: float = _KARRAS["rho"],
) -> np.ndarray:
    """The ascending fine grid τ_0 = 0 < ... < τ_T = 1 (float64 numpy).

    ``"uniform"``: k/T. ``"karras"``: diff-core's ``grids.karras`` on T − 1 σ points (σ → λ =
    −2 ln σ → ``schedule.t_of``), reversed to ascending, with t = 1 appended (the Karras grid's
    top t_of(−2 ln σ_max) lies below 1).
    """
    T = _check_positive_int("teacher_grid", "T", T)
    if kind == "uniform":
        return np.arange(T + 1, dtype=np.float64) / T
    if kind != "karras":
        raise ValueError(f"teacher_grid: kind must be 'uniform' or 'karras', got {kind!r}")
    if schedule is None:
        raise ValueError("teacher_grid: schedule must be given for the 'karras' grid, got None")
    if T == 1:
        return np.array([0.0, 1.0])
    from diff_core import grids

    g = grids.karras(schedule, T - 1, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho)
    t = np.asarray(g.t, dtype=np.float64)[::-1]  # [0, t(σ_min), ..., t(σ_max)]
    return np.concatenate([t, [1.0]])


def logsnr_at(schedule: Any, t: Any, index: Any) -> jax.Array:
    """λ at fine-grid times ``t`` with the endpoint convention: +∞ where ``index == 0``."""
    lam = jnp.asarray(schedule.logsnr(t))
    return jnp.where(jnp.asarray(index) == 0, jnp.inf, lam)
