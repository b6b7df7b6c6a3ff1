"""PNG sample grids and loss curves (Pillow only)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diff_pixel.images import make_grid, save_grid, save_loss_curve, to_uint8


def test_to_uint8_mapping():
    np.testing.assert_array_equal(to_uint8([-1.0, 0.0, 1.0, -3.0, 2.0]), [0, 128, 255, 0, 255])
    with pytest.raises(ValueError, match="finite"):
        to_uint8([np.nan])


def test_grid_layout_is_row_major_and_exact(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (100, 16, 16, 1)).astype(np.float32)
    path = tmp_path / "g.png"
    grid = save_grid(path, images, nrow=10, scale=3)
    assert grid.shape == (160, 160, 1)
    for i in (0, 9, 10, 57, 99):
        r, c = divmod(i, 10)
        np.testing.assert_array_equal(
            grid[16 * r : 16 * r + 16, 16 * c : 16 * c + 16], to_uint8(images[i])
        )
    png = np.asarray(Image.open(path))
    assert png.shape == (480, 480)  # grey PNG, scaled 3× (nearest)
    np.testing.assert_array_equal(png[::3, ::3], grid[..., 0])


def test_grid_one_row_per_class_and_padding():
    images = np.stack([np.full((4, 4, 3), v, np.float32) for v in (-1.0, 0.0, 1.0, 0.5, -0.5)])
    labels = np.array([2, 0, 2, 0, 1])
    grid = make_grid(images, labels=labels, padding=1, pad_value=1.0)
    # rows: class 0 → images 1, 3; class 1 → image 4; class 2 → images 0, 2; two columns
    assert grid.shape == (3 * 4 + 4, 2 * 4 + 3, 3)
    cell = lambda r, c: grid[1 + 5 * r : 5 + 5 * r, 1 + 5 * c : 5 + 5 * c]  # noqa: E731
    assert (cell(0, 0) == 128).all() and (cell(0, 1) == 191).all()
    assert (cell(1, 0) == 64).all() and (cell(1, 1) == 255).all()  # empty cell = background
    assert (cell(2, 0) == 0).all() and (cell(2, 1) == 255).all()
    with pytest.raises(ValueError, match="make_grid: images must have shape"):
        make_grid(np.zeros((2, 4, 4, 2)))


def test_loss_curve_png(tmp_path):
    records = [
        {"step": s, "loss": 1.0 / s, "bin_loss_sum": [2.0 / s, 1.0], "bin_loss_count": [2.0, 4.0]}
        for s in range(1, 51)
    ]
    path = tmp_path / "loss.png"
    save_loss_curve(path, records)
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape == (440, 720, 3)
    black = (img.sum(axis=-1) == 0).sum()
    coloured = ((img.max(axis=-1) - img.min(axis=-1)) > 60).sum()
    assert black > 500 and coloured > 200  # the main curve and the two per-bin curves are drawn
    with pytest.raises(ValueError, match="finite 'loss'"):
        save_loss_curve(tmp_path / "x.png", [{"step": 1, "loss": float("nan")}])
