"""The README's headline table: every method on digits (forget 3), over several unlearning seeds.

Usage (from an empty folder; pretrain the original and an independent reference first)::

    diff-unlearn pretrain --out runs/original --seed 0
    diff-unlearn pretrain --out runs/reference --seed 1
    python benchmarks/digits_table.py --original runs/original --reference runs/reference \
        --out runs/table --seeds 0 1 2

Each seed s runs every method of ``diff_unlearn.METHODS`` with ``UnlearnConfig(seed=s)``
(resumable: finished runs are reopened, not retrained) and evaluates them with the same noise;
prints one JSON object with per-seed rows and the mean and spread (min, max) per method, and
writes ``table_seed{s}.md`` per seed and ``summary.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--original", required=True, help="run folder of the original model")
    p.add_argument("--reference", default=None, help="run folder of an independent model")
    p.add_argument("--out", required=True, help="output folder (resumable)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="unlearning seeds")
    p.add_argument("--methods", nargs="+", default=None, help="subset of methods (default all)")
    p.add_argument("--steps", type=int, default=300, help="unlearning steps per method")
    p.add_argument("--batch", type=int, default=64, help="forget and retain batch (each)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate")
    p.add_argument("--n", type=int, default=50, help="same-noise samples per class")
    p.add_argument("--sampler-steps", type=int, default=25, help="DDIM steps")
    p.add_argument("--guidance", type=float, default=2.0, help="guidance weight")
    args = p.parse_args(argv)

    from diff_pixel import DigitsClassifier, train_digits_classifier
    from diff_unlearn import (
        METHODS,
        UnlearnConfig,
        digits_task,
        load_run,
        loss_setup,
        make_method,
        unlearn,
    )
    from diff_unlearn.evaluate import evaluate_methods

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    task = digits_task((3,))
    original, recipe, _ = load_run(args.original)
    clf_path = out / "digits_classifier.npz"
    if clf_path.is_file():
        clf = DigitsClassifier.load(clf_path)
    else:
        clf = train_digits_classifier(8)
        assert clf.test_accuracy >= 0.95, clf.test_accuracy
        clf.save(clf_path)
    setup = loss_setup(task, recipe)
    methods = args.methods or list(METHODS)
    per_seed = {}
    timings = {}
    for seed in args.seeds:
        models = {}
        for name in methods:
            t = time.perf_counter()
            config = UnlearnConfig(
                steps=args.steps,
                forget_batch=args.batch,
                retain_batch=args.batch,
                lr=args.lr,
                seed=seed,
            )
            models[name] = unlearn(
                original,
                make_method(name, setup),
                task,
                recipe,
                out / f"seed{seed}" / name,
                config,
                progress=False,
            )
            timings[f"{name}/seed{seed}"] = round(time.perf_counter() - t, 1)
            print(
                f"seed {seed} {name}: {timings[f'{name}/seed{seed}']} s",
                file=sys.stderr,
                flush=True,
            )
        # loaded here, so a reference still training when this script starts is picked up
        reference = load_run(args.reference)[0] if args.reference else None
        table = evaluate_methods(
            original,
            models,
            task,
            schedule=recipe.schedule(),
            classifier=clf,
            reference=reference,
            n_per_cond=args.n,
            steps=args.sampler_steps,
            guidance=args.guidance,
            out_dir=out / f"seed{seed}",
        )
        (out / f"table_seed{seed}.md").write_text(table.markdown())
        per_seed[seed] = table.rows
        print(table.markdown(), file=sys.stderr, flush=True)
    names = list(next(iter(per_seed.values())))
    cols = list(next(iter(next(iter(per_seed.values())).values())))
    summary = {}
    for name in names:
        summary[name] = {}
        for c in cols:
            vals = np.array([per_seed[s][name][c] for s in per_seed], float)
            summary[name][c] = {
                "mean": float(vals.mean()),
                "min": float(vals.min()),
                "max": float(vals.max()),
            }
    lines = ["| model | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
    for name in names:
        cells = []
        for c in cols:
            s = summary[name][c]
            cells.append(f"{s['mean']:.3g} [{s['min']:.3g}, {s['max']:.3g}]")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    result = {
        "seeds": args.seeds,
        "settings": vars(args),
        "per_seed": per_seed,
        "summary": summary,
        "seconds": timings,
        "ratios": {
            f"rmse_{m}_over_distill": summary[m]["rmse"]["mean"]
            / summary["distill"]["rmse"]["mean"]
            for m in names
            if "distill" in summary and m not in ("original",)
        },
    }
    (out / "summary.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
