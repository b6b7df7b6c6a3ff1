"""Song et al.'s multistep consistency sampler (arXiv 2303.01469, Algorithm 1), for S = 1 models.

x = f(z_1, t_1); for each later time t_i of a strictly decreasing grid in (0, 1): z = α_{t_i} x +
σ_{t_i}·noise(i) (fresh noise), x = f(z, t_i); return x. As a ``SamplerStep`` the step is
``α_s x̂ + σ_s·noise`` on a grid ending at 0 with the driver's ``final="denoise"``. It is not MCM's
sampler (that one is deterministic, :mod:`.multistep`); it is offered to express the relation.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import numpy as np

from diff_protocol import SamplerStep, TimeGrid, check_grid, diffuse
from diff_protocol.checks import check_logsnr_order

__all__ = ["consistency_renoise", "renoise_grid"]


def _step(z_t, x_hat, logsnr_t, logsnr_s, noise, state=()):
    if noise is None:
        raise ValueError("consistency_renoise: noise must be an array shaped like z_t, got None")
    check_logsnr_order("consistency_renoise", logsnr_t, logsnr_s)
    return diffuse(x_hat, noise, logsnr_s), state


@functools.cache
def consistency_renoise() -> SamplerStep:
    """The re-noising step ``z_s = α_s x̂ + σ_s·noise`` (stochastic)."""
    return SamplerStep(
        name="consistency_renoise",
        init=lambda z: (),
        step=_step,
        stochastic=True,
        requires_finite_start=False,
        order=1,
    )


def renoise_grid(schedule: Any, times: Sequence[float]) -> TimeGrid:
    """Grid ``[1, *times, 0]`` for :func:`consistency_renoise` (``times`` strictly decreasing in
    (0, 1)); λ from ``schedule``."""
    t = np.concatenate([[1.0], np.asarray(list(times), dtype=np.float64), [0.0]])
    return check_grid(TimeGrid(t, np.asarray(schedule.logsnr(t), dtype=np.float64)), "renoise_grid")
