"""Evaluate the calibration runs (benchmarks/calibrate_train.py) and write every figure per seed.

Usage: python benchmarks/calibrate_evaluate.py --runs /tmp/semantica-calib --seeds 0 1 2
Writes benchmarks/results/digits_calibration.json (one record per variant and seed) and prints
one JSON object per run.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from diff_pixel import train_digits_classifier
from diff_protocol.io import atomic_write
from diff_semantica import __version__
from diff_semantica.data import digits_groups
from diff_semantica.evaluate import seen_groups_heldout_images, subset_adaptation
from diff_semantica.metrics import reference_pair_rmse
from diff_semantica.recipes import DIGITS_RUN
from diff_semantica.train import load_run


def evaluate_run(path: Path, classifier, ref: float, steps: int = 25) -> dict:
    _, ema, _ = load_run(path)
    seen = seen_groups_heldout_images(ema, classifier, n_per_image=4, steps=steps, reference=ref)
    sub = subset_adaptation(
        ema,
        classifier,
        (0, 1, 2),
        n_per_image=4,
        steps=steps,
        guidance_scales=(2.0,),
        reference=ref,
    )
    report = (
        json.loads((path / "filter_report.json").read_text())
        if (path / "filter_report.json").exists()
        else None
    )
    return {
        "seen": seen["scales"],
        "subset_tv_2": sub["scales"]["2.0"]["subset_tv"],
        "filter_same_group_after": None if report is None else report["same_group_after"],
        "filter_same_group_before": None if report is None else report["same_group_before"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", required=True, help="folder of the calibration runs")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    ap.add_argument(
        "--variants",
        nargs="+",
        default=["clean", "corrupt60", "filtered60", "self"],
        help="variants (default all four)",
    )
    ap.add_argument(
        "--out",
        default=str(Path(__file__).parent / "results" / "digits_calibration.json"),
        help="output JSON (default benchmarks/results/digits_calibration.json)",
    )
    args = ap.parse_args()
    clf = train_digits_classifier(8)
    ref = reference_pair_rmse(digits_groups("train"))
    out_path = Path(args.out)
    results = json.loads(out_path.read_text()) if out_path.exists() else {"runs": {}}
    results.update(
        {
            "version": __version__,
            "run": DIGITS_RUN.to_dict(),
            "classifier_test_accuracy": clf.test_accuracy,
            "reference_pair_rmse": ref,
        }
    )
    for seed in args.seeds:
        for v in args.variants:
            path = Path(args.runs) / f"{v}_s{seed}"
            if not (path / "checkpoints").exists():
                continue
            t0 = time.perf_counter()
            rec = evaluate_run(path, clf, ref)
            rec["wall_s"] = time.perf_counter() - t0
            print(json.dumps({"run": f"{v}_s{seed}", **rec}), flush=True)
            # merge into the file as it is now (several evaluations may run side by side)
            current = json.loads(out_path.read_text()) if out_path.exists() else results
            current.setdefault("runs", {})[f"{v}_s{seed}"] = rec
            current.update({k: v for k, v in results.items() if k != "runs"})
            atomic_write(out_path, json.dumps(current, indent=1))


if __name__ == "__main__":
    main()
