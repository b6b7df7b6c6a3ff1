"""Resolution changes between U-Net levels.

Average-pool downsampling and bias-free nearest upsampling (our default; the papers' exact
resampling layers are not confirmed). Upsample has no bias so that Upsample(0) = 0 exactly, which
makes the Residual U-ViT's up path ``Upsample(h − h_lo0) + h_hi`` the identity at initialisation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from diff_pixel.nn import init as _init

__all__ = ["Downsample", "Upsample"]


class Downsample(nnx.Module):
    """2×2 average pool, then Linear(c_in → c_out) with bias: (N, H, W, c_in) → (N, H/2, W/2,
    c_out)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.c_in, self.c_out = c_in, c_out
        self.proj = nnx.Linear(
            c_in, c_out, **_init.dense_inits(), dtype=dtype, param_dtype=param_dtype, rngs=rngs
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        if c != self.c_in or h % 2 or w % 2:
            raise ValueError(
                f"Downsample: x must have shape (N, even H, even W, {self.c_in}), got {x.shape}"
            )
        pooled = x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4), dtype=jnp.float32)
        return self.proj(pooled.astype(x.dtype))


class Upsample(nnx.Module):
    """Linear(c_in → c_out) without bias, then nearest ×2: (N, h, w, c_in) → (N, 2h, 2w, c_out)."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        self.c_in, self.c_out = c_in, c_out
        self.proj = nnx.Linear(
            c_in,
            c_out,
            use_bias=False,
            kernel_init=_init.lecun_normal(),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.c_in:
            raise ValueError(f"Upsample: x must have shape (N, h, w, {self.c_in}), got {x.shape}")
        y = self.proj(x)
        n, h, w, c = y.shape
        y = jnp.broadcast_to(y[:, :, None, :, None, :], (n, h, 2, w, 2, c))
        return y.reshape(n, 2 * h, 2 * w, c)
