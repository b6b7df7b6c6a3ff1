"""diff_core.images: the one grid helper (gaps, row/column labels, exact tiles, atomic PNG)."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest

from diff_core.images import GridLayout, make_grid, save_grid, to_uint8

pytest.importorskip("PIL")


def test_to_uint8_maps_the_value_range_and_passes_uint8_through():
    np.testing.assert_array_equal(to_uint8([-1.0, 0.0, 1.0, -3.0, 2.0]), [0, 128, 255, 0, 255])
    np.testing.assert_array_equal(to_uint8([0.0, 0.5, 1.0], (0.0, 1.0)), [0, 128, 255])
    u = np.array([[3, 200]], np.uint8)
    assert to_uint8(u) is u
    with pytest.raises(ValueError, match="to_uint8: images must be finite"):
        to_uint8([np.nan])
    with pytest.raises(ValueError, match="value_range"):
        to_uint8([0.0], (1.0, 1.0))


def test_tiles_are_exact_and_gaps_are_background():
    rng = np.random.default_rng(0)
    images = rng.uniform(-1, 1, (7, 5, 4, 3)).astype(np.float32)
    grid, layout = make_grid(images, nrow=3, gap=2, scale=2, background=200, boxes=True)
    assert isinstance(layout, GridLayout) and (layout.rows, layout.cols) == (3, 3)
    # 3 rows and 3 columns of 10×8 tiles, 2-pixel gaps between and around, no label band
    assert grid.shape == (2 + 3 * (10 + 2), 2 + 3 * (8 + 2), 3)
    covered = np.zeros(grid.shape[:2], bool)
    for i in range(7):
        r, c = divmod(i, 3)
        top, left, bottom, right = layout.boxes[i]
        assert (top, left) == (2 + r * 12, 2 + c * 10) and (bottom - top, right - left) == (10, 8)
        tile = np.repeat(np.repeat(to_uint8(images[i]), 2, axis=0), 2, axis=1)
        np.testing.assert_array_equal(grid[top:bottom, left:right], tile)
        covered[top:bottom, left:right] = True
    # every pixel outside the tiles (gaps, margins, the two empty cells) is the background
    assert (grid[~covered] == 200).all()
    assert covered.sum() == 7 * 10 * 8


def test_default_gap_separates_tiles_at_any_scale():
    images = -np.ones((4, 3, 3))  # black tiles
    grid = make_grid(images, nrow=2, scale=4)  # default gap max(2, scale) = 4, white
    assert grid.shape == (4 + 2 * (12 + 4), 4 + 2 * (12 + 4), 1)
    assert (grid[16:20, :, 0] == 255).all() and (grid[:, 16:20, 0] == 255).all()
    assert (grid[4:16, 4:16] == 0).all() and (grid[20:32, 20:32] == 0).all()
    touching = make_grid(images, nrow=2, gap=0)
    assert touching.shape == (6, 6, 1) and (touching == 0).all()


def test_labels_give_one_row_per_class_and_draw_the_class_numbers():
    images = np.stack([np.full((8, 8, 1), v, np.float32) for v in (-1.0, 0.0, 1.0, 0.5, -0.5)])
    labels = np.array([2, 0, 2, 0, 1])
    grid, layout = make_grid(images, labels=labels, gap=2, boxes=True)
    # rows: class 0 → images 1, 3; class 1 → image 4; class 2 → images 0, 2
    assert (layout.rows, layout.cols) == (3, 2)
    assert [layout.boxes[i][0] for i in (1, 3, 4, 0, 2)] == sorted(
        [layout.boxes[i][0] for i in (1, 3, 4, 0, 2)]
    )
    assert layout.boxes[1][0] == layout.boxes[3][0] and layout.boxes[1][1] < layout.boxes[3][1]
    assert layout.boxes[4][1] == layout.boxes[1][1]  # first column
    assert layout.band_left > 0 and layout.band_top == 0
    band = grid[:, : layout.band_left, 0]
    row_bands = [band[layout.boxes[i][0] : layout.boxes[i][2]] for i in (1, 4, 0)]
    for text in row_bands:  # a label is drawn beside every row (dark text on the white band)
        assert (text < 128).sum() >= 5
    assert not np.array_equal(row_bands[0], row_bands[1])  # "0" and "1" differ
    # the empty cell (class 1 has one image) stays background
    top, left, bottom, right = layout.boxes[4]
    width = right - left
    assert (grid[top:bottom, right + 2 : right + 2 + width] == 255).all()


def test_row_and_column_labels_on_an_rgb_grid(tmp_path):
    images = np.zeros((6, 12, 12, 3), np.uint8) + 40
    grid, layout = make_grid(
        images,
        nrow=3,
        row_labels=["ddpm", "ddim"],
        col_labels=["4 steps", "16", "64"],
        boxes=True,
    )
    assert grid.shape[-1] == 3 and layout.band_left > 0 and layout.band_top > 0
    top_band = grid[: layout.band_top, layout.band_left :]
    assert (top_band.min(axis=-1) < 128).sum() >= 10  # column texts drawn
    assert (grid[: layout.band_top, : layout.band_left] == 255).all()  # corner stays blank
    with pytest.raises(ValueError, match="col_labels must have 3 entries"):
        make_grid(images, nrow=3, col_labels=["a", "b"])
    with pytest.raises(ValueError, match="row_labels must have 2 entries"):
        make_grid(images, nrow=3, row_labels=["a"])


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"make_grid: images must have shape"):
        make_grid(np.zeros((2, 4, 4, 2)))
    with pytest.raises(ValueError, match="give nrow or labels"):
        make_grid(np.zeros((2, 4, 4)), 2, labels=[0, 1])
    with pytest.raises(ValueError, match=r"labels must be an int array of shape \(2,\)"):
        make_grid(np.zeros((2, 4, 4)), labels=[0.5, 1.0])
    with pytest.raises(ValueError, match="make_grid: scale must be an int >= 1, got 0"):
        make_grid(np.zeros((2, 4, 4)), scale=0)
    with pytest.raises(ValueError, match="make_grid: gap must be an int >= 0, got -1"):
        make_grid(np.zeros((2, 4, 4)), gap=-1)
    with pytest.raises(ValueError, match="finite"):
        make_grid(np.full((1, 2, 2), np.inf))


def test_save_grid_writes_the_png_with_the_umask_permissions(tmp_path):
    from PIL import Image

    images = np.random.default_rng(1).uniform(-1, 1, (4, 6, 6, 1))
    old = os.umask(0o027)
    try:
        grid = save_grid(tmp_path / "sub" / "g.png", images, 2, labels=None, scale=3)
    finally:
        os.umask(old)
    path = tmp_path / "sub" / "g.png"
    np.testing.assert_array_equal(np.asarray(Image.open(path)), grid[..., 0])
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert [p.name for p in path.parent.iterdir()] == ["g.png"]  # no temporary file left


def test_missing_pillow_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(ImportError, match=r"pip install 'diff-core\[demo\]'"):
        make_grid(np.zeros((2, 4, 4)), labels=[0, 1])
    with pytest.raises(ImportError, match="save_grid needs Pillow"):
        save_grid("x.png", np.zeros((2, 4, 4)))
    assert make_grid(np.zeros((2, 4, 4)), 2).shape == (2 + 1 * 6, 2 + 2 * 6, 1)  # numpy only
