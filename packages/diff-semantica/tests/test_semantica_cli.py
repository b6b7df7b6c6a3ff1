"""The command line: help with defaults, one-line errors (exit 2), pairs pictures, train, and
`sample --condition img.png` writing its grid next to the image."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from diff_semantica import load_pairs
from diff_semantica.cli import main


def _err(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.smoke
def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "--help"])
    assert e.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "(default: 800)" in out and "(default: 0.1)" in out and "(default: p60)" in out


@pytest.mark.parametrize(
    ("argv", "arg"),
    [
        (["pairs", "--tau-lo", "p160", "--out", "X"], "--tau-lo"),
        (["pairs", "--tau-lo", "0.9", "--tau-hi", "0.5", "--out", "X"], "--tau-lo"),
        (["pairs", "--corrupt", "1.2", "--out", "X"], "--corrupt"),
        (["train", "--steps", "0", "--out", "X"], "--steps"),
        (["sample", "--model", "nowhere", "--condition", "digits:3"], "--model"),
        (["evaluate", "--model", "nowhere", "--protocol", "subset:a", "--out", "X"], "--protocol"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(argv, arg, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    line = _err(capsys)
    assert f"argument {arg}" in line and "Traceback" not in line


@pytest.mark.slow
def test_pairs_train_sample(tmp_path, capsys):
    assert (
        main(
            ["pairs", "--corrupt", "0.6", "--pairs-per-epoch", "4000", "--out", str(tmp_path / "p")]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["kept"] == len(load_pairs(tmp_path / "p" / "pairs.npz"))
    assert abs(summary["kept"] / summary["candidates"] - 0.4) < 0.01
    for f in ("pairs.npz", "filter_report.json", "pairs.png"):
        assert (tmp_path / "p" / f).stat().st_size > 0
    with pytest.raises(SystemExit) as e:  # an existing output is refused before any work
        main(["pairs", "--out", str(tmp_path / "p")])
    assert e.value.code == 2 and "--overwrite" in _err(capsys)
    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--pairs",
                str(tmp_path / "p"),
                "--steps",
                "3",
                "--batch",
                "8",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert (run / "checkpoints").is_dir() and (run / "encoder" / "params.safetensors").exists()
    img = tmp_path / "seven.png"
    Image.fromarray(np.kron(np.eye(8, dtype=np.uint8) * 255, np.ones((4, 4), np.uint8))).save(img)
    assert (
        main(["sample", "--model", str(run), "--condition", str(img), "--n", "3", "--steps", "2"])
        == 0
    )
    grid = tmp_path / "seven_variations.png"
    w, h = Image.open(grid).size
    assert w > 3 * h  # one row: condition, 3 variations, nearest training image
