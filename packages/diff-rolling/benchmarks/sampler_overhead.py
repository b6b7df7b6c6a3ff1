"""Overhead of the rolling window sampler over bare network calls (CPU, one JSON object).

Rolls out ``--frames`` frames with a trivial jitted denoiser (one matmul-free affine map per call)
and times the same number of bare jitted denoiser calls (a ``lax.scan`` of the denoiser alone) in
the same run; compile time is reported separately. Target ratio ≤ 1.2.

    python benchmarks/sampler_overhead.py --frames 64
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp


class Affine:
    prediction = "x"

    def __call__(self, z, logsnr, cond=None):
        return 0.9 * z + 0.01 * jnp.tanh(z)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("--frames", type=int, default=64, help="frames to generate")
    p.add_argument("--batch", type=int, default=8, help="batch")
    p.add_argument("--resolution", type=int, default=32, help="frame size")
    p.add_argument("--steps-per-shift", type=int, default=4, help="S")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats (best of)")
    args = p.parse_args()

    from diff_core import CosineSchedule
    from diff_protocol import jax_noise
    from diff_rolling import RolloutConfig, rollout

    w, k, r = 8, 2, args.resolution
    cfg = RolloutConfig(window=w, context=k, steps_per_shift=args.steps_per_shift)
    den = Affine()
    ctx = jnp.zeros((args.batch, k, r, r, 1))
    noise = jax_noise(jax.random.key(0), (args.batch, w, r, r, 1))
    sched = CosineSchedule()

    t = time.perf_counter()
    res = rollout(den, ctx, args.frames, cfg, sched, noise)
    res.frames.block_until_ready()
    compile_s = time.perf_counter() - t
    best = float("inf")
    for _ in range(args.repeats):
        t = time.perf_counter()
        rollout(den, ctx, args.frames, cfg, sched, noise).frames.block_until_ready()
        best = min(best, time.perf_counter() - t)

    @jax.jit
    def bare(z):
        def body(z, _):
            return den(z, jnp.zeros(z.shape[:2]), None), None

        return jax.lax.scan(body, z, None, length=res.nfe)[0]

    z0 = noise(0)
    bare(z0).block_until_ready()
    best_bare = float("inf")
    for _ in range(args.repeats):
        t = time.perf_counter()
        bare(z0).block_until_ready()
        best_bare = min(best_bare, time.perf_counter() - t)
    print(
        json.dumps(
            {
                "figure": "sampler_overhead",
                "frames": args.frames,
                "nfe": res.nfe,
                "rollout_s": best,
                "bare_calls_s": best_bare,
                "ratio": best / best_bare,
                "target_ratio_max": 1.2,
                "compile_s": compile_s,
            }
        )
    )


if __name__ == "__main__":
    main()
