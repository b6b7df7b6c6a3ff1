"""The deterministic multistep consistency sampler (MCM Algorithm 2, arXiv 2403.06807).

On the grid t_j = j/S (diff-core ``grids.uniform_t(schedule, S)``), from z = noise(0):

    for j = S, ..., 1:   x̂ = f(z, λ(t_j));   if j = 1: return x̂;   z ← DDIM_{t_j → t_{j−1}}(x̂, z)

The step is diff-core's DDIM (η = 0) itself, and the last evaluation returns x̂ (the driver's
``final="denoise"``). The student at t = j/S belongs to segment j − 1, matching training's
t ∈ (t_step, t_step + 1/S]. One trained model per S.
"""

from __future__ import annotations

import functools
from typing import Any

from diff_core import grids
from diff_core import sample as core_sample
from diff_core import samplers as core_samplers
from diff_protocol import SamplerStep, TimeGrid

__all__ = ["multistep_consistency", "sample", "student_grid"]


@functools.cache
def multistep_consistency() -> SamplerStep:
    """MCM's sampler step: diff-core's ``ddim(0.0)`` step under this name (deterministic,
    order 1). Use it on :func:`student_grid` with ``final="denoise"``."""
    ddim = core_samplers.ddim(0.0)
    return SamplerStep(
        name="multistep_consistency",
        init=ddim.init,
        step=ddim.step,
        stochastic=False,
        requires_finite_start=False,
        order=1,
    )


def student_grid(schedule: Any, student_steps: int) -> TimeGrid:
    """The sampling grid of an S-step student: ``grids.uniform_t(schedule, S)``."""
    return grids.uniform_t(schedule, student_steps)


def sample(
    student: Any,
    student_steps: int,
    noise: Any,
    *,
    schedule: Any,
    cond: Any = None,
    z_init: Any = None,
    x_clip: float | None = None,
    return_trajectory: bool = False,
) -> Any:
    """S deterministic steps of ``student`` from ``noise(0)`` (or ``z_init``; ``noise`` may then
    be None) through ``diff_core.sample`` (MCM Algorithm 2); returns x̂ of the last evaluation
    (or a ``SampleResult`` with ``return_trajectory``)."""
    return core_sample(
        student,
        multistep_consistency(),
        student_grid(schedule, student_steps),
        noise,
        cond=cond,
        z_init=z_init,
        final="denoise",
        x_clip=x_clip,
        return_trajectory=return_trajectory,
    )
