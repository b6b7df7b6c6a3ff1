"""Check 30: the ``diff-core`` console script (demo, list, bad arguments)."""

from __future__ import annotations

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


def test_bad_arguments_exit_2_naming_the_option():
    res = _run("demo", "--steps", "0")
    assert res.returncode == 2 and "--steps" in res.stderr
    res = _run("demo", "--samplers", "ddim,plms")
    assert res.returncode == 2 and "--samplers" in res.stderr
    res = _run("demo", "--n", "1")
    assert res.returncode == 2 and "--n" in res.stderr


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
