"""The weighted diffusion loss and the inputs a trainer needs for it.

For a weighting ``W`` (see :mod:`diff_core.weighting`) the per-example loss is

    ½ W ‖ε − ε̂‖²  =  ½ W e^λ ‖x − x̂‖²  =  ½ W sigmoid(λ) ‖v − v̂‖²,

equal in exact arithmetic because at fixed ``(z, λ)`` the conversions between predictions are
affine with ``x − x̂ = −e^{−λ/2}(ε − ε̂)`` and ``v − v̂ = (ε − ε̂)/α`` (Kingma & Gao,
arXiv 2303.00848, appendix; Salimans & Ho, arXiv 2202.00512). ``space`` picks where the squared
error is formed; the factor is computed overflow-free (e.g. ``(−λ') e^b sigmoid(λ − b)`` for the
sigmoid weighting in x-space).

``reduce="mean"`` averages over the non-batch axes (so the number does not scale with resolution);
``reduce="sum"`` sums them as the papers write it.
"""

from __future__ import annotations

from typing import Any

import array_api_compat

from diff_protocol import (
    alpha_sigma,
    check_prediction,
    convert,
    diffuse,
    expand_like,
    softplus,
    v_target,
)
from diff_protocol.arrays import is_low_precision
from diff_protocol.checks import check_array, check_levels, check_same_shape, values_all

from .weighting import SPACES, Weighting

__all__ = ["diffusion_loss", "training_inputs"]

Array = Any


def _shape_error(func: str, arg: str, shape: tuple[int, ...], ref_shape: Any) -> Exception:
    return ValueError(f"{func}: {arg} shape {shape} must equal x shape {tuple(ref_shape)}")


def _error_map(xp: Any, lam: Array, src: str, dst: str) -> Array:
    """``c`` with ``(dst error) = c · (src error)`` at fixed ``(z, λ)``.

    From ``x̂ = (z − σ ε̂)/α``, ``ε̂ = (z − α x̂)/σ``, ``x̂ = α z − σ v̂``, ``ε̂ = σ z + α v̂``:
    ``δx = −(σ/α) δε``, ``δv = δε/α``, ``δε = −(α/σ) δx``, ``δv = −δx/σ``, ``δx = −σ δv``,
    ``δε = α δv``; each ratio is one exponential, so nothing cancels or overflows early.
    """
    if (src, dst) == ("eps", "x"):
        return -xp.exp(-0.5 * lam)
    if (src, dst) == ("eps", "v"):
        return xp.exp(0.5 * softplus(-lam))
    if (src, dst) == ("x", "eps"):
        return -xp.exp(0.5 * lam)
    if (src, dst) == ("x", "v"):
        return -xp.exp(0.5 * softplus(lam))
    alpha, sigma = alpha_sigma(lam)
    return -sigma if dst == "x" else alpha


def diffusion_loss(
    output: Array,
    x: Array,
    eps: Array,
    logsnr: Array | float,
    dlogsnr_dt: Array | float | None = None,
    *,
    prediction: str,
    weighting: Weighting,
    space: str | None = None,
    reduce: str = "mean",
    z: Array | None = None,
) -> Array:
    """Per-example weighted diffusion loss ``½ · factor · ‖target − prediction‖²``.

    Args:
        output: the network output, of prediction type ``prediction``, shaped like ``x``.
        x: clean data ``(B, ...)``.
        eps: the noise used to form ``z = α x + σ ε``.
        logsnr: λ, 0-d or a prefix of ``x.shape`` (e.g. ``(B,)``, or ``(B, F)`` per frame).
        dlogsnr_dt: dλ/dt at the sampled times; ``None`` only for weightings that do not use it.
        prediction: ``"eps"``, ``"v"`` or ``"x"``.
        weighting: a :class:`~diff_core.weighting.Weighting`.
        space: where the squared error is formed (default: the prediction's own space).
        reduce: ``"mean"`` (per dimension, default) or ``"sum"`` over the non-batch axes.
        z: the noisy input. When given and ``space`` differs from ``prediction``, the output is
            converted through it (``diff_protocol.convert``), as a network pipeline would;
            otherwise the own-space error is mapped to ``space`` by its exact factor
            (e.g. ``x − x̂ = e^{−λ/2}(ε̂ − ε)``), which is more accurate in float32.

    Returns:
        The loss per example, shape ``(B,)``, in the working dtype of ``output`` (float32 for
        bfloat16/float16).
    """
    func = "diffusion_loss"
    check_prediction(func, prediction)
    if not isinstance(weighting, Weighting):
        raise TypeError(f"{func}: weighting must be a diff_core Weighting, got {weighting!r}")
    space = prediction if space is None else space
    if space not in SPACES:
        raise ValueError(f"{func}: space must be one of 'eps', 'x', 'v', got {space!r}")
    if reduce not in ("mean", "sum"):
        raise ValueError(f"{func}: reduce must be one of 'mean', 'sum', got {reduce!r}")
    if dlogsnr_dt is None and weighting.uses_dlogsnr_dt:
        raise ValueError(
            f"{func}: dlogsnr_dt must be an array for weighting {weighting.name!r} "
            "(it uses dλ/dt), got None"
        )
    check_array(func, "x", x, min_ndim=1)
    for arg, a in (("output", output), ("eps", eps), ("z", z)):
        if a is not None:
            check_array(func, arg, a)
            check_same_shape(func, arg, a, "x", x)
    check_levels(func, "logsnr", logsnr)
    if dlogsnr_dt is not None:
        _check_slope(func, dlogsnr_dt)
    arrays = [a for a in (output, x, eps, logsnr, dlogsnr_dt, z) if not _is_scalar(a)]
    xp = array_api_compat.array_namespace(*arrays)
    shape = tuple(x.shape)

    dt = xp.float32 if is_low_precision(output.dtype) else output.dtype
    dev = array_api_compat.device(output)
    lam = _coef(xp, logsnr, dt, dev)
    slope = None if dlogsnr_dt is None else _coef(xp, dlogsnr_dt, dt, dev)

    if space != prediction and z is not None:
        # through the caller's z, as a network pipeline converts its output
        pred = convert(output, z, lam, prediction, space)
        target = _target(x, eps, lam, space)
        err = (_cast(xp, target, dt) - _cast(xp, pred, dt)) ** 2
    else:
        err = _cast(xp, _target(x, eps, lam, prediction), dt) - _cast(xp, output, dt)
        if space != prediction:
            # the error mapped exactly (z = α x + σ ε): no cancellation through a rounded z
            coef = _cast(xp, _error_map(xp, lam, prediction, space), dt)
            err = expand_like(coef, err, func=func, arg="logsnr") * err
        err = err**2

    factor = _cast(xp, weighting.factor(lam, slope, space), dt)
    factor = expand_like(factor, err, func=func, arg="logsnr")
    weighted = factor * err
    axes = tuple(range(1, len(shape)))
    if axes:
        weighted = xp.mean(weighted, axis=axes) if reduce == "mean" else xp.sum(weighted, axis=axes)
    return 0.5 * weighted


