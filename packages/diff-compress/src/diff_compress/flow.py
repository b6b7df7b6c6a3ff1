"""Rectified flow as a VP process (for the few-step second stage, our option).

The flow state ``z = (1 − t) x₀ + t ε`` is the VP state scaled by ``√((1−t)² + t²)``: the VP process
with ``λ(t) = 2 ln((1 − t)/t)`` (+ a resolution shift). Its velocity loss ``‖u − û‖²``,
``u = ε − x₀``, equals ``(1 + e^{−λ/2})² ‖ε − ε̂‖²`` (:func:`flow_weighting`), and DDIM (η = 0)
on this schedule is the Euler step of the flow (DDIM is scale invariant). ``FlowSchedule``
implements the diff-protocol ``Schedule``; it registers under ``diff.schedules`` as
``rectified_flow``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import array_api_compat
import numpy as np

from diff_core.weighting import Weighting

__all__ = ["FlowSchedule", "flow_weighting"]


def _sig(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))


class FlowSchedule:
    """``λ(t') = 2 ln((1 − t')/t') + shift`` with ``t' = t_lo + (t_hi − t_lo) t``.

    ``logsnr_min``/``logsnr_max`` (before the shift, default ±inf = untruncated) map ``t ∈ [0, 1]``
    affinely onto the t' interval where ``λ − shift`` lies in ``[logsnr_min, logsnr_max]``, so that
    a    sampler can start at finite λ.
    """

    name: ClassVar[str] = "rectified_flow"

    def __init__(
        self, shift: float = 0.0, logsnr_min: float = -math.inf, logsnr_max: float = math.inf
    ) -> None:
        if not math.isfinite(shift):
            raise ValueError(f"FlowSchedule: shift must be finite, got {shift!r}")
        if not logsnr_min < logsnr_max:
            raise ValueError(
                f"FlowSchedule: logsnr_min must be < logsnr_max, got {logsnr_min}, {logsnr_max}"
            )
        self.shift = float(shift)
        self.logsnr_min = float(logsnr_min)
        self.logsnr_max = float(logsnr_max)
        # t' = sigmoid(−λ'/2) for λ' = λ − shift
        self._t_lo = 0.0 if logsnr_max == math.inf else _sig(-logsnr_max / 2)
        self._t_hi = 1.0 if logsnr_min == -math.inf else _sig(-logsnr_min / 2)

    def __repr__(self) -> str:
        return (
            f"FlowSchedule(shift={self.shift}, logsnr_min={self.logsnr_min}, "
            f"logsnr_max={self.logsnr_max})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlowSchedule) and self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))

    @property
    def logsnr_range(self) -> tuple[float, float]:
        return (self.logsnr_min + self.shift, self.logsnr_max + self.shift)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "shift": self.shift,
            "logsnr_min": self.logsnr_min,
            "logsnr_max": self.logsnr_max,
        }

    def _tp(self, t: Any) -> Any:
        return self._t_lo + (self._t_hi - self._t_lo) * t

    def logsnr(self, t: Any) -> Any:
        xp = array_api_compat.array_namespace(t)
        tp = self._tp(t)
        with np.errstate(divide="ignore"):
            return 2.0 * (xp.log1p(-tp) - xp.log(tp)) + self.shift

    def dlogsnr_dt(self, t: Any) -> Any:
        tp = self._tp(t)
        with np.errstate(divide="ignore"):
            return -2.0 * (self._t_hi - self._t_lo) / (tp * (1.0 - tp))

    def t_of(self, logsnr: Any) -> Any:
        xp = array_api_compat.array_namespace(logsnr)
        tp = 0.5 * (1.0 + xp.tanh(-0.25 * (logsnr - self.shift)))
        t = (tp - self._t_lo) / (self._t_hi - self._t_lo)
        return xp.clip(t, 0.0, 1.0)


@dataclass(frozen=True)
class _FlowWeight:
    uses_dlogsnr_dt: ClassVar[bool] = False

    def __call__(self, logsnr: Any, dlogsnr_dt: Any = None) -> Any:
        xp = array_api_compat.array_namespace(logsnr)
        return (1.0 + xp.exp(-0.5 * logsnr)) ** 2


def flow_weighting() -> Weighting:
    """``W(λ) = (1 + e^{−λ/2})²``: the ε-space weighting whose loss is the flow's ``‖u − û‖²``."""
    return Weighting("rectified_flow", {}, _FlowWeight())
