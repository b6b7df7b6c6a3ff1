"""The ranges ``diff-edm3d demo`` prints as "expected" (``diff_edm3d.cli.DEMO_EXPECTED``).

Runs the demo itself (``diff-edm3d demo``, one thread, so each run is deterministic) for training
seeds 0..N-1 at a budget and prints one JSON object per seed, then one per figure with its
minimum and maximum over the seeds. Copy the ranges into ``DEMO_EXPECTED`` when the demo's
budget, preset or sampler changes. Wall time: about 1.5 min per seed at the default budget and
20 s with ``--quick`` on an idle 2-core machine.

    python packages/diff-edm3d/benchmarks/demo_expected.py --seeds 5 --out /tmp/demo_seeds
    python packages/diff-edm3d/benchmarks/demo_expected.py --seeds 5 --quick --out /tmp/dq
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

FIGURES = {
    "atom_stability": ("stability", "atom_stability"),
    "molecule_stability": ("stability", "molecule_stability"),
    "plausible": ("plausibility", "plausible"),
    "n_exploded": ("plausibility", "n_exploded"),
    "validity": ("rdkit", "validity"),
    "uniqueness": ("rdkit", "uniqueness"),
}


def main() -> None:
    from diff_edm3d.cli import main as cli

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=5, help="training seeds 0..N-1 (default: 5)")
    p.add_argument("--quick", action="store_true", help="the --quick budget (default: off)")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the demo's)")
    p.add_argument("--grid-steps", type=int, default=None,
                   help="denoising steps (default: the demo's)")  # fmt: skip
    p.add_argument("--out", required=True, help="folder for the demo runs (required)")
    args = p.parse_args()
    extra = ["--quick"] if args.quick else []
    if args.steps is not None:
        extra += ["--steps", str(args.steps)]
    if args.grid_steps is not None:
        extra += ["--grid-steps", str(args.grid_steps)]
    rows = []
    for seed in range(args.seeds):
        out = Path(args.out) / f"seed{seed}"
        argv = ["demo", "--seed", str(seed), "--out", str(out), "--overwrite", "--threads", "1"]
        if cli(argv + extra) != 0:
            raise SystemExit(f"demo failed for seed {seed}")
        metrics = json.loads((out / "metrics.json").read_text())
        row = {"seed": seed, "train_steps": metrics["sampling"]["train_steps"],
               "grid_steps": metrics["sampling"]["grid_steps"]}  # fmt: skip
        for name, (group, key) in FIGURES.items():
            row[name] = (metrics.get(group) or {}).get(key)
        rows.append(row)
        print(json.dumps(row), flush=True)
    for name in FIGURES:
        values = [r[name] for r in rows if r[name] is not None]
        if values:
            print(json.dumps({"figure": name, "min": min(values), "max": max(values),
                              "seeds": len(values), "train_steps": rows[0]["train_steps"],
                              "grid_steps": rows[0]["grid_steps"]}))  # fmt: skip


if __name__ == "__main__":
    main()
