"""Classifier-free guidance (Ho & Salimans, arXiv 2207.12598) limited to an interval of noise
levels (Kynkäänniemi et al., arXiv 2404.07724; kynkaat/guidance-interval).

The guided output is ``out_u + w(λ)(out_c − out_u)`` in the denoiser's own output space (the same
x̂ results whether the network predicts ε, x or v, because the conversions are affine at fixed
``(z, λ)``), with ``w(λ) = scale`` for ``λ ∈ [λ_lo, λ_hi)`` and 1 elsewhere. Outside the interval
only the conditional network runs: Python loops branch on the host, JAX uses ``lax.cond`` so the
unconditional work is skipped when the whole batch shares λ (the sampling driver's case).
"""

from __future__ import annotations

import math
from typing import Any

import array_api_compat

from diff_protocol import check_denoiser, convert, expand_like
from diff_protocol.arrays import Array, as_float_array, is_lazy, namespace
from diff_protocol.sampler import check_grid

__all__ = [
    "Guided",
    "cfg_combine",
    "guidance_weight",
    "guided",
    "in_interval",
    "interval_from_sigma",
    "uncond_evaluations",
]


def _check_interval(func: str, interval: Any) -> tuple[float, float] | None:
    if interval is None:
        return None
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(
            f"{func}: interval must be None or a pair (logsnr_lo, logsnr_hi), got {interval!r}"
        ) from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise ValueError(f"{func}: interval must satisfy logsnr_lo < logsnr_hi, got ({lo}, {hi})")
    return lo, hi


