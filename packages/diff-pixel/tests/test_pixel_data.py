"""Data sources and the resumable loader (spec check 17)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from diff_pixel.data import (
    ArraySource,
    Loader,
    digits,
    image_folder,
    photos,
    random_flip,
    upsample_matrix,
)


# -- digits ------------------------------------------------------------------------------------
@pytest.mark.smoke
def test_digits_split_sizes_and_identity_across_calls():
    train, test = digits(16), digits(16, split="test")
    assert len(train) == 1437 and len(test) == 360
    again = digits(16)
    assert np.array_equal(train.images, again.images) and np.array_equal(train.labels, again.labels)
    # the two splits partition the 1797 digits: every test image is absent from train
    allx = digits(8, split="all")
    assert len(allx) == 1797
    from sklearn.datasets import load_digits

    raw = load_digits()
    perm = np.random.default_rng(0).permutation(1797)
    np.testing.assert_array_equal(digits(8, "test").labels, raw.target[perm[:360]])
    np.testing.assert_array_equal(digits(8, "train").images[..., 0], raw.images[perm[360:]] / 8 - 1)
    assert sorted(
        np.bincount(train.labels, minlength=10) + np.bincount(test.labels, minlength=10)
    ) == sorted(np.bincount(raw.target, minlength=10))


def test_digits_range_and_upsampling_matrix():
    x = digits(16).images
    assert x.shape == (1437, 16, 16, 1) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    u = upsample_matrix(16)
    np.testing.assert_allclose(u.sum(axis=1), 1.0)  # constants are preserved
    # half-pixel centres: output pixel 1 sits at input coordinate 0.25 → weights 0.75, 0.25
    np.testing.assert_allclose(u[1, :2], [0.75, 0.25])
    np.testing.assert_allclose(u[0], np.eye(8)[0])  # edge clamping
    np.testing.assert_array_equal(upsample_matrix(8), np.eye(8))
    # a linear ramp is reproduced exactly away from the clamped edges
    ramp = np.arange(8.0)
    centres = (np.arange(16) + 0.5) / 2 - 0.5
    inner = (centres >= 0) & (centres <= 7)
    np.testing.assert_allclose((u @ ramp)[inner], centres[inner], atol=1e-12)
    # the image is U X Uᵀ of the native digit
    native = digits(8).images[5, ..., 0].astype(np.float64)
    np.testing.assert_allclose(digits(16).images[5, ..., 0], u @ native @ u.T, atol=1e-6)
    near = upsample_matrix(16, "nearest")
    np.testing.assert_array_equal(near, np.repeat(np.eye(8), 2, axis=0))


def test_digits_bad_input():
    with pytest.raises(ValueError, match="digits: image_size must be a positive multiple of 8"):
        digits(12)
    with pytest.raises(ValueError, match="digits: split must be"):
        digits(16, split="val")


# -- loader ------------------------------------------------------------------------------------
def test_loader_restore_mid_epoch_is_bitwise():
    src = digits(16)
    ref = Loader(src, 100, seed=3)
    batches = [next(ref) for _ in range(19)]  # 1900 > 1437 examples: crosses an epoch boundary
    resumed = Loader(src, 100, seed=3)
    for _ in range(12):
        next(resumed)
    state = resumed.state()
    assert state == {"position": 1200, "seed": 3}
    fresh = Loader(src, 100, seed=3)
    fresh.restore(state)
    for k in range(12, 17):
        b = next(fresh)
        for key in ("x", "label", "index", "slot"):
            assert np.array_equal(b[key], batches[k][key]), key
    # epoch e uses perm_e = default_rng([seed, e]).permutation(N)
    perm1 = np.random.default_rng([3, 1]).permutation(1437)
    b = batches[15]  # positions 1500..1599, epoch 1, offsets 63..162
    np.testing.assert_array_equal(b["label"], src.labels[perm1[63:163]])
    np.testing.assert_array_equal(b["index"], np.arange(1500, 1600))
    with pytest.raises(ValueError, match="seed"):
        Loader(src, 100, seed=4).restore(state)


def test_loader_epoch_is_a_permutation_and_no_shuffle_keeps_order():
    src = digits(8)
    n = len(src)
    loader = Loader(src, 479, seed=0)  # 3 batches = 1437 = one epoch exactly
    labels = np.concatenate([next(loader)["label"] for _ in range(3)])
    assert sorted(np.bincount(labels)) == sorted(np.bincount(src.labels))
    plain = Loader(src, 479, seed=0, shuffle=False)
    x = np.concatenate([next(plain)["x"] for _ in range(3)])
    assert x.shape[0] == n and np.array_equal(x, src.images)


def test_process_sharded_loaders_union_equals_single_process():
    src = digits(16)
    whole = Loader(src, 64, seed=1)
    parts = [Loader(src, 64, seed=1, process_index=p, process_count=2) for p in range(2)]
    for _ in range(3):
        w = next(whole)
        a, b = (next(p) for p in parts)
        assert a["x"].shape[0] == 32
        for key in ("x", "label", "index", "slot"):
            assert np.array_equal(np.concatenate([a[key], b[key]]), w[key]), key
    np.testing.assert_array_equal(b["slot"], np.arange(32, 64))  # global slots
    with pytest.raises(ValueError, match="batch_size must be divisible by process_count"):
        Loader(src, 63, seed=0, process_count=2)


def test_augment_draws_from_seed_and_position():
    src = digits(16)
    a = Loader(src, 8, seed=5, augment=random_flip)
    b = Loader(src, 8, seed=5, augment=random_flip)
    b.restore({"position": 8, "seed": 5})
    next(a)
    x1, x2 = next(a)["x"], next(b)["x"]
    assert np.array_equal(x1, x2)
    plain = Loader(src, 8, seed=5)
    plain.restore({"position": 8, "seed": 5})
    base = next(plain)["x"]
    flipped = [bool(np.random.default_rng([5, n]).random() < 0.5) for n in range(8, 16)]
    for i, f in enumerate(flipped):
        assert np.array_equal(x1[i], base[i][:, ::-1] if f else base[i])
    assert any(flipped) and not all(flipped)


# -- photos ------------------------------------------------------------------------------------
@pytest.mark.smoke
def test_photo_crops_reproducible_from_seed_and_position():
    src = photos(crop=24, names=("camera", "coffee"), flip=True)
    loader = Loader(src, 6, seed=11)
    next(loader)
    batch = next(loader)  # positions 6..11
    assert batch["x"].shape == (6, 24, 24, 3) and batch["x"].dtype == np.float32
    for i, n in enumerate(range(6, 12)):
        x, label = src.crop_at(n, seed=11)
        assert np.array_equal(x, batch["x"][i]) and label == batch["label"][i]
        # and directly from the documented draw order
        rng = np.random.default_rng([11, n])
        k = int(rng.integers(2))
        img = src.images[k]
        top = int(rng.integers(img.shape[0] - 24 + 1))
        left = int(rng.integers(img.shape[1] - 24 + 1))
        crop = img[top : top + 24, left : left + 24]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        assert k == label and np.array_equal(crop, x)
    # the grey camera photo is repeated to 3 channels; shorter side = min(4·crop, original)
    cam = src.images[0]
    assert min(cam.shape[:2]) == 96
    assert np.array_equal(cam[..., 0], cam[..., 2])
    assert -1.0 <= batch["x"].min() and batch["x"].max() <= 1.0


def test_photos_bad_input():
    with pytest.raises(ValueError, match="photos: names must be scikit-image sample photos"):
        photos(names=("no_such_photo",))
    with pytest.raises(ValueError, match="photos: channels must be 1 or 3"):
        photos(channels=2)


# -- image folder ------------------------------------------------------------------------------
def _write(path, value, size=(20, 12), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full((size[1], size[0], 3), value, dtype=np.uint8)
    Image.fromarray(arr).convert(mode).save(path)


def test_image_folder_labels_follow_sorted_subfolders(tmp_path):
    # created in non-sorted order on purpose
    _write(tmp_path / "zebra" / "b.png", 250)
    _write(tmp_path / "zebra" / "a.png", 240)
    _write(tmp_path / "apple" / "x.png", 10)
    _write(tmp_path / "mango" / "deep" / "y.jpg", 128)
    (tmp_path / "mango" / "notes.txt").write_text("not an image")
    src = image_folder(tmp_path, 8)
    assert isinstance(src, ArraySource) and src.num_classes == 3
    np.testing.assert_array_equal(src.labels, [0, 1, 2, 2])  # apple, mango, zebra(a, b)
    # pixel values identify the files: x = v/127.5 − 1 for a constant image
    np.testing.assert_allclose(
        src.images[:, 0, 0, 0], np.array([10, 128, 240, 250]) / 127.5 - 1, atol=2e-2
    )
    assert src.images.shape == (4, 8, 8, 3)
    crop = image_folder(tmp_path, (6, 4), mode="random_crop", channels=1)
    loader = Loader(crop, 4, seed=0, shuffle=False)
    b = next(loader)
    assert b["x"].shape == (4, 6, 4, 1)
    np.testing.assert_array_equal(b["label"], [0, 1, 2, 2])


def test_image_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        ValueError, match="image_folder: root must contain image files with extensions"
    ):
        image_folder(empty, 8)
    loose = tmp_path / "loose"
    _write(loose / "cls" / "a.png", 1)
    _write(loose / "stray.png", 2)
    with pytest.raises(ValueError, match="stray.png"):
        image_folder(loose, 8)
    broken = tmp_path / "broken"
    (broken / "c").mkdir(parents=True)
    (broken / "c" / "bad.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="bad.png"):
        image_folder(broken, 8)
    assert len(image_folder(loose, 8, labels="none")) == 2


def test_a_missing_extra_is_named(monkeypatch):
    import importlib

    from diff_pixel.data import digits as digits_source
    from diff_pixel.data.digits import _digits_arrays

    real = importlib.import_module

    def without_sklearn(name, *args, **kwargs):
        if name.split(".")[0] == "sklearn":
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    _digits_arrays.cache_clear()
    monkeypatch.setattr(importlib, "import_module", without_sklearn)
    try:
        with pytest.raises(ImportError) as err:
            digits_source(16)
    finally:
        _digits_arrays.cache_clear()
    assert str(err.value) == (
        "digits() needs sklearn, which is not installed: pip install 'diff-pixel[digits]' "
        "(or 'diff-pixel[all]')"
    )
