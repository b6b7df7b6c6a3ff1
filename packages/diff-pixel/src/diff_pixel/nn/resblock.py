"""Convolutional residual block with FiLM conditioning."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from diff_pixel.nn import init as _init
from diff_pixel.nn.conditioning import AdaLN, broadcast_modulation, modulate
from diff_pixel.nn.dropout import dropout as apply_dropout

__all__ = ["ResBlock", "group_count"]


def group_count(channels: int) -> int:
    """GroupNorm groups: min(32, C/4)."""
    return max(1, min(32, channels // 4))


class ResBlock(nnx.Module):
    r"""Residual block (BigGAN/DDPM style) with FiLM conditioning.

    .. math::
        h &= \mathrm{Conv}_{3\times3}(\mathrm{SiLU}(\mathrm{GN}(x))) \\
        h &= \mathrm{SiLU}(\mathrm{GN}(h)(1 + s) + b), \quad (b, s) = \mathrm{FiLM}(\text{emb}) \\
        h &= \mathrm{Conv}^{0}_{3\times3}(\mathrm{dropout}(h)) \\
        \text{out} &= \mathrm{skip}(x) + h

    FiLM is a zero-initialised Linear(E → 2C) on SiLU(emb); the last convolution is
    zero-initialised, so the block is the identity (dim_in = dim_out) at initialisation; ``skip`` is
    a 1×1 convolution when dim_in ≠ dim_out. ``x``: (N, H, W, C_in), ``emb``: (N, E).
    One dropout site, keyed ``fold_in(dropout_key, site)``.
    """

    def __init__(
        self,
        dim_in: int,
        dim_out: int,
        emb_dim: int,
        *,
        dropout: float = 0.0,
        groups: int | None = None,
        site: int = 0,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        if min(dim_in, dim_out, emb_dim) <= 0:
            raise ValueError(
                f"ResBlock: dim_in, dim_out, emb_dim must be positive, got {dim_in}, {dim_out}, "
                f"{emb_dim}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"ResBlock: dropout must be in [0, 1), got {dropout}")
        self.dim_in, self.dim_out = dim_in, dim_out
        self.rate = float(dropout)
        self.site = int(site)
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        g_in = groups or group_count(dim_in)
        g_out = groups or group_count(dim_out)
        norm = _init.norm_inits()
        self.norm1 = nnx.GroupNorm(dim_in, num_groups=g_in, epsilon=1e-6, **norm, **kw)
        self.conv1 = nnx.Conv(dim_in, dim_out, (3, 3), **_init.dense_inits(), **kw)
        self.norm2 = nnx.GroupNorm(dim_out, num_groups=g_out, epsilon=1e-6, **norm, **kw)
        self.film = AdaLN(emb_dim, dim_out, 2, param_dtype=param_dtype, rngs=rngs)
        self.conv2 = nnx.Conv(dim_out, dim_out, (3, 3), **_init.dense_inits(zero=True), **kw)
        self.skip = (
            nnx.Conv(dim_in, dim_out, (1, 1), **_init.dense_inits(), **kw)
            if dim_in != dim_out
            else None
        )

    @property
    def num_dropout_sites(self) -> int:
        return 1

    def __call__(
        self, x: jax.Array, emb: jax.Array, *, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.dim_in:
            raise ValueError(f"ResBlock: x must have shape (N, H, W, {self.dim_in}), got {x.shape}")
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        shift, scale = self.film(emb)
        h = modulate(self.norm2(h), broadcast_modulation(shift, h), broadcast_modulation(scale, h))
        h = jax.nn.silu(h)
        key = None if dropout_key is None else jax.random.fold_in(dropout_key, self.site)
        h = self.conv2(apply_dropout(h, self.rate, key))
        skip = x if self.skip is None else self.skip(x)
        return skip + h
