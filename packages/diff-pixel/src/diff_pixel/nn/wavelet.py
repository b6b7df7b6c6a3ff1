r"""LeGall 5/3 discrete wavelet transform by lifting (the reversible JPEG 2000 filter bank).

SiD (arXiv 2301.11093) downsamples immediately at the input; besides patching, a wavelet stem is
offered. Per axis, with even samples :math:`e` and odd samples :math:`o` and symmetric
(whole-sample)
extension at both ends:

.. math::
    d_n = o_n - \tfrac12 (e_n + e_{n+1}), \qquad
    s_n = e_n + \tfrac14 (d_{n-1} + d_n),

so a constant signal has :math:`d = 0` and :math:`s` equal to the constant. Rows are transformed
first (along W), then columns (along H); the sub-bands LL, LH, HL, HH (first letter: along W,
second: along H) are stacked on the channel axis, C → 4C per level with H, W halved. The inverse
undoes the lifts in reverse order and is exact up to rounding.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["dwt53", "idwt53"]


def _shift_next(a: jax.Array) -> jax.Array:  # a[n + 1], symmetric at the right end
    return jnp.concatenate([a[1:], a[-1:]], axis=0)


def _shift_prev(a: jax.Array) -> jax.Array:  # a[n - 1], symmetric at the left end
    return jnp.concatenate([a[:1], a[:-1]], axis=0)


def _forward(x: jax.Array, axis: int) -> tuple[jax.Array, jax.Array]:
    x = jnp.moveaxis(x, axis, 0)
    even, odd = x[0::2], x[1::2]
    d = odd - 0.5 * (even + _shift_next(even))
    s = even + 0.25 * (_shift_prev(d) + d)
    return jnp.moveaxis(s, 0, axis), jnp.moveaxis(d, 0, axis)


def _inverse(s: jax.Array, d: jax.Array, axis: int) -> jax.Array:
    s, d = jnp.moveaxis(s, axis, 0), jnp.moveaxis(d, axis, 0)
    even = s - 0.25 * (_shift_prev(d) + d)
    odd = d + 0.5 * (even + _shift_next(even))
    x = jnp.stack([even, odd], axis=1).reshape((2 * even.shape[0],) + even.shape[1:])
    return jnp.moveaxis(x, 0, axis)


def _check(fn: str, x: jax.Array, levels: int, channel_factor: int) -> None:
    if not isinstance(levels, int) or isinstance(levels, bool) or levels < 0:
        raise ValueError(f"{fn}: levels must be a non-negative integer, got {levels!r}")
    if x.ndim < 3:
        raise ValueError(f"{fn}: x must have shape (..., H, W, C), got {x.shape}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{fn}: x must be a floating-point array, got dtype {x.dtype}")
    h, w, c = x.shape[-3:]
    if fn == "dwt53" and (h % (2**levels) or w % (2**levels)):
        raise ValueError(
            f"dwt53: H and W must be divisible by 2**levels = {2**levels}, got {h}x{w}"
        )
    if c % channel_factor:
        raise ValueError(
            f"{fn}: channels must be divisible by 4**levels = {channel_factor}, got {c}"
        )


def dwt53(x: jax.Array, levels: int) -> jax.Array:
    """Forward 5/3 transform: (..., H, W, C) → (..., H/2^k, W/2^k, 4^k·C) for ``levels`` = k."""
    _check("dwt53", x, levels, 1)
    ah, aw = x.ndim - 3, x.ndim - 2
    for _ in range(levels):
        lo, hi = _forward(x, aw)
        ll, lh = _forward(lo, ah)
        hl, hh = _forward(hi, ah)
        x = jnp.concatenate([ll, lh, hl, hh], axis=-1)
    return x


def idwt53(y: jax.Array, levels: int) -> jax.Array:
    """Inverse of :func:`dwt53`: (..., h, w, 4^k·C) → (..., 2^k·h, 2^k·w, C)."""
    _check("idwt53", y, levels, 4**levels)
    ah, aw = y.ndim - 3, y.ndim - 2
    for _ in range(levels):
        ll, lh, hl, hh = jnp.split(y, 4, axis=-1)
        lo = _inverse(ll, lh, ah)
        hi = _inverse(hl, hh, ah)
        y = _inverse(lo, hi, aw)
    return y
