"""Euler's method on the probability-flow ODE, in EDM's σ variable or in logsnr.

``variable="sigma"`` (Karras et al., arXiv 2206.00364): state ``y = z/α``, independent variable
``σ_e = σ/α = e^{−λ/2}``, ``dy/dσ_e = ε̂ = (y − x̂)/σ_e``, so

    z_s = α_s (y_t + (σ_e,s − σ_e,t) ε̂),      ε̂ = (z_t − α_t x̂)/σ_t

evaluated as ``α_s (r y_t + (1 − r) x̂)`` with ``r = σ_e,s/σ_e,t`` (see :func:`euler_sigma_update`)

(algebraically DDIM with η = 0; written in EDM's form so the identity test is meaningful).

``variable="logsnr"``: VP state z, ``dz/dλ = g(z, λ) = −½ α σ v̂`` with ``v̂ = α ε̂ − σ x̂``, so
``z_s = z_t + (λ_s − λ_t) g_t``. A step to ``λ_s = +inf`` returns x̂ (the limit of the flow).
Neither variable can start at ``λ = −inf``.
"""

from __future__ import annotations

import functools
import math

from diff_protocol import SamplerStep
from diff_protocol.checks import check_choice

from ._common import StepContext, no_state, prepare

VARIABLES = ("sigma", "logsnr")


def check_variable(func: str, variable: str) -> str:
    return check_choice(func, "variable", variable, VARIABLES)


def sigma_e(ctx: StepContext, logsnr):
    """σ_e = exp(−λ/2) in the working dtype (0 at +inf)."""
    return ctx.cast(ctx.cxp.exp(-0.5 * logsnr))


def flow_logsnr(ctx: StepContext, z, x_hat, logsnr):
    """g(z, λ) = −½ α σ v̂ (the PF-ODE velocity in λ)."""
    alpha, sigma = ctx.alpha_sigma(logsnr)
    eps_hat = (z - alpha * x_hat) / sigma
    v_hat = alpha * eps_hat - sigma * x_hat
    return -0.5 * alpha * sigma * v_hat


def sigma_ratio_e(ctx: StepContext):
    """r = σ_e,s/σ_e,t = exp((λ_t − λ_s)/2) (0 at λ_s = +inf), in coefficient precision."""
    return ctx.cast(ctx.cxp.exp(0.5 * (ctx.logsnr_t - ctx.logsnr_s)))


def euler_sigma_update(ctx: StepContext, x_hat):
    """EDM's Euler step ``y_s = y_t + (σ_e,s − σ_e,t) d`` with ``d = (y_t − x̂)/σ_e,t``.

    Substituting d gives ``y_s = r y_t + (1 − r) x̂`` with ``r = σ_e,s/σ_e,t``; this is the same
    number without subtracting two O(σ_e,t) terms, which in float32 loses ~3 digits when a step
    leaves logsnr = −15 (σ_e = 1808). Returns ``z_s = α_s y_s``.
    """
    alpha_t, _ = ctx.alpha_sigma(ctx.logsnr_t)
    alpha_s, _ = ctx.alpha_sigma(ctx.logsnr_s)
    r = sigma_ratio_e(ctx)
    y_t = ctx.z_t / alpha_t
    return alpha_s * (r * y_t + (1.0 - r) * x_hat)


def euler_logsnr_update(ctx: StepContext, slope, x_hat):
    """z_s = z_t + (λ_s − λ_t) · slope, and x̂ where λ_s = +inf."""
    xp = ctx.xp
    if ctx.cxp is not xp:  # host-float logsnr: branch on the host
        if not math.isfinite(ctx.logsnr_s):
            return x_hat
        return ctx.z_t + (ctx.logsnr_s - ctx.logsnr_t) * slope
    finite = xp.isfinite(ctx.logsnr_s)
    dl = ctx.cast(xp.where(finite, ctx.logsnr_s - ctx.logsnr_t, xp.zeros_like(ctx.logsnr_s)))
    return xp.where(finite, ctx.z_t + dl * slope, x_hat)


def euler(variable: str = "sigma") -> SamplerStep:
    """Deterministic Euler step of the probability-flow ODE (order 1); the step requires
    ``logsnr_s > logsnr_t``."""
    return _euler(check_variable("euler", variable))


@functools.cache
def _euler(variable: str) -> SamplerStep:

    def step(z_t, x_hat, logsnr_t, logsnr_s, noise=None, state=()):
        ctx = prepare("euler", z_t, x_hat, logsnr_t, logsnr_s)
        if variable == "sigma":
            z_s = euler_sigma_update(ctx, ctx.x_hat)
        else:
            z_s = euler_logsnr_update(
                ctx, flow_logsnr(ctx, ctx.z_t, ctx.x_hat, ctx.logsnr_t), ctx.x_hat
            )
        return ctx.out(z_s), state

    return SamplerStep(
        name="euler",
        init=no_state,
        step=step,
        stochastic=False,
        requires_finite_start=True,
        order=1,
    )
