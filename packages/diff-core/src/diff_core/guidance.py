"""Classifier-free guidance (Ho & Salimans, arXiv 2207.12598) limited to an interval of noise
levels (Kynkäänniemi et al., arXiv 2404.07724; kynkaat/guidance-interval).

The guided output is ``out_u + w(λ)(out_c − out_u)`` in the denoiser's own output space (the same
x̂ results whether the network predicts ε, x or v, because the conversions are affine at fixed
``(z, λ)``), with ``w(λ) = scale`` for ``λ ∈ [λ_lo, λ_hi)`` and 1 elsewhere. Outside the interval
only the conditional network runs: Python loops branch on the host, JAX uses ``lax.cond`` so the
unconditional work is skipped when the whole batch shares λ (the sampling driver's case).

Conditions may be any pytree: the null condition is a number, an array, a dict, a pytree or a
callable ``null_cond(cond)``; batching the two halves uses ``cond.concat(null)`` when the
condition defines it (diff-pixel's ``Cond``, whose drop flags are None on the conditional side),
else a leafwise concatenation. Under JAX :class:`Guided` is a pytree whose children are the
wrapped networks, so the sampling driver traces their weights.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import array_api_compat

from diff_protocol import check_denoiser, convert, expand_like
from diff_protocol.arrays import Array, as_float_array, is_lazy, namespace
from diff_protocol.sampler import check_grid

__all__ = [
    "Guided",
    "cfg_combine",
    "guidance_weight",
    "guided",
    "in_interval",
    "interval_from_sigma",
    "register_jax_pytrees",
    "uncond_evaluations",
]


def _check_interval(func: str, interval: Any) -> tuple[float, float] | None:
    if interval is None:
        return None
    try:
        lo, hi = (float(v) for v in interval)
    except (TypeError, ValueError):
        raise ValueError(
            f"{func}: interval must be None or a pair (logsnr_lo, logsnr_hi), got {interval!r}"
        ) from None
    if math.isnan(lo) or math.isnan(hi) or not lo < hi:
        raise ValueError(f"{func}: interval must satisfy logsnr_lo < logsnr_hi, got ({lo}, {hi})")
    return lo, hi


def interval_from_sigma(sigma_lo: float, sigma_hi: float) -> tuple[float, float]:
    """Convert the paper's ``σ_e ∈ (σ_lo, σ_hi]`` to ``λ ∈ [−2 ln σ_hi, −2 ln σ_lo)``.

    EDM2-XXL's (0.19, 1.61] becomes [−0.952, 3.32).
    """
    for arg, v in (("sigma_lo", sigma_lo), ("sigma_hi", sigma_hi)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
            raise ValueError(f"interval_from_sigma: {arg} must be a number >= 0, got {v!r}")
    if not sigma_lo < sigma_hi:
        raise ValueError(
            f"interval_from_sigma: sigma_lo must be < sigma_hi, got {sigma_lo} >= {sigma_hi}"
        )
    lo = -2.0 * math.log(sigma_hi) if sigma_hi < math.inf else -math.inf
    hi = -2.0 * math.log(sigma_lo) if sigma_lo > 0 else math.inf
    return lo, hi


def in_interval(logsnr: Array, interval: tuple[float, float] | None) -> Array:
    """Boolean array: ``interval[0] <= logsnr < interval[1]`` (all True for ``interval=None``)."""
    xp = namespace(logsnr)
    interval = _check_interval("in_interval", interval)
    if interval is None:
        return xp.ones_like(logsnr, dtype=xp.bool)
    lo, hi = interval
    return (logsnr >= lo) & (logsnr < hi)


def guidance_weight(logsnr: Array, scale: float, interval: tuple[float, float] | None) -> Array:
    """``scale`` where ``logsnr`` lies in ``interval`` (everywhere for None), else 1."""
    xp = namespace(logsnr)
    inside = in_interval(logsnr, interval)
    return xp.where(inside, xp.full_like(logsnr, scale), xp.ones_like(logsnr))


def cfg_combine(out_c: Array, out_u: Array, weight: Array) -> Array:
    """``out_u + w (out_c − out_u)``; exactly ``out_c`` where ``w == 1``.

    ``weight`` is 0-d or a prefix-shaped array (per example), broadcast against the outputs.
    """
    xp = namespace(out_c, out_u)
    w = expand_like(as_float_array(xp, weight, out_c), out_c, func="cfg_combine", arg="weight")
    w = xp.astype(w, out_c.dtype)
    mixed = out_u + w * (out_c - out_u)
    return xp.where(w == 1, out_c, mixed)


def _call(denoiser: Any, z: Array, logsnr: Array, cond: Any) -> Array:
    return denoiser(z, logsnr) if cond is None else denoiser(z, logsnr, cond)


def _is_array(a: Any) -> bool:
    return array_api_compat.is_array_api_obj(a)


def _is_number(a: Any) -> bool:
    return isinstance(a, (int, float)) and not isinstance(a, bool)


def _is_null_fn(null_cond: Any) -> bool:
    """A callable ``null_cond(cond) -> null condition`` (e.g. diff-pixel's ``Cond.null``)."""
    return callable(null_cond) and not _is_array(null_cond)


def _null_like(xp: Any, cond: Array, null: Any) -> Array:
    """An array null condition shaped like the array ``cond``: a number fills it, an array is
    broadcast to it."""
    if _is_number(null):
        return xp.full_like(cond, null)
    if not _is_array(null):
        raise TypeError(
            "guided: null_cond must be a number or an array where cond is an array, got "
            f"{type(null).__name__}"
        )
    if tuple(null.shape) == tuple(cond.shape):
        return null
    return xp.broadcast_to(null, cond.shape)


def _is_jax_pytree(cond: Any, z: Array) -> bool:
    """True for a non-array condition of a JAX state: a pytree to treat leaf by leaf."""
    return array_api_compat.is_jax_array(z) and not _is_array(cond)


def _tree_concat(xp: Any, cond: Any, null: Any) -> Any:
    """Leafwise ``concat([cond, null], axis=0)`` of two pytrees of equal structure (a number
    ``null`` fills every array leaf)."""
    import jax

    leaves, treedef = jax.tree_util.tree_flatten(cond)
    if _is_number(null):
        null_leaves = [null] * len(leaves)
    else:
        null_leaves, null_def = jax.tree_util.tree_flatten(null)
        if null_def != treedef:
            raise ValueError(
                "guided: the null condition must have the tree structure of cond to be batched "
                f"with it, got {null_def} for cond {treedef}; give the condition a "
                "concat(other) method, or pass batch=False"
            )
    out = []
    for a, b in zip(leaves, null_leaves, strict=True):
        if _is_array(a):
            out.append(xp.concat([a, _null_like(xp, a, b)], axis=0))
        elif a is b or (type(a) is type(b) and a == b):
            out.append(a)  # a static leaf shared by both halves
        else:
            raise ValueError(
                "guided: non-array leaves of cond and of the null condition must be equal to be "
                f"batched, got {a!r} and {b!r}"
            )
    return jax.tree_util.tree_unflatten(treedef, out)


def _concat_cond(xp: Any, cond: Any, null: Any) -> Any:
    """The conditional and the null condition as one 2B batch along axis 0.

    ``cond.concat(null)`` when the condition defines it; arrays and dicts of them directly; other
    pytrees (under JAX) leaf by leaf with equal structure.
    """
    if _is_array(cond):
        return xp.concat([cond, _null_like(xp, cond, null)], axis=0)
    concat = getattr(cond, "concat", None)
    if callable(concat):
        return concat(null)
    if isinstance(cond, dict):
        if _is_number(null):
            return {k: _concat_cond(xp, v, null) for k, v in cond.items()}
        if not isinstance(null, dict) or set(null) != set(cond):
            raise ValueError(
                "guided: null_cond must be a number or a dict with the keys of cond "
                f"{sorted(cond)}, got "
                + (f"keys {sorted(null)}" if isinstance(null, dict) else type(null).__name__)
            )
        return {k: _concat_cond(xp, cond[k], null[k]) for k in cond}
    return _tree_concat(xp, cond, null)


def _can_batch(cond: Any, z: Array) -> bool:
    """Conditions :func:`_concat_cond` can batch: arrays, dicts, objects with ``concat``, and
    any pytree under JAX. Lists and tuples on numpy/torch are evaluated unbatched."""
    if _is_array(cond) or isinstance(cond, dict) or callable(getattr(cond, "concat", None)):
        return True
    return _is_jax_pytree(cond, z)


def _null_only(xp: Any, cond: Any, null: Any, z: Array) -> Any:
    """The null condition alone, shaped like ``cond`` (the unbatched path)."""
    if _is_array(cond):
        return _null_like(xp, cond, null)
    if isinstance(cond, dict) and (_is_number(null) or isinstance(null, dict)):
        return {k: _null_only(xp, cond[k], null if _is_number(null) else null[k], z) for k in cond}
    if _is_number(null) and _is_jax_pytree(cond, z):
        import jax

        return jax.tree_util.tree_map(
            lambda a: _null_like(xp, a, null) if _is_array(a) else a, cond
        )
    return null  # a full null condition (given, or returned by a callable null_cond)


class Guided:
    """A guided :class:`diff_protocol.Denoiser` (build it with :func:`guided`).

    ``uncond_calls`` counts unconditional evaluations made on eager backends (numpy, torch,
    eager JAX); it is the figure :func:`uncond_evaluations` predicts.

    Under JAX (after :func:`register_jax_pytrees`, which :func:`guided` and the sampling driver
    call) it is a pytree: the children are the wrapped ``denoiser``, ``uncond`` and an array or
    pytree ``null_cond``; ``scale``, ``interval``, ``batch``, ``prediction`` and a callable or
    numeric ``null_cond`` are static. So a guided pytree model has traced weights in the driver.
    """

    def __init__(self, denoiser, scale, null_cond, uncond, interval, batch):
        self.denoiser = denoiser
        self.scale = scale
        self.null_cond = null_cond
        self.uncond = uncond
        self.interval = interval
        self.batch = batch
        self.prediction = denoiser.prediction
        self.uncond_calls = 0

    def __repr__(self) -> str:
        return f"guided({self.denoiser!r}, scale={self.scale}, interval={self.interval})"

    def _null(self, cond: Any) -> Any:
        return self.null_cond(cond) if _is_null_fn(self.null_cond) else self.null_cond

    def _cond_only(self, z: Array, logsnr: Array, cond: Any) -> Array:
        return _call(self.denoiser, z, logsnr, cond)

    def _both(self, z: Array, logsnr: Array, cond: Any, weight: Array) -> Array:
        xp = namespace(z)
        if not is_lazy(z):
            self.uncond_calls += 1
        if self.uncond is not None:
            out_c = _call(self.denoiser, z, logsnr, cond)
            out_u = _call(self.uncond, z, logsnr, None)
            if self.uncond.prediction != self.prediction:
                out_u = convert(out_u, z, logsnr, self.uncond.prediction, self.prediction)
        elif self.batch and _can_batch(cond, z):
            n = z.shape[0]
            zz = xp.concat([z, z], axis=0)
            ll = xp.concat([logsnr, logsnr], axis=0) if logsnr.ndim else logsnr
            out = _call(self.denoiser, zz, ll, _concat_cond(xp, cond, self._null(cond)))
            out_c, out_u = out[:n, ...], out[n:, ...]
        else:
            out_c = _call(self.denoiser, z, logsnr, cond)
            out_u = _call(self.denoiser, z, logsnr, _null_only(xp, cond, self._null(cond), z))
        return cfg_combine(out_c, out_u, weight)

    def __call__(self, z: Array, logsnr: Array, cond: Any = None) -> Array:
        xp = namespace(z)
        if self.null_cond is not None and cond is None:
            raise ValueError("guided: cond must be given when guiding with null_cond, got None")
        if self.scale == 1.0:
            return self._cond_only(z, logsnr, cond)
        lam = as_float_array(xp, logsnr, z)
        weight = guidance_weight(lam, self.scale, self.interval)
        if self.interval is None:
            return self._both(z, lam, cond, weight)
        inside = in_interval(lam, self.interval)
        if array_api_compat.is_jax_array(z) and (is_lazy(z) or is_lazy(lam)):
            import jax

            return jax.lax.cond(
                xp.any(inside),
                lambda: self._both(z, lam, cond, weight),
                lambda: self._cond_only(z, lam, cond),
            )
        if bool(xp.any(inside)):
            return self._both(z, lam, cond, weight)
        return self._cond_only(z, lam, cond)


def _static_null(null_cond: Any) -> bool:
    """A callable or numeric ``null_cond`` is static in :class:`Guided`'s pytree."""
    return _is_null_fn(null_cond) or _is_number(null_cond)


def _guided_flatten_with_keys(g: Guided) -> tuple[tuple, tuple]:
    import jax

    key = jax.tree_util.GetAttrKey
    static_null = g.null_cond if _static_null(g.null_cond) else None
    child_null = None if static_null is not None else g.null_cond
    children = (
        (key("denoiser"), g.denoiser),
        (key("uncond"), g.uncond),
        (key("null_cond"), child_null),
    )
    return children, (g.scale, g.interval, g.batch, g.prediction, static_null)


def _guided_flatten(g: Guided) -> tuple[tuple, tuple]:
    children, aux = _guided_flatten_with_keys(g)
    return tuple(c for _, c in children), aux


def _guided_unflatten(aux: tuple, children: Any) -> Guided:
    scale, interval, batch, prediction, static_null = aux
    denoiser, uncond, child_null = children
    g = object.__new__(Guided)
    g.denoiser, g.uncond, g.scale, g.interval, g.batch = denoiser, uncond, scale, interval, batch
    g.null_cond = static_null if static_null is not None else child_null
    g.prediction = prediction
    g.uncond_calls = 0
    return g


_JAX_REGISTERED = False


def register_jax_pytrees() -> None:
    """Register diff-core's pytree classes with JAX (idempotent; imports JAX).

    Registers :class:`Guided` (children: the wrapped denoiser, ``uncond`` and an array/pytree
    ``null_cond``; static: ``scale``, ``interval``, ``batch``, ``prediction`` and a callable or
    numeric ``null_cond``) and diff-protocol's noise sources
    (:func:`diff_protocol.noise.register_jax_pytrees`). :func:`guided` calls it when JAX is
    already imported and the JAX sampling driver calls it before every run, so users need it only
    to pass a ``Guided`` built before JAX was imported through their own ``jax.jit``.
    """
    global _JAX_REGISTERED
    if _JAX_REGISTERED:
        return
    import jax

    from diff_protocol.noise import register_jax_pytrees as register_noise

    register_noise()
    jax.tree_util.register_pytree_with_keys(
        Guided, _guided_flatten_with_keys, _guided_unflatten, _guided_flatten
    )
    _JAX_REGISTERED = True


def guided(
    denoiser: Any,
    scale: float,
    *,
    null_cond: Any = None,
    uncond: Any = None,
    interval: tuple[float, float] | None = None,
    batch: bool = True,
) -> Guided:
    """Classifier-free guided denoiser (arXiv 2207.12598), optionally only inside a logsnr
    ``interval`` (arXiv 2404.07724).

    Exactly one of ``null_cond`` (the same network with the null condition) and ``uncond`` (a
    separate unconditional denoiser) is given. ``null_cond`` is a number (fills an array
    condition, or every array leaf of a pytree one), an array like ``cond``, a dict of those, a
    full null pytree, or a callable ``null_cond(cond) -> null condition`` (e.g. a method that
    returns the same condition with its drop flags set).
    ``scale = 1`` returns the conditional output exactly and ``scale = 0`` the unconditional one.

    With ``batch=True`` the conditional and null-conditioned inputs run as one 2B batch: the
    condition is concatenated with ``cond.concat(null)`` when it has such a method, else as an
    array or dict of arrays, else (under JAX) leaf by leaf along axis 0, which needs equal tree
    structures (a ``ValueError`` names both otherwise). ``batch=False`` evaluates the null
    condition in a separate call.
    """
    check_denoiser("guided", denoiser)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
        raise ValueError(f"guided: scale must be a finite number, got {scale!r}")
    if (null_cond is None) == (uncond is None):
        raise ValueError(
            "guided: exactly one of null_cond and uncond must be given, got "
            + ("neither" if null_cond is None else "both")
        )
    if uncond is not None:
        check_denoiser("guided", uncond)
    if not isinstance(batch, bool):
        raise TypeError(f"guided: batch must be a bool, got {type(batch).__name__}")
    if "jax" in sys.modules:
        register_jax_pytrees()
    return Guided(
        denoiser, float(scale), null_cond, uncond, _check_interval("guided", interval), batch
    )


def uncond_evaluations(
    grid: Any,
    final: str = "denoise",
    interval: tuple[float, float] | None = None,
    sampler: Any = None,
) -> int:
    """Static count of unconditional evaluations a guided run makes on ``grid``.

    Evaluations happen at ``logsnr[k]`` for k = 0..N−1 and, for predictor-corrector samplers, at
    ``logsnr[k+1]`` for every step taken whose end is finite; each one inside ``interval`` adds one
    unconditional evaluation.
    """
    grid = check_grid(grid, "uncond_evaluations")
    if final not in ("denoise", "step"):
        raise ValueError(f"uncond_evaluations: final must be 'denoise' or 'step', got {final!r}")
    interval = _check_interval("uncond_evaluations", interval)
    lam = [float(v) for v in grid.logsnr.tolist()]
    n = len(lam) - 1
    points = lam[:n]
    if sampler is not None and getattr(sampler, "corrector", None) is not None:
        last = n - 1 if final == "denoise" else n
        points += [lam[k + 1] for k in range(last) if math.isfinite(lam[k + 1])]
    if interval is None:
        return len(points)
    lo, hi = interval
    return sum(1 for v in points if lo <= v < hi)
