"""Cost of conditioning: digits-preset train step with cross-attention (and global-token)
conditioning at batch 128, divided by the same backbone's unconditional step in the same run.

Prints one JSON object: {"conditioned_s", "unconditional_s", "ratio"} (expected <= 1.3).
Usage: python benchmarks/train_step.py [--batch 128] [--reps 20]
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from diff_pixel import Cond, build_model
from diff_semantica import digits_groups, semantica_loss
from diff_semantica.model import SemanticaConfig, SemanticaDenoiser
from diff_semantica.recipes import digits_encoder


def _time(step, state, args, reps: int) -> float:
    state = step(state, *args)
    jax.block_until_ready(state)
    t0 = time.perf_counter()
    for _ in range(reps):
        state = step(state, *args)
    jax.block_until_ready(state)
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batch", type=int, default=128, help="batch size (default 128)")
    ap.add_argument("--reps", type=int, default=20, help="timed steps (default 20)")
    args = ap.parse_args()
    train = digits_groups("train")
    enc = digits_encoder(train)
    b = args.batch
    batch = {
        "x": jnp.asarray(train.images[:b]),
        "x_a": jnp.asarray(train.images[b : 2 * b]),
        "index": jnp.arange(b),
        "slot": jnp.arange(b),
    }
    model = SemanticaDenoiser(SemanticaConfig.for_digits(enc), enc)
    cfg = model.config.backbone_config().replace(token_dim=0, vector_dim=0)
    plain = build_model(cfg)

    def make(m, loss):
        opt = nnx.Optimizer(m, optax.adam(1e-3), wrt=nnx.Param)
        gd, st = nnx.split((m, opt))

        @jax.jit
        def step(st, key):
            mm, oo = nnx.merge(gd, st)
            grads = nnx.grad(lambda q: loss(q, key))(mm)
            oo.update(mm, grads)
            return nnx.state((mm, oo))

        return step, st

    def cond_loss(m, key):
        return semantica_loss(m, batch, key)[0]

    def plain_loss(m, key):
        z = batch["x"] + jax.random.normal(key, batch["x"].shape)
        return jnp.mean((m(z, jnp.zeros((b,)), Cond()) - batch["x"]) ** 2)

    s1, st1 = make(model, cond_loss)
    s0, st0 = make(plain, plain_loss)
    key = jax.random.key(0)
    tc = _time(s1, st1, (key,), args.reps)
    tu = _time(s0, st0, (key,), args.reps)
    print(
        json.dumps(
            {
                "figure": "conditioned / unconditional train step",
                "batch": b,
                "conditioned_s": tc,
                "unconditional_s": tu,
                "ratio": tc / tu,
            }
        )
    )


if __name__ == "__main__":
    main()
