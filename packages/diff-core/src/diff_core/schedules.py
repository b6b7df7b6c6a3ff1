"""Noise schedules: maps from time ``t`` in [0, 1] (0 = data) to log-SNR ``λ = ln(α²/σ²)``.

Every schedule implements :class:`diff_protocol.Schedule`: ``logsnr(t)``, its inverse ``t_of``,
``dlogsnr_dt``, ``logsnr_range = (λ(1), λ(0))`` and ``to_dict`` (constructor keyword arguments plus
the registry ``"name"``). All are immutable, hashable by value (so they can be static arguments of
``jax.jit``), array-API in ``t`` (numpy, array-api-strict, JAX, torch; differentiable in JAX and
torch) and keep the dtype of ``t`` (bfloat16/float16 are computed in float32 and cast back).

Cosine family (Nichol & Dhariwal, arXiv 2102.09672; truncation as in VDM, arXiv 2107.00630;
resolution shift and interpolation from simple diffusion, arXiv 2301.11093, and SiD2,
arXiv 2410.19324). With ``u0 = arctan(e^{−λmax/2})``, ``u1 = arctan(e^{−λmin/2})`` and
``u = u0 + (u1 − u0) t``:

    λ(t) = −2 ln tan u,        dλ/dt = −4 (u1 − u0) / sin 2u,
    t(λ) = (arctan(e^{−λ/2}) − u0) / (u1 − u0).

Past the point where ``tan u = 1`` (``λ = 0``; ``t = ½`` for a symmetric range) the complementary
angle ``u' = π/2 − u = u1' + (u1 − u0)(1 − t)`` with ``u1' = arctan(e^{λmin/2})`` is used:
``λ = 2 ln tan u'`` and ``sin 2u = sin 2u'``. Both ends are then exact (``±inf`` for an untruncated
schedule) and float32 never takes the logarithm of the negative ``tan(float32(π/2))``.

Piecewise-linear tables (DDPM's linear β, Ho et al., arXiv 2006.11239; EDM3D's ``polynomial_2``,
Hoogeboom et al., arXiv 2203.17003; user tables) interpolate λ linearly in ``t`` between knots;
the inverse uses ``searchsorted`` on ``−λ`` and is exact at the knots.

>>> import numpy as np
>>> s = CosineSchedule(-15.0, 15.0)
>>> [round(float(v), 6) for v in s.logsnr(np.array([0.0, 0.5, 1.0]))]
[15.0, 0.0, -15.0]
>>> float(s.t_of(s.logsnr(np.asarray(0.25))))
0.25
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from typing import Any, ClassVar

import array_api_compat
import numpy as np

from diff_protocol.arrays import is_lazy, is_low_precision
from diff_protocol.checks import check_int, check_real

__all__ = [
    "CosineSchedule",
    "InterpolatedCosineSchedule",
    "KarrasSchedule",
    "LinearBetaSchedule",
    "PolynomialSchedule",
    "ShiftedCosineSchedule",
    "TableSchedule",
]

Array = Any

_CLIPS = ("shift_after", "fixed_range")


# --------------------------------------------------------------------------------------------------
# Array helpers (private to diff_core; also used by weighting, losses and timesampling)


def _as_real_array(func: str, arg: str, a: Any) -> tuple[Any, Any]:
    """``(xp, a)`` with ``a`` a real floating array; Python numbers become numpy float64 0-d."""
    if isinstance(a, bool):
        raise TypeError(f"{func}: {arg} must be a real floating array, got {a!r}")
    if isinstance(a, (int, float)):
        a = np.asarray(float(a), dtype=np.float64)
    elif isinstance(a, np.generic):
        a = np.asarray(a)
    try:
        xp = array_api_compat.array_namespace(a)
    except TypeError:
        raise TypeError(
            f"{func}: {arg} must be a real floating array, got {type(a).__name__}"
        ) from None
    if not xp.isdtype(a.dtype, "real floating"):
        raise TypeError(f"{func}: {arg} must be a real floating array, got dtype {a.dtype}")
    return xp, a


def _work(xp: Any, a: Any) -> Any:
    """``a`` upcast to float32 when it is bfloat16/float16 (coefficient maths runs in ≥ float32)."""
    return xp.astype(a, xp.float32) if is_low_precision(a.dtype) else a


def _size(a: Any) -> int:
    return math.prod(int(d) for d in a.shape)


def _fmt(v: float) -> str:
    return f"{v:.8g}"


def _const(xp: Any, like: Any, value: float) -> Any:
    return xp.full_like(like, value)


def _check_interval(
    func: str, arg: str, xp: Any, a: Any, lo: float, hi: float, tol: float = 0.0
) -> None:
    """Raise ``ValueError`` when a concrete ``a`` has values outside ``[lo, hi]`` (or NaN)."""
    if is_lazy(a) or _size(a) == 0:
        return
    if array_api_compat.is_torch_array(a):
        a = a.detach()  # reading values must not warn about (or touch) autograd
    if bool(xp.any(xp.isnan(a))):
        raise ValueError(f"{func}: {arg} must lie in [{_fmt(lo)}, {_fmt(hi)}], got nan")
    a_max, a_min = float(xp.max(a)), float(xp.min(a))
    if a_max > hi + tol:
        raise ValueError(
            f"{func}: {arg} must lie in [{_fmt(lo)}, {_fmt(hi)}], got max {_fmt(a_max)}"
        )
    if a_min < lo - tol:
        raise ValueError(
            f"{func}: {arg} must lie in [{_fmt(lo)}, {_fmt(hi)}], got min {_fmt(a_min)}"
        )


def _repeat(xp: Any, n: int, body: Any, carry: Any) -> Any:
    """Apply ``carry = body(carry)`` n times.

    A Python loop, except under JAX where ``lax.fori_loop`` keeps the traced program small (an
    unrolled 32-step bisection takes XLA tens of seconds to compile).
    """
    if array_api_compat.is_jax_namespace(xp):
        from jax import lax

        return lax.fori_loop(0, n, lambda _, c: body(c), carry)
    for _ in range(n):
        carry = body(carry)
    return carry


def _clip01(xp: Any, t: Any) -> Any:
    # where-based (not clip/min/max) so JAX gradients are not halved at the bounds
    t = xp.where(t < 0.0, xp.zeros_like(t), t)
    return xp.where(t > 1.0, xp.ones_like(t), t)


# --------------------------------------------------------------------------------------------------
# Parameter validation


def _real(cls: str, arg: str, value: Any, *, allow_inf: bool = False) -> float:
    return check_real(cls, arg, value, allow_inf=allow_inf)


def _integer(cls: str, arg: str, value: Any, minimum: int) -> int:
    return check_int(cls, arg, value, minimum=minimum)


def _logsnr_bounds(cls: str, logsnr_min: Any, logsnr_max: Any) -> tuple[float, float]:
    lo = _real(cls, "logsnr_min", logsnr_min, allow_inf=True)
    hi = _real(cls, "logsnr_max", logsnr_max, allow_inf=True)
    if not lo < hi:
        raise ValueError(f"{cls}: logsnr_min must be < logsnr_max, got {lo!r} >= {hi!r}")
    return lo, hi


def _clip_name(cls: str, clip: Any) -> str:
    if clip not in _CLIPS:
        raise ValueError(f"{cls}: clip must be one of 'shift_after', 'fixed_range', got {clip!r}")
    return str(clip)


# --------------------------------------------------------------------------------------------------
# Base class


class _Schedule(abc.ABC):
    """Immutable, value-hashable base: subclasses define ``_params`` and the ``_``-methods."""

    name: ClassVar[str] = ""
    _range: tuple[float, float]

    # -- immutability and value semantics
    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new schedule instead")

    def __delattr__(self, key: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable; build a new schedule instead")

    def _set(self, **values: Any) -> None:
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @abc.abstractmethod
    def _params(self) -> dict[str, Any]:
        """Implemented by every concrete schedule."""

    def _key(self) -> tuple[Any, ...]:
        return tuple(self._params().items())

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"

    def to_dict(self) -> dict[str, Any]:
        """Constructor keyword arguments plus ``"name"`` (±inf stay Python floats)."""
        out: dict[str, Any] = {"name": self.name}
        for key, value in self._params().items():
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    @property
    def logsnr_range(self) -> tuple[float, float]:
        """``(λ(1), λ(0))`` as Python floats (either may be infinite)."""
        return self._range

    # -- public array API
    def logsnr(self, t: Array) -> Array:
        """λ(t) in the dtype of ``t``; ``t`` must lie in [0, 1]."""
        func = f"{type(self).__name__}.logsnr"
        xp, t = _as_real_array(func, "t", t)
        _check_interval(func, "t", xp, t, 0.0, 1.0)
        tw = _work(xp, t)
        return xp.astype(self._logsnr(xp, tw), t.dtype)

    def dlogsnr_dt(self, t: Array) -> Array:
        """dλ/dt in the dtype of ``t`` (``−inf`` at an untruncated end)."""
        func = f"{type(self).__name__}.dlogsnr_dt"
        xp, t = _as_real_array(func, "t", t)
        _check_interval(func, "t", xp, t, 0.0, 1.0)
        tw = _work(xp, t)
        return xp.astype(self._dlogsnr(xp, tw), t.dtype)

    def t_of(self, logsnr: Array) -> Array:
        """Inverse ``t(λ)`` in the dtype of ``logsnr``; λ must lie in ``logsnr_range``.

        The ends of the range give exactly 0 and 1; values beyond it by a few ulps of the input
        dtype are accepted and map to the nearest end.
        """
        func = f"{type(self).__name__}.t_of"
        xp, lam = _as_real_array(func, "logsnr", logsnr)
        lo, hi = self._range
        eps = float(xp.finfo(lam.dtype).eps)
        tol = (
            16.0
            * eps
            * max(1.0, abs(lo) if math.isfinite(lo) else 1.0, abs(hi) if math.isfinite(hi) else 1.0)
        )
        _check_interval(func, "logsnr", xp, lam, lo, hi, tol)
        lw = _work(xp, lam)
        t = _clip01(xp, self._t_of(xp, lw))
        # the ends of the range map to exactly 0 and 1
        t = xp.where(lw >= hi, xp.zeros_like(t), t)
        t = xp.where(lw <= lo, xp.ones_like(t), t)
        return xp.astype(t, lam.dtype)

    # -- implementation hooks (xp, working-dtype arrays, no validation)
    @abc.abstractmethod
    def _logsnr(self, xp: Any, t: Array) -> Array:
        """Implemented by every concrete schedule."""

    @abc.abstractmethod
    def _dlogsnr(self, xp: Any, t: Array) -> Array:
        """Implemented by every concrete schedule."""

    @abc.abstractmethod
    def _t_of(self, xp: Any, lam: Array) -> Array:
        """Implemented by every concrete schedule."""

    def _endpoints(self) -> tuple[float, float]:
        """``(λ(1), λ(0))`` evaluated in float64."""
        ends = self._logsnr(np, np.asarray([1.0, 0.0], dtype=np.float64))
        return float(ends[0]), float(ends[1])


# --------------------------------------------------------------------------------------------------
# Cosine family


def _atan_exp_half(x: float) -> float:
    """``arctan(e^{x/2})`` for any real or infinite ``x`` without overflow."""
    if x <= 0.0:
        return math.atan(math.exp(0.5 * x))
    return 0.5 * math.pi - math.atan(math.exp(-0.5 * x))


class _Cosine:
    """Truncated cosine ``λ_cos(t; λmin, λmax) + shift`` with the complementary-angle evaluation."""

    __slots__ = ("delta", "shift", "t_star", "u0", "u1c")

    def __init__(self, logsnr_min: float, logsnr_max: float, shift: float = 0.0) -> None:
        self.u0 = _atan_exp_half(-logsnr_max)  # arctan(e^{-λmax/2})
        self.u1c = _atan_exp_half(logsnr_min)  # u1' = arctan(e^{λmin/2}) = π/2 − u1
        self.delta = (0.5 * math.pi - self.u1c) - self.u0  # u1 − u0
        # t where tan u = 1 (λ_cos = 0): the switch to the complementary angle
        self.t_star = min(1.0, max(0.0, (0.25 * math.pi - self.u0) / self.delta))
        self.shift = shift

    def _split(self, xp: Any, t: Array) -> tuple[Array, Array, Array]:
        ts = _const(xp, t, self.t_star)
        below = t <= self.t_star
        # each branch only sees its own half, so neither value nor gradient is ever polluted
        return below, xp.where(below, t, ts), xp.where(below, ts, t)

    def logsnr(self, xp: Any, t: Array) -> Array:
        below, ta, tb = self._split(xp, t)
        one = xp.ones_like(t)
        w = xp.tan(self.u0 + self.delta * ta)
        lam_a = xp.where(w > 0.0, -2.0 * xp.log(xp.where(w > 0.0, w, one)), _const(xp, t, math.inf))
        wc = xp.tan(self.u1c + self.delta * (1.0 - tb))
        lam_b = xp.where(
            wc > 0.0, 2.0 * xp.log(xp.where(wc > 0.0, wc, one)), _const(xp, t, -math.inf)
        )
        lam = xp.where(below, lam_a, lam_b)
        return lam + self.shift if self.shift != 0.0 else lam

    def dlogsnr(self, xp: Any, t: Array) -> Array:
        below, ta, tb = self._split(xp, t)
        one = xp.ones_like(t)
        s = xp.where(
            below,
            xp.sin(2.0 * (self.u0 + self.delta * ta)),
            xp.sin(2.0 * (self.u1c + self.delta * (1.0 - tb))),
        )
        return xp.where(
            s > 0.0, (-4.0 * self.delta) / xp.where(s > 0.0, s, one), _const(xp, t, -math.inf)
        )

    def t_of(self, xp: Any, lam: Array) -> Array:
        lc = lam - self.shift if self.shift != 0.0 else lam
        zero = xp.zeros_like(lc)
        pos = lc >= 0.0
        la = xp.where(pos, lc, zero)  # keep exp arguments ≤ 0 in both branches
        lb = xp.where(pos, zero, lc)
        ta = (xp.atan(xp.exp(-0.5 * la)) - self.u0) / self.delta
        tb = 1.0 - (xp.atan(xp.exp(0.5 * lb)) - self.u1c) / self.delta
        return xp.where(pos, ta, tb)


class CosineSchedule(_Schedule):
    """Truncated cosine schedule ``λ = −2 ln tan(u0 + (u1 − u0) t)`` (arXiv 2102.09672).

    ``logsnr_min``/``logsnr_max`` may be ``−inf``/``+inf``: the untruncated schedule
    ``λ = −2 ln tan(πt/2)`` with exact infinite ends.

    Args:
        logsnr_min: λ(1), the noisiest level (default −15).
        logsnr_max: λ(0), the cleanest level (default 15).
    """

    name: ClassVar[str] = "cosine"

    def __init__(self, logsnr_min: float = -15.0, logsnr_max: float = 15.0) -> None:
        lo, hi = _logsnr_bounds("CosineSchedule", logsnr_min, logsnr_max)
        self._set(logsnr_min=lo, logsnr_max=hi, _cos=_Cosine(lo, hi), _range=(lo, hi))

    def _params(self) -> dict[str, Any]:
        return {"logsnr_min": self.logsnr_min, "logsnr_max": self.logsnr_max}

    def _logsnr(self, xp: Any, t: Array) -> Array:
        return self._cos.logsnr(xp, t)

    def _dlogsnr(self, xp: Any, t: Array) -> Array:
        return self._cos.dlogsnr(xp, t)

    def _t_of(self, xp: Any, lam: Array) -> Array:
        return self._cos.t_of(xp, lam)


def _shifted_cosine(
    resolution: int, reference: int, logsnr_min: float, logsnr_max: float, clip: str
) -> _Cosine:
    """Cosine shifted by ``s = 2 ln(reference/resolution)`` under either clipping convention."""
    s = 2.0 * math.log(reference / resolution)
    if clip == "shift_after":
        return _Cosine(logsnr_min, logsnr_max, s)
    return _Cosine(logsnr_min - s, logsnr_max - s, s)


class ShiftedCosineSchedule(_Schedule):
    """Resolution-shifted cosine (simple diffusion, arXiv 2301.11093).

    ``s = 2 ln(reference_resolution/resolution)``; ``clip="shift_after"``:
    ``λ = λ_cos(t; λmin, λmax) + s`` (the range moves, as lucidrains' ports do);
    ``clip="fixed_range"``: ``λ = λ_cos(t; λmin − s, λmax − s) + s`` (the range stays
    ``[λmin, λmax]``, as crowsonkb/k-diffusion's ``rand_cosine_interpolated``). A resolution below
    the reference gets *less* noise: 8×8 with reference 64 shifts by +4.159.
    """

    name: ClassVar[str] = "shifted_cosine"

    def __init__(
        self,
        resolution: int,
        reference_resolution: int = 64,
        logsnr_min: float = -15.0,
        logsnr_max: float = 15.0,
        clip: str = "shift_after",
    ) -> None:
        cls = "ShiftedCosineSchedule"
        res = _integer(cls, "resolution", resolution, 1)
        ref = _integer(cls, "reference_resolution", reference_resolution, 1)
        lo, hi = _logsnr_bounds(cls, logsnr_min, logsnr_max)
        clip = _clip_name(cls, clip)
        cos = _shifted_cosine(res, ref, lo, hi, clip)
        self._set(
            resolution=res,
            reference_resolution=ref,
            logsnr_min=lo,
            logsnr_max=hi,
            clip=clip,
            shift=cos.shift,
            _cos=cos,
        )
        # shift_after moves the range by s; fixed_range keeps it
        self._set(_range=(lo + cos.shift, hi + cos.shift) if clip == "shift_after" else (lo, hi))

    def _params(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "reference_resolution": self.reference_resolution,
            "logsnr_min": self.logsnr_min,
            "logsnr_max": self.logsnr_max,
            "clip": self.clip,
        }

    def _logsnr(self, xp: Any, t: Array) -> Array:
        return self._cos.logsnr(xp, t)

    def _dlogsnr(self, xp: Any, t: Array) -> Array:
        return self._cos.dlogsnr(xp, t)

    def _t_of(self, xp: Any, lam: Array) -> Array:
        return self._cos.t_of(xp, lam)


class InterpolatedCosineSchedule(_Schedule):
    """Interpolated shifted cosine (simple diffusion, arXiv 2301.11093; SiD2, arXiv 2410.19324).

    ``λ(t) = t·A(t) + (1 − t)·B(t)`` with ``A`` the cosine shifted for reference
    ``resolution_lo`` and ``B`` for reference ``resolution_hi`` (default: ``resolution``, i.e.
    unshifted), both with the same ``clip`` convention: the noisy end behaves like the low
    reference. ``dλ/dt = t A' + (1 − t) B' + A − B``. ``resolution_lo`` may exceed the high
    reference (SiD2's recipe below 32 px) as long as λ stays strictly decreasing. The inverse is
    found by bisection (64 steps in float64, 32 in float32) followed by one Newton step, which also
    makes it differentiable.
    """

    name: ClassVar[str] = "interpolated_cosine"

    def __init__(
        self,
        resolution: int,
        resolution_lo: int = 32,
        resolution_hi: int | None = None,
        logsnr_min: float = -15.0,
        logsnr_max: float = 15.0,
        clip: str = "shift_after",
    ) -> None:
        cls = "InterpolatedCosineSchedule"
        res = _integer(cls, "resolution", resolution, 1)
        r_lo = _integer(cls, "resolution_lo", resolution_lo, 1)
        r_hi = None if resolution_hi is None else _integer(cls, "resolution_hi", resolution_hi, 1)
        hi_eff = res if r_hi is None else r_hi
        lo, hi = _logsnr_bounds(cls, logsnr_min, logsnr_max)
        clip = _clip_name(cls, clip)
        self._set(
            resolution=res,
            resolution_lo=r_lo,
            resolution_hi=r_hi,
            logsnr_min=lo,
            logsnr_max=hi,
            clip=clip,
            _a=_shifted_cosine(res, r_lo, lo, hi, clip),
            _b=_shifted_cosine(res, hi_eff, lo, hi, clip),
        )
        self._set(_range=self._endpoints())
        if r_lo > hi_eff:
            # Allowed (SiD2 at d < 32 uses resolution_lo = 32 > d, pixel.md §6.1), as long as the
            # upward shift A − B = 2 ln(lo/hi) never beats the cosine's slope.
            t = np.linspace(0.0, 1.0, 4097)[1:-1]
            if not bool(np.all(self._dlogsnr(np, t) < 0.0)):
                raise ValueError(
                    f"{cls}: resolution_lo / resolution_hi = {r_lo}/{hi_eff} must keep logsnr "
                    "strictly decreasing (2 ln(lo/hi) below the cosine's smallest slope), "
                    "got a non-monotone schedule"
                )

    def _params(self) -> dict[str, Any]:
        return {
            "resolution": self.resolution,
            "resolution_lo": self.resolution_lo,
            "resolution_hi": self.resolution_hi,
            "logsnr_min": self.logsnr_min,
            "logsnr_max": self.logsnr_max,
            "clip": self.clip,
        }

    def _logsnr(self, xp: Any, t: Array) -> Array:
        zero = xp.zeros_like(t)
        # A is only weighted where t > 0 and B where t < 1, so an infinite end never meets 0·inf
        a = xp.where(t > 0.0, self._a.logsnr(xp, t), zero)
        b = xp.where(t < 1.0, self._b.logsnr(xp, t), zero)
        return t * a + (1.0 - t) * b

    def _dlogsnr(self, xp: Any, t: Array) -> Array:
        zero = xp.zeros_like(t)
        a, b = self._a.logsnr(xp, t), self._b.logsnr(xp, t)
        da = xp.where(t > 0.0, self._a.dlogsnr(xp, t), zero)
        db = xp.where(t < 1.0, self._b.dlogsnr(xp, t), zero)
        finite = xp.isfinite(a) & xp.isfinite(b)
        diff = xp.where(finite, a - xp.where(finite, b, zero), zero)
        return t * da + (1.0 - t) * db + diff

    def _t_of(self, xp: Any, lam: Array) -> Array:
        n_iter = 64 if lam.dtype == xp.float64 else 32

        def bisect(bracket: tuple[Array, Array]) -> tuple[Array, Array]:
            lo, hi = bracket
            mid = 0.5 * (lo + hi)
            right = self._logsnr(xp, mid) > lam  # λ decreasing: the root lies right of mid
            return xp.where(right, mid, lo), xp.where(right, hi, mid)

        lo, hi = _repeat(xp, n_iter, bisect, (xp.zeros_like(lam), xp.ones_like(lam)))
        t = 0.5 * (lo + hi)
        # one Newton step: full precision in float32 and the implicit derivative 1/λ'(t)
        step = (lam - self._logsnr(xp, t)) / self._dlogsnr(xp, t)
        return t + xp.where(xp.isfinite(step), step, xp.zeros_like(step))


RHO_RANGE = (0.1, 1000.0)
"""Legal ``rho`` of :class:`KarrasSchedule` and :func:`diff_core.grids.karras`: EDM uses 7; below
0.1 ``σ^{1/ρ}`` over- or underflows for ordinary σ ranges, above 1000 the grid collapses onto
geometric spacing and ``σ^{1/ρ}`` loses all its digits."""


def check_rho(func: str, rho: Any) -> float:
    """``rho`` in :data:`RHO_RANGE` (a ``ValueError``/``TypeError`` naming ``rho`` otherwise)."""
    lo, hi = RHO_RANGE
    return check_real(func, "rho", rho, lo=lo, hi=hi)


def _karras_ab(func: str, s_min: float, s_max: float, rho: float) -> tuple[float, float]:
    """``(A, B) = (σ_min^{1/ρ}, σ_max^{1/ρ} − A)``, both finite and positive, else an error naming
    ``rho`` together with the σ range."""
    try:
        a = s_min ** (1.0 / rho)
        b = s_max ** (1.0 / rho) - a
    except OverflowError:
        a = b = math.inf
    if not (0.0 < a < math.inf and 0.0 < b < math.inf):
        raise ValueError(
            f"{func}: rho must keep sigma^(1/rho) finite and distinct over [sigma_min, sigma_max] "
            f"= [{s_min:g}, {s_max:g}], got rho={rho!r}"
        )
    return a, b


class KarrasSchedule(_Schedule):
    """EDM's σ schedule as a function of t (Karras et al., arXiv 2206.00364).

    ``rho`` must lie in :data:`RHO_RANGE` ([0.1, 1000]).

    ``A = σ_min^{1/ρ}``, ``B = σ_max^{1/ρ} − A``, ``σ_e(t) = (A + B t)^ρ``, so
    ``λ = −2ρ ln(A + B t)``, ``dλ/dt = −2ρ B/(A + B t)``, ``t(λ) = (e^{−λ/(2ρ)} − A)/B``.
    EDM's sampling grid is this schedule at uniform t.
    """

    name: ClassVar[str] = "karras"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0) -> None:
        cls = "KarrasSchedule"
        s_min = _real(cls, "sigma_min", sigma_min)
        s_max = _real(cls, "sigma_max", sigma_max)
        rho_f = _real(cls, "rho", rho)
        if not 0.0 < s_min < s_max:
            raise ValueError(
                f"{cls}: sigma_min must satisfy 0 < sigma_min < sigma_max, got {s_min!r}, {s_max!r}"
            )
        rho_f = check_rho(cls, rho_f)
        a, b = _karras_ab(cls, s_min, s_max, rho_f)
        self._set(sigma_min=s_min, sigma_max=s_max, rho=rho_f, _A=a, _B=b)
        self._set(_range=(-2.0 * math.log(s_max), -2.0 * math.log(s_min)))

    def _params(self) -> dict[str, Any]:
        return {"sigma_min": self.sigma_min, "sigma_max": self.sigma_max, "rho": self.rho}

    def _logsnr(self, xp: Any, t: Array) -> Array:
        return (-2.0 * self.rho) * xp.log(self._A + self._B * t)

    def _dlogsnr(self, xp: Any, t: Array) -> Array:
        return (-2.0 * self.rho * self._B) / (self._A + self._B * t)

    def _t_of(self, xp: Any, lam: Array) -> Array:
        return (xp.exp(lam * (-0.5 / self.rho)) - self._A) / self._B


# --------------------------------------------------------------------------------------------------
# Piecewise-linear tables


class _Table(_Schedule):
    """λ linear in t between knots ``(t_k, λ_k)``, ``t_0 = 0 < … < t_{n−1} = 1``, λ decreasing."""

    _tk: np.ndarray
    _lk: np.ndarray

    def _set_knots(self, t_knots: np.ndarray, logsnr_knots: np.ndarray) -> None:
        # private copies stay writable (torch.asarray warns on read-only buffers); the
        # public properties hand out read-only views
        tk = np.array(t_knots, dtype=np.float64)
        lk = np.array(logsnr_knots, dtype=np.float64)
        self._set(_tk=tk, _lk=lk, _range=(float(lk[-1]), float(lk[0])))

    @property
    def t_knots(self) -> np.ndarray:
        """Knot times (read-only float64 numpy array)."""
        return _read_only(self._tk)

    @property
    def logsnr_knots(self) -> np.ndarray:
        """λ at the knots (read-only float64 numpy array, decreasing)."""
        return _read_only(self._lk)

    def _knots(self, xp: Any, like: Array) -> tuple[Array, Array]:
        dev = array_api_compat.device(like)
        return (
            xp.asarray(self._tk, dtype=like.dtype, device=dev),
            xp.asarray(self._lk, dtype=like.dtype, device=dev),
        )

    def _segment(self, xp: Any, tk: Array, flat: Array) -> Array:
        """Index of the segment containing each t (the right one at interior knots)."""
        idx = xp.searchsorted(tk, flat, side="right") - 1
        return xp.clip(idx, 0, self._tk.shape[0] - 2)

    def _logsnr(self, xp: Any, t: Array) -> Array:
        tk, lk = self._knots(xp, t)
        flat = xp.reshape(t, (-1,))
        idx = self._segment(xp, tk, flat)
        t0, t1 = xp.take(tk, idx), xp.take(tk, idx + 1)
        l0, l1 = xp.take(lk, idx), xp.take(lk, idx + 1)
        lam = l0 + (flat - t0) / (t1 - t0) * (l1 - l0)
        lam = xp.where(flat >= 1.0, _const(xp, flat, float(self._lk[-1])), lam)
        return xp.reshape(lam, t.shape)

    def _dlogsnr(self, xp: Any, t: Array) -> Array:
        tk, lk = self._knots(xp, t)
        flat = xp.reshape(t, (-1,))
        idx = self._segment(xp, tk, flat)
        slope = (xp.take(lk, idx + 1) - xp.take(lk, idx)) / (
            xp.take(tk, idx + 1) - xp.take(tk, idx)
        )
        return xp.reshape(slope, t.shape)

    def _t_of(self, xp: Any, lam: Array) -> Array:
        tk, lk = self._knots(xp, lam)
        flat = xp.reshape(lam, (-1,))
        idx = xp.searchsorted(-lk, -flat, side="right") - 1
        idx = xp.clip(idx, 0, self._tk.shape[0] - 2)
        t0, t1 = xp.take(tk, idx), xp.take(tk, idx + 1)
        l0, l1 = xp.take(lk, idx), xp.take(lk, idx + 1)
        t = t0 + (flat - l0) / (l1 - l0) * (t1 - t0)
        return xp.reshape(t, lam.shape)


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view


def _check_decreasing(cls: str, lk: np.ndarray) -> None:
    if not np.all(np.isfinite(lk)):
        raise ValueError(f"{cls}: the logsnr table must be finite, got {lk[~np.isfinite(lk)][:3]}")
    with np.errstate(over="ignore", invalid="ignore"):
        steps = np.diff(lk)
    if not np.all(np.isfinite(steps)):
        k = int(np.argmax(~np.isfinite(steps)))
        raise ValueError(
            f"{cls}: the logsnr table must have finite differences between knots (values of "
            f"moderate size, e.g. |logsnr| <= 1e300), got {float(lk[k])!r} then "
            f"{float(lk[k + 1])!r} at knot {k}"
        )
    if not np.all(steps < 0):
        k = int(np.argmax(steps >= 0))
        raise ValueError(
            f"{cls}: the logsnr table must be strictly decreasing, got {lk[k]!r} then "
            f"{lk[k + 1]!r} at knot {k}"
        )


class TableSchedule(_Table):
    """A user table of λ at knots, piecewise linear in t.

    Args:
        logsnr: strictly decreasing finite λ values (at least 2).
        t: knot times, strictly increasing from exactly 0 to exactly 1; default uniform
            ``k/(n − 1)``.

    The inverse uses ``searchsorted`` on ``−λ``; the derivative is the slope of the segment
    containing t (the right segment at an interior knot).
    """

    name: ClassVar[str] = "table"

    def __init__(self, logsnr: Sequence[float], t: Sequence[float] | None = None) -> None:
        cls = "TableSchedule"
        lk = _float_list(cls, "logsnr", logsnr)
        if len(lk) < 2:
            raise ValueError(f"{cls}: logsnr must have at least 2 values, got {len(lk)}")
        _check_decreasing(cls, np.asarray(lk))
        if t is None:
            tk = tuple((np.arange(len(lk), dtype=np.float64) / (len(lk) - 1)).tolist())
            t_param = None
        else:
            tk = _float_list(cls, "t", t)
            t_param = tk
            if len(tk) != len(lk):
                raise ValueError(
                    f"{cls}: t must have the same length as logsnr ({len(lk)}), got {len(tk)}"
                )
            arr = np.asarray(tk)
            if tk[0] != 0.0 or tk[-1] != 1.0 or not np.all(np.diff(arr) > 0):
                raise ValueError(
                    f"{cls}: t must increase strictly from exactly 0.0 to exactly 1.0, "
                    f"got {tk[0]!r} ... {tk[-1]!r}"
                )
        self._set(_p_logsnr=lk, _p_t=t_param)
        self._set_knots(np.asarray(tk), np.asarray(lk))

    def _params(self) -> dict[str, Any]:
        return {"logsnr": self._p_logsnr, "t": self._p_t}


def _float_list(cls: str, arg: str, values: Any) -> tuple[float, ...]:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(
            f"{cls}: {arg} must be a sequence of real numbers, got {values!r}"
        ) from None
    if arr.ndim != 1:
        raise ValueError(f"{cls}: {arg} must be one-dimensional, got shape {arr.shape}")
    if np.any(np.isnan(arr)):
        raise ValueError(f"{cls}: {arg} must not contain NaN, got {arr.tolist()[:5]}")
    return tuple(float(v) for v in arr)


class LinearBetaSchedule(_Table):
    """DDPM's linear β schedule as a λ table (Ho et al., arXiv 2006.11239).

    Knots ``t_k = k/(T − 1)``, ``β_j = linspace(β_start, β_end, T)``,
    ``ᾱ_k = Π_{j≤k}(1 − β_j)``, ``λ_k = ln ᾱ_k − log1p(−ᾱ_k)``, linear in λ between knots.
    t = 0 is the least noisy *training* level (ᾱ = 1 − β_1), not clean data; a DDPM model's
    integer timestep is ``t·(T − 1)``.
    """

    name: ClassVar[str] = "linear_beta"

    def __init__(
        self, timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02
    ) -> None:
        cls = "LinearBetaSchedule"
        steps = _integer(cls, "timesteps", timesteps, 2)
        b0 = _real(cls, "beta_start", beta_start)
        b1 = _real(cls, "beta_end", beta_end)
        if not 0.0 < b0 < b1 < 1.0:
            raise ValueError(
                f"{cls}: beta_start and beta_end must satisfy 0 < beta_start < beta_end < 1, "
                f"got {b0!r}, {b1!r}"
            )
        betas = np.linspace(b0, b1, steps, dtype=np.float64)
        abar = np.cumprod(1.0 - betas)
        lk = np.log(abar) - np.log1p(-abar)
        tk = np.arange(steps, dtype=np.float64) / (steps - 1)
        self._set(timesteps=steps, beta_start=b0, beta_end=b1)
        self._set_knots(tk, lk)

    def _params(self) -> dict[str, Any]:
        return {
            "timesteps": self.timesteps,
            "beta_start": self.beta_start,
            "beta_end": self.beta_end,
        }


class PolynomialSchedule(_Table):
    """EDM3D's ``polynomial_p`` schedule (arXiv 2203.17003; ehoogeboom/e3_diffusion_for_molecules).

    Knots ``t_k = k/T``, ``f_k = (1 − (k/T)^p)²``, ``r_k = clip(f_k/f_{k−1}, 0.001, 1)`` with
    ``f_{−1} = 1``, ``ᾱ²_k = Π_{j≤k} r_j``, ``α²_k = (1 − 2s)ᾱ²_k + s`` with ``s = precision``,
    ``λ_k = ln α²_k − ln(1 − α²_k)`` (EDM3D's ``γ_k = −λ_k``). Linear in λ between knots;
    :meth:`nearest_knot` gives EDM3D's own ``γ[round(t·T)]`` lookup.
    """

    name: ClassVar[str] = "polynomial"

    def __init__(self, timesteps: int = 1000, power: float = 2.0, precision: float = 1e-5) -> None:
        cls = "PolynomialSchedule"
        steps = _integer(cls, "timesteps", timesteps, 2)
        p = _real(cls, "power", power)
        s = _real(cls, "precision", precision)
        if not p > 0.0:
            raise ValueError(f"{cls}: power must be > 0, got {p!r}")
        if not 0.0 < s < 0.5:
            raise ValueError(f"{cls}: precision must satisfy 0 < precision < 0.5, got {s!r}")
        tk = np.arange(steps + 1, dtype=np.float64) / steps
        f = (1.0 - tk**p) ** 2
        ratios = np.clip(f / np.concatenate([[1.0], f[:-1]]), 0.001, 1.0)
        alpha2 = (1.0 - 2.0 * s) * np.cumprod(ratios) + s
        lk = np.log(alpha2) - np.log(1.0 - alpha2)
        flat = np.flatnonzero(~(np.diff(lk) < 0))
        if flat.size:
            raise ValueError(
                f"{cls}: power must give a strictly decreasing logsnr table for "
                f"timesteps={steps} and precision={s!r} (power <= about 5 at "
                f"timesteps=1000), got power={p!r}: {flat.size} of {steps} steps are flat, "
                f"the first at t={flat[0] / steps:.4g}"
            )
        self._set(timesteps=steps, power=p, precision=s)
        self._set_knots(tk, lk)

    def _params(self) -> dict[str, Any]:
        return {"timesteps": self.timesteps, "power": self.power, "precision": self.precision}

    def nearest_knot(self, t: Array) -> Array:
        """λ at the knot ``round(t·T)`` (EDM3D's table lookup), in the dtype of ``t``.

        Rounding is half-to-even, as ``torch.round`` in the reference code.
        """
        func = "PolynomialSchedule.nearest_knot"
        xp, t = _as_real_array(func, "t", t)
        _check_interval(func, "t", xp, t, 0.0, 1.0)
        tw = _work(xp, t)
        _, lk = self._knots(xp, tw)
        flat = xp.reshape(tw, (-1,))
        index_dtype = xp.__array_namespace_info__().default_dtypes()["indexing"]
        idx = xp.astype(xp.round(flat * float(self.timesteps)), index_dtype)
        idx = xp.clip(idx, 0, self.timesteps)
        return xp.astype(xp.reshape(xp.take(lk, idx), t.shape), t.dtype)