def interval_from_sigma(sigma_lo: float, sigma_hi: float) -> tuple[float, float]:
    """Convert the paper's ``σ_e ∈ (σ_lo, σ_hi]`` to ``λ ∈ [−2 ln σ_hi, −2 ln σ_lo)``.

    EDM2-XXL's (0.19, 1.61] becomes [−0.952, 3.32).
    """
    for arg, v in (("sigma_lo", sigma_lo), ("sigma_hi", sigma_hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
            raise ValueError(f"interval_from_sigma: {arg} must be a number >= 0, got {v!r}")
    if not sigma_lo < sigma_hi:
        raise ValueError(
            f"interval_from_sigma: sigma_lo must be < sigma_hi, got {sigma_lo} >= {sigma_hi}"
        )
    lo = -2.0 * math.log(sigma_hi) if sigma_hi < math.inf else -math.inf
    hi = -2.0 * math.log(sigma_lo) if sigma_lo > 0 else math.inf
    return lo, hi


def in_interval(logsnr: Array, interval: tuple[float, float] | None) -> Array:
    """Boolean array: ``interval[0] <= logsnr < interval[1]`` (all True for ``interval=None``)."""
    xp = namespace(logsnr)
    interval = _check_interval("in_interval", interval)
    if interval is None:
        return xp.ones_like(logsnr, dtype=xp.bool)
    lo, hi = interval
    return (logsnr >= lo) & (logsnr < hi)


def guidance_weight(logsnr: Array, scale: float, interval: tuple[float, float] | None) -> Array:
    """``scale`` where ``logsnr`` lies in ``interval`` (everywhere for None), else 1."""
    xp = namespace(logsnr)
    inside = in_interval(logsnr, interval)
    return xp.where(inside, xp.full_like(logsnr, scale), xp.ones_like(logsnr))


def cfg_combine(out_c: Array, out_u: Array, weight: Array) -> Array:
    """``out_u + w (out_c − out_u)``; exactly ``out_c`` where ``w == 1``.

    ``weight`` is 0-d or a prefix-shaped array (per example), broadcast against the outputs.
    """
    xp = namespace(out_c, out_u)
    w = expand_like(as_float_array(xp, weight, out_c), out_c, func="cfg_combine", arg="weight")
    w = xp.astype(w, out_c.dtype)
    mixed = out_u + w * (out_c - out_u)
    return xp.where(w == 1, out_c, mixed)


def _call(denoiser: Any, z: Array, logsnr: Array, cond: Any) -> Array:
    return denoiser(z, logsnr) if cond is None else denoiser(z, logsnr, cond)


def _concat_cond(xp: Any, cond: Any, null_cond: Any) -> Any:
    """Concatenate the condition with the null condition along the batch axis."""
    if isinstance(cond, dict):
        if not isinstance(null_cond, dict) or set(null_cond) != set(cond):
            raise ValueError(
                "guided: null_cond must be a dict with the keys of cond, "
                f"got {type(null_cond).__name__}"
            )
        return {k: _concat_cond(xp, cond[k], null_cond[k]) for k in cond}
    null = _null_like(xp, cond, null_cond)
    return xp.concat([cond, null], axis=0)


def _null_like(xp: Any, cond: Array, null_cond: Any) -> Array:
    if isinstance(null_cond, (int, float)):
        return xp.full_like(cond, null_cond)
    if tuple(null_cond.shape) == tuple(cond.shape):
        return null_cond
    return xp.broadcast_to(null_cond, cond.shape)


def _null_only(xp: Any, cond: Any, null_cond: Any) -> Any:
    if isinstance(cond, dict):
        return {k: _null_only(xp, cond[k], null_cond[k]) for k in cond}
    return _null_like(xp, cond, null_cond)


class Guided:
    """A guided :class:`diff_protocol.Denoiser` (build it with :func:`guided`).

    ``uncond_calls`` counts unconditional evaluations made on eager backends (numpy, torch,
    eager JAX); it is the figure :func:`uncond_evaluations` predicts.
    """

    def __init__(self, denoiser, scale, null_cond, uncond, interval, batch):
        self.denoiser = denoiser
        self.scale = scale
        self.null_cond = null_cond
        self.uncond = uncond
        self.interval = interval
        self.batch = batch
        self.prediction = denoiser.prediction
        self.uncond_calls = 0

    def __repr__(self) -> str:
        return f"guided({self.denoiser!r}, scale={self.scale}, interval={self.interval})"

    def _cond_only(self, z: Array, logsnr: Array, cond: Any) -> Array:
        return _call(self.denoiser, z, logsnr, cond)

    def _both(self, z: Array, logsnr: Array, cond: Any, weight: Array) -> Array:
        xp = namespace(z)
        if not is_lazy(z):
            self.uncond_calls += 1
        if self.uncond is not None:
            out_c = _call(self.denoiser, z, logsnr, cond)
            out_u = _call(self.uncond, z, logsnr, None)
            if self.uncond.prediction != self.prediction:
                out_u = convert(out_u, z, logsnr, self.uncond.prediction, self.prediction)
        elif self.batch and not isinstance(cond, (list, tuple)):
            n = z.shape[0]
            zz = xp.concat([z, z], axis=0)
            ll = xp.concat([logsnr, logsnr], axis=0) if logsnr.ndim else logsnr
            out = _call(self.denoiser, zz, ll, _concat_cond(xp, cond, self.null_cond))
            out_c, out_u = out[:n, ...], out[n:, ...]
        else:
            out_c = _call(self.denoiser, z, logsnr, cond)
            out_u = _call(self.denoiser, z, logsnr, _null_only(xp, cond, self.null_cond))
        return cfg_combine(out_c, out_u, weight)

    def __call__(self, z: Array, logsnr: Array, cond: Any = None) -> Array:
        xp = namespace(z)
        if self.null_cond is not None and cond is None:
            raise ValueError("guided: cond must be given when guiding with null_cond, got None")
        if self.scale == 1.0:
            return self._cond_only(z, logsnr, cond)
        lam = as_float_array(xp, logsnr, z)
        weight = guidance_weight(lam, self.scale, self.interval)
        if self.interval is None:
            return self._both(z, lam, cond, weight)
        inside = in_interval(lam, self.interval)
        if array_api_compat.is_jax_array(z) and (is_lazy(z) or is_lazy(lam)):
            import jax

            return jax.lax.cond(
                xp.any(inside),
                lambda: self._both(z, lam, cond, weight),
                lambda: self._cond_only(z, lam, cond),
            )
        if bool(xp.any(inside)):
            return self._both(z, lam, cond, weight)
        return self._cond_only(z, lam, cond)


def guided(
    denoiser: Any,
    scale: float,
    *,
    null_cond: Any = None,
    uncond: Any = None,
    interval: tuple[float, float] | None = None,
    batch: bool = True,
) -> Guided:
    """Classifier-free guided denoiser, optionally only inside a logsnr ``interval``.

    Exactly one of ``null_cond`` (the same network with the null condition; a number, an array
    like ``cond`` or a dict of those) and ``uncond`` (a separate unconditional denoiser) is given.
    ``scale = 1`` returns the conditional output exactly and ``scale = 0`` the unconditional one.
    With ``batch=True`` the conditional and null-conditioned inputs run as one 2B batch.
    """
    check_denoiser("guided", denoiser)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"guided: scale must be a finite number, got {scale!r}")
    if (null_cond is None) == (uncond is None):
        raise ValueError(
            "guided: exactly one of null_cond and uncond must be given, got "
            + ("neither" if null_cond is None else "both")
        )
    if uncond is not None:
        check_denoiser("guided", uncond)
    return Guided(
        denoiser, float(scale), null_cond, uncond, _check_interval("guided", interval), batch
    )


def uncond_evaluations(
    grid: Any,
    final: str = "denoise",
    interval: tuple[float, float] | None = None,
    sampler: Any = None,
) -> int:
    """Static count of unconditional evaluations a guided run makes on ``grid``.

    Evaluations happen at ``logsnr[k]`` for k = 0..N−1 and, for predictor-corrector samplers, at
    ``logsnr[k+1]`` for every step taken whose end is finite; each one inside ``interval`` adds one
    unconditional evaluation.
    """
    grid = check_grid(grid, "uncond_evaluations")
    if final not in ("denoise", "step"):
        raise ValueError(f"uncond_evaluations: final must be 'denoise' or 'step', got {final!r}")
    interval = _check_interval("uncond_evaluations", interval)
    lam = [float(v) for v in grid.logsnr.tolist()]
    n = len(lam) - 1
    points = lam[:n]
    if sampler is not None and getattr(sampler, "corrector", None) is not None:
        last = n - 1 if final == "denoise" else n
        points += [lam[k + 1] for k in range(last) if math.isfinite(lam[k + 1])]
    if interval is None:
        return len(points)
    lo, hi = interval
    return sum(1 for v in points if lo <= v < hi)
