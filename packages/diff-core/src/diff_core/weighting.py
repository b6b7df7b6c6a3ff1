"""Loss weightings: the factor ``W(λ, λ')`` on the ε-space error.

Per example the weighted loss is ``½ · W · ‖ε − ε̂‖²``. Because
``‖ε − ε̂‖² = e^λ ‖x − x̂‖² = sigmoid(λ) ‖v − v̂‖²`` at fixed ``(z, λ)``, the same loss in x-space has
factor ``W e^λ`` and in v-space ``W sigmoid(λ)``; :meth:`Weighting.factor` returns any of the three,
computed in a form that does not overflow for the built-in weightings.

| factory | W |
|---|---|
| ``eps_mse()`` | 1 |
| ``v_mse()`` | ``1 + e^{−λ}`` |
| ``x_mse()`` | ``e^{−λ}`` |
| ``elbo()`` | ``−λ'`` (VDM, arXiv 2107.00630) |
| ``kingma_gao(w)`` | ``−λ' w(λ)`` (arXiv 2303.00848) |
| ``sigmoid(bias)`` | ``−λ' sigmoid(b − λ)`` (VDM++, arXiv 2303.00848; SiD2, arXiv 2410.19324) |
| ``edm(sigma_data)`` | ``1 + e^{−λ}/σ_d²`` (EDM, arXiv 2206.00364) |
| ``min_snr(gamma)`` | ``min(1, γ e^{−λ})`` (Min-SNR-γ, arXiv 2303.09556) |

>>> import numpy as np
>>> w = sigmoid(bias=-3.0)
>>> weighting_from_dict(w.to_dict()) == w
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import array_api_compat
import numpy as np

from diff_protocol import sigmoid as _sigmoid
from diff_protocol import softplus
from diff_protocol.checks import check_real

__all__ = [
    "SPACES",
    "Weighting",
    "edm",
    "elbo",
    "eps_mse",
    "kingma_gao",
    "min_snr",
    "sigmoid",
    "v_mse",
    "weighting_from_dict",
    "x_mse",
]

Array = Any

SPACES = ("eps", "x", "v")


def _array(a: Any) -> Any:
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        return np.asarray(float(a), dtype=np.float64)
    return a


def _require_slope(func: str, name: str, dlogsnr_dt: Any) -> None:
    if dlogsnr_dt is None:
        raise ValueError(
            f"{func}: dlogsnr_dt must be an array for weighting {name!r} (it uses dλ/dt), got None"
        )


class Weighting(NamedTuple):
    """A loss weighting: ``fn(logsnr, dlogsnr_dt) -> W``, the factor on ``½‖ε − ε̂‖²``.

    Attributes:
        name: factory name (``weighting_from_dict`` key).
        params: the factory's keyword arguments.
        fn: array-API function of ``(logsnr, dlogsnr_dt)``; ``dlogsnr_dt`` may be ``None`` when
            ``fn.uses_dlogsnr_dt`` is False. A ``fn`` may also provide
            ``space_factor(logsnr, dlogsnr_dt, space)`` with an overflow-free x/v form.
    """

    name: str
    params: dict[str, Any]
    fn: Callable[..., Array]

    def __hash__(self) -> int:
        return hash((self.name, tuple(sorted(self.params.items())), self.fn))

    @property
    def uses_dlogsnr_dt(self) -> bool:
        """Whether ``fn`` needs dλ/dt (assumed for functions that do not say)."""
        return bool(getattr(self.fn, "uses_dlogsnr_dt", True))

    def to_dict(self) -> dict[str, Any]:
        """``{"name": name, **params}``; inverse of :func:`weighting_from_dict`."""
        if self.name not in _FACTORIES:
            raise TypeError(
                f"Weighting.to_dict: weighting must be a built-in ({', '.join(_FACTORIES)}) to be "
                f"serialised, got {self.name!r} (a Python function cannot be written to a dict)"
            )
        return {"name": self.name, **self.params}

    def factor(self, logsnr: Array, dlogsnr_dt: Array | None = None, space: str = "eps") -> Array:
        """The factor on ``½‖·‖²`` in ``space``: ``W``, ``W e^λ`` (x) or ``W sigmoid(λ)`` (v)."""
        if space not in SPACES:
            raise ValueError(
                f"Weighting.factor: space must be one of 'eps', 'x', 'v', got {space!r}"
            )
        logsnr, dlogsnr_dt = _array(logsnr), _array(dlogsnr_dt)
        if self.uses_dlogsnr_dt:
            _require_slope("Weighting.factor", self.name, dlogsnr_dt)
        space_factor = getattr(self.fn, "space_factor", None)
        if space_factor is not None:
            return space_factor(logsnr, dlogsnr_dt, space)
        w = self.fn(logsnr, dlogsnr_dt)
        if space == "eps":
            return w
        xp = array_api_compat.array_namespace(w, logsnr)
        return w * (xp.exp(logsnr) if space == "x" else _sigmoid(logsnr))


# --------------------------------------------------------------------------------------------------
# Built-in weight functions: frozen dataclasses, so equal parameters give equal (and equally
# hashed) Weightings, usable as static arguments of jax.jit.


@dataclass(frozen=True)
class _EpsMSE:
    uses_dlogsnr_dt: ClassVar[bool] = False

    def __call__(self, logsnr: Array, dlogsnr_dt: Array | None = None) -> Array:
        xp = array_api_compat.array_namespace(logsnr)
        return xp.ones_like(logsnr)

    def space_factor(self, logsnr: Array, dlogsnr_dt: Array | None, space: str) -> Array:
        xp = array_api_compat.array_namespace(logsnr)
        if space == "eps":
            return xp.ones_like(logsnr)
        return xp.exp(logsnr) if space == "x" else _sigmoid(logsnr)


@dataclass(frozen=True)
class _VMSE:
    uses_dlogsnr_dt: ClassVar[bool] = False

    def __call__(self, logsnr: Array, dlogsnr_dt: Array | None = None) -> Array:
        xp = array_api_compat.array_namespace(logsnr)
        return 1.0 + xp.exp(-logsnr)

    def space_factor(self, logsnr: Array, dlogsnr_dt: Array | None, space: str) -> Array:
        xp = array_api_compat.array_namespace(logsnr)
        if space == "eps":
            return 1.0 + xp.exp(-logsnr)
        return xp.exp(logsnr) + 1.0 if space == "x" else xp.ones_like(logsnr)


@dataclass(frozen=True)
class _XMSE:
    uses_dlogsnr_dt: ClassVar[bool] = False

    def __call__(self, logsnr: Array, dlogsnr_dt: Array | None = None) -> Array:
        xp = array_api_compat.array_namespace(logsnr)
        return xp.exp(-logsnr)

    def space_factor(self, logsnr: Array, dlogsnr_dt: Array | None, space: str) -> Array:
        xp = array_api_compat.array_namespace(logsnr)
        if space == "eps":
            return xp.exp(-logsnr)
        return xp.ones_like(logsnr) if space == "x" else _sigmoid(-logsnr)


@dataclass(frozen=True)
class _ELBO:
    uses_dlogsnr_dt: ClassVar[bool] = True

    def __call__(self, logsnr: Array, dlogsnr_dt: Array | None = None) -> Array:
        _require_slope("Weighting.fn", "elbo", dlogsnr_dt)
        return -dlogsnr_dt

    def space_factor(self, logsnr: Array, dlogsnr_dt: Array | None, space: str) -> Array:
        xp = array_api_compat.array_namespace(logsnr, dlogsnr_dt)
        if space == "eps":
            return -dlogsnr_dt
        return -dlogsnr_dt * (xp.exp(logsnr) if space == "x" else _sigmoid(logsnr))


@dataclass(frozen=True)
class _KingmaGao:
    w: Callable[[Array], Array]
    uses_dlogsnr_dt: ClassVar[bool] = True

    def __call__(self, logsnr: Array, dlogsnr_dt: Array | None = None) -> Array:
        _require_slope("Weighting.fn", "kingma_gao", dlogsnr_dt)
        return -dlogsnr_dt * self.w(logsnr)


@dataclass(frozen=True)
class _Sigmoid:
    bias: float
    uses_dlogsnr_dt: ClassVar[bool] = True

    def __call__(self, logsnr: Array, dlogsnr_dt: Array | None = None) -> Array:
        _require_slope("Weighting.fn", "sigmoid", dlogsnr_dt)
        return -dlogsnr_dt * _sigmoid(self.bias - logsnr)

    def space_factor(self, logsnr: Array, dlogsnr_dt: Array | None, space: str) -> Array:
        xp = array_api_compat.array_namespace(logsnr, dlogsnr_dt)
        if space == "eps":
            return -dlogsnr_dt * _sigmoid(self.bias - logsnr)
        if space == "x":
            # (−λ') e^b sigmoid(λ − b) = (−λ') exp(b − softplus(b − λ)): no e^b overflow
            return -dlogsnr_dt * xp.exp(self.bias - softplus(self.bias - logsnr))
        return -dlogsnr_dt * _sigmoid(self.bias - logsnr) * _sigmoid(logsnr)


@dataclass(frozen=True)
class _EDM:
    sigma_data: float
    uses_dlogsnr_dt: ClassVar[bool] = False

    def __call__(self, logsnr: Array, dlogsnr_dt: Array | None = None) -> Array:
        xp = array_api_compat.array_namespace(logsnr)
        return 1.0 + xp.exp(-logsnr) * (1.0 / self.sigma_data**2)

    def space_factor(self, logsnr: Array, dlogsnr_dt: Array | None, space: str) -> Array:
        xp = array_api_compat.array_namespace(logsnr)
        inv = 1.0 / self.sigma_data**2
        if space == "eps":
            return 1.0 + xp.exp(-logsnr) * inv
        if space == "x":
            return xp.exp(logsnr) + inv
        # (1 + e^{−λ}/σ_d²) sigmoid(λ) = 1 + sigmoid(−λ)(1/σ_d² − 1): exactly 1 for σ_d = 1
        return 1.0 + _sigmoid(-logsnr) * (inv - 1.0)


@dataclass(frozen=True)
class _MinSNR:
    gamma: float
    uses_dlogsnr_dt: ClassVar[bool] = False

    def __call__(self, logsnr: Array, dlogsnr_dt: Array | None = None) -> Array:
        xp = array_api_compat.array_namespace(logsnr)
        # min(1, γ e^{−λ}) = exp(min(ln γ − λ, 0)): never overflows, exactly 1 when capped
        return xp.exp(xp.minimum(math.log(self.gamma) - logsnr, xp.zeros_like(logsnr)))

    def space_factor(self, logsnr: Array, dlogsnr_dt: Array | None, space: str) -> Array:
        xp = array_api_compat.array_namespace(logsnr)
        if space == "x":
            # min(1, γ e^{−λ}) e^λ = min(e^λ, γ) = exp(min(λ, ln γ))
            return xp.exp(xp.minimum(logsnr, xp.full_like(logsnr, math.log(self.gamma))))
        w = self(logsnr)
        return w if space == "eps" else w * _sigmoid(logsnr)


# --------------------------------------------------------------------------------------------------
# Factories


def _finite(func: str, arg: str, value: Any, positive: bool = False) -> float:
    expected = "a positive finite number" if positive else "a finite number"
    return check_real(
        func, arg, value, lo=0.0 if positive else None, lo_open=True, expected=expected
    )


def eps_mse() -> Weighting:
    """``W = 1``: plain ε-MSE at uniformly sampled t (DDPM's simple loss, arXiv 2006.11239)."""
    return Weighting("eps_mse", {}, _EpsMSE())


def v_mse() -> Weighting:
    """``W = 1 + e^{−λ}``: plain v-MSE (Salimans & Ho, arXiv 2202.00512)."""
    return Weighting("v_mse", {}, _VMSE())


def x_mse() -> Weighting:
    """``W = e^{−λ}``: plain x-MSE."""
    return Weighting("x_mse", {}, _XMSE())


def elbo() -> Weighting:
    """``W = −dλ/dt``: the continuous-time negative ELBO up to constants (VDM, arXiv 2107.00630)."""
    return Weighting("elbo", {}, _ELBO())


def kingma_gao(w: Callable[[Array], Array]) -> Weighting:
    """``W = −dλ/dt · w(λ)`` for any array-API weight function ``w`` of λ (arXiv 2303.00848).

    Not serialisable (``to_dict`` raises): use :func:`sigmoid` or :func:`elbo` in configs.
    """
    if not callable(w):
        raise TypeError(f"kingma_gao: w must be a callable of logsnr, got {w!r}")
    return Weighting("kingma_gao", {"w": w}, _KingmaGao(w))


def sigmoid(bias: float = 0.0) -> Weighting:
    """``W = −dλ/dt · sigmoid(b − λ)``: VDM++ (arXiv 2303.00848) / SiD2 (arXiv 2410.19324).

    In x-space the factor is ``(−λ') e^b sigmoid(λ − b)`` and in v-space
    ``(−λ') sigmoid(b − λ) sigmoid(λ)``, both overflow-free.
    """
    b = _finite("sigmoid", "bias", bias)
    return Weighting("sigmoid", {"bias": b}, _Sigmoid(b))


def edm(sigma_data: float = 0.5) -> Weighting:
    """``W = 1 + e^{−λ}/σ_d²``: EDM's weight ``(σ_e² + σ_d²)/(σ_e σ_d)²`` on the x error.

    (Karras et al., arXiv 2206.00364.) EDM's log-normal σ density is a schedule choice and not
    part of the weighting.
    """
    s = _finite("edm", "sigma_data", sigma_data, positive=True)
    return Weighting("edm", {"sigma_data": s}, _EDM(s))


def min_snr(gamma: float = 5.0) -> Weighting:
    """``W = min(1, γ e^{−λ})``: Min-SNR-γ, x-error weight ``min(SNR, γ)`` (arXiv 2303.09556)."""
    g = _finite("min_snr", "gamma", gamma, positive=True)
    return Weighting("min_snr", {"gamma": g}, _MinSNR(g))


_FACTORIES: dict[str, Callable[..., Weighting]] = {
    "eps_mse": eps_mse,
    "v_mse": v_mse,
    "x_mse": x_mse,
    "elbo": elbo,
    "sigmoid": sigmoid,
    "edm": edm,
    "min_snr": min_snr,
}


def weighting_from_dict(d: dict[str, Any]) -> Weighting:
    """Rebuild a built-in weighting from ``Weighting.to_dict()`` output.

    Unknown names are a ``ValueError`` listing the built-ins; unknown keys a ``TypeError``.
    """
    if not isinstance(d, dict) or "name" not in d:
        raise ValueError(f"weighting_from_dict: d must be a dict with a 'name' key, got {d!r}")
    name = d["name"]
    if name not in _FACTORIES:
        raise ValueError(
            f"weighting_from_dict: name must be one of {', '.join(map(repr, _FACTORIES))}, "
            f"got {name!r}"
        )
    factory = _FACTORIES[name]
    accepted = set(factory.__code__.co_varnames[: factory.__code__.co_argcount])
    rest = {k: v for k, v in d.items() if k != "name"}
    for key in rest:
        if key not in accepted:
            raise TypeError(f"weighting_from_dict: unknown key {key!r} for {name!r}")
    return factory(**rest)
