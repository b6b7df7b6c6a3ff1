"""Write tests/thresholds.json from benchmarks/results/digits_calibration.json (distill.md §11).

For each gated figure: the spec's predicted bar, every seed's value, and the calibrated bar
``worst seed ÷ 1.25`` (higher is better) or ``worst seed × 1.25`` (lower is better). Where every
seed meets the predicted bar the gate is the tighter of the two; where a seed misses it the
predicted bar is kept for an ``xfail(strict=True)`` test and the calibrated bar gates the
regression test (rule 3).

Usage: python benchmarks/make_thresholds.py
"""

from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).parent
PREDICTED = {"agreement_clean_2": 0.85, "subset_tv_clean_2": 0.12, "filter_gain_2": 0.30}
HIGHER = {"agreement_clean_2": True, "subset_tv_clean_2": False, "filter_gain_2": True}


def main() -> None:
    cal = json.loads((HERE / "results" / "digits_calibration.json").read_text())
    runs = cal["runs"]
    seeds = sorted({int(k.rsplit("_s", 1)[1]) for k in runs})
    measured: dict[str, list[float]] = {k: [] for k in PREDICTED}
    used: dict[str, list[int]] = {k: [] for k in PREDICTED}
    for s in seeds:
        c, f, u = runs.get(f"clean_s{s}"), runs.get(f"filtered60_s{s}"), runs.get(f"corrupt60_s{s}")
        if c:
            measured["agreement_clean_2"].append(c["seen"]["2.0"]["agreement"])
            measured["subset_tv_clean_2"].append(c["subset_tv_2"])
            used["agreement_clean_2"].append(s)
            used["subset_tv_clean_2"].append(s)
        if f and u:
            measured["filter_gain_2"].append(
                f["seen"]["2.0"]["agreement"] - u["seen"]["2.0"]["agreement"]
            )
            used["filter_gain_2"].append(s)
    thresholds, status = {}, {}
    for k, vals in measured.items():
        if HIGHER[k]:
            cal_bar = min(vals) / 1.25
            meets = all(v >= PREDICTED[k] for v in vals)
            thresholds[k] = max(cal_bar, PREDICTED[k]) if meets else cal_bar
        else:
            cal_bar = max(vals) * 1.25
            meets = all(v <= PREDICTED[k] for v in vals)
            thresholds[k] = min(cal_bar, PREDICTED[k]) if meets else cal_bar
        first = vals[0]  # seed 0: the seed the slow tests run
        first_meets = first >= PREDICTED[k] if HIGHER[k] else first <= PREDICTED[k]
        if meets:
            status[k] = "every seed meets the predicted bar"
        elif first_meets:
            status[k] = (
                "a seed misses the predicted bar but seed 0 (the slow tests' seed) meets it: no "
                "strict xfail (it would XPASS); the calibrated bar gates"
            )
        else:
            status[k] = "seed 0 misses the predicted bar: xfail(strict=True) on it"
    out = {
        "note": "Learned-result thresholds of test_semantica_digits.py (distill.md §11): the "
        "calibrated bar is the worst seed / 1.25 (higher is better) or x 1.25 (lower is "
        "better); where a seed misses the spec's predicted bar, that bar is kept for a strict "
        "xfail test and the calibrated bar gates the regression test. Calibration: "
        "benchmarks/calibrate_train.py + calibrate_evaluate.py, the configuration of the slow "
        "tests (recipes.DIGITS_RUN).",
        "thresholds": thresholds,
        "predicted": PREDICTED,
        "status": status,
        "calibration": {"seeds": used, "measured": measured, "run": cal.get("run")},
    }
    (HERE.parent / "tests" / "thresholds.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["thresholds"]))


if __name__ == "__main__":
    main()
