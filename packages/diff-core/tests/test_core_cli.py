"""Check 30: the ``diff-core`` console script (demo, list, bad arguments)."""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys

import pytest


def _run(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "diff_core.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_quick_demo_writes_png_and_metrics(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "demo"
    res = _run("demo", "--quick", "--out", str(out))
    assert res.returncode == 0, res.stderr
    import matplotlib.image as mpimg

    img = mpimg.imread(out / "samples.png")
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    samplers = ("ddpm", "ddim", "euler", "heun", "dpmpp_2m")
    assert [(r["sampler"], int(r["steps"])) for r in rows] == [
        (s, n) for s in samplers for n in (4, 16)
    ]
    for r in rows:
        n = int(r["steps"])
        assert int(r["nfe"]) == (2 * n - 1 if r["sampler"] == "heun" else n)
    mmd = {(r["sampler"], int(r["steps"])): float(r["mmd2"]) for r in rows}
    assert mmd[("ddim", 16)] < mmd[("ddim", 4)]
    meta = json.loads((out / "metrics.json").read_text())
    assert meta["config"]["n"] == 1000 and len(meta["runs"]) == 10
    table = (out / "metrics.md").read_text()
    assert table.startswith("| sampler | steps | nfe |") and "| data | 0 | 0 |" in table
    assert "| ddim | 16 | 16 |" in res.stdout
    # every column is explained: meaning, better direction, range expected at this budget
    from diff_core.figures import check_glossary

    glossary = check_glossary(meta["glossary"])
    assert set(glossary) == {
        "steps",
        "nfe",
        "mmd2",
        "sw2",
        "mean_log_p",
        "mode_tv",
        "spread",
        "fd_exact",
    }
    assert glossary["mmd2"]["better"] == "lower" and glossary["spread"]["better"] == "closer to 1"
    assert meta["meta"]["quick"] is True and meta["meta"]["expected_s"] > 0
    assert "expected about" in res.stdout and "lower is better; expected" in res.stdout
    # the measured values lie in the ranges the glossary states for this budget
    data = meta["data_row"]
    assert abs(data["mmd2"]) < 0.005 and 0.9 < data["spread"] < 1.1
    assert 0.005 < mmd[("ddim", 16)] < 0.03 and 0.09 < mmd[("ddim", 4)] < 0.7
    # an earlier demo's outputs are refused before any work (one line, exit 2), then replaced
    again = _run("demo", "--quick", "--out", str(out))
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.count("\n") == 1 and "pass --overwrite" in again.stderr
    assert "samples.png, metrics.csv, metrics.json, metrics.md" in again.stderr
    small = ("--samplers", "ddim", "--steps", "2", "--n", "64", "--out", str(out))
    res = _run("demo", *small, "--overwrite")
    assert res.returncode == 0, res.stderr
    assert json.loads((out / "metrics.json").read_text())["config"]["n"] == 64


def test_bad_arguments_exit_2_naming_the_option_in_one_line(tmp_path):
    from diff_core.cli import main

    existing = tmp_path / "file.txt"
    existing.write_text("mine")
    cases = [
        (("demo", "--steps", "0"), "--steps"),
        (("demo", "--samplers", "ddim,plms"), "--samplers"),
        (("demo", "--n", "1"), "--n"),
        (("demo", "--out", str(existing)), "--out"),
        (("schedules", "--out", str(existing)), "--out"),
        (("schedules", "--resolution", "0"), "--resolution"),
        (("demo", "--bogus"), "--bogus"),
    ]
    for args, _option in cases:
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        assert exc.value.code == 2, args
    res = _run("demo", "--out", str(existing))
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr == (
        f"diff-core demo: error: --out: {str(existing)!r} exists and is not a folder "
        "(see diff-core demo -h)\n"
    )
    assert existing.read_text() == "mine"
    for args, option in cases[:3]:
        res = _run(*args)
        assert res.returncode == 2 and res.stderr.count("\n") == 1 and option in res.stderr


def _walk(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _walk(sub)


def test_every_option_has_help_with_its_default():
    from diff_core.cli import build_parser

    checked = 0
    for parser in _walk(build_parser()):
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help, f"{parser.prog} {action.option_strings} has no help"
            if action.option_strings and not isinstance(action, argparse._StoreTrueAction):
                assert "default" in action.help, f"{parser.prog} {action.option_strings}"
            checked += 1
    assert checked >= 14


@pytest.mark.smoke
def test_list_imports_no_framework():
    code = (
        "import sys\n"
        "from diff_core.cli import main\n"
        "rc = main(['list'])\n"
        "print('FRAMEWORKS', 'jax' in sys.modules, 'torch' in sys.modules)\n"
        "sys.exit(rc)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert "FRAMEWORKS False False" in res.stdout
    for name in ("cosine", "ddim", "dpmpp_2m", "gaussian_mixture"):
        assert name in res.stdout
    assert "(diff-core)" in res.stdout
