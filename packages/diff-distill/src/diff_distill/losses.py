"""Losses of the alternating variant (MM Algorithm 2, arXiv 2406.04103) and their weights.

Scalars: mean over the non-batch axes inside (``mean_d``), weighted mean over the batch outside.
With the auxiliary g_φ(z_s) ≈ E_g[x̃ | z_s] and the teacher x̂_θ(z_s) ≈ E_data[x | z_s], the student
moves its samples x̃ along g_φ − x̂_θ:

    ∇_η L_η = E[w (∂x̃/∂η)ᵀ (g_φ(z_s) − x̂_θ(z_s))] / D

which vanishes when the student's conditional first moments match the teacher's. By Tweedie's
formula g_φ − x̂_θ ≈ (σ_s²/α_s)(∇log p_g − ∇log p_data)(z_s): the uniform x-space weight is the
score-difference direction scaled by σ_s² (the Diff-Instruct / DMD family, arXiv 2305.18455,
2311.18828, at k = 1).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from diff_distill.config import NORMALIZATIONS, WEIGHTINGS

__all__ = [
    "aux_loss",
    "mean_d",
    "moment_gap",
    "moment_weight",
    "normalize_direction",
    "student_surrogate",
]


def mean_d(a: jax.Array) -> jax.Array:
    """Mean over every non-batch axis: shape (B,)."""
    return jnp.mean(a.reshape(a.shape[0], -1), axis=-1)


def moment_weight(logsnr: Any, kind: str = "uniform", bias: float = 0.0) -> jax.Array:
    """x-space weight w(λ): ``uniform`` 1 | ``snr_plus_one`` e^λ + 1 | ``sigmoid``
    (e^λ + 1)·sigmoid(b − λ) (the SiD2 sigmoid weighting written in x-space)."""
    lam = jnp.asarray(logsnr)
    if kind == "uniform":
        return jnp.ones_like(lam)
    if kind == "snr_plus_one":
        return jnp.exp(lam) + 1.0
    if kind == "sigmoid":
        # (e^λ + 1)·sigmoid(b − λ) = (e^λ + 1)/(1 + e^{λ − b}), written without overflow
        return jnp.exp(jax.nn.softplus(lam) - jax.nn.softplus(lam - bias))
    raise ValueError(f"moment_weight: kind must be one of {', '.join(WEIGHTINGS)}, got {kind!r}")


def _check_same(func: str, **arrays: Any) -> None:
    names = list(arrays)
    ref = jnp.shape(arrays[names[0]])
    for n in names[1:]:
        if jnp.shape(arrays[n]) != ref:
            raise ValueError(
                f"{func}: {n} must have the shape of {names[0]} {tuple(ref)}, "
                f"got {tuple(jnp.shape(arrays[n]))}"
            )


def _check_weight(func: str, weight: Any, batch: int) -> jax.Array:
    w = jnp.asarray(weight)
    if w.shape != (batch,):
        raise ValueError(f"{func}: weight must have shape ({batch},), got {tuple(w.shape)}")
    if not isinstance(w, jax.core.Tracer) and not bool(jnp.all(jnp.isfinite(w))):
        raise ValueError(f"{func}: weight must be finite, got non-finite values")
    return w


def aux_loss(
    aux_x: jax.Array,
    student_x: jax.Array,
    teacher_x: jax.Array,
    weight: jax.Array,
    *,
    teacher_reg: float = 1.0,
) -> jax.Array:
    """mean_b w_b [mean_d (sg(x̃) − a)² + teacher_reg · mean_d (sg(x_te) − a)²].

    Its minimiser over a is (E_g[x̃ | z_s] + teacher_reg·x_te)/(1 + teacher_reg): with
    teacher_reg = 1, a − x_te = ½(E_g[x̃ | z_s] − x_te), the same direction, half the size.
    """
    _check_same("aux_loss", aux_x=aux_x, student_x=student_x, teacher_x=teacher_x)
    w = _check_weight("aux_loss", weight, aux_x.shape[0])
    sx = jax.lax.stop_gradient(student_x)
    tx = jax.lax.stop_gradient(teacher_x)
    per = mean_d(jnp.square(sx - aux_x)) + teacher_reg * mean_d(jnp.square(tx - aux_x))
    return jnp.mean(w * per)


def normalize_direction(
    direction: jax.Array, student_x: jax.Array, teacher_x: jax.Array, *, mode: str = "none"
) -> jax.Array:
    """``none`` | ``per_example_l2`` (unit RMS per example) | ``per_example_mean_abs`` (divide by
    mean_d |x̃ − x_te| + 1e-8, the DMD normalisation, arXiv 2311.18828)."""
    if mode == "none":
        return direction
    b = direction.shape[0]
    shape = (b,) + (1,) * (direction.ndim - 1)
    if mode == "per_example_l2":
        rms = jnp.sqrt(mean_d(jnp.square(direction)))
        return direction / (rms.reshape(shape) + 1e-8)
    if mode == "per_example_mean_abs":
        scale = mean_d(jnp.abs(student_x - teacher_x))
        return direction / (scale.reshape(shape) + 1e-8)
    raise ValueError(
        f"normalize_direction: mode must be one of {', '.join(NORMALIZATIONS)}, got {mode!r}"
    )


def student_surrogate(
    student_x: jax.Array,
    aux_x: jax.Array,
    teacher_x: jax.Array,
    weight: jax.Array,
    *,
    normalize: str = "none",
) -> jax.Array:
    """mean_b w_b mean_d x̃ · sg(normalize(a − x_te)).

    Only its gradient means something: ∇_η = E[w (∂x̃/∂η)ᵀ (g_φ − x̂_θ)] / D.
    """
    _check_same("student_surrogate", student_x=student_x, aux_x=aux_x, teacher_x=teacher_x)
    w = _check_weight("student_surrogate", weight, student_x.shape[0])
    direction = normalize_direction(aux_x - teacher_x, student_x, teacher_x, mode=normalize)
    direction = jax.lax.stop_gradient(direction)
    return jnp.mean(w * mean_d(student_x * direction))


def moment_gap(aux_x: jax.Array, teacher_x: jax.Array, weight: jax.Array) -> jax.Array:
    """mean_b w_b mean_d (a − x_te)²: the weighted moment gap logged by the alternating variant."""
    return jnp.mean(weight * mean_d(jnp.square(aux_x - teacher_x)))
