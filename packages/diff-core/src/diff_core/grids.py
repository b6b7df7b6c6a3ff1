"""Time grids for sampling: ``TimeGrid(t, logsnr)``, float64 numpy, N + 1 points ending at t = 0.

The logsnr of each point comes from the grid's construction (uniform in t, uniform in λ, or EDM's
ρ-spaced σ), and the last point is ``(t = 0, λ = schedule.logsnr(0))``. Sampler steps read the next
logsnr from the grid and never re-derive it.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from diff_protocol import TimeGrid, check_grid

from .schedules import _karras_ab, check_rho

__all__ = ["karras", "uniform_logsnr", "uniform_t"]


def _check_n(func: str, n: Any) -> int:
    if isinstance(n, bool):
        raise ValueError(f"{func}: n must be a positive integer, got {n!r}")
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"{func}: n must be a positive integer, got {n!r}") from None
    if n < 1:
        raise ValueError(f"{func}: n must be a positive integer, got {n}")
    return n


def _check_schedule(func: str, schedule: Any) -> None:
    for attr in ("logsnr", "t_of"):
        if not callable(getattr(schedule, attr, None)):
            raise TypeError(
                f"{func}: schedule must implement logsnr(t) and t_of(logsnr), "
                f"got {type(schedule).__name__}"
            )


def _endpoints(schedule: Any) -> tuple[float, float]:
    """(λ(1), λ(0)) as Python floats."""
    ends = schedule.logsnr(np.array([1.0, 0.0], dtype=np.float64))
    return float(ends[0]), float(ends[1])


def _t_of(schedule: Any, logsnr: np.ndarray) -> np.ndarray:
    t = np.asarray(schedule.t_of(np.asarray(logsnr, dtype=np.float64)), dtype=np.float64)
    return np.clip(t, 0.0, 1.0)


def _finish(func: str, t: np.ndarray, logsnr: np.ndarray) -> TimeGrid:
    grid = TimeGrid(np.asarray(t, dtype=np.float64), np.asarray(logsnr, dtype=np.float64))
    return check_grid(grid, func)


def uniform_t(schedule: Any, n: int) -> TimeGrid:
    """``t_k = 1 − k/n`` (k = 0..n) with ``logsnr_k = schedule.logsnr(t_k)``."""
    _check_schedule("uniform_t", schedule)
    n = _check_n("uniform_t", n)
    t = 1.0 - np.arange(n + 1, dtype=np.float64) / n
    t[-1] = 0.0
    return _finish("uniform_t", t, schedule.logsnr(t))


def uniform_logsnr(
    schedule: Any, n: int, logsnr_min: float | None = None, logsnr_max: float | None = None
) -> TimeGrid:
    """Points uniformly spaced in logsnr.

    ``λ_lo = logsnr_min`` or the schedule's ``λ(1)``. Without ``logsnr_max`` the n + 1 points run
    from ``λ_lo`` to ``λ(0)`` (both must be finite). With ``logsnr_max`` there are n points from
    ``λ_lo`` to ``logsnr_max`` inclusive and the last step jumps to ``(t = 0, λ(0))`` (EDM style).
    """
    func = "uniform_logsnr"
    _check_schedule(func, schedule)
    n = _check_n(func, n)
    lam1, lam0 = _endpoints(schedule)
    lo = lam1 if logsnr_min is None else float(logsnr_min)
    if not math.isfinite(lo):
        raise ValueError(
            f"{func}: logsnr_min must be finite; the schedule's logsnr(1) is {lam1}, "
            "so set logsnr_min"
        )
    if logsnr_min is not None and not lam1 <= lo < lam0:
        raise ValueError(
            f"{func}: logsnr_min must lie in the schedule's range [{lam1:.6g}, {lam0:.6g}), "
            f"got {lo}"
        )
    if logsnr_max is None:
        if not math.isfinite(lam0):
            raise ValueError(
                f"{func}: logsnr_max must be set when the schedule's logsnr(0) is {lam0} "
                "(the points must end at a finite logsnr)"
            )
        lam = lo + (np.arange(n + 1, dtype=np.float64) / n) * (lam0 - lo)
        lam[-1] = lam0
        t = _t_of(schedule, lam)
        t[-1] = 0.0
        if logsnr_min is None:
            t[0] = min(t[0], 1.0)
        return _finish(func, t, lam)
    hi = float(logsnr_max)
    if not lo < hi < lam0 or not math.isfinite(hi):
        raise ValueError(
            f"{func}: logsnr_max must be finite and lie in ({lo:.6g}, {lam0:.6g}) "
            f"(above logsnr_min, below the schedule's logsnr(0)), got {logsnr_max}"
        )
    lam_pts = np.linspace(lo, hi, n) if n > 1 else np.array([lo])
    lam = np.concatenate([lam_pts, [lam0]])
    t = _t_of(schedule, lam)
    t[-1] = 0.0
    return _finish(func, t, lam)


def karras(
    schedule: Any, n: int, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0
) -> TimeGrid:
    """EDM's σ grid (Karras et al., arXiv 2206.00364, eq. 5; NVlabs/edm).

    ``σ_k = (σ_max^{1/ρ} + k/(n−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ`` for k = 0..n−1 (n = 1: σ_max),
    ``λ_k = −2 ln σ_k``, ``t_k = schedule.t_of(λ_k)``, then ``(t = 0, λ(0))``. The σ range must lie
    strictly inside the schedule's: ``σ_e(λ(0)) < sigma_min < sigma_max <= σ_e(λ(1))``.
    """
    func = "karras"
    _check_schedule(func, schedule)
    n = _check_n(func, n)
    for arg, v in (("sigma_min", sigma_min), ("sigma_max", sigma_max)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise ValueError(f"{func}: {arg} must be a positive finite number, got {v!r}")
    rho = check_rho(func, rho)
    if not sigma_min < sigma_max:
        raise ValueError(f"{func}: sigma_min must be < sigma_max, got {sigma_min} >= {sigma_max}")
    lam1, lam0 = _endpoints(schedule)
    s_noisy = math.exp(-0.5 * lam1) if lam1 > -math.inf else math.inf
    s_clean = math.exp(-0.5 * lam0) if lam0 < math.inf else 0.0
    srange = f"the schedule's sigma range is ({s_clean:.6g}, {s_noisy:.6g}]"
    if sigma_max > s_noisy * (1 + 1e-12):
        raise ValueError(f"{func}: sigma_max must be <= {s_noisy:.6g} ({srange}), got {sigma_max}")
    if not sigma_min > s_clean * (1 + 1e-12):
        raise ValueError(
            f"{func}: sigma_min must be > {s_clean:.6g} ({srange}; the last step goes to t = 0), "
            f"got {sigma_min}"
        )
    k = np.arange(n, dtype=np.float64)
    _karras_ab(func, float(sigma_min), float(sigma_max), rho)  # finite and distinct, or names rho
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    sig = (a + (k / (n - 1)) * (b - a)) ** rho if n > 1 else np.array([float(sigma_max)])
    lam = np.concatenate([-2.0 * np.log(sig), [lam0]])
    t = _t_of(schedule, lam)
    t[-1] = 0.0
    return _finish(func, t, lam)
