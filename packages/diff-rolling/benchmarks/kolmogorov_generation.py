"""Trajectory-frames per second of ``generate`` vs a bare jax-cfd loop with the same settings
(CPU, one JSON object; target ratio bare/generate ≤ 1.1, i.e. ``generate`` adds ≤ 10%).

    python benchmarks/kolmogorov_generation.py --trajectories 8 --frames 16
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--trajectories", type=int, default=8, help="trajectories")
    p.add_argument("--frames", type=int, default=16, help="stored frames (after a 4-frame burn-in)")
    args = p.parse_args()

    from jax_cfd.base import funcutils

    from diff_rolling.data.kolmogorov import _initial_vorticity, generate, preset, spectral_step

    cfg = preset(
        "cpu",
        n_trajectories=args.trajectories,
        n_frames=args.frames,
        burn_in=1.6,
        split=(args.trajectories, 0, 0),
    )
    generate(cfg, batch=args.trajectories, progress=False)  # compile
    t = time.perf_counter()
    generate(cfg, batch=args.trajectories, progress=False)
    gen_s = time.perf_counter() - t

    step, grid, inner = spectral_step(cfg)
    traj = funcutils.trajectory(funcutils.repeated(step, inner), 4 + args.frames)
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(
        jnp.arange(args.trajectories, dtype=jnp.uint32)
    )

    @jax.jit
    def bare(keys):
        def one(key):
            return jnp.fft.irfftn(
                traj(jnp.fft.rfftn(_initial_vorticity(cfg, grid, key)))[1], axes=(-2, -1)
            )

        return jax.vmap(one)(keys)

    bare(keys).block_until_ready()
    t = time.perf_counter()
    bare(keys).block_until_ready()
    bare_s = time.perf_counter() - t
    n = args.trajectories * args.frames
    print(
        json.dumps(
            {
                "figure": "kolmogorov_generation",
                "trajectory_frames": n,
                "generate_frames_per_s": n / gen_s,
                "bare_frames_per_s": n / bare_s,
                "ratio_generate_over_bare_time": gen_s / bare_s,
                "target_ratio_max": 1.1,
                "substeps_per_frame": inner,
            }
        )
    )


if __name__ == "__main__":
    main()
