"""DDIM (Song et al., arXiv 2010.02502) with stochasticity η.

With ε̂ = (z_t − α_t x̂)/σ_t and c = −expm1(λ_t − λ_s):

    Var = η² c σ_s²
    z_s = α_s x̂ + σ_s √(1 − η² c) ε̂ + √Var · noise

η = 0 is the deterministic probability-flow discretisation; η = 1 equals the γ = 0 ancestral step.
``1 − η²c`` is evaluated as ``(1 − η²) + η² exp(λ_t − λ_s)`` (no cancellation).
"""

from __future__ import annotations

import functools

from diff_protocol import SamplerStep
from diff_protocol.checks import check_real

from ._common import check_clip, clip, no_state, prepare, require_noise


def ddim(eta: float = 0.0, clip_x: float | None = None) -> SamplerStep:
    """DDIM step; deterministic for ``eta = 0`` (order 1), stochastic otherwise.

    The step requires ``logsnr_s > logsnr_t`` and real floating ``z_t``/``x_hat`` of one shape;
    arguments are validated before the (cached) step is built.
    """
    eta = check_real("ddim", "eta", eta, lo=0.0, hi=1.0)
    return _ddim(eta, check_clip("ddim", clip_x))


@functools.cache
def _ddim(eta: float, clip_x: float | None) -> SamplerStep:
    stochastic = eta > 0.0

    def step(z_t, x_hat, logsnr_t, logsnr_s, noise, state=()):
        ctx = prepare("ddim", z_t, x_hat, logsnr_t, logsnr_s)
        xp, lt, ls = ctx.cxp, ctx.logsnr_t, ctx.logsnr_s
        x_hat = clip(ctx.xp, ctx.x_hat, clip_x)
        alpha_t, sigma_t = ctx.alpha_sigma(lt)
        alpha_s, sigma_s = ctx.alpha_sigma(ls)
        eps_hat = (ctx.z_t - alpha_t * x_hat) / sigma_t
        if not stochastic:
            # σ_s √(1 − 0) ε̂ = (σ_s/σ_t)(z_t − α_t x̂)
            z_s = alpha_s * x_hat + sigma_s * eps_hat
            return ctx.out(z_s), state
        require_noise("ddim", noise, z_t)
        keep = (1.0 - eta**2) + eta**2 * xp.exp(lt - ls)
        c = -xp.expm1(lt - ls)
        z_s = (
            alpha_s * x_hat
            + sigma_s * ctx.cast(xp.sqrt(keep)) * eps_hat
            + ctx.cast(eta * xp.sqrt(c)) * sigma_s * ctx.cast(noise)
        )
        return ctx.out(z_s), state

    return SamplerStep(
        name="ddim",
        init=no_state,
        step=step,
        stochastic=stochastic,
        requires_finite_start=False,
        order=1,
    )
