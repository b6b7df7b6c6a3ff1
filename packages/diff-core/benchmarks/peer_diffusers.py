"""Our sampling loops against HuggingFace diffusers' ``DDIMScheduler`` loop (benchmark-only peer).

Figure 1 (check 33's setup): ``ddim(0)`` on ``LinearBetaSchedule()`` with diffusers' trailing
timesteps, the same exact ring6 ε-denoiser, 50 steps: time ratio and max abs difference.
Figure 2: per-step overhead of each loop with the same tiny MLP denoiser (batch 64, 50 steps):
overhead = (loop time − time of the same denoiser calls alone) / steps, for diffusers, our torch
loop and our JAX ``lax.scan`` driver. Goal: JAX overhead at least 5x below diffusers'.

    pip install diffusers   # benchmark-only, never a dependency
    python packages/diff-core/benchmarks/peer_diffusers.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_of  # noqa: E402

from diff_core import sample  # noqa: E402
from diff_core.peer_diffusers import (  # noqa: E402
    diffusers_ddim_scheduler,
    grid_of,
    run_diffusers_ddim,
)
from diff_core.samplers import ddim  # noqa: E402
from diff_core.testing import problem  # noqa: E402
from diff_protocol import as_denoiser, convert, torch_noise  # noqa: E402

STEPS = 50


def parity_figure() -> dict:
    prob = problem("ring6")
    x_den = prob.mixture.denoiser("x")

    def eps_fn(z, lam):
        return convert(x_den(z, lam), z, lam, "x", "eps")

    den = as_denoiser(eps_fn, "eps")
    sched = diffusers_ddim_scheduler(STEPS)
    grid = grid_of(sched)
    noise = torch_noise(0, (4096, 2))
    z0 = noise(0)
    ours = sample(den, ddim(), grid, noise)
    theirs = run_diffusers_ddim(sched, eps_fn, z0.clone())
    t_ours = best_of(lambda: sample(den, ddim(), grid, noise), 3)
    t_theirs = best_of(lambda: run_diffusers_ddim(sched, eps_fn, z0.clone()), 3)
    return {
        "figure": "ddim_vs_diffusers_exact_denoiser",
        "steps": STEPS,
        "n": 4096,
        "max_abs_diff": float((ours - theirs).abs().max()),
        "ours_s": t_ours,
        "diffusers_s": t_theirs,
        "time_ratio_ours_over_diffusers": t_ours / t_theirs,
    }


def overhead_figure() -> dict:
    gen = np.random.default_rng(0)
    w1, b1 = gen.standard_normal((3, 64)) * 0.5, gen.standard_normal(64) * 0.1
    w2, b2 = gen.standard_normal((64, 2)) * 0.1, gen.standard_normal(2) * 0.1
    tw = [torch.tensor(a, dtype=torch.float32) for a in (w1, b1, w2, b2)]

    def mlp_torch(z, lam):
        h = torch.tanh(torch.cat([z, lam[:, None] / 10], dim=1) @ tw[0] + tw[1])
        return h @ tw[2] + tw[3]

    den = as_denoiser(mlp_torch, "eps")
    sched = diffusers_ddim_scheduler(STEPS)
    grid = grid_of(sched)
    noise = torch_noise(1, (64, 2))
    z0 = noise(0)
    lam_fixed = torch.zeros(64)
    with torch.no_grad():
        t_diff = best_of(lambda: run_diffusers_ddim(sched, mlp_torch, z0.clone()), 7)
        t_mlp = best_of(lambda: [mlp_torch(z0, lam_fixed) for _ in range(STEPS)], 7)
    t_ours = best_of(lambda: sample(den, ddim(), grid, noise), 7)
    out = {
        "figure": "per_step_overhead_tiny_mlp",
        "steps": STEPS,
        "batch": 64,
        "diffusers_us_per_step": 1e6 * (t_diff - t_mlp) / STEPS,
        "ours_torch_us_per_step": 1e6 * (t_ours - t_mlp) / STEPS,
        "torch_mlp_us_per_call": 1e6 * t_mlp / STEPS,
    }
    try:
        import jax
        import jax.numpy as jnp

        from diff_protocol import jax_noise

        jw = [jnp.asarray(a, dtype=jnp.float32) for a in (w1, b1, w2, b2)]

        def mlp_jax(z, lam):
            h = jnp.tanh(jnp.concatenate([z, lam[:, None] / 10], axis=1) @ jw[0] + jw[1])
            return h @ jw[2] + jw[3]

        jden = as_denoiser(mlp_jax, "eps")
        jnoise = jax_noise(jax.random.key(1), (64, 2))
        jax.block_until_ready(sample(jden, ddim(), grid, jnoise))
        t_jax = best_of(lambda: jax.block_until_ready(sample(jden, ddim(), grid, jnoise)), 7)

        @jax.jit
        def mlp_only(z):
            def body(c, _):
                return mlp_jax(c, jnp.zeros(64)), None

            return jax.lax.scan(body, z, None, length=STEPS)[0]

        zj = jnoise(0)
        jax.block_until_ready(mlp_only(zj))
        t_jmlp = best_of(lambda: jax.block_until_ready(mlp_only(zj)), 7)
        jax_over = max((t_jax - t_jmlp) / STEPS, 1e-9)
        out.update(
            {
                "jax_scan_us_per_step": 1e6 * jax_over,
                "jax_call_total_us": 1e6 * t_jax,
                "ratio_diffusers_over_jax": (t_diff - t_mlp) / STEPS / jax_over,
                "goal_ratio_min": 5.0,
            }
        )
    except ImportError:
        pass
    out["ratio_diffusers_over_ours_torch"] = (t_diff - t_mlp) / max(t_ours - t_mlp, 1e-9)
    return out


def main() -> None:
    try:
        import diffusers  # noqa: F401
    except ImportError:
        print(json.dumps({"error": "diffusers is not installed; pip install diffusers"}))
        return
    print(json.dumps(parity_figure()))
    print(json.dumps(overhead_figure()))


if __name__ == "__main__":
    main()
