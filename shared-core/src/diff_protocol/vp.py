"""Variance-preserving (VP) diffusion maths, written once for every array-API backend.

Conventions (DESIGN.md): time ``t`` in [0, 1] with 0 = data; ``logsnr = λ = ln(α²/σ²)``;
``α² = sigmoid(λ)``, ``σ² = sigmoid(−λ)``, ``z = α x + σ ε``. The infinite ends are legal:
``alpha_sigma(+inf) = (1, 0)`` and ``alpha_sigma(-inf) = (0, 1)`` exactly, because α and σ are
formed as ``exp(−½ softplus(∓λ))`` and never as a ratio.

Prediction parameterisations (``"eps"``, ``"v"``, ``"x"``), with ``v = α ε − σ x`` (Salimans & Ho,
arXiv 2202.00512), convert into one another through the affine maps of :func:`to_x_eps`. The
posterior ``q(z_s | z_t, x)`` follows VDM (Kingma et al., arXiv 2107.00630, eq. 31-33).
"""

from __future__ import annotations

from typing import Any

from .arrays import Array, as_float_array, is_scalar, namespace, work_dtype
from .checks import (
    check_array,
    check_levels,
    check_logsnr_order,
    check_same_shape,
    is_array,
    values_all,
)
from .errors import arg_error

__all__ = [
    "PREDICTIONS",
    "alpha_sigma",
    "convert",
    "diffuse",
    "expand_like",
    "from_x_eps",
    "logsnr_from_sigma_edm",
    "posterior",
    "sigma_edm",
    "sigmoid",
    "softplus",
    "to_x_eps",
    "v_target",
]

PREDICTIONS = ("eps", "v", "x")


def check_prediction(func: str, prediction: Any) -> str:
    """Validate a prediction name and return it."""
    if not isinstance(prediction, str) or prediction not in PREDICTIONS:
        raise arg_error(func, "prediction", "one of 'eps', 'v', 'x'", repr(prediction))
    return prediction


def _check_real_input(func: str, arg: str, a: Any) -> None:
    """An elementwise function's input: a real number or a real (int or float) array. NaN in
    gives NaN at the same place out (elementwise maths; no value check here)."""
    if type(a) in (float, int):
        return
    dtype = str(getattr(a, "dtype", "")).lower()
    if not is_array(a) or "bool" in dtype or "complex" in dtype:
        raise arg_error(func, arg, "a real number or real array", a, TypeError)


def softplus(x: Array) -> Array:
    """``softplus(x) = max(x, 0) + log1p(exp(−|x|))``; exact at ±inf (``+inf`` and ``0``)."""
    _check_real_input("softplus", "x", x)
    xp = namespace(x)
    return xp.maximum(x, xp.zeros_like(x)) + xp.log1p(xp.exp(-xp.abs(x)))


def sigmoid(x: Array) -> Array:
    """``sigmoid(x) = exp(−softplus(−x))``; overflow-free and exact at ±inf."""
    _check_real_input("sigmoid", "x", x)
    xp = namespace(x)
    return xp.exp(-softplus(-x))


def alpha_sigma(logsnr: Array) -> tuple[Array, Array]:
    """``(α, σ)`` at log-SNR λ: ``α = exp(−½ softplus(−λ))``, ``σ = exp(−½ softplus(λ))``."""
    _check_real_input("alpha_sigma", "logsnr", logsnr)
    xp = namespace(logsnr)
    return xp.exp(-0.5 * softplus(-logsnr)), xp.exp(-0.5 * softplus(logsnr))


def sigma_edm(logsnr: Array) -> Array:
    """EDM's noise level ``σ_e = σ/α = exp(−λ/2)`` (Karras et al., arXiv 2206.00364)."""
    _check_real_input("sigma_edm", "logsnr", logsnr)
    xp = namespace(logsnr)
    return xp.exp(-0.5 * logsnr)


def logsnr_from_sigma_edm(sigma: Array) -> Array:
    """Inverse of :func:`sigma_edm`: ``λ = −2 ln σ_e``; ``sigma`` must be ``>= 0`` (0 gives
    ``+inf``; a negative or NaN value is a ``ValueError``, checked on concrete arrays)."""
    func = "logsnr_from_sigma_edm"
    _check_real_input(func, "sigma", sigma)
    if type(sigma) in (float, int):
        if not sigma >= 0:
            raise arg_error(func, "sigma", ">= 0 (EDM noise level)", repr(sigma))
    elif values_all(sigma, lambda xp, v: v >= 0) is False:
        raise arg_error(func, "sigma", ">= 0 everywhere (EDM noise level)", sigma)
    xp = namespace(sigma)
    return -2.0 * xp.log(sigma)


