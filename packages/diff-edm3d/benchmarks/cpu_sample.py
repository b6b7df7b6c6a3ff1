"""CPU sampling throughput, packed EGNN against the dense reference (spec 14.2).

EGNN 64/4: 100 molecules with M drawn from the QM9 training histogram p(M), all 1,000 ancestral
steps; EGNN 256/9 on a 50-step grid only (the full grid is slower than a benchmark should be on 2
cores). Random-initialised weights: the figure is throughput, not quality. Ours runs the whole
grid; the ratio compares ours and the dense reference (same weights, same noise) on the first
``--ratio-steps`` knots, and the dense molecules/s is extrapolated from that per-step time (a
step's cost does not depend on t). One JSON object per figure.

``--figure issue16``: issue 16's workload, one reverse step for 100 molecules of 19 atoms with
EGNN 256/9 on one thread: ours, ours without the inference buffers (the code before them) and the
dense reference, interleaved rounds, median seconds per step and the ratios.

    python packages/diff-edm3d/benchmarks/cpu_sample.py --threads 2
    python packages/diff-edm3d/benchmarks/cpu_sample.py --threads 1 --figure issue16
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


def run(nf: int, layers: int, n: int, steps: int, ratio_steps: int, seed: int = 0) -> dict:
    """Ours on the full `steps` grid (the throughput) and both implementations on the same
    `ratio_steps` knots T, T-1, ..., then 0 (the ratio; per-step cost does not depend on t)."""
    counts = AtomCountDistribution(TRAIN_HISTOGRAM)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        dyn = EGNNDynamics(EGNNConfig(nf=nf, n_layers=layers))
    ours = EDM(dyn, EDMConfig(), counts).eval()
    dense = EDM(DenseEGNNReference.like(dyn), EDMConfig(), counts).eval()
    sizes, _ = ours.draw_sizes_and_context(n, seed)
    full = np.linspace(1000, 0, steps + 1).round().astype(int)
    short = np.concatenate([np.arange(1000, 1000 - ratio_steps, -1), [0]])
    t0 = time.perf_counter()
    ours.sample(sizes, seed=seed, grid=full)
    t_full = time.perf_counter() - t0
    per_step = {}
    for name, edm in (("ours", ours), ("dense", dense)):
        t0 = time.perf_counter()
        edm.sample(sizes, seed=seed, grid=short)
        per_step[name] = (time.perf_counter() - t0) / (len(short))  # steps + final decode
    dense_full = per_step["dense"] * (steps + 1)
    return {
        "figure": "cpu_sample", "config": f"nf{nf}/L{layers}", "molecules": n,
        "grid_steps": steps, "atoms": int(sizes.sum()), "threads": torch.get_num_threads(),
        "ours_s": round(t_full, 3), "ours_molecules_per_s": round(n / t_full, 4),
        "dense_s_extrapolated": round(dense_full, 3),
        "dense_molecules_per_s_extrapolated": round(n / dense_full, 4),
        "ratio_steps": ratio_steps, "ours_step_ms": round(1e3 * per_step["ours"], 2),
        "dense_step_ms": round(1e3 * per_step["dense"], 2),
        "ratio_dense_over_ours": round(per_step["dense"] / per_step["ours"], 3),
        "torch": torch.__version__,
    }  # fmt: skip


def fixed_size_step(nf: int, layers: int, n: int, atoms: int, rounds: int, seed: int = 0) -> dict:
    """Issue 16's workload: one reverse step for `n` molecules of `atoms` atoms each, per-step
    seconds of ours (reused inference buffers), ours with ``EGNNDynamics.inference_buffers =
    False`` (the autograd layout under ``no_grad``: the code before the buffers) and the dense
    reference, interleaved over `rounds` rounds of a 4-knot grid (median per round)."""
    counts = AtomCountDistribution({atoms: 1})
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        dyn = EGNNDynamics(EGNNConfig(nf=nf, n_layers=layers))
    ours = EDM(dyn, EDMConfig(), counts).eval()
    dense = EDM(DenseEGNNReference.like(dyn), EDMConfig(), counts).eval()
    sizes = np.full(n, atoms)
    grid = np.array([1000, 999, 998, 997, 0])
    times: dict[str, list[float]] = {"ours": [], "ours_without_buffers": [], "dense": []}
    for _ in range(rounds):
        for name in times:
            edm = dense if name == "dense" else ours
            EGNNDynamics.inference_buffers = name != "ours_without_buffers"
            t0 = time.perf_counter()
            edm.sample(sizes, seed=seed, grid=grid)
            times[name].append((time.perf_counter() - t0) / len(grid))
    EGNNDynamics.inference_buffers = True
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {
        "figure": "fixed_size_step", "config": f"nf{nf}/L{layers}", "molecules": n,
        "atoms_each": atoms, "threads": torch.get_num_threads(), "rounds": rounds,
        **{f"{k}_step_s": round(v, 3) for k, v in med.items()},
        "ratio_dense_over_ours": round(med["dense"] / med["ours"], 3),
        "ratio_dense_over_ours_without_buffers": round(
            med["dense"] / med["ours_without_buffers"], 3
        ),
        "speedup_of_buffers": round(med["ours_without_buffers"] / med["ours"], 3),
        "torch": torch.__version__,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--ratio-steps", type=int, default=50, help="steps timed for the ratio")
    ap.add_argument("--quick", action="store_true", help="10 molecules, 20 steps (smoke run)")
    ap.add_argument("--keep-denormals", action="store_true",
                    help="do not flush denormal floats (slower on x86: untrained networks make "
                    "SiLU outputs below 1e-38)")  # fmt: skip
    ap.add_argument(
        "--figure",
        choices=("throughput", "issue16"),
        default="throughput",
        help="throughput: the two p(M) runs below; issue16: one reverse step for 100 "
        "molecules of 19 atoms, nf 256 / 9 layers, ours with and without the "
        "inference buffers against the dense reference (default: %(default)s)",
    )
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of --figure issue16")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    flushed = (not args.keep_denormals) and torch.set_flush_denormal(True)
    if args.figure == "issue16":
        n, atoms = (10, 9) if args.quick else (args.n, 19)
        out = fixed_size_step(256, 9, n, atoms, args.rounds)
        print(json.dumps({**out, "flush_denormal": bool(flushed)}), flush=True)
        return
    runs = (
        [(64, 4, 10, 20, 5)]
        if args.quick
        else [
            (64, 4, args.n, 1000, args.ratio_steps),
            (256, 9, args.n, 50, min(args.ratio_steps, 20)),
        ]
    )
    for cfg in runs:
        print(json.dumps({**run(*cfg), "flush_denormal": bool(flushed)}), flush=True)


if __name__ == "__main__":
    main()
