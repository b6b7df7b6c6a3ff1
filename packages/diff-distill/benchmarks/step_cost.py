"""Wall time of one iteration of each moment-matching variant over one plain diffusion training
step of the same MLP (ring8, width 256 × 4, batch 512), all through diff-pixel's trainer,
measured in the same run (spec §13).

Expected: alternating ≈ 2.0–2.5× (an auxiliary and a student update, each with a student pass
and an auxiliary or teacher pass), parameter space ≈ 2.5–3× (teacher backward + JVP + student
backward; here plus the logged ⟨G_A, G_B⟩, one more teacher backward). Prints one JSON object.

    python benchmarks/step_cost.py [--steps 100]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="timed steps (default: 100)")
    parser.add_argument("--repeats", type=int, default=3, help="best of (default: 3)")
    args = parser.parse_args(argv)
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from diff_core import losses as core_losses
    from diff_core.testing import problem
    from diff_distill.driver import make_trainer
    from diff_distill.toy import exact_mixture, toy_config
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
        return jnp.mean((v - (a * eps - s * x)) ** 2), {}

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
        for variant, teacher in (
            ("alternating", exact_mixture("ring8").denoiser("x")),
            ("alternating_network", init),
            ("param_space", init),
        ):
            c = toy_config("ring8", variant.split("_network")[0], 8, num_steps=total)
            trainer = make_trainer(
                c,
                teacher=teacher,
                data=data(),
                out_dir=f"{tmp}/{variant}",
                student=init,
                schedule=prob.schedule,
                progress=False,
                checkpoint_every=0,
            )
            out[f"{variant}_s"] = timed(trainer)
            out[f"{variant}_over_plain"] = out[f"{variant}_s"] / out["plain_s"]
    out["batch"] = 512
    out["devices"] = [str(d) for d in jax.devices()]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
