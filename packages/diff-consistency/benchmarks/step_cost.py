"""Wall time of one CT and one CD training step over one plain diffusion step of the same MLP
(ring8, width 256 × 4, batch 512), all through diff-pixel's trainer, measured in the same run.

Expected (spec §12): CT ≈ 1.3× (two student forwards and one backward), CD ≈ 1.5–1.7× (adds
the teacher; here the exact mixture, cheap in 2-D). Prints one JSON object.

    python benchmarks/step_cost.py [--steps 200]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps (default: 200)")
    parser.add_argument("--repeats", type=int, default=3, help="best of (default: 3)")
    args = parser.parse_args(argv)
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from diff_consistency.driver import train_consistency
    from diff_consistency.toy import exact_mixture, toy_config
    from diff_core import losses as core_losses
    from diff_core.testing import problem
    from diff_pixel import MLPDenoiser, SampledData, TrainConfig, Trainer
    from diff_pixel.losses import example_keys, noise_batch, uniform_times

    prob = problem("ring8")
    mix = prob.mixture
    total = args.steps * args.repeats + 5

    def data():
        return SampledData(lambda n, rng: mix.sample(n, rng)[0], 512, seed=0)

    def diffusion_loss(model, batch, key, aux):
        x = batch["x"]
        keys = example_keys(key, batch["index"])
        t = uniform_times(keys)
        eps = noise_batch(keys, x.shape, x.dtype)
        z, lam, _ = core_losses.training_inputs(prob.schedule, x, t, eps)
        v = model(z, lam)
        a, s = jnp.sqrt(jax.nn.sigmoid(lam))[:, None], jnp.sqrt(jax.nn.sigmoid(-lam))[:, None]
        loss = jnp.mean((v - (a * eps - s * x)) ** 2)
        return loss, {}

    def timed(trainer):
        for _ in range(5):
            trainer.step(next(trainer.data))  # compile and warm up
        best = float("inf")
        for _ in range(args.repeats):
            batches = [next(trainer.data) for _ in range(args.steps)]
            jax.block_until_ready(trainer.state)
            t0 = time.perf_counter()
            for b in batches:
                trainer._device_step(b, trainer.step_count)
            jax.block_until_ready(trainer.state)
            best = min(best, (time.perf_counter() - t0) / args.steps)
        return best

    init = MLPDenoiser(2, width=256, depth=4, rngs=nnx.Rngs(0))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            steps=total,
            batch_size=512,
            warmup_steps=0,
            grad_clip=0.0,
            out_dir=f"{tmp}/plain",
            progress=False,
            checkpoint_every=0,
        )
        out["plain_s"] = timed(Trainer(nnx.clone(init), diffusion_loss, cfg, data()))
        for mode in ("ct", "cd"):
            c = toy_config("ring8", mode, 8, num_steps=total)
            trainer = train_consistency(
                c,
                data=data(),
                out_dir=f"{tmp}/{mode}",
                init=init,
                schedule=prob.schedule,
                teacher=exact_mixture("ring8").denoiser("x") if mode == "cd" else None,
                progress=False,
                checkpoint_every=0,
                run=False,
            )
            out[f"{mode}_s"] = timed(trainer)
    out["ct_over_plain"] = out["ct_s"] / out["plain_s"]
    out["cd_over_plain"] = out["cd_s"] / out["plain_s"]
    out["batch"] = 512
    out["devices"] = [str(d) for d in jax.devices()]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