def expand_like(a: Array, z: Array, *, func: str = "expand_like", arg: str = "logsnr") -> Array:
    """Right-pad ``a`` with singleton axes so it broadcasts against ``z``.

    ``a`` must be 0-d or have a shape that is a prefix of ``z.shape`` (one value per example, or per
    frame/element for methods such as rolling diffusion).
    """
    if not is_array(z):
        raise arg_error(func, "z", "an array", z, TypeError)
    if isinstance(a, bool) or not (isinstance(a, (int, float)) or is_array(a)):
        raise arg_error(func, arg, "a number or an array", a, TypeError)
    xp = namespace(z)
    if isinstance(a, (int, float)):
        a = as_float_array(xp, a, z)
    a_shape, z_shape = tuple(a.shape), tuple(z.shape)
    if a_shape != z_shape[: len(a_shape)]:
        raise ValueError(f"{func}: {arg} shape {a_shape} must be a prefix of z shape {z_shape}")
    return xp.reshape(a, a_shape + (1,) * (len(z_shape) - len(a_shape)))


def _coefficients(logsnr: Array, z: Array, func: str) -> tuple[Array, Array, Any]:
    """α and σ as arrays broadcastable against z, in z's working dtype.

    A builtin-float logsnr (one level for the whole batch, as sampling loops have) gives Python
    float coefficients computed in double precision on the host.
    """
    check_levels(func, "logsnr", logsnr)
    xp = namespace(z)
    if is_scalar(logsnr):
        alpha, sigma = alpha_sigma(float(logsnr))
        return alpha, sigma, work_dtype(xp, z)
    lam = as_float_array(xp, logsnr, z)
    lam = expand_like(lam, z, func=func)
    alpha, sigma = alpha_sigma(lam)
    dt = work_dtype(xp, z)
    return xp.astype(alpha, dt), xp.astype(sigma, dt), dt


def _cast_in(xp: Any, a: Array, dt: Any) -> Array:
    return a if a.dtype == dt else xp.astype(a, dt)


def _check_pair(func: str, a_arg: str, a: Array, b_arg: str, b: Array) -> None:
    """Two real floating arrays of one shape (the second is compared with the first)."""
    check_array(func, a_arg, a)
    check_array(func, b_arg, b)
    check_same_shape(func, b_arg, b, a_arg, a)


def diffuse(x: Array, eps: Array, logsnr: Array) -> Array:
    """``z = α x + σ ε`` (the forward process at log-SNR λ).

    ``x`` and ``eps`` are real floating arrays of one shape (no broadcasting; integer data is
    refused, convert it explicitly); ``logsnr`` as in :func:`expand_like`, not NaN.
    """
    _check_pair("diffuse", "x", x, "eps", eps)
    xp = namespace(x, eps)
    alpha, sigma, dt = _coefficients(logsnr, x, "diffuse")
    z = alpha * _cast_in(xp, x, dt) + sigma * _cast_in(xp, eps, dt)
    return xp.astype(z, x.dtype)


def v_target(x: Array, eps: Array, logsnr: Array) -> Array:
    """``v = α ε − σ x`` (Salimans & Ho, arXiv 2202.00512); inputs as in :func:`diffuse`."""
    _check_pair("v_target", "x", x, "eps", eps)
    xp = namespace(x, eps)
    alpha, sigma, dt = _coefficients(logsnr, x, "v_target")
    v = alpha * _cast_in(xp, eps, dt) - sigma * _cast_in(xp, x, dt)
    return xp.astype(v, x.dtype)


