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
from diff_protocol.arrays import Array

from .samplers._common import prepare, require_noise

__all__ = ["ddim", "inv_ddim", "posterior_sample"]


def ddim(x_hat: Array, z_t: Array, logsnr_t: Any, logsnr_s: Any) -> Array:
    """DDIM (η = 0) map from ``z_t`` at λ_t to λ_s given the data estimate ``x_hat``.

    Defined for any pair of levels (``λ_s = λ_t`` is the identity and ``λ_s < λ_t`` the same
    deterministic map run towards noise, as DDIM inversion uses it); not NaN.
    """
    ctx = prepare("ddim", z_t, x_hat, logsnr_t, logsnr_s, ordered=False)
    alpha_t, _ = ctx.alpha_sigma(ctx.logsnr_t)
    alpha_s, _ = ctx.alpha_sigma(ctx.logsnr_s)
    z_s = alpha_s * ctx.x_hat + ctx.sigma_ratio() * (ctx.z_t - alpha_t * ctx.x_hat)
    return ctx.out(z_s)


def inv_ddim(z_s: Array, z_t: Array, logsnr_t: Any, logsnr_s: Any) -> Array:
    """The x with ``ddim(x, z_t, logsnr_t, logsnr_s) == z_s``; needs ``logsnr_s > logsnr_t``."""
    ctx = prepare("inv_ddim", z_t, z_s, logsnr_t, logsnr_s, x_arg="z_s")
    alpha_s, _ = ctx.alpha_sigma(ctx.logsnr_s)
    denom = -alpha_s * ctx.cast(ctx.cxp.expm1(0.5 * (ctx.logsnr_t - ctx.logsnr_s)))
    x = (ctx.x_hat - ctx.sigma_ratio() * ctx.z_t) / denom
    return ctx.out(x)


def posterior_sample(z_t: Array, x: Array, logsnr_t: Any, logsnr_s: Any, noise: Array) -> Array:
    """A draw of ``q(z_s | z_t, x)``: ``mean + √var · noise`` (:func:`diff_protocol.posterior`);
    needs ``logsnr_s > logsnr_t`` and ``noise`` of z_t's shape."""
    ctx = prepare("posterior_sample", z_t, x, logsnr_t, logsnr_s, x_arg="x")
    require_noise("posterior_sample", noise, z_t)
    mean, var = posterior(z_t, x, logsnr_t, logsnr_s)
    return ctx.out(ctx.cast(mean) + ctx.xp.sqrt(ctx.cast(var)) * ctx.cast(noise))
