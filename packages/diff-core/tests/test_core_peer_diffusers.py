"""Check 33 (peer parity): our DDIM equals diffusers' ``DDIMScheduler`` on its own timesteps.

Runs when diffusers is installed (the default hatch environment has it; it is never a dependency).
"""

from __future__ import annotations

import numpy as np
import pytest

from diff_core import sample
from diff_core.samplers import ddim
from diff_core.schedules import LinearBetaSchedule
from diff_core.testing import problem
from diff_protocol import TimeGrid, as_denoiser, convert, torch_noise

pytestmark = pytest.mark.peer


@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_matches_diffusers_trailing_timesteps(steps):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(
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
    tau = sched.timesteps.numpy().astype(np.float64)
    t = np.concatenate([tau / 999.0, [0.0]])
    grid = TimeGrid(t, LinearBetaSchedule().logsnr(t))
    x_den = problem("ring6").mixture.denoiser("x")

    def eps_fn(z, lam):
        return convert(x_den(z, lam), z, lam, "x", "eps")

    noise = torch_noise(7, (2048, 2))
    z = noise(0)
    ours = sample(as_denoiser(eps_fn, "eps"), ddim(), grid, noise)
    acp = sched.alphas_cumprod
    with torch.no_grad():
        for step_t in sched.timesteps:
            a = acp[step_t]
            lam = torch.log(a / (1 - a)).expand(z.shape[0])
            z = sched.step(eps_fn(z, lam), step_t, z).prev_sample
    assert float((ours - z).abs().max()) <= 1e-4
    # the outputs are real ring6 samples, not a trivial agreement
    radius = torch.linalg.vector_norm(ours, dim=1)
    assert float((radius - 1).abs().median()) < 0.1
    # our table reproduces diffusers' float32 alphas_cumprod at the knots it visits
    lam_ours = grid.logsnr[:-1]
    lam_theirs = np.log((acp[sched.timesteps] / (1 - acp[sched.timesteps])).double().numpy())
    np.testing.assert_allclose(lam_ours, lam_theirs, rtol=0, atol=2e-4)
