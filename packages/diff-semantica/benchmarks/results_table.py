"""Print the README's headline table (Markdown) from benchmarks/results/digits_calibration.json:
mean and range over the seeds of each figure.

Usage: python benchmarks/results_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def main() -> None:
    runs = json.loads((HERE / "results" / "digits_calibration.json").read_text())["runs"]

    def vals(variant: str, get) -> list[float]:
        return [get(r) for k, r in sorted(runs.items()) if k.rsplit("_s", 1)[0] == variant]

    def fmt(v: list[float]) -> str:
        if not v:
            return "n/a"
        return f"{np.mean(v):.3f} [{min(v):.3f}, {max(v):.3f}] (n={len(v)})"

    rows = []
    for v in ("clean", "corrupt60", "filtered60", "self"):
        for s in ("1.0", "2.0", "4.0"):
            a = vals(v, lambda r, s=s: r["seen"].get(s, {}).get("agreement", np.nan))
            a = [x for x in a if np.isfinite(x)]
            if a:
                rows.append(f"| {v} | agreement, scale {s} | {fmt(a)} |")
        cd = vals(v, lambda r: r["seen"]["2.0"]["copy_distance"])
        cr = vals(v, lambda r: r["seen"]["2.0"]["copy_rate"])
        rows.append(f"| {v} | copy distance, scale 2 | {fmt(cd)} |")
        rows.append(f"| {v} | copy rate, scale 2 | {fmt(cr)} |")
        if v != "self":
            tv = vals(v, lambda r: r["subset_tv_2"])
            rows.append(f"| {v} | subset TV {{0,1,2}}, scale 2 | {fmt(tv)} |")
    gains = []
    for k, r in runs.items():
        if k.startswith("filtered60_s"):
            u = runs.get("corrupt60_s" + k.rsplit("_s", 1)[1])
            if u:
                gains.append(r["seen"]["2.0"]["agreement"] - u["seen"]["2.0"]["agreement"])
    rows.append(f"| filtered60 − corrupt60 | agreement gain, scale 2 | {fmt(gains)} |")
    print("| training pairs | figure | mean [min, max] over seeds |\n|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
