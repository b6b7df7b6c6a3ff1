"""The ``diff-pixel`` console script (spec check 22 and the CLI's error handling).

The default suite runs the commands in-process on tiny settings (3 training steps at batch 16,
which share the compiled step with test_pixel_train_digits.py); ``demo --quick`` and ``evaluate``
(a classifier and 360 samples) are in the slow suite.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from diff_pixel.images import make_grid, to_uint8
from diff_pixel.sid.cli import main
from diff_pixel.train import DamagedCheckpointError, RunCheckpoints, Trainer, read_metrics


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


# Orbax reads arrays in concurrent coroutines: when one read of the damaged checkpoint below
# fails, the abandoned others report "Exception ignored" when collected. diff-pixel keeps them
# off sys.unraisablehook, which pytest replaces during a test (the slow test checks that a
# command line's stderr is one line).
@pytest.mark.slow  # 54 s on a slower Xeon: over the fast-suite cap there (CI budget step)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_train_then_sample(tmp_path, capsys):
    run = tmp_path / "run"
    code, out, _ = run_cli(capsys, "train", "--steps", "3", "--batch-size", "16", "--out", str(run))
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["step"] == 3 and summary["last"]["step"] == 3
    assert RunCheckpoints(run, read_only=True).steps() == [3]
    assert [r["step"] for r in read_metrics(run / "metrics.jsonl")] == [3]
    grid = np.asarray(Image.open(run / "samples" / "step_0000003.png"))
    # 10 classes × 10 samples of 16×16, one labelled row per class, 2-pixel gaps
    assert (
        grid.shape
        == make_grid(np.zeros((100, 16, 16)), labels=np.repeat(np.arange(10), 10)).shape[:2]
    )
    # the saved configuration holds the digits recipe and the model preset
    code, _, err = run_cli(capsys, "train", "--steps", "4", "--out", str(run), "--lr", "0.01")
    assert code == 2 and "train.lr: checkpoint 0.002, now 0.01" in err
    code, _, err = run_cli(capsys, "train", "--steps", "4", "--out", str(run), "--no-resume")
    assert code == 2 and err.startswith("diff-pixel: error: --out:")
    # the same command with more steps resumes, and says so (one line)
    code, out, err = run_cli(
        capsys, "train", "--steps", "4", "--batch-size", "16", "--out", str(run)
    )
    assert code == 0 and json.loads(out.strip().splitlines()[-1])["step"] == 4
    assert f"resuming from step 3 of 4 ({run / 'checkpoints' / '3'})" in err
    assert RunCheckpoints(run, read_only=True).steps() == [3, 4]

    out_png = tmp_path / "grid.png"
    code, out, _ = run_cli(
        capsys, "sample", "--run", str(run), "--out", str(out_png), "--npz", str(tmp_path / "s.npz")
    )
    assert code == 0, out
    png = np.asarray(Image.open(out_png))
    # the PNG is the saved samples, one row per class (labels 0-9 cycled, then sorted), scaled
    # 4×, with gaps of background between the tiles and the class number left of each row
    with np.load(tmp_path / "s.npz") as data:
        samples, labels = data["samples"], data["labels"]
    assert samples.shape == (100, 16, 16, 1) and samples.min() >= -1 and samples.max() <= 1
    np.testing.assert_array_equal(labels, np.repeat(np.arange(10), 10))
    expected, layout = make_grid(samples, labels=labels, scale=4, boxes=True)
    np.testing.assert_array_equal(png, expected[..., 0])
    top, left, bottom, right = layout.boxes[0]
    assert (bottom - top, right - left) == (64, 64) and layout.boxes[1][1] == right + 4
    np.testing.assert_array_equal(png[top:bottom:4, left:right:4], to_uint8(samples[0, ..., 0]))
    assert (png[top:bottom, right : right + 4] == 255).all()  # the gap
    assert (png[top:bottom, : layout.band_left] < 128).any()  # the row label "0"
    code, _, err = run_cli(capsys, "sample", "--run", str(run), "--out", str(out_png))
    assert code == 2 and "--out" in err and "exists" in err
    bad_png = str(tmp_path / "x.png")
    code, _, err = run_cli(
        capsys, "sample", "--run", str(run), "--labels", "3-12", "--out", bad_png
    )
    assert code == 2 and "--labels" in err
    code, _, err = run_cli(
        capsys, "sample", "--run", str(run), "--npz", str(tmp_path / "s.npz"), "--out", bad_png
    )
    assert code == 2 and err.startswith("diff-pixel: error: --npz:") and "--overwrite" in err
    assert not os.path.exists(tmp_path / "x.png")

    # a damaged latest checkpoint: one line naming the step and the older one to use instead
    damaged = run / "checkpoints" / "4"
    array_file = max(damaged.glob("model/ocdbt.process_0/d/*"), key=lambda f: f.stat().st_size)
    with open(array_file, "r+b") as f:
        f.truncate(100)
    with pytest.raises(DamagedCheckpointError, match=r"step 4 .* other steps available: 3") as exc:
        Trainer.restore(run)
    assert exc.value.step == 4 and exc.value.available == [3] and "\n" not in str(exc.value)
    code, _, err = run_cli(capsys, "sample", "--run", str(run), "--out", bad_png)
    assert code == 2 and err.count("\n") == 1
    assert err.startswith(
        f"diff-pixel: error: --run: RunCheckpoints: the checkpoint of step 4 at {damaged}"
    )
    assert err.rstrip().endswith("other steps available: 3; pass --step 3 to load an older one")
    code, _, err = run_cli(capsys, "train", "--steps", "5", "--batch-size", "16", "--out", str(run))
    assert code == 2 and err.count("\n") == 1 and f"to resume from step 3, move {damaged}" in err
    code, out, _ = run_cli(capsys, "sample", "--run", str(run), "--step", "3", "--out", bad_png)
    assert code == 0 and os.path.exists(bad_png)


def test_bad_arguments_and_existing_outputs_are_one_line_before_any_work(tmp_path, capsys):
    some_file = tmp_path / "file.txt"
    some_file.write_text("mine")
    code, _, err = run_cli(capsys, "sample", "--run", str(tmp_path), "--interval", "5", "-3")
    assert (code, err) == (
        2,
        "diff-pixel: error: --interval: must be LO HI with LO < HI, got 5 -3\n",
    )
    code, _, err = run_cli(capsys, "evaluate", "--run", str(tmp_path), "--interval", "1", "1")
    assert code == 2 and "--interval" in err
    code, _, err = run_cli(capsys, "train", "--out", str(some_file))
    assert (code, err) == (
        2,
        f"diff-pixel: error: --out: {str(some_file)!r} exists and is not a folder\n",
    )
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path))  # not empty, no checkpoints
    assert code == 2 and "holds no checkpoints to resume; pass --overwrite" in err
    code, _, err = run_cli(capsys, "demo", "--out", str(some_file))
    assert code == 2 and "--out" in err and "not a folder" in err
    (tmp_path / "samples.png").write_bytes(b"an earlier demo")
    code, _, err = run_cli(capsys, "demo", "--out", str(tmp_path))
    assert code == 2 and "already holds samples.png of an earlier demo; pass --overwrite" in err
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "evaluate.json").write_text("{}")
    code, _, err = run_cli(capsys, "evaluate", "--run", str(run))
    assert code == 2 and err.startswith("diff-pixel: error: --out:") and "--overwrite" in err
    assert some_file.read_text() == "mine" and (run / "evaluate.json").read_text() == "{}"
    for args in (
        ["sample", "--run", "r", "--interval", "5", "nan"],
        ["sample", "--run", "r", "--num", "0"],
        ["train", "--checkpoint-every", "-1"],
        ["train", "--steps", "many"],
    ):
        with pytest.raises(SystemExit) as exc:
            main(args)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"diff-pixel {args[0]}: error: argument")


def _walk(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub)


def test_every_option_has_help_with_its_default():
    from diff_pixel.sid.cli import _parser

    checked = 0
    for parser in _walk(_parser()):
        assert "§" not in (parser.description or "")
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            what = f"{parser.prog} {action.option_strings or action.dest}"
            assert action.help and "§" not in action.help, what
            flag = isinstance(action, argparse._StoreTrueAction)
            if action.option_strings and not flag and not action.required:
                assert "default" in action.help, what
            checked += 1
    assert checked >= 45
    for action in _walk(_parser()):
        if action.prog == "diff-pixel":
            sub = next(a for a in action._actions if isinstance(a, argparse._SubParsersAction))
            helps = {c.dest: c.help for c in sub._choices_actions}
            assert (
                helps["bench"] == "run a benchmark script of benchmarks/ (from a source checkout)"
            )


@pytest.mark.slow
def test_demo_quick_writes_grid_curve_and_metrics(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, _ = run_cli(capsys, "demo", "--quick", "--out", str(out), "--no-progress")
    assert code == 0
    grid = np.asarray(Image.open(out / "samples.png"))
    # 10×10 grid of 16×16 images scaled ×4, gaps, one labelled row per class
    labels = np.repeat(np.arange(10), 10)
    assert grid.shape == make_grid(np.zeros((100, 16, 16)), labels=labels, scale=4).shape[:2]
    assert Image.open(out / "loss.png").size == (720, 440)
    metrics = json.loads((out / "metrics.json").read_text())
    # every figure is explained, with the range expected at this budget, and printed so
    from diff_core.figures import check_glossary

    glossary = check_glossary(metrics.pop("glossary"))
    assert set(glossary) == set(metrics) - {"meta"}
    assert metrics["meta"]["quick"] is True and metrics["meta"]["expected_s"] == 120
    assert "class_accuracy" in stdout and "higher is better; expected 0.05 to 0.4" in stdout
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


@pytest.mark.slow
def test_ctrl_c_checkpoints_in_one_line_and_the_same_command_resumes(tmp_path):
    """SIGINT after the first checkpoint: exit 130, one line, a loadable checkpoint; resume."""
    run = tmp_path / "run"
    command = [sys.executable, "-m", "diff_pixel.sid.cli", "train", "--batch-size", "16"]
    command += ["--checkpoint-every", "2", "--out", str(run)]
    proc = subprocess.Popen(
        [*command, "--steps", "1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 600
    while not (run / "checkpoints" / "2").is_dir() and proc.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint at step 2 after 600 s"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and out == ""
    last = err.replace("\r", "\n").strip().splitlines()[-1]
    steps = RunCheckpoints(run, read_only=True).steps()
    stopped = steps[-1]
    assert stopped >= 2
    assert last == (
        f"diff-pixel: interrupted at step {stopped}; checkpoint written to "
        f"{run / 'checkpoints' / str(stopped)}; run the same command to resume"
    )
    Trainer.restore(run)  # the checkpoint written on Ctrl-C loads
    resumed = subprocess.run(
        [*command, "--steps", str(stopped + 1)], capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming from step {stopped} of {stopped + 1}" in resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["step"] == stopped + 1
    # a damaged latest checkpoint: one line on stderr, exit 2, naming the older step to use
    damaged = run / "checkpoints" / str(stopped + 1)
    array_file = max(damaged.glob("model/ocdbt.process_0/d/*"), key=lambda f: f.stat().st_size)
    with open(array_file, "r+b") as f:
        f.truncate(100)
    sample = [sys.executable, "-m", "diff_pixel.sid.cli", "sample", "--run", str(run)]
    res = subprocess.run(
        [*sample, "--num", "4", "--out", str(tmp_path / "g.png")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 2 and res.stdout == "" and res.stderr.count("\n") == 1, res.stderr
    assert f"the checkpoint of step {stopped + 1} at {damaged} is damaged" in res.stderr
    assert res.stderr.endswith(f"pass --step {stopped} to load an older one\n")
