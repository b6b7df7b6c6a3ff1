"""Normalisation with float32 statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["layer_norm"]


def layer_norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    r"""LayerNorm without affine parameters over the last axis: :math:`(x - \mu)/\sqrt{\sigma^2 +
    \epsilon}`.

    Statistics are computed in float32; the result has the dtype of ``x``.
    """
    xf = x.astype(jnp.float32)
    mean = jnp.mean(xf, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=-1, keepdims=True)
    return ((xf - mean) * jax.lax.rsqrt(var + eps)).astype(x.dtype)
