"""Ancestral sampling (DDPM; Ho et al., arXiv 2006.11239) in the VDM form (arXiv 2107.00630).

One step from t to s < t draws from the posterior ``q(z_s | z_t, x = x̂)``:

    μ = (α_t/α_s)(σ_s²/σ_t²) z_t + α_s c x̂,        c = −expm1(λ_t − λ_s)
    Var = exp(γ ln(c σ_t²) + (1 − γ) ln(c σ_s²))
    z_s = μ + √Var · noise

γ = 0 is the true posterior variance ("small", β̃ in DDPM), γ = 1 the "large" choice β;
intermediate γ interpolates in log space (improved DDPM, arXiv 2102.09672).
"""

from __future__ import annotations

import functools

from diff_protocol import SamplerStep
from diff_protocol.checks import check_real
from diff_protocol.vp import softplus

from ._common import check_clip, clip, no_state, prepare, require_noise


def ddpm(gamma: float = 0.0, clip_x: float | None = None) -> SamplerStep:
    """Ancestral DDPM step with variance interpolation ``gamma`` in [0, 1] (stochastic, order 1).

    The step requires ``logsnr_s > logsnr_t``, real floating ``z_t``/``x_hat``/``noise`` of one
    shape; arguments are validated before the (cached) step is built.
    """
    gamma = check_real("ddpm", "gamma", gamma, lo=0.0, hi=1.0)
    return _ddpm(gamma, check_clip("ddpm", clip_x))


@functools.cache
def _ddpm(gamma: float, clip_x: float | None) -> SamplerStep:

    def step(z_t, x_hat, logsnr_t, logsnr_s, noise, state=()):
        ctx = prepare("ddpm", z_t, x_hat, logsnr_t, logsnr_s)
        require_noise("ddpm", noise, z_t)
        xp, lt, ls = ctx.cxp, ctx.logsnr_t, ctx.logsnr_s
        x_hat = clip(ctx.xp, ctx.x_hat, clip_x)
        c = -xp.expm1(lt - ls)
        coef_z = xp.exp(0.5 * (softplus(-ls) - softplus(-lt)) + softplus(lt) - softplus(ls))
        alpha_s = xp.exp(-0.5 * softplus(-ls))
        mean = ctx.cast(coef_z) * ctx.z_t + ctx.cast(alpha_s * c) * x_hat
        # σ² = sigmoid(−λ) = exp(−softplus(λ)); build variances in log space.
        if gamma == 0.0:
            var = c * xp.exp(-softplus(ls))
        elif gamma == 1.0:
            var = c * xp.exp(-softplus(lt))
        else:
            log_c = xp.log(c)
            var = xp.exp(log_c - gamma * softplus(lt) - (1.0 - gamma) * softplus(ls))
        z_s = mean + ctx.cast(xp.sqrt(var)) * ctx.cast(noise)
        return ctx.out(z_s), state

    return SamplerStep(
        name="ddpm", init=no_state, step=step, stochastic=True, requires_finite_start=False, order=1
    )
