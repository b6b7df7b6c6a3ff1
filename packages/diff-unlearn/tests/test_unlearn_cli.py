"""The ``diff-unlearn`` command line (spec check 18)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from diff_unlearn.cli import main


def _run(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "diff_unlearn.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_bad_arguments_exit_2_naming_the_option(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(SystemExit) as err:
        main(
            [
                "unlearn",
                "--model",
                str(run),
                "--method",
                "distill",
                "--forget",
                "12",
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert err.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--forget" in line and "[0, 9]" in line
    with pytest.raises(SystemExit) as err:
        main(["unlearn", "--model", str(run), "--method", "magic", "--out", str(tmp_path / "o")])
    assert err.value.code == 2 and "--method" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(
            [
                "unlearn",
                "--model",
                str(tmp_path / "none"),
                "--method",
                "distill",
                "--out",
                str(tmp_path / "o"),
            ]
        )
    assert err.value.code == 2 and "--model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["pretrain", "--out", str(tmp_path / "p"), "--steps", "0"])
    assert err.value.code == 2 and "--steps" in capsys.readouterr().err


def test_existing_output_is_refused_before_any_work(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(SystemExit) as err:
        main(["demo", "--quick", "--out", str(out)])
    assert err.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep me"


def test_help_shows_defaults():
    res = _run("unlearn", "--help")
    assert res.returncode == 0
    assert "(default: 600)" in res.stdout and "(default: 0.0002)" in res.stdout


@pytest.mark.slow
def test_demo_quick(tmp_path):
    out = tmp_path / "demo"
    res = _run("demo", "--quick", "--out", str(out), timeout=3600)
    assert res.returncode == 0, res.stderr[-2000:]
    table = (out / "table.md").read_text()
    for row in ("| original |", "| remap |", "| distill |"):
        assert row in table
    assert (out / "retain_grid.png").stat().st_size > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    rows = {r["model"]: r for r in metrics["rows"]}
    assert rows["original"]["rmse"] == 0.0 and rows["original"]["labels_kept"] == 1.0
    assert set(metrics["glossary"]) >= {"rmse", "forget_acc", "alignment"}


@pytest.mark.slow
def test_unlearn_then_evaluate_from_the_command_line(tmp_path, micro, task, recipe):
    from diff_pixel import Loader, TrainConfig, Trainer
    from diff_pixel.sid import recipe_loss

    run = tmp_path / "original"
    config = TrainConfig(steps=0, batch_size=8, out_dir=str(run), progress=False)
    Trainer(
        micro(0), recipe_loss(recipe), config, Loader(task.train, 8, seed=0), recipe=recipe
    ).save_checkpoint()
    args = [
        "unlearn",
        "--model",
        str(run),
        "--method",
        "remap",
        "--steps",
        "4",
        "--forget-batch",
        "4",
        "--retain-batch",
        "4",
        "--checkpoint-every",
        "2",
        "--out",
        str(tmp_path / "remap"),
    ]
    assert main(args) == 0
    longer = list(args)
    longer[longer.index("--steps") + 1] = "6"
    res = _run(*longer)  # same run, more steps: resumes
    assert res.returncode == 0 and "resuming from step 4" in res.stderr, res.stderr[-2000:]
    res = _run(
        "evaluate",
        "--original",
        str(run),
        "--unlearned",
        str(tmp_path / "remap"),
        "--n",
        "3",
        "--steps",
        "3",
        "--out",
        str(tmp_path / "eval"),
        timeout=1800,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    assert "| remap |" in (tmp_path / "eval" / "table.md").read_text()
    assert (tmp_path / "eval" / "retain_grid.png").is_file()
