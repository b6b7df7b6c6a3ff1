"""Train the calibration runs of the digits checks (resumable): variants x seeds.

Usage: python benchmarks/calibrate_train.py --out /tmp/semantica-calib --seeds 0 1 2
``--steps`` / ``--batch`` override the recipe's 800 x 128 (``recipes.DIGITS_RUN``), e.g.
``--steps 5000 --batch 256 --variants clean`` for the spec's calibration budget (§7).
"""

from __future__ import annotations

import argparse
import json
import time

from diff_semantica.recipes import DIGITS_RUN, VARIANTS, train_digits_variant
from diff_semantica.train import RunConfig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="folder of the runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help="variants (default all)")
    ap.add_argument(
        "--steps", type=int, default=DIGITS_RUN.steps, help="training steps (default %(default)s)"
    )
    ap.add_argument(
        "--batch", type=int, default=DIGITS_RUN.batch_size, help="batch size (default %(default)s)"
    )
    args = ap.parse_args()
    run = RunConfig(**{**DIGITS_RUN.to_dict(), "steps": args.steps, "batch_size": args.batch})
    for seed in args.seeds:
        for v in args.variants:
            t0 = time.perf_counter()
            train_digits_variant(v, f"{args.out}/{v}_s{seed}", seed, run=run, progress=True)
            print(
                json.dumps(
                    {
                        "variant": v,
                        "seed": seed,
                        "steps": run.steps,
                        "batch": run.batch_size,
                        "wall_s": time.perf_counter() - t0,
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
