"""Check 14 of rolling.md §10: the command line (errors, data, the full train → sample → evaluate
chain on a micro model) and (slow) ``demo --quick``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diff_rolling.cli import main


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diff_rolling.cli", *args], capture_output=True, text=True
    )


@pytest.mark.smoke
def test_rolling_cli_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        main(["sample", "--workdir", "w", "--data", "d", "--steps-per-shift", "0", "--out", "o"])
    assert err.value.code == 2
    assert "argument --steps-per-shift: must be >= 1, got 0" in capsys.readouterr().err
    np.savez(tmp_path / "x.npz", u=np.ones(3), v=np.ones(3))
    code = main(["train", "--data", str(tmp_path / "x.npz"), "--workdir", str(tmp_path / "run")])
    err_text = capsys.readouterr().err.strip()
    assert code == 2
    assert err_text == (
        "diff-rolling: error: load_kolmogorov: path must hold an array 'frames', got keys ['u', 'v'] in x.npz"
    )
    code = main(["train", "--data", "x.npz", "--sample-every", "-1", "--workdir", "run"])
    assert code == 2
    assert capsys.readouterr().err.strip() == (
        "diff-rolling: error: train: --sample-every must be >= 0, got -1"
    )
    (tmp_path / "taken.npz").write_bytes(b"")
    code = main(
        [
            "generate-data",
            "gaussian",
            "--n",
            "2",
            "--length",
            "3",
            "--out",
            str(tmp_path / "taken.npz"),
        ]
    )
    assert code == 2 and "exists (pass --overwrite" in capsys.readouterr().err
    code = main(["evaluate", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "ev")])
    assert code == 2 and "does not exist" in capsys.readouterr().err


def test_rolling_cli_help_shows_defaults():
    out = _run("train", "--help")
    assert (
        out.returncode == 0
        and "(default: 1000)" in out.stdout
        and "(default: rolling)" in out.stdout
    )


def test_rolling_cli_missing_extra_exit_1(tmp_path, monkeypatch, capsys):
    import builtins

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("jax_cfd"):
            raise ImportError("no jax_cfd")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    code = main(
        ["generate-data", "kolmogorov", "--trajectories", "1", "--out", str(tmp_path / "k.npz")]
    )
    assert code == 1
    assert (
        "needs the 'kolmogorov' extra: pip install diff-rolling[kolmogorov]"
        in capsys.readouterr().err
    )


def test_rolling_cli_generate_and_evaluate(tmp_path, capsys):
    data = tmp_path / "g.npz"
    assert (
        main(
            [
                "generate-data",
                "gaussian",
                "--resolution",
                "8",
                "--n",
                "16",
                "--length",
                "12",
                "--out",
                str(data),
            ]
        )
        == 0
    )
    assert (tmp_path / "g.json").exists() and (tmp_path / "g_preview.png").exists()
    with np.load(data) as f:
        x = f["frames"]
    paths = []
    rng = np.random.default_rng(0)
    for mode, nfe in (("rolling", 2 * 4 + 2 * 5), ("standard", 16)):
        p = tmp_path / f"{mode}.npz"
        np.savez(
            p,
            frames=x[:4, 2:8] + 0.1 * rng.normal(size=(4, 6, 8, 8, 1)),
            truth=x[:4, 2:8],
            context=x[:4, :2],
            nfe=nfe,
            mode=mode,
            steps_per_shift=2,
            dt=1.0,
        )
        paths.append(str(p))
    ev = tmp_path / "ev"
    assert main(["evaluate", *paths, "--out", str(ev)]) == 0
    table = (ev / "metrics.md").read_text()
    assert (
        "| rolling | 2 | 18 |" in table
        and "| standard | 2 | 16 |" in table
        and "| persistence |" in table
    )
    from PIL import Image

    with Image.open(ev / "rollout.gif") as im:
        assert im.n_frames == 6
    Image.open(ev / "curves.png").verify()
    metrics = json.loads((ev / "metrics.json").read_text())
    assert abs(metrics["rolling"]["model"]["nmse"][0] - 0.01) < 0.005  # noise of std 0.1
    # spectra of leads 4-6 (the last half) over every trajectory, shells 0..8 // 3
    from diff_rolling.metrics import energy_spectrum

    spectra = json.loads((ev / "spectrum.json").read_text())
    assert spectra["k"] == [0, 1, 2]
    with np.load(paths[0]) as f:
        for name, frames in (("truth", f["truth"]), ("rolling", f["frames"])):
            np.testing.assert_allclose(spectra[name], energy_spectrum(frames[:, 3:])[1][:3])
    Image.open(ev / "spectrum.png").verify()
    with Image.open(ev / "strip.png") as im:  # rows truth, rolling, standard, |error|; 6 leads
        assert im.size[0] > im.size[1] > 0
    assert main(["evaluate", *paths, "--out", str(ev)]) == 2  # exists without --overwrite


@pytest.mark.slow
def test_rolling_cli_chain_train_sample_evaluate(tmp_path, capsys):
    data = tmp_path / "g.npz"
    assert (
        main(
            [
                "generate-data",
                "gaussian",
                "--resolution",
                "16",
                "--n",
                "16",
                "--length",
                "12",
                "--out",
                str(data),
            ]
        )
        == 0
    )
    assert (tmp_path / "g.json").exists()
    runs = {}
    for mode in ("rolling", "standard"):
        run = tmp_path / f"run_{mode}"
        args = [
            "train",
            "--data",
            str(data),
            "--mode",
            mode,
            "--preset",
            "micro",
            "--steps",
            "4",
            "--batch",
            "4",
            "--warmup",
            "1",
            "--checkpoint-every",
            "2",
            "--workdir",
            str(run),
        ]
        assert main([*args, "--sample-every", "2"]) == 0
        # rollout strips of a held-out trajectory at step 2 and at the end
        strips = sorted(p.name for p in (run / "samples").glob("step_*.png"))
        assert strips == ["step_0000002.png", "step_0000004.png"]
        from PIL import Image

        Image.open(run / "samples" / strips[-1]).verify()
        assert main(args) == 0  # a finished run is resumed, not retrained
        assert "run complete: step 4 of 4" in capsys.readouterr().err
        r = tmp_path / f"{mode}.npz"
        assert (
            main(
                [
                    "sample",
                    "--workdir",
                    str(run),
                    "--data",
                    str(data),
                    "--frames",
                    "6",
                    "--trajectories",
                    "2",
                    "--steps-per-shift",
                    "2",
                    "--out",
                    str(r),
                ]
            )
            == 0
        )
        runs[mode] = r
        with np.load(r) as f:
            assert f["frames"].shape == (2, 6, 16, 16, 1) and np.isfinite(f["frames"]).all()
    rolling_nfe = int(np.load(runs["rolling"])["nfe"])
    standard_nfe = int(np.load(runs["standard"])["nfe"])
    assert rolling_nfe == 2 * 4 + 2 * 5 and standard_nfe == 2 * 4 * 2
    ev = tmp_path / "ev"
    assert main(["evaluate", str(runs["rolling"]), str(runs["standard"]), "--out", str(ev)]) == 0
    table = (ev / "metrics.md").read_text()
    assert "| rolling | 2 |" in table and "| standard | 2 |" in table and "| persistence |" in table
    from PIL import Image

    with Image.open(ev / "rollout.gif") as im:
        assert im.n_frames == 6
    Image.open(ev / "curves.png").verify()
    metrics = json.loads((ev / "metrics.json").read_text())
    assert set(metrics) == {"rolling", "standard"}


@pytest.mark.slow
def test_rolling_demo_quick(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "diff_rolling.cli", "demo", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    from PIL import Image

    Image.open(out / "strip.png").verify()
    with Image.open(out / "rollout.gif") as im:
        assert im.n_frames > 1
    table = (out / "table.md").read_text()
    rows = {
        line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()[2:]
    }
    assert rows["rolling"] == rows["standard"] == "4"
    summary = json.loads((out / "metrics.json").read_text())
    assert all(np.isfinite(v["lead1_nmse"]) for v in summary["kolmogorov"].values())
    assert Path(out / "oracle.md").exists()
