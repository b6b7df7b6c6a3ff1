"""Quantisation for training and testing a learned codec (arXiv 1802.01436, §2; the "mixed"
quantisation of CompressAI / tensorflow-compression).

- ``"noise"``: ``x + U(−½, ½)``, the differentiable proxy of rounding used for the rate term.
- ``"ste"``: ``μ + ste_round(x − μ)`` with ``ste_round(x) = x + stop_gradient(round(x) − x)``:
  the synthesis sees the hard-rounded latent, the gradient passes straight through.
- ``"round"``: ``μ + round(x − μ)`` (test time).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from diff_protocol import jax_uniform

__all__ = ["MODES", "add_uniform_noise", "quantize", "ste_round"]

MODES = ("noise", "ste", "round")


def add_uniform_noise(x: jax.Array, key: jax.Array) -> jax.Array:
    """``x + u`` with ``u ~ U(−½, ½)`` i.i.d. (drawn from ``key``)."""
    return x + jax_uniform(key, x.shape, x.dtype, -0.5, 0.5)


def ste_round(x: jax.Array) -> jax.Array:
    """Round in the forward pass, identity gradient: ``x + stop_gradient(round(x) − x)``."""
    return x + jax.lax.stop_gradient(jnp.round(x) - x)


def quantize(
    x: jax.Array, mode: str, key: jax.Array | None = None, means: jax.Array | None = None
) -> jax.Array:
    """Quantise ``x`` (see the module docstring); ``means`` offsets ``"ste"`` and ``"round"``.

    Raises:
      ValueError: unknown ``mode``, or ``"noise"`` without ``key``.
    """
    if mode not in MODES:
        raise ValueError(f"quantize: mode must be one of {MODES}, got {mode!r}")
    if mode == "noise":
        if key is None:
            raise ValueError("quantize: mode='noise' needs key, got None")
        return add_uniform_noise(x, key)
    mu = 0.0 if means is None else means
    r = ste_round(x - mu) if mode == "ste" else jnp.round(x - mu)
    return r + mu
