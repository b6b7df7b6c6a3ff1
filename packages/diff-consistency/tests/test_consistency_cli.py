"""The command line: every option documents its default, bad arguments are one line with exit
code 2 naming the argument (spec §8's examples), existing outputs are refused before any work."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from diff_consistency.cli import build_parser, main


def _run(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return exc.value.code, err


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    raise AssertionError("no subcommands")


@pytest.mark.smoke
def test_every_option_documents_its_default():
    for name, sub in _subparsers(build_parser()).items():
        for action in sub._actions:
            if action.dest in ("help",) or action.help == argparse.SUPPRESS:
                continue
            text = action.help or ""
            assert "default" in text or "required" in text or action.choices, (name, action.dest)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (
            ["distill", "--teacher", "t", "--out", "o", "--S", "0"],
            "argument --S: must be a positive integer, got 0",
        ),
        (
            ["tract", "--teacher", "t", "--out", "o", "--schedule", "32,64"],
            "schedule must be strictly decreasing, got 32,64",
        ),
        (
            ["tract", "--teacher", "t", "--out", "o", "--schedule", "1024,48,1"],
            "argument --schedule: schedule must have each entry divide the previous one, got 1024,48,1",
        ),
        (
            ["sample-teacher", "--teacher", "t", "--out", "o.png", "--max-snr", "-1"],
            "argument --max-snr: must be a positive number, got -1",
        ),
        (
            ["train", "--init", "i", "--teacher", "t", "--out", "o"],
            "--teacher: consistency training (CT) uses no teacher",
        ),
        (
            ["distill", "--teacher", "/nonexistent/run", "--out", "o"],
            "--teacher: /nonexistent/run holds no run",
        ),
        (["toy", "--mixture", "ring9", "--out", "o"], "argument --mixture: invalid choice"),
    ],
)
def test_bad_arguments_are_one_line_exit_2(capsys, argv, needle):
    code, err = _run(capsys, argv)
    assert code == 2
    assert len(err) == 1 and needle in err[0], err
    assert err[0].startswith("diff-consistency")


def test_existing_output_refused_before_work(tmp_path, capsys):
    out = tmp_path / "grid.png"
    out.write_bytes(b"mine")
    code, err = _run(capsys, ["sample", "--student", str(tmp_path / "none"), "--out", str(out)])
    assert code == 2 and "exists; pass --overwrite" in err[-1]
    assert out.read_bytes() == b"mine"
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "metrics.json").write_text("{}")
    code, err = _run(capsys, ["demo", "--quick", "--out", str(tmp_path / "demo")])
    assert code == 2 and "--out" in err[-1] and "--overwrite" in err[-1]


def test_damaged_checkpoint_named_in_one_line(tmp_path, capsys):
    run = tmp_path / "run" / "checkpoints" / "10"
    run.mkdir(parents=True)
    (run / "garbage").write_text("x")
    code, err = _run(
        capsys, ["sample", "--student", str(tmp_path / "run"), "--out", str(tmp_path / "g.png")]
    )
    assert code == 2 and len(err) == 1 and "--student" in err[0] and str(tmp_path / "run") in err[0]


def test_console_script_help():
    out = subprocess.run(
        [sys.executable, "-m", "diff_consistency.cli", "distill", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--teacher-sampler" in out.stdout and "(default: 8)" in out.stdout


def test_npz_data_outside_the_pixel_range_is_a_data_error(tmp_path):
    """A user's .npz in 0..255 is refused as a --data error (diff-pixel's ArraySource refuses
    images outside [-1, 1]), not a traceback."""
    import numpy as np

    from diff_consistency.cli import CLIError, _source

    path = tmp_path / "raw.npz"
    np.savez(path, x=np.full((4, 8, 8, 1), 255.0, np.float32))
    with pytest.raises(CLIError, match=r"^--data: .*raw\.npz: .*\[-1, 1\]"):
        _source(str(path))
    np.savez(path, x=np.zeros((4, 8, 8, 1), np.float32))
    assert _source(str(path)).num_examples == 4
