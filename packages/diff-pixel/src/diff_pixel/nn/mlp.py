"""Transformer feed-forward block."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from diff_pixel.nn import init as _init
from diff_pixel.nn.dropout import dropout

__all__ = ["MLP"]


class MLP(nnx.Module):
    """Linear(C → rC) → GELU (tanh form) → dropout → Linear(rC → C).

    ``zero_out=True`` zero-initialises the second layer's kernel.
    """

    def __init__(
        self,
        dim: int,
        ratio: int = 4,
        *,
        zero_out: bool = False,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        if dim <= 0 or ratio <= 0:
            raise ValueError(f"MLP: dim and ratio must be positive, got dim={dim}, ratio={ratio}")
        self.dim, self.ratio = dim, ratio
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = nnx.Linear(dim, ratio * dim, **_init.dense_inits(), **kw)
        self.fc2 = nnx.Linear(ratio * dim, dim, **_init.dense_inits(zero=zero_out), **kw)

    def __call__(
        self, x: jax.Array, *, dropout_key: jax.Array | None = None, rate: float = 0.0
    ) -> jax.Array:
        h = jax.nn.gelu(self.fc1(x), approximate=True)
        return self.fc2(dropout(h, rate, dropout_key))