def _check_slope(func: str, slope: Any) -> None:
    """dλ/dt of a schedule: a real number or array, strictly negative (λ decreases in t); -inf is
    legal at the ends of untruncated schedules. Value checks skip tracers."""
    check_levels(func, "dlogsnr_dt", slope)
    if isinstance(slope, (int, float)):
        ok = slope < 0
    else:
        ok = values_all(slope, lambda xp, v: v < 0) is not False  # None: a tracer, unchecked
    if not ok:
        raise ValueError(
            f"{func}: dlogsnr_dt must be < 0 everywhere (logsnr decreases in t; pass "
            f"schedule.dlogsnr_dt(t)), got {slope!r}"
            if isinstance(slope, (int, float))
            else f"{func}: dlogsnr_dt must be < 0 everywhere (logsnr decreases in t; pass "
            "schedule.dlogsnr_dt(t)), got values >= 0"
        )


def training_inputs(schedule: Any, x: Array, t: Array, eps: Array) -> tuple[Array, Array, Array]:
    """``(z, logsnr, dlogsnr_dt)`` at times ``t``: ``λ = schedule.logsnr(t)``, ``z = α x + σ ε``.

    ``t`` is 0-d or a prefix of ``x.shape`` (usually ``(B,)`` from
    :mod:`diff_core.timesampling`); λ and dλ/dt keep the dtype of ``t``, ``z`` that of ``x``.
    """
    func = "training_inputs"
    for attr in ("logsnr", "dlogsnr_dt"):
        if not callable(getattr(schedule, attr, None)):
            raise TypeError(f"{func}: schedule must implement {attr}(t), got {schedule!r}")
    check_array(func, "x", x)
    check_array(func, "eps", eps)
    if tuple(eps.shape) != tuple(x.shape):
        raise _shape_error(func, "eps", tuple(eps.shape), x.shape)
    t_shape = tuple(getattr(t, "shape", ()))
    if t_shape != tuple(x.shape)[: len(t_shape)]:
        raise ValueError(f"{func}: t shape {t_shape} must be a prefix of x shape {tuple(x.shape)}")
    logsnr = schedule.logsnr(t)
    return diffuse(x, eps, logsnr), logsnr, schedule.dlogsnr_dt(t)


def _target(x: Array, eps: Array, lam: Array, space: str) -> Array:
    return eps if space == "eps" else x if space == "x" else v_target(x, eps, lam)


def _is_scalar(a: Any) -> bool:
    return a is None or isinstance(a, (int, float))


def _cast(xp: Any, a: Array, dt: Any) -> Array:
    return a if a.dtype == dt else xp.astype(a, dt)


def _coef(xp: Any, a: Array | float, dt: Any, dev: Any) -> Array:
    """λ or λ' as an array of at least the working precision (float64 arrays stay float64)."""
    if isinstance(a, (int, float)):
        return xp.asarray(float(a), dtype=dt, device=dev)
    if is_low_precision(a.dtype):
        return xp.astype(a, xp.float32)
    if not xp.isdtype(a.dtype, "real floating"):
        return xp.astype(a, dt)
    return a
