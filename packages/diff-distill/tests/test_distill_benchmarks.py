"""The GPU benchmark script runs every phase at tiny sizes on CPU (``--dry-run``) and its device
metrics agree with diff-core's host metrics (slow)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_image_mixture.py"


@pytest.mark.slow
def test_gpu_benchmark_dry_run():
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--dry-run"], capture_output=True, text=True, timeout=1200
    )
    assert out.returncode == 0, out.stderr[-3000:]
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    phases = [r["phase"] for r in records]
    assert phases[:3] == ["setup", "model", "0_plain_diffusion_step"]
    assert "2_alternating_k8" in phases and "3_param_space_k8" in phases
    ev = records[-1]
    assert ev["phase"] == "4_evaluation"
    for key in (
        "teacher_ddim8",
        "teacher_ddpm8",
        "student_alternating_k8",
        "student_param_space_k8",
    ):
        assert set(ev[key]) == {"fd", "mode_tv", "spread"}
    check = ev["metric_check"]
    assert abs(check["device"]["mode_tv"] - check["host"]["mode_tv"]) < 1e-6
    assert abs(check["device"]["spread"] - check["host"]["spread"]) < 1e-3
    for r in records:
        if r["phase"][0] in "023" and "tflops" in r:
            assert r["iterations"] >= 1 and r["step_flops"] > 0
