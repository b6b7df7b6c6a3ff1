"""The sampler-step protocol and time grids.

A sampler is a pair of pure functions, optax style (google-deepmind/optax):
``init(z) -> state`` and ``step(z_t, x_hat, logsnr_t, logsnr_s, noise, state) -> (z_s, state)``,
with an optional ``corrector`` for predictor-corrector methods. Loops belong to the backend
(a Python loop for numpy/torch, ``lax.scan`` under ``jax.jit`` for JAX). The state keeps the same
tree structure, shapes and dtypes across steps so it can be a scan carry.

The time grid is explicit: ``t`` strictly decreasing from ``t[0] <= 1`` to exactly 0, ``logsnr``
strictly increasing. Steps read ``logsnr_s`` from the grid and never re-derive it (the recurring
diffusers bug family, huggingface/diffusers#11347 and #10003).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from .arrays import Array, is_lazy

__all__ = ["SamplerStep", "State", "TimeGrid", "check_grid"]

State = Any


class SamplerStep(NamedTuple):
    """One sampling method as pure functions.

    Attributes:
      name: registry name.
      init: ``init(z) -> state`` (``()`` when the method keeps none).
      step: ``step(z_t, x_hat, logsnr_t, logsnr_s, noise, state) -> (z_s, state)``; ``noise`` is a
        standard normal array shaped like ``z_t`` when ``stochastic`` else ``None``.
      corrector: optional ``corrector(z_t, x_hat_t, z_pred, x_hat_pred, logsnr_t, logsnr_s, state)
        -> (z_s, state)``, called with x̂ evaluated at the predictor's output ``(z_pred, logsnr_s)``.
      stochastic: whether ``step`` consumes noise.
      requires_finite_start: ODE methods in σ or λ cannot start at ``logsnr = -inf``.
      order: documented convergence order (checked by tests).
    """

    name: str
    init: Callable[[Array], State]
    step: Callable[..., tuple[Array, State]]
    corrector: Callable[..., tuple[Array, State]] | None = None
    stochastic: bool = False
    requires_finite_start: bool = False
    order: int = 1


class TimeGrid(NamedTuple):
    """Sampling times ``t`` (strictly decreasing, ending at 0) and their ``logsnr`` (1-D, N+1)."""

    t: Array
    logsnr: Array

    @property
    def n_steps(self) -> int:
        return int(self.t.shape[0]) - 1


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _floats(a: Array) -> list[float]:
    tolist = getattr(a, "tolist", None)
    if callable(tolist):
        return [float(v) for v in tolist()]
    return [float(a[k]) for k in range(int(a.shape[0]))]


def check_grid(grid: Any, func: str = "check_grid") -> TimeGrid:
    """Validate a :class:`TimeGrid` and return it.

    Enforces: 1-D ``t`` and ``logsnr`` of equal length N+1 with N >= 1; ``t`` finite, strictly
    decreasing, ``t[0] <= 1`` and ``t[-1] == 0`` exactly; ``logsnr`` strictly increasing and finite
    except ``logsnr[0] = -inf`` and ``logsnr[-1] = +inf``. Value checks are skipped for traced
    (JAX) arrays.
    """
    if not isinstance(grid, TimeGrid):
        if isinstance(grid, tuple) and len(grid) == 2:
            grid = TimeGrid(*grid)
        else:
            raise TypeError(
                f"{func}: grid must be a TimeGrid(t, logsnr), got {type(grid).__name__}"
            )
    t, lam = grid.t, grid.logsnr
    for arg, a in (("grid.t", t), ("grid.logsnr", lam)):
        if getattr(a, "shape", None) is None:
            raise TypeError(f"{func}: {arg} must be an array, got {type(a).__name__}")
        if len(a.shape) != 1:
            raise ValueError(f"{func}: {arg} must be 1-D, got shape {tuple(a.shape)}")
    if t.shape[0] < 2:
        raise ValueError(
            f"{func}: grid.t must have at least 2 points (N >= 1 steps), got {t.shape[0]}"
        )
    if lam.shape[0] != t.shape[0]:
        raise ValueError(
            f"{func}: grid.logsnr must have the length of grid.t ({t.shape[0]}), got {lam.shape[0]}"
        )
    if is_lazy(t) or is_lazy(lam):
        return grid
    tv, lv = _floats(t), _floats(lam)
    if not all(math.isfinite(v) for v in tv):
        raise ValueError(f"{func}: grid.t must be finite, got {tv}")
    if tv[-1] != 0.0:
        raise ValueError(f"{func}: grid.t must end at exactly 0.0, got {_fmt(tv[-1])}")
    if tv[0] > 1.0:
        raise ValueError(f"{func}: grid.t must start at t <= 1, got {_fmt(tv[0])}")
    for k in range(len(tv) - 1):
        if not tv[k] > tv[k + 1]:
            raise ValueError(
                f"{func}: grid.t must be strictly decreasing, got t[{k}]={_fmt(tv[k])} "
                f"<= t[{k + 1}]={_fmt(tv[k + 1])}"
            )
    for k, v in enumerate(lv):
        if math.isnan(v):
            raise ValueError(f"{func}: grid.logsnr must not be NaN, got NaN at index {k}")
        if math.isinf(v) and not ((k == 0 and v < 0) or (k == len(lv) - 1 and v > 0)):
            raise ValueError(
                f"{func}: grid.logsnr must be finite except -inf first and +inf last, "
                f"got {v} at index {k}"
            )
    for k in range(len(lv) - 1):
        if not lv[k] < lv[k + 1]:
            raise ValueError(
                f"{func}: grid.logsnr must be strictly increasing, got logsnr[{k}]={_fmt(lv[k])} "
                f">= logsnr[{k + 1}]={_fmt(lv[k + 1])}"
            )
    return grid
