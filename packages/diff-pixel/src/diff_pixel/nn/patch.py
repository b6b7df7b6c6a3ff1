"""Patch embedding (space-to-depth by a strided convolution) and its zero-initialised inverse."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from diff_pixel.nn import init as _init
from diff_pixel.nn.resblock import group_count

__all__ = ["PatchEmbed", "PatchUnembed", "depth_to_space"]


def depth_to_space(x: jax.Array, patch: int) -> jax.Array:
    """(N, h, w, p·p·C) → (N, h·p, w·p, C); channel index = (row offset, col offset, channel)."""
    n, h, w, d = x.shape
    c = d // (patch * patch)
    x = x.reshape(n, h, w, patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h * patch, w * patch, c)


class PatchEmbed(nnx.Module):
    """p×p convolution with stride p: (N, H, W, C_in) → (N, H/p, W/p, C)."""

    def __init__(
        self,
        in_ch: int,
        dim: int,
        patch: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        if min(in_ch, dim, patch) <= 0:
            raise ValueError(
                f"PatchEmbed: in_ch, dim, patch must be positive, got {in_ch}, {dim}, {patch}"
            )
        self.in_ch, self.dim, self.patch = in_ch, dim, patch
        self.conv = nnx.Conv(
            in_ch,
            dim,
            (patch, patch),
            strides=(patch, patch),
            padding="VALID",
            **_init.dense_inits(),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.in_ch:
            raise ValueError(
                f"PatchEmbed: x must have shape (N, H, W, {self.in_ch}), got {x.shape}"
            )
        if x.shape[1] % self.patch or x.shape[2] % self.patch:
            raise ValueError(
                f"PatchEmbed: image size must be divisible by patch={self.patch}, "
                f"got {x.shape[1]}x{x.shape[2]}"
            )
        return self.conv(x)


class PatchUnembed(nnx.Module):
    """GN → SiLU → zero-initialised Linear(C → out·p²) → depth-to-space: (N, h, w, C) → (N, hp,
    wp, out)."""

    def __init__(
        self,
        dim: int,
        out_ch: int,
        patch: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        if min(dim, out_ch, patch) <= 0:
            raise ValueError(
                f"PatchUnembed: dim, out_ch, patch must be positive, got {dim}, {out_ch}, {patch}"
            )
        self.dim, self.out_ch, self.patch = dim, out_ch, patch
        self.norm = nnx.GroupNorm(
            dim,
            num_groups=group_count(dim),
            epsilon=1e-6,
            **_init.norm_inits(),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.proj = nnx.Linear(
            dim,
            out_ch * patch * patch,
            **_init.dense_inits(zero=True),
            dtype=dtype,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or x.shape[-1] != self.dim:
            raise ValueError(
                f"PatchUnembed: x must have shape (N, h, w, {self.dim}), got {x.shape}"
            )
        return depth_to_space(self.proj(jax.nn.silu(self.norm(x))), self.patch)
