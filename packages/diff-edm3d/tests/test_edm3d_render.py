"""Pictures: the 5 x 5 molecule grid (1012 x 1012 px with gaps, green/red titles), chain and
curves."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from diff_edm3d import stability
from diff_edm3d.data.qm9 import read_qm9pack
from diff_edm3d.render import plot_training_curves, render_grid


def _colour_pixels(img: np.ndarray, rgb: tuple[int, int, int]) -> int:
    return int((np.abs(img[..., :3].astype(int) - np.array(rgb)).sum(-1) < 60).sum())


def test_grid_of_25_qm9_molecules(tmp_path):
    ms = read_qm9pack(nrows=30).subset(np.arange(25))
    st = stability(ms)
    assert 0 < st.n_stable_molecules < 25  # Indices 23, 24, 25 are unstable (spec 13.1 #14)
    path = render_grid(ms, tmp_path / "grid.png")
    with Image.open(path) as im:
        assert im.size == (1012, 1012)  # 5 tiles of 200 px, 6 white gaps of 2 px
        img = np.asarray(im.convert("RGB"))
    for g in range(6):  # the gaps between tiles are background, in both directions
        assert (img[:, g * 202 : g * 202 + 2] == 255).all() and (
            img[g * 202 : g * 202 + 2] == 255
        ).all()
    # stable titles are green, unstable red; atoms in CPK colours (O red, N blue)
    assert _colour_pixels(img, (0, 128, 0)) > 100
    assert _colour_pixels(img, (255, 0, 0)) > 20
    assert _colour_pixels(img, (48, 80, 248)) > 20  # nitrogen
    top = img[2:202, 2:202]  # tile 0 is methane: grey C and white H on white, no blue/red atoms
    assert _colour_pixels(top, (48, 80, 248)) == 0
    before = path.read_bytes()
    try:
        render_grid(ms, path)
        raise AssertionError("an existing file must not be replaced")
    except FileExistsError:
        assert path.read_bytes() == before


def test_training_curves(tmp_path):
    rows = [{"step": i + 1, "loss": 1.0 / (i + 1), "grad_norm": 2.0} for i in range(60)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # no evaluation yet: two panels, no empty "evaluation (EMA)" panel
    p = plot_training_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png",
                             tmp_path / "eval.jsonl")  # fmt: skip
    with Image.open(p) as im:
        assert im.size == (900, 360)
    evals = [{"step": 30, "molecule_stability": 0.1, "atom_stability": 0.6, "val_nll": 80.0},
             {"step": 60, "molecule_stability": 0.2, "atom_stability": 0.7, "val_nll": 60.0}]  # fmt: skip
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals))
    p = plot_training_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png",
                             tmp_path / "eval.jsonl", overwrite=True)  # fmt: skip
    with Image.open(p) as im:
        assert im.size == (1300, 360)
        img = np.asarray(im.convert("RGB"))
    # the third panel holds the evaluation markers (matplotlib's C0 blue and C3 red)
    third = img[:, 900:]
    assert _colour_pixels(third, (31, 119, 180)) > 20 and _colour_pixels(third, (214, 39, 40)) > 20


def test_stability_agreement_float32_float64():
    from diff_edm3d.testing import stability_agreement

    ms = read_qm9pack(nrows=300)
    agree = stability_agreement(stability(ms, precision="float32"), stability(ms))
    assert agree["identical"] and agree["molecule_agreement"] == 1.0
    moved = ms._replace(positions=ms.positions * 1.2)  # stretched bonds break stability
    other = stability_agreement(stability(ms), stability(moved))
    assert not other["identical"] and other["stable_molecules"][1] < other["stable_molecules"][0]
