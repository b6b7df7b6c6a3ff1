"""Deterministic and stochastic transitions between two noise levels.

Notation of Multistep Consistency Models (arXiv 2403.06807): for s < t (``λ_s > λ_t``)

    ddim(x̂, z_t)     = α_s x̂ + (σ_s/σ_t)(z_t − α_t x̂)
    inv_ddim(z_s, z_t) = (z_s − (σ_s/σ_t) z_t) / (−α_s expm1((λ_t − λ_s)/2))

``inv_ddim`` returns the x for which the DDIM step from z_t lands on z_s; diff-consistency builds
aDDIM and its losses on these two maps.
"""

from __future__ import annotations

from typing import Any

from diff_protocol import posterior
from diff_protocol.arrays import Array, is_lazy

from .samplers._common import prepare

__all__ = ["ddim", "inv_ddim", "posterior_sample"]


def ddim(x_hat: Array, z_t: Array, logsnr_t: Any, logsnr_s: Any) -> Array:
    """DDIM (η = 0) map from ``z_t`` at λ_t to λ_s given the data estimate ``x_hat``."""
    ctx = prepare("ddim", z_t, x_hat, logsnr_t, logsnr_s)
    alpha_t, _ = ctx.alpha_sigma(ctx.logsnr_t)
    alpha_s, _ = ctx.alpha_sigma(ctx.logsnr_s)
    z_s = alpha_s * ctx.x_hat + ctx.sigma_ratio() * (ctx.z_t - alpha_t * ctx.x_hat)
    return ctx.out(z_s)


def inv_ddim(z_s: Array, z_t: Array, logsnr_t: Any, logsnr_s: Any) -> Array:
    """The x with ``ddim(x, z_t, logsnr_t, logsnr_s) == z_s``; needs ``logsnr_s > logsnr_t``."""
    ctx = prepare("inv_ddim", z_t, z_s, logsnr_t, logsnr_s)
    xp = ctx.xp
    if not (is_lazy(ctx.logsnr_s) or is_lazy(ctx.logsnr_t)):
        ok = ctx.logsnr_s > ctx.logsnr_t
        if not (ok if isinstance(ok, bool) else bool(xp.all(ok))):
            raise ValueError(
                "inv_ddim: logsnr_s must be > logsnr_t (s is the less noisy time), "
                f"got logsnr_s={_show(logsnr_s)} and logsnr_t={_show(logsnr_t)}"
            )
    alpha_s, _ = ctx.alpha_sigma(ctx.logsnr_s)
    denom = -alpha_s * ctx.cast(ctx.cxp.expm1(0.5 * (ctx.logsnr_t - ctx.logsnr_s)))
    x = (ctx.x_hat - ctx.sigma_ratio() * ctx.z_t) / denom
    return ctx.out(x)


def _show(v: Any) -> str:
    try:
        return f"{float(v):.6g}"
    except (TypeError, ValueError):
        return f"array of shape {tuple(getattr(v, 'shape', ()))}"


def posterior_sample(z_t: Array, x: Array, logsnr_t: Any, logsnr_s: Any, noise: Array) -> Array:
    """A draw of ``q(z_s | z_t, x)``: ``mean + √var · noise`` (:func:`diff_protocol.posterior`)."""
    mean, var = posterior(z_t, x, logsnr_t, logsnr_s)
    ctx = prepare("posterior_sample", z_t, x, logsnr_t, logsnr_s)
    return ctx.out(ctx.cast(mean) + ctx.xp.sqrt(ctx.cast(var)) * ctx.cast(noise))
