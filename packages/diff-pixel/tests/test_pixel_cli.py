"""The ``diff-pixel`` console script (spec check 22 and the CLI's error handling).

The default suite runs the commands in-process on tiny settings (3 training steps at batch 16,
which share the compiled step with test_pixel_train_digits.py); ``demo --quick`` and ``evaluate``
(a classifier and 360 samples) are in the slow suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from diff_pixel.sid.cli import main
from diff_pixel.train import RunCheckpoints, read_metrics


def run_cli(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_unknown_preset_exits_2_naming_the_argument(capsys):
    code, _, err = run_cli(capsys, "train", "--preset", "nope")
    assert code == 2
    assert err.startswith("diff-pixel: error: --preset: unknown preset 'nope'")
    code, _, err = run_cli(capsys, "info", "--preset", "tiny-16", "--image-size", "20")
    assert code == 2 and "--image-size" in err
    code, _, err = run_cli(capsys, "sample", "--run", "/nonexistent/run")
    assert code == 2 and "--run" in err and "not a run directory" in err
    code, _, err = run_cli(capsys, "train", "--data", "mnist")
    assert code == 2 and "--data" in err
    code, _, err = run_cli(capsys, "bench", "gpu", "--preset", "tiny-16")
    assert code == 2 and err.startswith("diff-pixel: error: --preset:")
    with pytest.raises(SystemExit) as exc:  # argparse's own errors also exit 2
        main(["train", "--precision", "float8"])
    assert exc.value.code == 2


def test_console_script_entry_point():
    proc = subprocess.run(
        [sys.executable, "-m", "diff_pixel.sid.cli", "train", "--preset", "nope"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "--preset" in proc.stderr


def test_info_reports_cost_and_parameters(capsys):
    code, out, _ = run_cli(capsys, "info", "--preset", "tiny-16")
    assert code == 0
    info = json.loads(out)
    # spec §5.6: tiny-16 = 0.00794 analytic GMAC, 0.747 M parameters with 10 classes
    assert info["gmac"]["total"] == pytest.approx(0.00794, rel=5e-3)
    assert info["parameters"] == pytest.approx(0.747e6, rel=5e-3)
    assert info["config"]["num_classes"] == 10


def test_train_then_sample(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", "--steps", "3", "--batch-size", "16", "--out", str(run))
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["step"] == 3 and summary["last"]["step"] == 3
    assert RunCheckpoints(run, read_only=True).steps() == [3]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [3]
    grid = np.asarray(Image.open(run / "samples" / "step_0000003.png"))
    assert grid.shape == (160, 160)  # 10 classes × 10 samples of 16×16, one row per class
    # the saved configuration holds the digits recipe and the model preset
    code, _, err = run_cli(capsys, "train", "--steps", "4", "--out", str(run), "--lr", "0.01")
    assert code == 2 and "train.lr: checkpoint 0.002, now 0.01" in err
    code, _, err = run_cli(capsys, "train", "--steps", "4", "--out", str(run), "--no-resume")
    assert code == 2 and err.startswith("diff-pixel: error: --out:")

    out_png = tmp_path / "grid.png"
    code, out, _ = run_cli(
        capsys, "sample", "--run", str(run), "--out", str(out_png), "--npz", str(tmp_path / "s.npz")
    )
    assert code == 0, out
    png = np.asarray(Image.open(out_png))
    assert png.shape == (640, 640)  # 160×160 grid scaled 4×
    # the PNG is the saved samples, one row per class (labels 0-9 cycled, then sorted)
    with np.load(tmp_path / "s.npz") as data:
        samples, labels = data["samples"], data["labels"]
    assert samples.shape == (100, 16, 16, 1) and samples.min() >= -1 and samples.max() <= 1
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 10))
    tiles = samples[..., 0].reshape(10, 10, 16, 16).transpose(0, 2, 1, 3).reshape(160, 160)
    np.testing.assert_array_equal(png[::4, ::4], np.round((tiles + 1) * 127.5).astype(np.uint8))
    code, _, err = run_cli(capsys, "sample", "--run", str(run), "--out", str(out_png))
    assert code == 2 and "--out" in err and "exists" in err
    bad_png = str(tmp_path / "x.png")
    code, _, err = run_cli(
        capsys, "sample", "--run", str(run), "--labels", "3-12", "--out", bad_png
    )
    assert code == 2 and "--labels" in err
    assert not os.path.exists(tmp_path / "x.png")


@pytest.mark.slow
def test_demo_quick_writes_grid_curve_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, _ = run_cli(capsys, "demo", "--quick", "--out", str(out), "--no-progress")
    assert code == 0
    grid = Image.open(out / "samples.png")
    assert grid.size == (640, 640)  # 10×10 grid of 16×16 images = 160×160 before scaling ×4
    assert Image.open(out / "loss.png").size == (720, 440)
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "class_accuracy",
        "digits_feature_distance",
        "dfd_floor",
        "dfd_noise",
        "classifier_test_accuracy",
    ):
        assert np.isfinite(metrics[key]), key
    assert metrics["steps"] == 200
    assert metrics["classifier_test_accuracy"] >= 0.98
    assert metrics["dfd_noise"] > metrics["digits_feature_distance"]
    # `evaluate` on the demo's run directory reuses the cached classifier
    code, stdout, _ = run_cli(capsys, "evaluate", "--run", str(out / "run"))
    assert code == 0
    ev = json.loads((out / "run" / "evaluate.json").read_text())
    assert ev["class_accuracy"] == pytest.approx(metrics["class_accuracy"])
    assert ev["step"] == 200
