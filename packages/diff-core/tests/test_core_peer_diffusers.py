"""Check 33 (peer parity): our DDIM equals diffusers' ``DDIMScheduler`` on its own timesteps.

Runs when diffusers is installed (the default hatch environment has it; it is never a dependency).
"""

from __future__ import annotations

import numpy as np
import pytest

from diff_core import sample
from diff_core.peer_diffusers import diffusers_ddim_scheduler, grid_of, run_diffusers_ddim
from diff_core.samplers import ddim
from diff_core.testing import problem
from diff_protocol import as_denoiser, convert, torch_noise

pytestmark = pytest.mark.peer


@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_matches_diffusers_trailing_timesteps(steps):
    torch = pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    sched = diffusers_ddim_scheduler(steps)
    grid = grid_of(sched)
    x_den = problem("ring6").mixture.denoiser("x")

    def eps_fn(z, lam):
        return convert(x_den(z, lam), z, lam, "x", "eps")

    noise = torch_noise(7, (2048, 2))
    z = noise(0)
    ours = sample(as_denoiser(eps_fn, "eps"), ddim(), grid, noise)
    theirs = run_diffusers_ddim(sched, eps_fn, z)
    assert float((ours - theirs).abs().max()) <= 1e-4
    # the outputs are real ring6 samples, not a trivial agreement
    radius = torch.linalg.vector_norm(ours, dim=1)
    assert float((radius - 1).abs().median()) < 0.1
    # our table reproduces diffusers' float32 alphas_cumprod at the knots it visits
    lam_ours = grid.logsnr[:-1]
    acp = sched.alphas_cumprod[sched.timesteps].double()
    lam_theirs = np.log((acp / (1 - acp)).numpy())
    np.testing.assert_allclose(lam_ours, lam_theirs, rtol=0, atol=2e-4)