def to_x_eps(output: Array, z: Array, logsnr: Array, prediction: str) -> tuple[Array, Array]:
    """Convert a network output to ``(x̂, ε̂)``.

    eps: ``x̂ = (z − σ ε̂)/α``; x: ``ε̂ = (z − α x̂)/σ``; v: ``x̂ = α z − σ v̂``, ``ε̂ = σ z + α v̂``.
    Results take z's dtype; bf16/f16 inputs are computed in float32 and cast back.
    """
    check_prediction("to_x_eps", prediction)
    _check_pair("to_x_eps", "z", z, "output", output)
    xp = namespace(output, z)
    alpha, sigma, dt = _coefficients(logsnr, z, "to_x_eps")
    out, zz = _cast_in(xp, output, dt), _cast_in(xp, z, dt)
    if prediction == "eps":
        x_hat, eps_hat = (zz - sigma * out) / alpha, out
    elif prediction == "x":
        x_hat, eps_hat = out, (zz - alpha * out) / sigma
    else:
        x_hat, eps_hat = alpha * zz - sigma * out, sigma * zz + alpha * out
    return xp.astype(x_hat, z.dtype), xp.astype(eps_hat, z.dtype)


def from_x_eps(x_hat: Array, eps_hat: Array, z: Array, logsnr: Array, prediction: str) -> Array:
    """Inverse of :func:`to_x_eps`: the output a ``prediction``-type network would give."""
    check_prediction("from_x_eps", prediction)
    _check_pair("from_x_eps", "x_hat", x_hat, "eps_hat", eps_hat)
    check_array("from_x_eps", "z", z)
    check_same_shape("from_x_eps", "z", z, "x_hat", x_hat)
    check_levels("from_x_eps", "logsnr", logsnr)
    if prediction == "eps":
        return eps_hat
    if prediction == "x":
        return x_hat
    return v_target(x_hat, eps_hat, logsnr)


def convert(output: Array, z: Array, logsnr: Array, src: str, dst: str) -> Array:
    """Re-express an output of prediction type ``src`` as type ``dst`` at ``(z, logsnr)``."""
    check_prediction("convert", src)
    check_prediction("convert", dst)
    _check_pair("convert", "z", z, "output", output)
    check_levels("convert", "logsnr", logsnr)
    if src == dst:
        return output
    x_hat, eps_hat = to_x_eps(output, z, logsnr, src)
    return from_x_eps(x_hat, eps_hat, z, logsnr, dst)


def posterior(z_t: Array, x: Array, logsnr_t: Array, logsnr_s: Array) -> tuple[Array, Array]:
    """Mean and variance of ``q(z_s | z_t, x)`` for ``λ_s > λ_t`` (VDM, arXiv 2107.00630).

    ``mean = (α_t/α_s)(σ_s²/σ_t²) z_t + α_s c x`` and ``var = c σ_s²`` with
    ``c = −expm1(λ_t − λ_s)``. The first coefficient is evaluated as
    ``exp(½(softplus(−λ_s) − softplus(−λ_t)) + softplus(λ_t) − softplus(λ_s))`` so that both
    infinite ends are exact: at ``λ_s = +inf`` the result is ``(x, 0)``.

    ``z_t`` and ``x`` are real floating arrays of one shape; ``logsnr_s > logsnr_t`` is required
    (checked on concrete values; reversed levels would give a negative variance).
    """
    _check_pair("posterior", "z_t", z_t, "x", x)
    check_levels("posterior", "logsnr_t", logsnr_t)
    check_levels("posterior", "logsnr_s", logsnr_s)
    check_logsnr_order("posterior", logsnr_t, logsnr_s)
    xp = namespace(z_t, x)
    dt = work_dtype(xp, z_t)
    lt = expand_like(as_float_array(xp, logsnr_t, z_t), z_t, func="posterior", arg="logsnr_t")
    ls = expand_like(as_float_array(xp, logsnr_s, z_t), z_t, func="posterior", arg="logsnr_s")
    c = -xp.expm1(lt - ls)
    log_coef = 0.5 * (softplus(-ls) - softplus(-lt)) + softplus(lt) - softplus(ls)
    coef_z = xp.exp(log_coef)
    alpha_s, sigma_s = alpha_sigma(ls)
    coef_x = alpha_s * c
    var = c * sigma_s**2
    mean = xp.astype(coef_z, dt) * _cast_in(xp, z_t, dt) + xp.astype(coef_x, dt) * _cast_in(
        xp, x, dt
    )
    var = xp.broadcast_to(xp.astype(var, dt), mean.shape)
    return xp.astype(mean, z_t.dtype), xp.astype(var, z_t.dtype)
