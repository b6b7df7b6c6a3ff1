"""Train the calibration runs of the digits checks (resumable): variants x seeds.

Usage: python benchmarks/calibrate_train.py --out /tmp/semantica-calib --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time

from diff_semantica.recipes import VARIANTS, train_digits_variant


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", required=True, help="folder of the runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), help="variants (default all)")
    args = ap.parse_args()
    for seed in args.seeds:
        for v in args.variants:
            t0 = time.perf_counter()
            train_digits_variant(v, f"{args.out}/{v}_s{seed}", seed)
            print(
                json.dumps({"variant": v, "seed": seed, "wall_s": time.perf_counter() - t0}),
                flush=True,
            )


if __name__ == "__main__":
    main()
