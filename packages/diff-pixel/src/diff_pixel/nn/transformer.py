"""Pre-LN transformer block with AdaLN-zero conditioning, optional cross- and frame attention."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from diff_pixel.nn.attention import Attention, CrossAttention
from diff_pixel.nn.conditioning import AdaLN, broadcast_modulation, modulate
from diff_pixel.nn.mlp import MLP
from diff_pixel.nn.norm import layer_norm
from diff_pixel.nn.rope import grid_positions

__all__ = ["TransformerBlock"]

FrameAttention = Literal["none", "joint", "factorized"]
_FRAME_ATTENTION = ("none", "joint", "factorized")


def _site_key(key: jax.Array | None, site: int) -> jax.Array | None:
    return None if key is None else jax.random.fold_in(key, site)


class TransformerBlock(nnx.Module):
    r"""Pre-LN transformer block on a token grid, modulated by an embedding (AdaLN-zero).

    .. math::
        x &\leftarrow x + g_1 \cdot \mathrm{Attn}(\mathrm{LN}(x)(1 + s_1) + b_1) \\
        x &\leftarrow x + g_t \cdot \mathrm{Attn}_{\text{frames}}(\mathrm{LN}(x)(1 + s_t) + b_t)
            \quad\text{(factorized frame attention only)} \\
        x &\leftarrow x + \mathrm{CrossAttn}(\mathrm{LN}(x), \text{context})
            \quad\text{(if context\_dim)} \\
        x &\leftarrow x + g_2 \cdot \mathrm{MLP}(\mathrm{LN}(x)(1 + s_2) + b_2)

    with (b, s, g) from a zero-initialised :class:`AdaLN`, so the block is the identity at
    initialisation. LN has no affine parameters. ``x`` is (B, h, w, C) or, for frame models,
    (B, F, h, w, C); ``emb`` is (B, E) or (B, F, E). ``frame_attention`` decides how frames attend:
    ``"none"`` (each frame alone), ``"joint"`` (one sequence of F·h·w tokens) or ``"factorized"``
    (spatial within each frame, then temporal across frames at each location).

    Dropout sites (attention output, MLP hidden, temporal attention output) use the keys
    ``fold_in(dropout_key, site + j)``; ``site`` is assigned by the enclosing model.
    """

    def __init__(
        self,
        dim: int,
        emb_dim: int,
        head_dim: int = 64,
        mlp_ratio: int = 4,
        *,
        context_dim: int = 0,
        frame_attention: FrameAttention = "none",
        dropout: float = 0.0,
        pos_emb: Literal["rope", "none"] = "rope",
        frame_positions: bool = True,
        impl: Literal["auto", "xla", "cudnn"] = "auto",
        site: int = 0,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        if frame_attention not in _FRAME_ATTENTION:
            raise ValueError(
                f"TransformerBlock: frame_attention must be one of {_FRAME_ATTENTION}, "
                f"got {frame_attention!r}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"TransformerBlock: dropout must be in [0, 1), got {dropout}")
        if pos_emb not in ("rope", "none"):
            raise ValueError(f"TransformerBlock: pos_emb must be 'rope' or 'none', got {pos_emb!r}")
        self.dim, self.head_dim = dim, head_dim
        self.frame_attention = frame_attention
        self.rate = float(dropout)
        self.use_rope = pos_emb == "rope"
        self.frame_positions = bool(frame_positions)
        self.site = int(site)
        factorized = frame_attention == "factorized"
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.adaln = AdaLN(emb_dim, dim, 9 if factorized else 6, param_dtype=param_dtype, rngs=rngs)
        self.attn = Attention(dim, head_dim, impl=impl, **kw)
        self.temporal = Attention(dim, head_dim, impl=impl, **kw) if factorized else None
        self.cross = (
            CrossAttention(dim, context_dim, head_dim, impl=impl, **kw) if context_dim else None
        )
        self.mlp = MLP(dim, mlp_ratio, **kw)

    @property
    def num_dropout_sites(self) -> int:
        """Number of dropout sites of this block (2, or 3 with factorized frame attention)."""
        return 3 if self.temporal is not None else 2

    def _positions(self, h: int, w: int, frames: int | None) -> np.ndarray | None:
        if not self.use_rope:
            return None
        if frames is None:
            return grid_positions(h, w)
        if self.frame_positions:
            return grid_positions(h, w, frames)
        return np.tile(grid_positions(h, w), (frames, 1))

    def __call__(
        self,
        x: jax.Array,
        emb: jax.Array,
        *,
        context: jax.Array | None = None,
        context_lengths: jax.Array | None = None,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        if x.ndim not in (4, 5) or x.shape[-1] != self.dim:
            raise ValueError(
                f"TransformerBlock: x must have shape (B, [F,] h, w, {self.dim}), got {x.shape}"
            )
        if (context is None) != (self.cross is None):
            raise ValueError(
                "TransformerBlock: context must be given exactly when the block was built with "
                f"context_dim > 0, got context={'None' if context is None else context.shape}"
            )
        frames = x.ndim == 5
        b = x.shape[0]
        f = x.shape[1] if frames else None
        gh, gw, c = x.shape[-3:]
        mods = self.adaln(emb)

        def bm(m: jax.Array) -> jax.Array:
            return broadcast_modulation(m, x)

        # Spatial (or joint) self-attention.
        h = modulate(layer_norm(x), bm(mods[0]), bm(mods[1]))
        if frames and self.frame_attention == "joint":
            seq = h.reshape(b, f * gh * gw, c)
            pos = self._positions(gh, gw, f)
        else:
            seq = h.reshape(-1, gh * gw, c)
            pos = self._positions(gh, gw, None)
        a = self.attn(seq, rope=pos, dropout_key=_site_key(dropout_key, self.site), rate=self.rate)
        x = x + bm(mods[2]) * a.reshape(x.shape)

        # Temporal self-attention across frames at each location.
        if frames and self.temporal is not None:
            h = modulate(layer_norm(x), bm(mods[6]), bm(mods[7]))
            seq = jnp.moveaxis(h, 1, 3).reshape(b * gh * gw, f, c)
            pos = (
                np.arange(f, dtype=np.float32)[:, None]
                if self.use_rope and self.frame_positions
                else None
            )
            a = self.temporal(
                seq, rope=pos, dropout_key=_site_key(dropout_key, self.site + 2), rate=self.rate
            )
            a = jnp.moveaxis(a.reshape(b, gh, gw, f, c), 3, 1)
            x = x + bm(mods[8]) * a

        # Cross-attention to the token sequence (shared by all frames).
        if self.cross is not None:
            q = layer_norm(x).reshape(b, -1, c)
            x = x + self.cross(q, context.astype(x.dtype), context_lengths).reshape(x.shape)

        h = modulate(layer_norm(x), bm(mods[3]), bm(mods[4]))
        m = self.mlp(h, dropout_key=_site_key(dropout_key, self.site + 1), rate=self.rate)
        return x + bm(mods[5]) * m
