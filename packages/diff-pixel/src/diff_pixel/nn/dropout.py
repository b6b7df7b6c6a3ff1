"""Inverted dropout driven by an explicit key (no hidden RNG stream)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diff_protocol import jax_uniform

__all__ = ["dropout"]


def dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    r"""Inverted dropout: :math:`y = m \odot x / (1 - p)` with
    :math:`m_i \sim \mathrm{Bernoulli}(1 - p)`.

    The identity when ``key is None`` (evaluation) or ``rate == 0``, so a forward pass without a
    dropout key is a pure deterministic function of its inputs.

    Args:
      x: any array.
      rate: drop probability ``p`` in [0, 1) (a Python float: it decides the graph).
      key: a JAX PRNG key, or None.

    Returns:
      An array with the shape and dtype of ``x``.
    """
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout: rate must be a float in [0, 1), got {rate!r}")
    if key is None or rate == 0.0:
        return x
    # = jax.random.bernoulli(key, 1 - rate, x.shape) bitwise (a float32 uniform below 1 - rate),
    # drawn flat: see diff_protocol.jax_normal for the compile time
    keep = jax_uniform(key, x.shape) < 1.0 - rate
    return jnp.where(keep, x / jnp.asarray(1.0 - rate, x.dtype), jnp.zeros((), x.dtype))
