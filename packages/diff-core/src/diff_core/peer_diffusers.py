"""HuggingFace diffusers' DDIM loop set up on diff-core's conventions (the peer of check 33).

Used by the peer-parity test and by ``benchmarks/peer_diffusers.py``; diffusers is imported only
here, inside the functions, and is never a dependency of diff-core.

``DDIMScheduler(timestep_spacing="trailing", set_alpha_to_one=True, clip_sample=False)`` visits
integer timesteps τ; the equivalent diff-core grid is ``t = τ/999`` on ``LinearBetaSchedule()``
followed by t = 0 (DDPM's timestep k is ``t = k/(T − 1)``), sampled with ``ddim()`` and
``final="denoise"``. With N dividing 1000 both walk the same knots (otherwise diffusers re-derives
the previous timestep with a fixed stride, huggingface/diffusers#11347).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from diff_protocol import TimeGrid

__all__ = ["diffusers_ddim_scheduler", "grid_of", "run_diffusers_ddim"]


def diffusers_ddim_scheduler(steps: int) -> Any:
    """diffusers' ``DDIMScheduler`` for DDPM's linear β table with ``steps`` trailing timesteps."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        timestep_spacing="trailing",
        set_alpha_to_one=True,
        clip_sample=False,
        prediction_type="epsilon",
    )
    sched.set_timesteps(steps)
    return sched


def grid_of(scheduler: Any) -> TimeGrid:
    """diff-core's grid for the scheduler's timesteps: ``t = τ/999``, then 0."""
    from .schedules import LinearBetaSchedule

    tau = scheduler.timesteps.numpy().astype(np.float64)
    t = np.concatenate([tau / 999.0, [0.0]])
    return TimeGrid(t, LinearBetaSchedule().logsnr(t))


def run_diffusers_ddim(scheduler: Any, eps_fn: Callable[[Any, Any], Any], z: Any) -> Any:
    """diffusers' loop: ``eps_fn(z, logsnr)`` with logsnr from its float32 ``alphas_cumprod``."""
    import torch

    acp = scheduler.alphas_cumprod
    with torch.no_grad():
        for tau in scheduler.timesteps:
            a = acp[tau]
            lam = torch.log(a / (1 - a)).expand(z.shape[0])
            z = scheduler.step(eps_fn(z, lam), tau, z).prev_sample
    return z
