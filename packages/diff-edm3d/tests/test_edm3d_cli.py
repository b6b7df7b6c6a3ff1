"""The ``diff-edm3d`` CLI: train on a user file, sample, evaluate, errors, and the demo (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diff_edm3d import load_checkpoint, read_xyz, write_xyz
from diff_edm3d.cli import main
from diff_edm3d.data.qm9 import read_qm9pack

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for 4 steps from an .xyz file through the CLI."""
    root = tmp_path_factory.mktemp("cli")
    data = read_qm9pack(nrows=200)
    write_xyz(data, root / "train.xyz")
    threads = torch.get_num_threads()
    try:
        rc = main([
            "train", "--preset", "tiny", "--dataset", str(root / "train.xyz"), "--steps", "4",
            "--out", str(root / "run"), "--eval-every", "0", "--threads", "1",
        ])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    return root


def test_train_writes_config_and_checkpoint(trained):
    cfg = json.loads((trained / "run" / "config.json").read_text())
    assert cfg["preset"] == "tiny" and cfg["dataset"] == "files" and cfg["steps"] == 4
    assert (trained / "run" / "ckpt_00000004" / "model.safetensors").is_file()
    rows = (trained / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(r)["step"] for r in rows] == [1, 2, 3, 4]


def test_sample_and_evaluate(trained, capsys):
    out = trained / "samples"
    rc = main([
        "sample", "--checkpoint", str(trained / "run"), "--n", "6", "--grid-steps", "20",
        "--out", str(out), "--seed", "1", "--chain",
    ])  # fmt: skip
    assert rc == 0
    for name in ("samples.xyz", "samples.sdf", "grid.png", "chain.png", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["sampling"]["grid_steps"] == 20
    # the xyz holds the in-memory float32 samples exactly
    edm = load_checkpoint(trained / "run")
    sizes, _ = edm.draw_sizes_and_context(6, 1)
    grid = np.linspace(1000, 0, 21).round().astype(int)
    again = edm.sample(sizes, seed=1, grid=grid)
    back = read_xyz(out / "samples.xyz")
    pos = np.concatenate([m.positions for m in back]).astype(np.float32)
    assert np.array_equal(pos, again.positions.astype(np.float32))
    # evaluate --molecules gives the same metrics as metrics.json
    rc = main(["evaluate", "--molecules", str(out / "samples.xyz"), "--out", str(trained / "ev")])
    assert rc == 0
    ev = json.loads((trained / "ev" / "eval.json").read_text())
    assert ev["stability"] == metrics["stability"]
    assert ev.get("rdkit") == metrics.get("rdkit")
    # nothing is overwritten without --overwrite
    before = (out / "samples.xyz").read_bytes()
    rc = main(["sample", "--checkpoint", str(trained / "run"), "--n", "2", "--grid-steps", "5",
               "--out", str(out)])  # fmt: skip
    assert rc == 2 and (out / "samples.xyz").read_bytes() == before
    assert "--overwrite" in capsys.readouterr().err


def test_bad_flags_exit_with_the_message(trained, capsys):
    rc = main(["sample", "--checkpoint", str(trained / "run"), "--n-atoms", "30", "--out",
               str(trained / "x")])  # fmt: skip
    assert rc == 2 and "max_atoms = 29" in capsys.readouterr().err
    rc = main(["train", "--preset", "tiny", "--condition", "bogus", "--out", str(trained / "y")])
    assert rc == 2 and "bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["sample"])  # --checkpoint is required
    rc = main(["sample", "--checkpoint", str(trained / "missing"), "--out", str(trained / "z")])
    assert rc == 2 and "missing" in capsys.readouterr().err


def test_unknown_element_in_user_file(tmp_path, capsys):
    f = tmp_path / "bad.xyz"
    f.write_text("2\ncomment\nC 0 0 0\nXx 1 0 0\n")
    rc = main(["evaluate", "--molecules", str(f), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and "Xx" in err and not (tmp_path / "e" / "eval.json").exists()


@pytest.mark.slow
def test_demo(tmp_path):
    out = tmp_path / "demo"
    threads = torch.get_num_threads()
    try:
        rc = main(["demo", "--minutes", "1", "--out", str(out), "--threads", "1"])
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    from PIL import Image

    with Image.open(out / "grid.png") as im:
        assert im.size == (1000, 1000)
    for name in ("samples.xyz", "samples.sdf", "curves.png", "metrics.json"):
        assert (out / name).is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    edm = load_checkpoint(out / "run", weights=metrics["sampling"]["weights"])
    again = edm.generate(25, seed=0)
    back = read_xyz(out / "samples.xyz")
    pos = np.concatenate([m.positions for m in back]).astype(np.float32)
    assert again.positions.dtype == np.float32 and np.array_equal(pos, again.positions)
    rc = main(["evaluate", "--molecules", str(out / "samples.xyz"), "--out", str(tmp_path / "ev")])
    ev = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert rc == 0 and ev["stability"] == metrics["stability"] and ev["rdkit"] == metrics["rdkit"]
