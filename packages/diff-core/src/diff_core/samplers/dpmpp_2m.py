"""DPM-Solver++(2M): multistep second-order solver in data prediction (Lu et al., arXiv 2211.01095).

Their half-logSNR is ``λ/2`` in our convention, so with ``h = (λ_s − λ_t)/2``:

    first step (or after an infinite step):  D = x̂
    otherwise:  r = h_prev/h,   D = (1 + 1/(2r)) x̂ − x̂_prev/(2r)
    z_s = (σ_s/σ_t) z_t − α_s expm1(−h) D

The state ``(x_hat_prev, h_prev, has_prev)`` is made of arrays (zeros, 0-d 0.0, 0-d False at
``init``) so it is a fixed-shape ``lax.scan`` carry. Starting from ``λ_t = −inf`` gives
``h = ∞`` and hence ``r = ∞``: first order, as the formula's limit says; a step to
``λ_s = +inf`` also falls back to ``D = x̂`` (the 2M extrapolation has no finite limit there).
"""

from __future__ import annotations

import functools

from diff_protocol import SamplerStep
from diff_protocol.arrays import as_float_array, namespace, work_dtype
from diff_protocol.vp import expand_like

from ._common import prepare


def _init(z):
    xp = namespace(z)
    # 0-d zero on z's device without naming the device (works on tracers too).
    h0 = xp.astype(xp.zeros_like(xp.reshape(z, (-1,))[0]), work_dtype(xp, z))
    return (xp.zeros_like(z), h0, h0 > 1.0)


@functools.cache
def dpmpp_2m() -> SamplerStep:
    """DPM-Solver++(2M) step (deterministic, order 2)."""

    def step(z_t, x_hat, logsnr_t, logsnr_s, noise=None, state=None):
        ctx = prepare("dpmpp_2m", z_t, x_hat, logsnr_t, logsnr_s)
        if state is None:
            state = _init(z_t)
        if not (isinstance(state, tuple) and len(state) == 3):
            raise TypeError(
                "dpmpp_2m: state must be the (x_hat_prev, h_prev, has_prev) tuple from init(z), "
                f"got {type(state).__name__}"
            )
        x_prev, h_prev, has_prev = state
        xp = ctx.xp
        lt_raw = as_float_array(xp, logsnr_t, z_t)
        ls_raw = as_float_array(xp, logsnr_s, z_t)
        h = xp.astype(0.5 * (ls_raw - lt_raw), h_prev.dtype)
        ok = xp.isfinite(h) & xp.isfinite(h_prev) & has_prev
        one = xp.ones_like(h)
        # k = 1/(2r) = h/(2 h_prev); 0 where first order applies (no inf·0 anywhere).
        k = xp.where(ok, xp.where(ok, h, one) / (2.0 * xp.where(ok, h_prev, one)), 0.0 * one)
        k = ctx.cast(expand_like(k, z_t, func="dpmpp_2m", arg="logsnr_t"))
        d = ctx.x_hat + k * (ctx.x_hat - ctx.cast(x_prev))
        h_full = 0.5 * (ctx.logsnr_s - ctx.logsnr_t)
        alpha_s, _ = ctx.alpha_sigma(ctx.logsnr_s)
        z_s = ctx.sigma_ratio() * ctx.z_t - alpha_s * ctx.cast(ctx.cxp.expm1(-h_full)) * d
        new_state = (ctx.out(ctx.x_hat), h, xp.ones_like(has_prev))
        return ctx.out(z_s), new_state

    return SamplerStep(
        name="dpmpp_2m",
        init=_init,
        step=step,
        stochastic=False,
        requires_finite_start=False,
        order=2,
    )
