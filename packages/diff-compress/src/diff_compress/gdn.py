"""Generalized divisive normalisation (Ballé, Laparra, Simoncelli, arXiv 1511.06281).

``y_i = x_i / sqrt(β_i + Σ_j γ_ij x_j²)`` (the inverse, IGDN, multiplies instead). β and γ stay
non-negative by reparameterisation: ``β = β_raw² + β_min``, ``γ = γ_raw²``, initialised at
``β = 1`` and ``γ = gamma_init · I``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["GDN"]


class GDN(nnx.Module):
    """GDN / IGDN over the last (channel) axis of an NHWC tensor.

    Args:
      channels: number of channels C.
      inverse: IGDN (multiply by the norm) instead of GDN.
      beta_min: floor of β (keeps the norm away from 0).
      gamma_init: initial diagonal of γ.
    """

    def __init__(
        self,
        channels: int,
        inverse: bool = False,
        beta_min: float = 1e-6,
        gamma_init: float = 0.1,
    ) -> None:
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"GDN: channels must be a positive int, got {channels!r}")
        if not (beta_min > 0):
            raise ValueError(f"GDN: beta_min must be > 0, got {beta_min!r}")
        self.channels = channels
        self.inverse = bool(inverse)
        self.beta_min = float(beta_min)
        self.beta_raw = nnx.Param(jnp.full((channels,), np.sqrt(1.0 - beta_min), jnp.float32))
        self.gamma_raw = nnx.Param(jnp.asarray(np.sqrt(gamma_init) * np.eye(channels), jnp.float32))

    def params(self) -> tuple[jax.Array, jax.Array]:
        """``(β, γ)`` after the non-negativity reparameterisation."""
        beta = self.beta_raw[...] ** 2 + self.beta_min
        gamma = self.gamma_raw[...] ** 2
        return beta, gamma

    def __call__(self, x: jax.Array) -> jax.Array:
        beta, gamma = self.params()
        norm = beta + jnp.einsum("...j,ij->...i", x * x, gamma)
        return x * jnp.sqrt(norm) if self.inverse else x * jax.lax.rsqrt(norm)
