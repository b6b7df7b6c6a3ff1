"""Analysis / synthesis transforms of the mean-scale hyperprior codec (arXiv 1802.01436,
arXiv 1809.02736); NHWC, "SAME" padding, strided convolutions.

- :class:`AnalysisTransform` ``g_a``: ``levels`` × (k×k conv, stride 2), GDN after every conv but
  the last: ``in → N → … → M``.
- :class:`SynthesisTransform` ``g_s``: the mirror with transposed convs and IGDN.
- :class:`HyperAnalysis` ``h_a``: 3×3 s1 (M→N), LeakyReLU, 5×5 s2, LeakyReLU, 5×5 s2 (N→N).
- :class:`HyperSynthesis` ``h_s``: 5×5 s2 deconv (N→M), LeakyReLU, 5×5 s2 deconv (M→3M/2),
  LeakyReLU, 3×3 conv (3M/2 → 2M) split into ``(μ, scales_raw)``; ``σ = max(|scales_raw|, 0.11)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from diff_compress.gdn import GDN
from diff_pixel.nn.init import jax_lecun_normal

__all__ = ["AnalysisTransform", "HyperAnalysis", "HyperSynthesis", "SynthesisTransform"]

SCALE_MIN = 0.11


def _square(layer: type, cin: int, cout: int, k: int, stride: int, rngs: nnx.Rngs) -> Any:
    """A k×k ``layer`` (conv or transposed conv), SAME padding, Flax's default kernel values."""
    kw = dict(strides=(stride, stride), padding="SAME", kernel_init=jax_lecun_normal())
    return layer(cin, cout, (k, k), **kw, rngs=rngs)


def _conv(cin: int, cout: int, k: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
    return _square(nnx.Conv, cin, cout, k, stride, rngs)


def _deconv(cin: int, cout: int, k: int, stride: int, rngs: nnx.Rngs) -> nnx.ConvTranspose:
    return _square(nnx.ConvTranspose, cin, cout, k, stride, rngs)


class AnalysisTransform(nnx.Module):
    """``g_a``: image (B, H, W, in) → latent y (B, H/2^levels, W/2^levels, M)."""

    def __init__(
        self,
        channels: int,
        latent_channels: int,
        levels: int = 4,
        kernel: int = 5,
        in_channels: int = 3,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        widths = [in_channels] + [channels] * (levels - 1) + [latent_channels]
        self.convs = nnx.List(
            [_conv(widths[i], widths[i + 1], kernel, 2, rngs) for i in range(levels)]
        )
        self.gdns = nnx.List([GDN(channels) for _ in range(levels - 1)])

    def __call__(self, x: jax.Array) -> jax.Array:
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.gdns):
                x = self.gdns[i](x)
        return x


class SynthesisTransform(nnx.Module):
    """``g_s``: latent (B, h, w, M) → image (B, h·2^levels, w·2^levels, out)."""

    def __init__(
        self,
        channels: int,
        latent_channels: int,
        levels: int = 4,
        kernel: int = 5,
        out_channels: int = 3,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        widths = [latent_channels] + [channels] * (levels - 1) + [out_channels]
        self.igdns = nnx.List([GDN(channels, inverse=True) for _ in range(levels - 1)])
        self.deconvs = nnx.List(
            [_deconv(widths[i], widths[i + 1], kernel, 2, rngs) for i in range(levels)]
        )

    def __call__(self, y: jax.Array) -> jax.Array:
        x = y
        for i, deconv in enumerate(self.deconvs):
            x = deconv(x)
            if i < len(self.igdns):
                x = self.igdns[i](x)
        return x


class HyperAnalysis(nnx.Module):
    """``h_a``: y (B, h, w, M) → z (B, h/4, w/4, N)."""

    def __init__(self, latent_channels: int, channels: int, *, rngs: nnx.Rngs) -> None:
        self.c1 = _conv(latent_channels, channels, 3, 1, rngs)
        self.c2 = _conv(channels, channels, 5, 2, rngs)
        self.c3 = _conv(channels, channels, 5, 2, rngs)

    def __call__(self, y: jax.Array) -> jax.Array:
        h = jax.nn.leaky_relu(self.c1(y))
        h = jax.nn.leaky_relu(self.c2(h))
        return self.c3(h)


class HyperSynthesis(nnx.Module):
    """``h_s``: ẑ (B, h/4, w/4, N) → (μ, σ), each (B, h, w, M); ``σ = max(|raw|, 0.11)``."""

    def __init__(self, channels: int, latent_channels: int, *, rngs: nnx.Rngs) -> None:
        m = latent_channels
        self.d1 = _deconv(channels, m, 5, 2, rngs)
        self.d2 = _deconv(m, 3 * m // 2, 5, 2, rngs)
        self.c3 = _conv(3 * m // 2, 2 * m, 3, 1, rngs)
        self.latent_channels = m

    def __call__(self, z_hat: jax.Array) -> tuple[jax.Array, jax.Array]:
        h = jax.nn.leaky_relu(self.d1(z_hat))
        h = jax.nn.leaky_relu(self.d2(h))
        out = self.c3(h)
        means, scales_raw = jnp.split(out, 2, axis=-1)
        return means, jnp.maximum(jnp.abs(scales_raw), SCALE_MIN)
