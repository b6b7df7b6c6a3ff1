"""EDM's discrete noise schedule, taken from diff-core, and the gamma/alpha/sigma helpers.

EDM (arXiv:2203.17003, appendix B; official ``PredefinedNoiseSchedule("polynomial_2")``) uses the
grid t_k = k/T, k = 0..T, with f(k) = (1 - (k/T)^p)^2, step ratios
r_k = clip(f(k)/f(k-1), 0.001, 1), abar2_k = prod_{j<=k} r_j, alpha2_k = (1 - 2s) abar2_k + s
and gamma_k = -logsnr_k = log((1 - alpha2_k)/alpha2_k). diff-core's
`PolynomialSchedule(timesteps=T, power=p, precision=s)` holds exactly this table; this module
reads it once in float64 (``nearest_knot`` at t_k) and evaluates it only at the knots.

Helpers (gamma = -logsnr): alpha^2 = sigmoid(-gamma), sigma^2 = sigmoid(gamma), and for s < t

    sigma2_{t|s} = -expm1(softplus(gamma_s) - softplus(gamma_t)),
    alpha_{t|s}  = exp(1/2 (logsigmoid(-gamma_t) - logsigmoid(-gamma_s))).
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "EDMSchedule",
    "alpha_from_gamma",
    "alpha_t_given_s",
    "sigma2_t_given_s",
    "sigma_from_gamma",
]


def alpha_from_gamma(gamma: Tensor) -> Tensor:
    """alpha = sqrt(sigmoid(-gamma))."""
    return torch.sqrt(torch.sigmoid(-gamma))


def sigma_from_gamma(gamma: Tensor) -> Tensor:
    """sigma = sqrt(sigmoid(gamma))."""
    return torch.sqrt(torch.sigmoid(gamma))


def sigma2_t_given_s(gamma_t: Tensor, gamma_s: Tensor) -> Tensor:
    """sigma^2_{t|s} = -expm1(softplus(gamma_s) - softplus(gamma_t))."""
    return -torch.expm1(F.softplus(gamma_s) - F.softplus(gamma_t))


def alpha_t_given_s(gamma_t: Tensor, gamma_s: Tensor) -> Tensor:
    """alpha_{t|s} = exp(1/2 (logsigmoid(-gamma_t) - logsigmoid(-gamma_s)))."""
    return torch.exp(0.5 * (F.logsigmoid(-gamma_t) - F.logsigmoid(-gamma_s)))


def _parse_name(schedule: str) -> float:
    m = re.fullmatch(r"polynomial_(\d+(?:\.\d+)?)", schedule)
    if m is None:
        raise ValueError(
            f"EDMSchedule: schedule must be 'polynomial_<power>' (e.g. 'polynomial_2'), got "
            f"{schedule!r}; the learned schedule is out of scope"
        )
    p = float(m.group(1))
    return int(p) if p.is_integer() else p


class EDMSchedule:
    """EDM's gamma table on the grid t_k = k/T, from diff-core's `PolynomialSchedule`.

    Args:
        T: number of diffusion steps (1000 in the paper).
        schedule: ``"polynomial_<p>"`` (the paper: ``"polynomial_2"``).
        precision: s, the floor of alpha^2 (1e-5 in the paper).

    Attributes:
        protocol_schedule: the diff-core schedule (a protocol `Schedule`).
        gamma_table: float64 tensor [T + 1] of gamma_k = -logsnr_k (strictly increasing).

    Example:
        >>> s = EDMSchedule()
        >>> round(float(s.gamma_table[0]), 6), round(float(s.gamma_table[1000]), 6)
        (-11.512915, 11.512516)
    """

    def __init__(self, T: int = 1000, schedule: str = "polynomial_2", precision: float = 1e-5):
        from diff_core.schedules import PolynomialSchedule

        if not isinstance(T, int) or isinstance(T, bool) or T < 2:
            raise ValueError(f"EDMSchedule: T must be an int >= 2, got {T!r}")
        if not 0 < precision < 0.5:
            raise ValueError(f"EDMSchedule: precision must be in (0, 0.5), got {precision!r}")
        power = _parse_name(schedule)
        self.T = T
        self.name = schedule
        self.precision = float(precision)
        self.protocol_schedule = PolynomialSchedule(timesteps=T, power=power, precision=precision)
        knots = np.arange(T + 1, dtype=np.float64) / T
        logsnr = np.asarray(self.protocol_schedule.nearest_knot(knots), dtype=np.float64)
        if logsnr.shape != (T + 1,) or not np.all(np.isfinite(logsnr)):
            raise ValueError("EDMSchedule: diff-core returned a non-finite logsnr table")
        if not np.all(np.diff(logsnr) < 0):
            raise ValueError("EDMSchedule: logsnr table must be strictly decreasing")
        self.logsnr_np = logsnr
        self.gamma_table = torch.from_numpy(-logsnr)

    # -------------------------------------------------------------------------------- lookups

    def gamma(self, k: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """gamma_k for integer knots k (any shape), cast to `dtype` (default float64)."""
        table = self.gamma_table.to(k.device)
        k = k.long()
        g = table.index_select(0, k.reshape(-1)).reshape(k.shape)
        return g if dtype is None else g.to(dtype)

    def logsnr(self, k: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """logsnr_k = -gamma_k."""
        return -self.gamma(k, dtype)

    def k_of_t(self, t: Tensor | float) -> Tensor:
        """Nearest knot k = round(t T) (EDM's lookup); t must lie in [0, 1]."""
        t = torch.as_tensor(t)
        if t.numel() and (bool((t < 0).any()) or bool((t > 1).any())):
            raise ValueError(f"EDMSchedule.k_of_t: t must lie in [0, 1], got {t.min()}..{t.max()}")
        return torch.round(t.to(torch.float64) * self.T).long()

    def k_of_logsnr(self, logsnr: Tensor) -> Tensor:
        """Knot index of a logsnr through diff-core's ``t_of`` (exact on the knots)."""
        t = self.protocol_schedule.t_of(logsnr.detach().to(torch.float64).cpu().numpy())
        return torch.round(torch.as_tensor(np.asarray(t)) * self.T).long().to(logsnr.device)

    @property
    def sigma0(self) -> float:
        return math.sqrt(float(torch.sigmoid(self.gamma_table[0])))

    def snr_ratio_sum(self) -> float:
        """sum_{k=1..T} (SNR_{k-1}/SNR_k - 1) = sum expm1(gamma_k - gamma_{k-1})."""
        g = self.gamma_table
        return float(torch.expm1(g[1:] - g[:-1]).sum())

    def x_constant_per_dim(self) -> float:
        """gamma_0/2 + 1/2 log(2 pi): the per-dimension x constant of log p(x | z_0)."""
        return float(self.gamma_table[0]) / 2 + 0.5 * math.log(2 * math.pi)

    def to_dict(self) -> dict[str, Any]:
        return {"T": self.T, "schedule": self.name, "precision": self.precision}

    def __repr__(self) -> str:
        return f"EDMSchedule(T={self.T}, schedule={self.name!r}, precision={self.precision})"
