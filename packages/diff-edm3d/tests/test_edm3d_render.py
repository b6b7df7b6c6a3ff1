"""Pictures: the 5 x 5 molecule grid (1000 x 1000 px, green/red titles), chain and curves."""

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
        assert im.size == (1000, 1000)
        img = np.asarray(im.convert("RGB"))
    # stable titles are green, unstable red; atoms in CPK colours (O red, N blue)
    assert _colour_pixels(img, (0, 128, 0)) > 100
    assert _colour_pixels(img, (255, 0, 0)) > 20
    assert _colour_pixels(img, (48, 80, 248)) > 20  # nitrogen
    top = img[:200, :200]  # tile 0 is methane: grey C and white H on white, no blue/red atoms
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
    p = plot_training_curves(tmp_path / "metrics.jsonl", tmp_path / "curves.png")
    with Image.open(p) as im:
        assert im.size == (1300, 360)


def test_stability_agreement_float32_float64():
    from diff_edm3d.testing import stability_agreement

    ms = read_qm9pack(nrows=300)
    agree = stability_agreement(stability(ms, precision="float32"), stability(ms))
    assert agree["identical"] and agree["molecule_agreement"] == 1.0
    moved = ms._replace(positions=ms.positions * 1.2)  # stretched bonds break stability
    other = stability_agreement(stability(ms), stability(moved))
    assert not other["identical"] and other["stable_molecules"][1] < other["stable_molecules"][0]
