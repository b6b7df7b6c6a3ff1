r"""The consistency loss (MCM §3; weights SNR + 1, pseudo-Huber norm).

* ``loss_space="v"`` (our default): ``mean_b h(√w_t (x̂_t − x_tgt))`` — the norm of the v-space
  error, since (SNR + 1)·|x̂ − x|² = |v̂ − v|² at fixed z_t;
* ``loss_space="x"`` (the literal Algorithm 1 box): ``mean_b w_t h(x̂_t − x_tgt)``;
* ``norm="squared"`` (both spaces): ``mean_b w_t mean_d (x̂_t − x_tgt)²`` (``reduce="sum"``: summed
  over dimensions, TRACT's form).

h is :func:`~diff_consistency.norms.pseudo_huber` (RMS form). "v" and "x" agree in the squared
regime (ε ≫ error) and differ by the factor √w when ε → 0.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from diff_consistency.norms import consistency_weight, mean_square, pseudo_huber

__all__ = ["NORMS", "consistency_loss", "consistency_loss_per_example"]

NORMS = ("pseudo_huber", "squared")
SPACES = ("v", "x")


def consistency_loss_per_example(
    student_x: Any,
    x_tgt: Any,
    logsnr_t: Any,
    *,
    norm: str = "pseudo_huber",
    eps: float = 1e-4,
    loss_space: str = "v",
    weight: str = "snr_plus_one",
    reduce: str = "mean",
) -> jnp.ndarray:
    """The per-example loss, shape (B,) (see the module docstring)."""
    if norm not in NORMS:
        raise ValueError(f"consistency_loss: norm must be one of {NORMS}, got {norm!r}")
    if loss_space not in SPACES:
        raise ValueError(
            f"consistency_loss: loss_space must be one of {SPACES}, got {loss_space!r}"
        )
    if reduce not in ("mean", "sum"):
        raise ValueError(f"consistency_loss: reduce must be 'mean' or 'sum', got {reduce!r}")
    student_x, x_tgt = jnp.asarray(student_x), jnp.asarray(x_tgt)
    if student_x.shape != x_tgt.shape:
        raise ValueError(
            f"consistency_loss: student_x shape {student_x.shape} must equal x_tgt shape "
            f"{x_tgt.shape}"
        )
    dt = jnp.promote_types(student_x.dtype, jnp.float32)
    u = student_x.astype(dt) - x_tgt.astype(dt)
    w = consistency_weight(jnp.asarray(logsnr_t, dt), weight)
    if norm == "squared":
        per = mean_square(u)
        if reduce == "sum":
            per = per * (u.size // u.shape[0])
        return w * per
    if reduce == "sum":
        raise ValueError("consistency_loss: reduce='sum' applies to norm='squared' only")
    if loss_space == "v":
        scale = jnp.sqrt(w).reshape(w.shape + (1,) * (u.ndim - 1))
        return pseudo_huber(scale * u, eps)
    return w * pseudo_huber(u, eps)


def consistency_loss(student_x: Any, x_tgt: Any, logsnr_t: Any, **kwargs: Any) -> jnp.ndarray:
    """Mean over the batch of :func:`consistency_loss_per_example` (same keyword arguments:
    ``norm``, ``eps``, ``loss_space``, ``weight``, ``reduce``)."""
    return jnp.mean(consistency_loss_per_example(student_x, x_tgt, logsnr_t, **kwargs))
