"""The k-step stochastic student sampler of moment matching (MM Algorithm 1, arXiv 2406.04103).

On the grid t_i = 1 − i/k (diff-core ``grids.uniform_t(schedule, k)``, λ from the teacher's
schedule), from z = noise(0):

    for i = 0, ..., k − 1:   x̃ = g_η(z, λ_i);   if i = k − 1: return x̃;
                             z ← DDIM-η_{t_i → t_{i+1}}(z, x̃, noise(i + 1))

With η = 1 the step draws the forward-process posterior q(z_s | z_t, x = x̃): an ancestral sampler
whose posterior mean comes from the student. The step is diff-core's ``ddim(eta)`` step itself
(``ddim(1)`` ≡ ``ddpm(0)``), run by diff-core's one driver. This module imports no framework.
"""

from __future__ import annotations

import functools
from typing import Any

from diff_core import grids
from diff_core import sample as core_sample
from diff_core import samplers as core_samplers
from diff_protocol import SamplerStep, TimeGrid

__all__ = ["moment_matching", "sample", "student_grid"]


def moment_matching(eta: float = 1.0) -> SamplerStep:
    """The student sampler step: diff-core's ``ddim(eta)`` step under the name
    ``moment_matching`` (stochastic for η > 0, order 1). Use it on :func:`student_grid` with
    ``final="denoise"``."""
    ddim = core_samplers.ddim(eta)  # validates eta in [0, 1]
    return _moment_matching(float(eta), ddim)


@functools.cache
def _moment_matching(eta: float, ddim: SamplerStep) -> SamplerStep:
    return SamplerStep(
        name="moment_matching",
        init=ddim.init,
        step=ddim.step,
        stochastic=eta > 0.0,
        requires_finite_start=False,
        order=1,
    )


def student_grid(schedule: Any, k: int) -> TimeGrid:
    """The k-step student's grid: ``grids.uniform_t(schedule, k)``."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"student_grid: k must be a positive integer, got {k!r}")
    return grids.uniform_t(schedule, k)


def sample(
    student: Any,
    k: int,
    noise: Any,
    *,
    schedule: Any,
    cond: Any = None,
    eta: float = 1.0,
    x_clip: float | None = None,
    return_trajectory: bool = False,
) -> Any:
    """k steps of the student sampler from ``noise(0)``:
    ``diff_core.sample(student, moment_matching(eta), uniform_t(schedule, k), noise,
    final="denoise")``. ``student`` is any diff-protocol denoiser (wrap an NNX model with
    ``diff_pixel.as_denoiser``)."""
    return core_sample(
        student,
        moment_matching(eta),
        student_grid(schedule, k),
        noise,
        cond=cond,
        final="denoise",
        x_clip=x_clip,
        return_trajectory=return_trajectory,
    )
