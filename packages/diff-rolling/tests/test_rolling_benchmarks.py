"""The GPU script's ``--dry-run`` runs every phase on CPU at toy sizes (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.slow
def test_rolling_gpu_script_dry_run(tmp_path):
    pytest.importorskip("jax_cfd")
    proc = subprocess.run(
        [sys.executable, str(BENCH / "gpu_h200.py"), "--dry-run", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    records = [json.loads(line) for line in (tmp_path / "gpu_h200.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in records] == ["solver", "train_step", "equal_nfe"]
    assert all("error" not in r for r in records)
    assert records[0]["finite"] and records[1]["step_s"] > 0
    assert records[1]["flops_per_step"] > 0  # diff-pixel's Trainer.step_cost
