"""Shared per-step preparation for the samplers: namespace, working dtype and VP coefficients.

Coefficients are computed in the dtype of the grid's logsnr (float64 on numpy/torch grids) and
cast to the state's working dtype (float32 for bfloat16/float16 states), so a low-precision state
is upcast for the step and the result cast back once. When both logsnr values are builtin floats
(the Python-loop drivers pass them so), the coefficients are Python floats computed on the host in
double precision (``cxp`` is :data:`diff_protocol.arrays.scalar_math`) and each enters the state
arithmetic as one scalar multiplication.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from diff_protocol.arrays import as_float_array, is_scalar, namespace, scalar_math, work_dtype
from diff_protocol.checks import (
    check_array,
    check_levels,
    check_logsnr_order,
    check_real,
    check_same_shape,
)
from diff_protocol.vp import expand_like, softplus


class StepContext(NamedTuple):
    xp: Any  # namespace of the state
    cxp: Any  # namespace of the coefficients: xp, or scalar_math for builtin-float logsnr
    dtype: Any  # working dtype of the step
    out_dtype: Any  # dtype of the returned state
    z_t: Any
    x_hat: Any
    logsnr_t: Any  # expanded against z (coefficient dtype), or a builtin float
    logsnr_s: Any

    def cast(self, a: Any) -> Any:
        if is_scalar(a):
            return a
        return a if a.dtype == self.dtype else self.xp.astype(a, self.dtype)

    def out(self, a: Any) -> Any:
        return a if a.dtype == self.out_dtype else self.xp.astype(a, self.out_dtype)

    def alpha_sigma(self, logsnr: Any) -> tuple[Any, Any]:
        """(α, σ) at ``logsnr`` in the working dtype."""
        xp = self.cxp
        return (
            self.cast(xp.exp(-0.5 * softplus(-logsnr))),
            self.cast(xp.exp(-0.5 * softplus(logsnr))),
        )

    def sigma_ratio(self) -> Any:
        """σ_s/σ_t = exp(½(softplus(λ_t) − softplus(λ_s))), exact 0 at λ_s = +inf."""
        xp = self.cxp
        return self.cast(xp.exp(0.5 * (softplus(self.logsnr_t) - softplus(self.logsnr_s))))

    def eps_hat(self) -> Any:
        """ε̂ = (z_t − α_t x̂)/σ_t."""
        alpha_t, sigma_t = self.alpha_sigma(self.logsnr_t)
        return (self.z_t - alpha_t * self.x_hat) / sigma_t


def prepare(
    func: str,
    z_t: Any,
    x_hat: Any,
    logsnr_t: Any,
    logsnr_s: Any,
    *,
    x_arg: str = "x_hat",
    ordered: bool = True,
) -> StepContext:
    """Validate and broadcast a step's inputs.

    ``z_t`` and ``x_hat`` (named ``x_arg`` in messages) must be real floating arrays of one shape;
    with ``ordered`` the levels must satisfy ``logsnr_s > logsnr_t`` (checked on host floats and
    concrete arrays, skipped for tracers). Host-float levels cost two float comparisons.
    """
    check_array(func, "z_t", z_t)
    check_array(func, x_arg, x_hat)
    if tuple(x_hat.shape) != tuple(z_t.shape):
        raise ValueError(
            f"{func}: {x_arg} shape {tuple(x_hat.shape)} must equal z_t shape {tuple(z_t.shape)}"
        )
    if type(logsnr_t) is not float or type(logsnr_s) is not float:
        check_levels(func, "logsnr_t", logsnr_t)
        check_levels(func, "logsnr_s", logsnr_s)
    if ordered:
        check_logsnr_order(func, logsnr_t, logsnr_s)
    elif type(logsnr_t) is float and (logsnr_t != logsnr_t or logsnr_s != logsnr_s):
        check_levels(func, "logsnr_t", logsnr_t)
        check_levels(func, "logsnr_s", logsnr_s)
    xp = namespace(z_t, x_hat)
    dt = work_dtype(xp, z_t)
    if is_scalar(logsnr_t) and is_scalar(logsnr_s):
        ctx = StepContext(
            xp, scalar_math, dt, z_t.dtype, z_t, x_hat, float(logsnr_t), float(logsnr_s)
        )
        return ctx._replace(z_t=ctx.cast(z_t), x_hat=ctx.cast(x_hat))
    lt = expand_like(as_float_array(xp, logsnr_t, z_t), z_t, func=func, arg="logsnr_t")
    ls = expand_like(as_float_array(xp, logsnr_s, z_t), z_t, func=func, arg="logsnr_s")
    ctx = StepContext(xp, xp, dt, z_t.dtype, z_t, x_hat, lt, ls)
    return ctx._replace(z_t=ctx.cast(z_t), x_hat=ctx.cast(x_hat))


def require_noise(func: str, noise: Any, z_t: Any) -> None:
    """A stochastic step's draw: a real floating array of z_t's shape (no broadcasting)."""
    if noise is None:
        raise ValueError(
            f"{func}: noise must be an array shaped like z_t for a stochastic step, got None"
        )
    check_array(func, "noise", noise)
    check_same_shape(func, "noise", noise, "z_t", z_t)


def clip(xp: Any, x_hat: Any, clip_x: float | None) -> Any:
    if clip_x is None:
        return x_hat
    return xp.clip(x_hat, -clip_x, clip_x)


def check_clip(func: str, clip_x: Any, arg: str = "clip_x") -> float | None:
    """None or a positive finite number (a Python float is returned, so factories cache on it)."""
    if clip_x is None:
        return None
    return check_real(
        func, arg, clip_x, lo=0.0, lo_open=True, expected="None or a positive number (finite)"
    )


def no_state(z: Any) -> tuple:
    """``init`` of samplers that carry no state."""
    return ()
