"""Offline data (nothing downloads): scikit-image photo crops for training, a held-out set of three
photos, the user's image folders, and 8×8 digits.

The held-out "kodak-like-3" set is scikit-image ``coffee`` (400×600) and scikit-learn's
``china.jpg`` and ``flower.jpg`` (427×640; they already carry mild JPEG artefacts). It is not Kodak.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import diff_pixel

__all__ = ["TEST_PHOTOS", "TRAIN_PHOTOS", "RandomCrops", "codec_source", "offline_photos"]

#: scikit-image photos used for training (greyscale ones are replicated to RGB).
TRAIN_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "brick",
    "grass",
    "gravel",
    "moon",
    "coins",
    "clock",
)
TEST_PHOTOS: tuple[str, ...] = ("coffee", "china", "flower")


def offline_photos(split: str = "test") -> dict[str, np.ndarray]:
    """``{name: uint8 (H, W, 3)}`` of the held-out photos (``"test"``) or the training photos."""
    import skimage.data

    if split == "test":
        from sklearn.datasets import load_sample_images

        sk = load_sample_images()
        names = [Path(f).stem for f in sk.filenames]
        out = {"coffee": np.asarray(skimage.data.coffee(), np.uint8)}
        for n, img in zip(names, sk.images, strict=True):
            out[n] = np.asarray(img, np.uint8)
        return {k: out[k] for k in TEST_PHOTOS}
    if split == "train":
        out = {}
        for n in TRAIN_PHOTOS:
            img = np.asarray(getattr(skimage.data, n)())
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            out[n] = img[..., :3].astype(np.uint8)
        return out
    raise ValueError(f"offline_photos: split must be 'train' or 'test', got {split!r}")


class RandomCrops:
    """Uniform ``size × size`` crops with horizontal flips from photos at their native resolution
    (a diff-pixel ``Source``; crop ``n`` draws from ``default_rng([seed, n])``, so a resumed run
    sees the same batches). The held-out photos are coded at native resolution, so the training
    crops are not rescaled either.

    Args:
      images: uint8 (H, W, C) arrays, each at least ``size`` on both sides.
      size: crop side.
      name: a short description for run configs.
    """

    num_examples = None
    needs_rng = True

    def __init__(self, images: list[np.ndarray], size: int, name: str = "photos") -> None:
        small = [im.shape[:2] for im in images if min(im.shape[:2]) < size]
        if small:
            raise ValueError(
                f"RandomCrops: every image must be >= {size} on both sides, got {small[0]}"
            )
        self.images = [np.asarray(im, np.float32) / 127.5 - 1.0 for im in images]
        self.size = int(size)
        self.num_classes = len(images)
        self.image_shape = (self.size, self.size, int(images[0].shape[-1]))
        self.name = f"{name}-{size}"

    def __repr__(self) -> str:
        return f"RandomCrops({self.name}, n={len(self.images)})"

    def take(
        self, records: np.ndarray, rngs: list[np.random.Generator] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if rngs is None:
            raise ValueError("RandomCrops.take: rngs must be given, got None")
        s = self.size
        out = np.empty((len(rngs), *self.image_shape), np.float32)
        labels = np.empty(len(rngs), np.int32)
        for i, rng in enumerate(rngs):
            k = int(rng.integers(len(self.images)))  # each photo equally often
            img = self.images[k]
            top = int(rng.integers(img.shape[0] - s + 1))
            left = int(rng.integers(img.shape[1] - s + 1))
            patch = img[top : top + s, left : left + s]
            out[i] = patch[:, ::-1] if rng.random() < 0.5 else patch
            labels[i] = k
        return out, labels


def codec_source(data: str | Path, crop: int, channels: int = 3) -> Any:
    """A diff-pixel source of training crops: ``"offline"`` (scikit-image photos), ``"digits"``
    (8×8, 1 channel) or a folder of PNG/JPEG images (random crops)."""
    if data == "offline":
        if channels != 3:
            raise ValueError(f"codec_source: the offline photos are RGB, got channels={channels}")
        return RandomCrops(list(offline_photos("train").values()), crop, name="skimage-photos")
    if data == "digits":
        if crop != 8 or channels != 1:
            raise ValueError(
                f"codec_source: digits are 8×8 greyscale, got crop={crop}, channels={channels}"
            )
        return diff_pixel.digits(8, split="train")
    path = Path(data)
    if not path.is_dir():
        raise ValueError(
            f"codec_source: data must be 'offline', 'digits' or an image folder, got {str(data)!r}"
        )
    return diff_pixel.image_folder(path, crop, labels="none", mode="random_crop", channels=channels)
