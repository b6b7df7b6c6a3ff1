"""Metrics tables: ``metrics.json`` / ``metrics.md`` and the glossary the demo runner shows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["GLOSSARY", "metrics_table", "write_metrics"]

GLOSSARY = {
    "agreement": {
        "meaning": "share of variations classified as their condition's class (chance 0.10)",
        "better": "higher",
        "expected": "0.5-0.95 at scale 2 depending on the budget",
    },
    "copy_distance": {
        "meaning": "RMSE(variation, condition) / mean RMSE of same-class real pairs",
        "better": "closer to 1 (below 1: near copies)",
        "expected": "0.8-1.0 for pair training",
    },
    "copy_rate": {
        "meaning": "share of variations nearly identical to their condition",
        "better": "lower",
        "expected": "< 0.05",
    },
    "diversity": {
        "meaning": "mean pairwise RMSE among one condition's variations / same-class pair RMSE",
        "better": "higher",
        "expected": "0.6-1.0",
    },
    "subset_tv": {
        "meaning": "TV between generated classes and uniform on the conditioning classes",
        "better": "lower",
        "expected": "< 0.2 at scale 2",
    },
    "fd_digits": {
        "meaning": "Frechet distance of digits-classifier features (not FID)",
        "better": "lower",
        "expected": "compare between runs only",
    },
    "memorisation_rate": {
        "meaning": "share of variations nearly identical to a training digit",
        "better": "lower",
        "expected": "< 0.05",
    },
}


def metrics_table(metrics: dict[str, Any]) -> str:
    keys = (
        "agreement",
        "copy_distance",
        "copy_rate",
        "diversity",
        "subset_tv",
        "fd_digits",
        "memorisation_rate",
    )
    lines = ["| scale | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for s, m in metrics["scales"].items():
        lines.append(
            f"| {s} | " + " | ".join("n/a" if m[k] is None else f"{m[k]:.3f}" for k in keys) + " |"
        )
    return "\n".join(lines)


def write_metrics(out: Path, metrics: dict[str, Any]) -> None:
    from diff_protocol.io import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write(out / "metrics.md", metrics_table(metrics) + "\n")
