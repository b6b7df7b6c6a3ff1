"""Conditioning of blocks on the noise level and other embeddings.

AdaLN-zero (Peebles & Xie, *DiT*, arXiv 2212.09748) in transformer blocks and FiLM (Perez et al.,
arXiv 1709.07871) in ResBlocks: a zero-initialised Linear on SiLU(emb) produces per-channel shift,
scale and gate vectors, so every modulated branch starts switched off. Our default; SiD/SiD2's exact
conditioning layers are not confirmed.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from diff_pixel.nn import init as _init

__all__ = ["AdaLN", "LogSNREmbedding", "broadcast_modulation", "modulate"]


def modulate(x: jax.Array, shift: jax.Array, scale: jax.Array) -> jax.Array:
    r""":math:`x \cdot (1 + \text{scale}) + \text{shift}` (shift and scale broadcast against x)."""
    return x * (1 + scale) + shift


def broadcast_modulation(m: jax.Array, x: jax.Array) -> jax.Array:
    """Insert singleton axes in a (B, [F,] C) modulation vector so it broadcasts over x's tokens.

    ``x`` is (B, [F,] h, w, C) or (B, [F,] T, C): the leading axes of ``m`` (all but channels) are
    matched to x's leading axes and the rest become singletons.
    """
    lead = m.ndim - 1
    return m.reshape(m.shape[:lead] + (1,) * (x.ndim - lead - 1) + m.shape[-1:]).astype(x.dtype)


class AdaLN(nnx.Module):
    """Zero-initialised Linear(E → chunks·C) on SiLU(emb), split into ``chunks`` vectors of
    size C."""

    def __init__(
        self,
        emb_dim: int,
        dim: int,
        chunks: int,
        *,
        dtype: jnp.dtype = jnp.float32,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        if emb_dim <= 0 or dim <= 0 or chunks <= 0:
            raise ValueError(
                f"AdaLN: emb_dim, dim and chunks must be positive, got {emb_dim}, {dim}, {chunks}"
            )
        self.dim, self.chunks = dim, chunks
        self.proj = nnx.Linear(
            emb_dim,
            chunks * dim,
            **_init.dense_inits(zero=True),
            dtype=jnp.float32,
            param_dtype=param_dtype,
            rngs=rngs,
        )

    def __call__(self, emb: jax.Array) -> list[jax.Array]:
        """emb: (..., E) float32 → ``chunks`` arrays (..., C) in float32."""
        out = self.proj(jax.nn.silu(emb.astype(jnp.float32)))
        return jnp.split(out, self.chunks, axis=-1)


class LogSNREmbedding(nnx.Module):
    r"""Embedding of the log-SNR :math:`\lambda`.

    :math:`u = (2/\pi)\arctan(e^{-\lambda/2}) \in (0, 1)` is the time of :math:`\lambda` on the
    untruncated cosine schedule (bounded for every :math:`\lambda`, including ±inf); features are
    :math:`[\sin(1000 u \omega_k), \cos(1000 u \omega_k)]` with
    :math:`\omega_k = 10000^{-k/(F/2)}`, k < F/2, followed by Linear → SiLU → Linear. Always
    float32.
    """

    def __init__(
        self,
        emb_dim: int,
        freq_dim: int = 256,
        *,
        param_dtype: jnp.dtype = jnp.float32,
        rngs: nnx.Rngs,
    ) -> None:
        if emb_dim <= 0 or freq_dim <= 0 or freq_dim % 2:
            raise ValueError(
                f"LogSNREmbedding: emb_dim must be positive and freq_dim positive and even, "
                f"got {emb_dim}, {freq_dim}"
            )
        self.freq_dim = freq_dim
        kw = dict(dtype=jnp.float32, param_dtype=param_dtype, rngs=rngs, **_init.dense_inits())
        self.fc1 = nnx.Linear(freq_dim, emb_dim, **kw)
        self.fc2 = nnx.Linear(emb_dim, emb_dim, **kw)

    def features(self, logsnr: jax.Array) -> jax.Array:
        """Sinusoidal features (..., freq_dim) of the cosine time of ``logsnr``."""
        lam = jnp.asarray(logsnr, jnp.float32)
        u = (2.0 / math.pi) * jnp.arctan(jnp.exp(-0.5 * lam))
        half = self.freq_dim // 2
        freqs = 10000.0 ** (-jnp.arange(half, dtype=jnp.float32) / half)
        arg = 1000.0 * u[..., None] * freqs
        return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)

    def __call__(self, logsnr: jax.Array) -> jax.Array:
        """logsnr: (...) → (..., E) float32."""
        return self.fc2(jax.nn.silu(self.fc1(self.features(logsnr))))
