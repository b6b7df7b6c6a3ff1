"""Seconds per unlearning step of every method, as a ratio to ``retain_finetune``'s step
measured in the same run (spec §8; expected: distill ≈ 1.5–2, erasediff ≈ K + 2, salun ≈ 1 plus
a one-off mask cost).

    python benchmarks/method_cost.py [--preset tiny-8] [--steps 20] [--batch 64]

Prints one JSON object: per method the median step time after compilation, its ratio to
retain_finetune, the compile (first step) time and SalUn's mask time. The model is randomly
initialised (costs do not depend on the weights).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time

import numpy as np


def measure(preset: str, steps: int, batch: int, methods: list[str] | None = None) -> dict:
    import jax

    from diff_unlearn import (
        METHODS,
        PretrainConfig,
        UnlearnConfig,
        build_conditional,
        digits_task,
        loss_setup,
        make_method,
        unlearn_trainer,
    )
    from diff_unlearn.models import pretrain_recipe

    task = digits_task((3,))
    recipe = pretrain_recipe(task, PretrainConfig())
    setup = loss_setup(task, recipe)
    model = build_conditional(preset, num_classes=10)
    out: dict = {}
    for name in methods or list(METHODS):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            trainer = unlearn_trainer(
                model,
                make_method(name, setup),
                task,
                recipe,
                tmp,
                UnlearnConfig(
                    steps=steps + 1, forget_batch=batch, retain_batch=batch, checkpoint_every=0
                ),
                progress=False,
            )
            init_s = time.perf_counter() - t0
            times = []
            for _ in range(steps + 1):
                b = next(trainer.data)
                t = time.perf_counter()
                trainer.step(b)
                jax.block_until_ready(trainer.state)
                times.append(time.perf_counter() - t)
            out[name] = {
                "step_s": float(np.median(times[1:])),
                "first_step_s": times[0],
                "init_s": init_s,
            }
    base = out.get("retain_finetune", next(iter(out.values())))["step_s"]
    for v in out.values():
        v["ratio_to_retain_finetune"] = v["step_s"] / base
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="cost of one unlearning step per method")
    p.add_argument("--preset", default="tiny-8", help="diff-pixel preset")
    p.add_argument("--steps", type=int, default=20, help="timed steps per method")
    p.add_argument("--batch", type=int, default=64, help="forget and retain batch (each)")
    args = p.parse_args(argv)
    result = {"settings": vars(args), "methods": measure(args.preset, args.steps, args.batch)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
