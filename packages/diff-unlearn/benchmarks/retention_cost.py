"""Cost of one retention evaluation against one pretraining epoch, and the saving of the
original model's sample cache when several methods are compared (spec §8).

    python benchmarks/retention_cost.py [--n 100] [--steps 50] [--methods 8]

Prints one JSON object: seconds of one same-noise evaluation (9 retain classes × n samples,
DDIM-steps, guidance 2, both models), seconds of one pretraining epoch (1437 digits, batch 128)
in the same run, their ratio, and the time of comparing ``--methods`` models with and without
the cache of θ₀'s samples.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="retention evaluation cost")
    p.add_argument("--preset", default="tiny-8", help="diff-pixel preset")
    p.add_argument("--n", type=int, default=100, help="samples per class")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps")
    p.add_argument("--methods", type=int, default=8, help="models compared against θ₀")
    args = p.parse_args(argv)

    import jax

    from diff_pixel import Loader
    from diff_unlearn import PretrainConfig, build_conditional, digits_task, retention
    from diff_unlearn.metrics import ORIGINAL_CACHE
    from diff_unlearn.models import pretrain, pretrain_recipe
    from diff_unlearn.testing import perturbed

    task = digits_task((3,))
    recipe = pretrain_recipe(task, PretrainConfig())
    m0 = build_conditional(args.preset, num_classes=10)
    m1 = perturbed(m0, 1e-2)
    kw = dict(
        schedule=recipe.schedule(),
        n_per_cond=args.n,
        steps=args.steps,
        distances=("rmse", "1-ssim"),
    )
    retention(m0, m1, (0,), **{**kw, "n_per_cond": min(args.n, 256)}, cache=False)  # compile
    t = time.perf_counter()
    retention(m0, m1, task.retain_classes, cache=False, **kw)
    eval_s = time.perf_counter() - t
    epoch_steps = -(-1437 // 128)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = PretrainConfig(steps=epoch_steps + 1, checkpoint_every=0)
        trainer = pretrain(task, tmp + "/warm", cfg.replace(steps=1), progress=False)
        loader = Loader(task.train, 128, seed=0)
        t = time.perf_counter()
        for _ in range(epoch_steps):
            trainer.step(next(loader))
        jax.block_until_ready(trainer.state)
        epoch_s = time.perf_counter() - t
    ORIGINAL_CACHE.items.clear()
    models = [perturbed(m0, 1e-2, seed=s) for s in range(args.methods)]
    t = time.perf_counter()
    for m in models:
        retention(m0, m, task.retain_classes, cache=False, **kw)
    uncached = time.perf_counter() - t
    t = time.perf_counter()
    for m in models:
        retention(m0, m, task.retain_classes, cache=True, **kw)
    cached = time.perf_counter() - t
    print(
        json.dumps(
            {
                "settings": vars(args),
                "retention_s": eval_s,
                "pretrain_epoch_s": epoch_s,
                "retention_over_epoch": eval_s / epoch_s,
                "compare_uncached_s": uncached,
                "compare_cached_s": cached,
                "cache_saving": 1 - cached / uncached,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
