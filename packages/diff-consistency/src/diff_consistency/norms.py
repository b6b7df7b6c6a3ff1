"""Per-example norms and loss weights of MCM's objective (arXiv 2403.06807, §3 and Table 6).

``pseudo_huber`` is the RMS form (our derivation; the paper names only "huber epsilon"):

    h_ε(u) = √(mean_d u² + ε²) − ε = mean_d u² / (√(mean_d u² + ε²) + ε)

evaluated in the second form, which has no cancellation for small errors or large ε. With
ε = 1e-4 it is the RMS distance; with ε ≫ RMS it is ≈ mean_d u² / (2ε), a squared loss.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

__all__ = ["WEIGHT_KINDS", "consistency_weight", "mean_square", "pseudo_huber"]

WEIGHT_KINDS = ("snr_plus_one", "truncated_snr", "uniform")


def mean_square(u: Any) -> jnp.ndarray:
    """``mean_d u²`` per example (all axes after the first), shape (B,)."""
    u = jnp.asarray(u)
    return jnp.mean(jnp.square(u).reshape(u.shape[0], -1), axis=-1)


def pseudo_huber(u: Any, eps: float) -> jnp.ndarray:
    """RMS-form pseudo-Huber norm ``√(mean_d u² + ε²) − ε`` per example, shape (B,)."""
    if isinstance(eps, (int, float)) and not eps > 0:
        raise ValueError(f"pseudo_huber: eps must be > 0, got {eps!r}")
    m = mean_square(u)
    eps = jnp.asarray(eps, m.dtype)
    return m / (jnp.sqrt(m + eps * eps) + eps)


def consistency_weight(logsnr: Any, kind: str) -> jnp.ndarray:
    """Loss weight at λ_t: ``"snr_plus_one"`` e^λ + 1 (= 1/σ², MCM), ``"truncated_snr"``
    max(e^λ, 1) (TRACT), ``"uniform"`` 1."""
    if kind not in WEIGHT_KINDS:
        raise ValueError(
            f"consistency_weight: kind must be one of {', '.join(map(repr, WEIGHT_KINDS))}, "
            f"got {kind!r}"
        )
    lam = jnp.asarray(logsnr)
    if kind == "snr_plus_one":
        return jnp.exp(lam) + 1.0
    if kind == "truncated_snr":
        return jnp.maximum(jnp.exp(lam), 1.0)
    return jnp.ones_like(lam)
