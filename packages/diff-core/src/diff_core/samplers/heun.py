"""Heun's second-order method (EDM's deterministic sampler without churn; arXiv 2206.00364, Alg. 1).

The predictor is :func:`diff_core.samplers.euler.euler` in the same variable; the corrector receives
x̂' evaluated at ``(z_pred, λ_s)`` and applies the trapezoid rule:

    σ:  z_s = α_s (y_t + (σ_e,s − σ_e,t)(ε̂_t + ε̂'_s)/2),   ε̂'_s = (z_pred − α_s x̂')/σ_s
        (evaluated without cancellation, see :func:`trapezoid_sigma_update`)
    λ:  z_s = z_t + (λ_s − λ_t)(g(z_t, λ_t) + g(z_pred, λ_s))/2

Drivers skip the corrector when ``λ_s = +inf`` (as EDM does at σ = 0), so a sampling run with
``final="denoise"`` costs 2N − 1 evaluations.
"""

from __future__ import annotations

import functools

from diff_protocol import SamplerStep
from diff_protocol.checks import check_array, check_same_shape

from ._common import no_state, prepare
from .euler import check_variable, euler, euler_logsnr_update, flow_logsnr, sigma_ratio_e


def trapezoid_sigma_update(ctx, x_hat_pred):
    """EDM's trapezoid ``y_s = y_t + (σ_e,s − σ_e,t)(d_t + d_s)/2`` with
    ``d_t = (y_t − x̂_t)/σ_e,t``, ``d_s = (y_pred − x̂')/σ_e,s`` and the Euler predictor
    ``y_pred = r y_t + (1 − r) x̂_t``.

    Substituting gives ``y_s = r y_t + ½(1 − r)(1 − q) x̂_t + ½ q x̂'`` with ``r = σ_e,s/σ_e,t`` and
    ``q = 1/r − 1 = expm1((λ_s − λ_t)/2)``: the same number without cancelling O(σ_e,t) terms
    (which costs float32 three digits on a step out of logsnr = −15). Returns ``z_s = α_s y_s``.
    """
    xp = ctx.cxp
    alpha_t, _ = ctx.alpha_sigma(ctx.logsnr_t)
    alpha_s, _ = ctx.alpha_sigma(ctx.logsnr_s)
    r = sigma_ratio_e(ctx)
    q = ctx.cast(xp.expm1(0.5 * (ctx.logsnr_s - ctx.logsnr_t)))
    y_t = ctx.z_t / alpha_t
    y_s = r * y_t + (0.5 * (1.0 - r) * (1.0 - q)) * ctx.x_hat + (0.5 * q) * x_hat_pred
    return alpha_s * y_s


def heun(variable: str = "sigma") -> SamplerStep:
    """Heun predictor-corrector step of the probability-flow ODE (order 2); step and corrector
    require ``logsnr_s > logsnr_t``."""
    return _heun(check_variable("heun", variable))


@functools.cache
def _heun(variable: str) -> SamplerStep:
    predictor = euler(variable)

    def corrector(z_t, x_hat_t, z_pred, x_hat_pred, logsnr_t, logsnr_s, state=()):
        ctx = prepare("heun", z_t, x_hat_t, logsnr_t, logsnr_s, x_arg="x_hat_t")
        for arg, a in (("z_pred", z_pred), ("x_hat_pred", x_hat_pred)):
            check_array("heun", arg, a)
            check_same_shape("heun", arg, a, "z_t", z_t)
        z_pred, x_hat_pred = ctx.cast(z_pred), ctx.cast(x_hat_pred)
        if variable == "sigma":
            z_s = trapezoid_sigma_update(ctx, x_hat_pred)
        else:
            g_t = flow_logsnr(ctx, ctx.z_t, ctx.x_hat, ctx.logsnr_t)
            g_s = flow_logsnr(ctx, z_pred, x_hat_pred, ctx.logsnr_s)
            z_s = euler_logsnr_update(ctx, 0.5 * (g_t + g_s), x_hat_pred)
        return ctx.out(z_s), state

    return SamplerStep(
        name="heun",
        init=no_state,
        step=predictor.step,
        corrector=corrector,
        stochastic=False,
        requires_finite_start=True,
        order=2,
    )
