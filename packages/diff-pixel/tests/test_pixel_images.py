"""PNG sample grids and loss curves (Pillow only)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diff_pixel.images import make_grid, save_grid, save_loss_curve, to_uint8


def test_grids_are_diff_cores_one_helper():
    import diff_core.images

    assert make_grid is diff_core.images.make_grid and save_grid is diff_core.images.save_grid
    assert to_uint8 is diff_core.images.to_uint8


def test_class_grid_has_gaps_and_drawn_row_labels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (20, 16, 16, 1)).astype(np.float32)
    labels = np.repeat(np.arange(4), 5)
    path = tmp_path / "g.png"
    grid, layout = save_grid(path, images, labels=labels, scale=3, boxes=True)
    png = np.asarray(Image.open(path))
    np.testing.assert_array_equal(png, grid[..., 0])
    assert (layout.rows, layout.cols) == (4, 5) and layout.band_left > 0
    covered = np.zeros(png.shape, bool)
    for i in range(20):
        top, left, bottom, right = layout.boxes[i]
        np.testing.assert_array_equal(png[top:bottom:3, left:right:3], to_uint8(images[i])[..., 0])
        covered[top:bottom, left:right] = True
    # tiles are separated by gaps of background (scale 3 → 3-pixel gaps); nothing touches
    _, left0, _, right0 = layout.boxes[0]
    assert (
        layout.boxes[1][1] - right0 == 3
        and (png[:, right0 : right0 + 3][covered[:, left0]] == 255).all()
    )
    band = png[:, : layout.band_left]
    for r in range(4):  # the class number is drawn beside each row
        top, _, bottom, _ = layout.boxes[5 * r]
        assert (band[top:bottom] < 128).sum() >= 5
    assert (png[:, layout.band_left :][~covered[:, layout.band_left :]] == 255).all()


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
