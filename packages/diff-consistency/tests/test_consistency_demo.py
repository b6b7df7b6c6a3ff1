"""The quick digits demo end to end through the console script (opt-in: -m "slow and demo")."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.slow
@pytest.mark.demo
def test_quick_demo(tmp_path):
    out = tmp_path / "demo"
    subprocess.run(
        [sys.executable, "-m", "diff_consistency.cli", "demo", "--quick", "--out", str(out)],
        check=True,
    )
    for name in ("metrics.json", "results.md", "S1.png", "S2.png", "S4.png", "S8.png"):
        assert (out / name).is_file(), name
    fig = json.loads((out / "metrics.json").read_text())
    rows = {r["S"]: r for r in fig["rows"]}
    assert sorted(rows) == [1, 2, 4, 8]
    # one DDIM step from noise is the blurred class mean (DFD near the noise level); 40 CD steps
    # already take the 1-step student far below it (measured 92.5 vs 282.2)
    assert rows[1]["student"]["dfd"] < 0.6 * rows[1]["teacher_ddim"]["dfd"]
    assert set(fig["glossary"]) >= {"student.dfd", "teacher_ddim.dfd", "dfd_floor"}
    # the second run is refused before any work
    again = subprocess.run(
        [sys.executable, "-m", "diff_consistency.cli", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "--overwrite" in again.stderr
    # the other commands on the demo's runs
    cli = [sys.executable, "-m", "diff_consistency.cli"]
    for args in (
        ["sample", "--student", str(out / "student_S4"), "--out", str(tmp_path / "s4.png")],
        [
            "estimate-variance",
            "--teacher",
            str(out / "teacher"),
            "--num-t",
            "8",
            "--num-batches",
            "1",
            "--out",
            str(tmp_path / "v.npz"),
        ],
        [
            "sample-teacher",
            "--teacher",
            str(out / "teacher"),
            "--steps",
            "4",
            "--variance",
            str(tmp_path / "v.npz"),
            "--out",
            str(tmp_path / "t4.png"),
        ],
        ["evaluate", "--run", str(out / "student_S2"), "--per-class", "5"],
    ):
        subprocess.run(cli + args, check=True)
    for name in ("s4.png", "v.npz", "t4.png"):
        assert (tmp_path / name).is_file()
    evaluation = json.loads((out / "student_S2" / "evaluate.json").read_text())
    assert evaluation["steps"] == 2 and evaluation["sampler"] == "multistep_consistency"
