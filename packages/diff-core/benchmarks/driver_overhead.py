"""Cost of the protocol layers: diff-core's drivers against a hand-inlined numpy loop.

ring6 exact denoiser, 4096 samples, ddpm(gamma=0), 64 steps, float64. Prints one JSON object per
figure: numpy driver / inlined loop (target <= 1.25), torch driver / numpy driver, JAX scan (after
compile) / numpy driver, and the JAX compile time.

    python packages/diff-core/benchmarks/driver_overhead.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _timing import best_of  # noqa: E402

from diff_core import grids, sample  # noqa: E402
from diff_core.samplers import ddpm  # noqa: E402
from diff_core.testing import problem  # noqa: E402
from diff_protocol import numpy_noise, table_noise  # noqa: E402

N, STEPS = 4096, 64


def inlined(den, grid, table):
    """DDPM (γ = 0) written out by hand: the loop our driver must not be much slower than."""
    z = table[0]
    lam = grid.logsnr
    for k in range(STEPS):
        lt = lam[k]
        x_hat = den(z, np.full(N, lt))
        if k == STEPS - 1:
            return x_hat
        ls = lam[k + 1]
        a2t, a2s = 1 / (1 + np.exp(-lt)), 1 / (1 + np.exp(-ls))
        s2t, s2s = 1 - a2t, 1 - a2s
        c = -np.expm1(lt - ls)
        mean = np.sqrt(a2t / a2s) * (s2s / s2t) * z + np.sqrt(a2s) * c * x_hat
        z = mean + np.sqrt(c * s2s) * table[k + 1]
    return z


def main() -> None:
    prob = problem("ring6")
    grid = grids.uniform_t(prob.schedule, STEPS)
    den = prob.mixture.denoiser("x")
    table = np.stack([numpy_noise(0, (N, 2))(i) for i in range(STEPS + 1)])
    noise = table_noise(table)
    sampler = ddpm()
    ours = sample(den, sampler, grid, noise)
    ref = inlined(den, grid, table)
    t_np = best_of(lambda: sample(den, sampler, grid, noise))
    t_in = best_of(lambda: inlined(den, grid, table))
    print(
        json.dumps(
            {
                "figure": "numpy_driver_vs_inlined",
                "steps": STEPS,
                "n": N,
                "driver_s": t_np,
                "inlined_s": t_in,
                "ratio": t_np / t_in,
                "max_abs_diff": float(np.abs(ours - ref).max()),
                "target_ratio_max": 1.25,
            }
        )
    )
    try:
        import torch

        tt = table_noise(torch.from_numpy(table))
        sample(den, sampler, grid, tt)
        t_torch = best_of(lambda: sample(den, sampler, grid, tt))
        print(
            json.dumps(
                {
                    "figure": "torch_driver_vs_numpy_driver",
                    "torch_s": t_torch,
                    "numpy_s": t_np,
                    "ratio": t_torch / t_np,
                    "threads": torch.get_num_threads(),
                }
            )
        )
    except ImportError:
        pass
    try:
        import jax
        import jax.numpy as jnp

        tj = table_noise(jnp.asarray(table, dtype=jnp.float32))
        t0 = time.perf_counter()
        jax.block_until_ready(sample(den, sampler, grid, tj))
        compile_s = time.perf_counter() - t0
        t_jax = best_of(lambda: jax.block_until_ready(sample(den, sampler, grid, tj)))
        print(
            json.dumps(
                {
                    "figure": "jax_scan_vs_numpy_driver",
                    "jax_s": t_jax,
                    "numpy_s": t_np,
                    "ratio": t_jax / t_np,
                    "compile_s": compile_s,
                    "dtype": "float32 (jax) vs float64",
                }
            )
        )
    except ImportError:
        pass


if __name__ == "__main__":
    main()
