"""CPU sampling throughput, packed EGNN against the dense reference (spec 14.2).

EGNN 64/4: 100 molecules with M drawn from the QM9 training histogram p(M), all 1,000 ancestral
steps; EGNN 256/9 on a 50-step grid only (the full grid is slower than a benchmark should be on 2
cores). Random-initialised weights: the figure is throughput, not quality. Prints one JSON object
per figure with molecules/s for ours and the dense reference and their ratio (same run, same
weights, same noise).

    python packages/diff-edm3d/benchmarks/cpu_sample.py --threads 2
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from diff_edm3d import EDM, AtomCountDistribution, EDMConfig, EGNNConfig, EGNNDynamics
from diff_edm3d.testing import DenseEGNNReference

# spec 4.2, the train histogram of M
TRAIN_HISTOGRAM = {
    3: 1, 4: 4, 5: 5, 6: 9, 7: 16, 8: 49, 9: 124, 10: 362, 11: 807, 12: 1689, 13: 3060,
    14: 5136, 15: 7796, 16: 10644, 17: 13025, 18: 13364, 19: 13832, 20: 9482, 21: 9970,
    22: 3393, 23: 4848, 24: 539, 25: 1506, 26: 48, 27: 266, 29: 25,
}  # fmt: skip


def run(nf: int, layers: int, n: int, steps: int, seed: int = 0) -> dict:
    counts = AtomCountDistribution(TRAIN_HISTOGRAM)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        dyn = EGNNDynamics(EGNNConfig(nf=nf, n_layers=layers))
    ours = EDM(dyn, EDMConfig(), counts).eval()
    dense = EDM(DenseEGNNReference.like(dyn), EDMConfig(), counts).eval()
    sizes, _ = ours.draw_sizes_and_context(n, seed)
    grid = np.linspace(1000, 0, steps + 1).round().astype(int)
    out = {}
    samples = {}
    for name, edm in (("ours", ours), ("dense", dense)):
        t0 = time.perf_counter()
        samples[name] = edm.sample(sizes, seed=seed, grid=grid)
        out[name] = time.perf_counter() - t0
    diff = float(np.abs(samples["ours"].positions - samples["dense"].positions).max())
    return {
        "figure": "cpu_sample", "config": f"nf{nf}/L{layers}", "molecules": n,
        "grid_steps": steps, "atoms": int(sizes.sum()), "threads": torch.get_num_threads(),
        "ours_s": round(out["ours"], 3), "dense_s": round(out["dense"], 3),
        "ours_molecules_per_s": round(n / out["ours"], 4),
        "dense_molecules_per_s": round(n / out["dense"], 4),
        "ratio_dense_over_ours": round(out["dense"] / out["ours"], 3),
        "max_abs_position_difference": diff, "torch": torch.__version__,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="10 molecules, 20 steps (smoke run)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.quick:
        print(json.dumps(run(64, 4, 10, 20)), flush=True)
        return
    print(json.dumps(run(64, 4, args.n, 1000)), flush=True)
    print(json.dumps(run(256, 9, args.n, 50)), flush=True)


if __name__ == "__main__":
    main()
