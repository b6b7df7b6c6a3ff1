"""GPU benchmark (one call, under 8 minutes on one H200/H100): unlearning methods and retention
at a larger scale (spec §8, reduced).

    python benchmarks/gpu_unlearn.py            # on the GPU machine
    python benchmarks/gpu_unlearn.py --dry-run  # validates the script on CPU in minutes

1. Pretrains ``tiny-16`` on 16×16 digits in bfloat16-free float32 for ``--pretrain-s`` seconds
   (a step budget measured online) and reports images/s of the train step.
2. Runs every method for ``--method-steps`` steps (forget 3) and reports seconds per step and
   the ratio to ``retain_finetune`` in the same run.
3. Evaluates all models with ``--n`` same-noise samples per class (DDIM-50, guidance 2) and
   prints the results table as JSON.

This is a reduced version of the spec's GPU plan (``digits32`` preset, bf16, TFLOP/s against the
datasheet): it has not been run on a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--dry-run", action="store_true", help="tiny CPU settings to validate the script"
    )
    p.add_argument("--pretrain-steps", type=int, default=3000, help="pretraining steps")
    p.add_argument("--method-steps", type=int, default=300, help="steps per method")
    p.add_argument("--n", type=int, default=1000, help="same-noise samples per class")
    args = p.parse_args(argv)
    if args.dry_run:
        args.pretrain_steps, args.method_steps, args.n = 3, 2, 4

    import jax

    from diff_pixel import train_digits_classifier
    from diff_unlearn import (
        METHODS,
        PretrainConfig,
        UnlearnConfig,
        digits_task,
        load_run,
        loss_setup,
        make_method,
        pretrain,
        unlearn,
    )
    from diff_unlearn.evaluate import evaluate_methods

    size = 8 if args.dry_run else 16
    preset = "tiny-8" if args.dry_run else "tiny-16"
    task = digits_task((3,), image_size=size)
    result: dict = {"device": str(jax.devices()[0]), "settings": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        pretrain(
            task,
            tmp + "/original",
            PretrainConfig(
                preset=preset, steps=args.pretrain_steps, batch_size=512, checkpoint_every=0
            ),
            progress=False,
        )
        result["pretrain_s"] = time.perf_counter() - t
        result["pretrain_img_per_s"] = args.pretrain_steps * 512 / result["pretrain_s"]
        original, recipe, _ = load_run(tmp + "/original")
        setup = loss_setup(task, recipe)
        models, per_step = {}, {}
        for name in METHODS:
            t = time.perf_counter()
            models[name] = unlearn(
                original,
                make_method(name, setup),
                task,
                recipe,
                f"{tmp}/{name}",
                UnlearnConfig(steps=args.method_steps, checkpoint_every=0),
                progress=False,
            )
            per_step[name] = (time.perf_counter() - t) / args.method_steps
        result["method_s_per_step"] = per_step
        result["method_ratio"] = {k: v / per_step["retain_finetune"] for k, v in per_step.items()}
        clf = train_digits_classifier(size, epochs=2 if args.dry_run else 30)
        t = time.perf_counter()
        table = evaluate_methods(
            original,
            models,
            task,
            schedule=recipe.schedule(),
            classifier=clf,
            n_per_cond=args.n,
            steps=50,
            guidance=2.0,
        )
        result["evaluate_s"] = time.perf_counter() - t
        result["table"] = table.rows
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
