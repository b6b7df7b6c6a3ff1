"""Grouped datasets: digits follow diff-pixel's split, shapes10 is a pure function of
(seed, index), photo crops keep their groups, and bad data is refused clearly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diff_pixel import digits
from diff_semantica import GroupedImages, digits_groups, folder_groups, photo_crops, shapes10


def test_digits_split_is_diff_pixels(train, test_digits):
    src = digits(8, "test")
    assert len(train) == 1437 and len(test_digits) == 360
    np.testing.assert_array_equal(test_digits.images, src.images)
    np.testing.assert_array_equal(test_digits.groups, src.labels)
    assert digits_groups("train").images.min() == -1.0


def test_shapes10_is_deterministic_per_index():
    a = shapes10(12, seed=3)
    b = shapes10(5, seed=3, start=4)
    np.testing.assert_array_equal(a.images[4:9], b.images)
    np.testing.assert_array_equal(a.groups, np.arange(12) % 10)
    assert a.images.shape == (12, 32, 32, 3) and -1 <= a.images.min() and a.images.max() <= 1
    # the shape is brighter than the dark background: the mean inside differs by class
    assert len({float(x.mean()) for x in a.images[:10]}) == 10


def test_photo_crops_groups():
    d = photo_crops(3, groups=("astronaut", "stereo_motorcycle"))
    assert d.images.shape == (6, 32, 32, 3) and d.names == ("astronaut", "stereo_motorcycle")
    np.testing.assert_array_equal(d.groups, [0, 0, 0, 1, 1, 1])
    held = photo_crops(2, held_out=True)
    assert held.names == ("coffee",)


def test_folder_groups(tmp_path):
    for name, v in (("cats", 30), ("dogs", 200)):
        (tmp_path / name).mkdir()
        for i in range(2):
            Image.fromarray(np.full((40, 40, 3), v + i, np.uint8)).save(
                tmp_path / name / f"{i}.png"
            )
    d = folder_groups(tmp_path, 32)
    assert d.names == ("cats", "dogs") and list(d.groups) == [0, 0, 1, 1]


def test_bad_grouped_images():
    with pytest.raises(ValueError, match="images must lie in"):
        GroupedImages(np.full((2, 8, 8, 1), 3.0, np.float32), np.zeros(2, int), ("a",))
    with pytest.raises(ValueError, match="groups must lie in"):
        GroupedImages(np.zeros((2, 8, 8, 1), np.float32), np.array([0, 1]), ("a",))
