"""The README's headline figure from ``results/toy_calibration.json``: per toy problem, the k = 8
students of both variants (3 seeds) against the exact teacher's DDIM-8 and DDPM-8 (lower is
better), and the mode spread (1 is the data). Writes ``docs/headline.png`` and prints the ratios
as one JSON object.

    python benchmarks/headline_figure.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    record = json.loads((HERE / "results" / "toy_calibration.json").read_text())
    rows = record["headline"]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for col, (name, metric) in enumerate((("ring8", "mmd2"), ("mix64", "fd"))):
        sub = [r for r in rows if r["mixture"] == name]
        if not sub:
            continue
        ax = axes[2 * col]
        labels = ["teacher\nDDIM-8", "teacher\nDDPM-8"] + [f"student\n{r['variant']}" for r in sub]
        means = [sub[0]["ddim8"], sub[0]["ddpm8"]] + [r["student_mean"] for r in sub]
        ax.bar(range(len(means)), means, color=["0.6", "0.4"] + ["C0", "C1"][: len(sub)])
        for i, r in enumerate(sub):
            ax.plot([2 + i] * len(r["student"]), r["student"], "k.", ms=6)
        ax.set_xticks(range(len(means)), labels, fontsize=8)
        ax.set_ylabel(f"{metric} (lower is better)")
        ax.set_title(f"{name}, k = 8, exact teacher ({sub[0]['seeds']} seeds)")
        ax = axes[2 * col + 1]
        spreads = [sub[0]["ddim8_spread"], sub[0]["ddpm8_spread"]] + [
            sum(r["student_spread"]) / len(r["student_spread"]) for r in sub
        ]
        ax.bar(range(len(spreads)), spreads, color=["0.6", "0.4"] + ["C0", "C1"][: len(sub)])
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xticks(range(len(spreads)), labels, fontsize=8)
        ax.set_ylabel("mode spread (1 = the data)")
        ax.set_title(f"{name}: spread")
    fig.tight_layout()
    out = HERE.parent / "docs" / "headline.png"
    out.parent.mkdir(exist_ok=True)
    fig.savefig(out, dpi=100)
    print(json.dumps({"figure": str(out), "rows": rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
