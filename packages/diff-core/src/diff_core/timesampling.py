"""Training-time sampling: pure transformations of uniforms drawn by the caller's RNG.

All three give times with the uniform marginal on [0, 1), so any estimator
``mean_i f(t_i)`` of ``∫₀¹ f(t) dt`` stays unbiased; the stratified and low-discrepancy forms
have far lower variance for smooth ``f`` (VDM, Kingma et al., arXiv 2107.00630, appendix;
google-research/vdm):

- ``uniform_times(u)``: ``t = u``;
- ``stratified_times(u)``: ``t_i = (i + u_i)/B``, one time per stratum ``[i/B, (i+1)/B)``;
- ``low_discrepancy_times(u0, B)``: ``t_i = (u0 + i/B) mod 1``, one uniform per batch.

The batch is assumed to be randomly ordered already, so stratum ``i`` going to example ``i``
introduces no correlation with the data. Times keep the dtype of the uniforms (float32 at least).
"""

from __future__ import annotations

import operator
from typing import Any

import array_api_compat
import numpy as np

from diff_protocol.arrays import is_lazy, is_low_precision

from .schedules import _fmt, _size

__all__ = ["low_discrepancy_times", "stratified_times", "uniform_times"]

Array = Any


def _uniforms(func: str, arg: str, u: Any) -> tuple[Any, Any]:
    if isinstance(u, (int, float)) and not isinstance(u, bool):
        u = np.asarray(float(u), dtype=np.float64)
    try:
        xp = array_api_compat.array_namespace(u)
    except TypeError:
        raise TypeError(f"{func}: {arg} must be a real floating array, got {u!r}") from None
    if not xp.isdtype(u.dtype, "real floating"):
        raise TypeError(f"{func}: {arg} must be a real floating array, got dtype {u.dtype}")
    if is_low_precision(u.dtype):
        u = xp.astype(u, xp.float32)
    if not is_lazy(u):
        _check_below_one(func, arg, xp, u)
    return xp, u


def _check_below_one(func: str, arg: str, xp: Any, u: Any) -> None:
    if _size(u) == 0:
        return
    where = f"{func}: {arg} must lie in [0, 1), got"
    if bool(xp.any(xp.isnan(u))):
        raise ValueError(f"{where} nan")
    u_max, u_min = float(xp.max(u)), float(xp.min(u))
    if u_max >= 1.0:
        raise ValueError(f"{where} max {_fmt(u_max)}")
    if u_min < 0.0:
        raise ValueError(f"{where} min {_fmt(u_min)}")


def uniform_times(u: Array) -> Array:
    """``t = u`` after checking ``u ∈ [0, 1)``: plain uniform time sampling."""
    _, u = _uniforms("uniform_times", "u", u)
    return u


def stratified_times(u: Array) -> Array:
    """``t_i = (i + u_i)/B`` for ``u`` of shape ``(B,)``: exactly one time per stratum.

    Computed as ``i/B + u_i/B`` and kept inside ``[i/B, (i+1)/B)`` in the array's own dtype, so
    rounding never moves a time into the next stratum (or to 1).
    """
    func = "stratified_times"
    xp, u = _uniforms(func, "u", u)
    if u.ndim != 1 or u.shape[0] < 1:
        raise ValueError(f"{func}: u must have shape (B,) with B >= 1, got {tuple(u.shape)}")
    b = int(u.shape[0])
    i = xp.arange(b, dtype=u.dtype, device=array_api_compat.device(u))
    lo, hi = i / float(b), (i + 1.0) / float(b)
    t = lo + u / float(b)
    t = xp.where(t < lo, lo, t)
    return xp.where(t >= hi, xp.nextafter(hi, lo), t)


def low_discrepancy_times(u0: Array | float, batch_size: int) -> Array:
    """``t_i = (u0 + i/B) mod 1``, i = 0..B−1, from one uniform ``u0`` (0-d or shape (1,)).

    The construction of google-research/vdm (``t0 + arange(B)/B`` modulo 1).
    """
    func = "low_discrepancy_times"
    if isinstance(batch_size, bool):
        raise TypeError(f"{func}: batch_size must be a positive integer, got {batch_size!r}")
    try:
        b = operator.index(batch_size)
    except TypeError:
        raise TypeError(
            f"{func}: batch_size must be a positive integer, got {batch_size!r}"
        ) from None
    if b < 1:
        raise ValueError(f"{func}: batch_size must be a positive integer, got {b}")
    xp, u0 = _uniforms(func, "u0", u0)
    if tuple(u0.shape) not in ((), (1,)):
        raise ValueError(f"{func}: u0 must be 0-d or of shape (1,), got {tuple(u0.shape)}")
    i = xp.arange(b, dtype=u0.dtype, device=array_api_compat.device(u0))
    t = (u0 + i / float(b)) % 1.0
    return xp.where(t >= 1.0, xp.zeros_like(t), t)
