"""scikit-learn's 8×8 handwritten digits, upsampled to a model resolution.

The 1797 images of :func:`sklearn.datasets.load_digits` (grey levels 0–16) are mapped to
``x/8 − 1 ∈ [−1, 1]`` and split once by ``numpy.random.default_rng(0).permutation(1797)``: the
first 360 records are the test split, the remaining 1437 the train split. Nothing is downloaded:
the data ship inside scikit-learn.

Upsampling is a fixed separable linear map ``X ↦ U X Uᵀ`` with ``U`` of shape (S, 8):

* ``"bilinear"``: output pixel ``i`` samples input coordinate ``c_i = (i + ½)·8/S − ½``
  (half-pixel centres), clamped to ``[0, 7]`` (edge clamping), linearly between
  ``⌊c_i⌋`` and ``⌊c_i⌋ + 1``;
* ``"nearest"``: ``U[i, ⌊(i + ½)·8/S⌋] = 1``.

``S = 8`` gives the identity (native resolution).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np

from diff_pixel.data.extras import require
from diff_pixel.data.loader import ArraySource

__all__ = ["DIGITS_TEST_SIZE", "digits", "upsample_matrix"]

DIGITS_TEST_SIZE = 360
_NUM_DIGITS = 1797


def upsample_matrix(size: int, upsample: Literal["bilinear", "nearest"] = "bilinear") -> np.ndarray:
    """The (size, 8) matrix ``U`` of the module docstring (float64, rows sum to 1)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8 or size % 8:
        raise ValueError(f"upsample_matrix: size must be a positive multiple of 8, got {size!r}")
    if upsample not in ("bilinear", "nearest"):
        raise ValueError(
            f"upsample_matrix: upsample must be 'bilinear' or 'nearest', got {upsample!r}"
        )
    i = np.arange(size)
    u = np.zeros((size, 8))
    if upsample == "nearest":
        u[i, np.floor((i + 0.5) * 8 / size).astype(int)] = 1.0
        return u
    c = np.clip((i + 0.5) * 8.0 / size - 0.5, 0.0, 7.0)
    lo = np.floor(c).astype(int)
    hi = np.minimum(lo + 1, 7)
    frac = c - lo
    np.add.at(u, (i, lo), 1.0 - frac)
    np.add.at(u, (i, hi), frac)
    return u


@lru_cache(maxsize=8)
def _digits_arrays(image_size: int, split: str, upsample: str) -> tuple[np.ndarray, np.ndarray]:
    datasets = require("sklearn.datasets", "digits", "digits()")
    bunch = datasets.load_digits()
    images = bunch.images.astype(np.float64) / 8.0 - 1.0  # (1797, 8, 8) in [-1, 1]
    labels = bunch.target.astype(np.int32)
    perm = np.random.default_rng(0).permutation(_NUM_DIGITS)
    if split == "test":
        sel = perm[:DIGITS_TEST_SIZE]
    elif split == "train":
        sel = perm[DIGITS_TEST_SIZE:]
    else:
        sel = np.arange(_NUM_DIGITS)
    images, labels = images[sel], labels[sel]
    if image_size != 8:
        u = upsample_matrix(image_size, upsample)  # type: ignore[arg-type]
        images = np.einsum("ia,nab,jb->nij", u, images, u)
    images = images[..., None].astype(np.float32)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def digits(
    image_size: int = 16,
    split: Literal["train", "test", "all"] = "train",
    upsample: Literal["bilinear", "nearest"] = "bilinear",
) -> ArraySource:
    """The digits as an :class:`ArraySource` of (N, S, S, 1) float32 images in [−1, 1].

    Args:
      image_size: S, a multiple of 8 (8 is the native resolution).
      split: ``"train"`` (1437 images), ``"test"`` (360) or ``"all"`` (1797, original order).
      upsample: ``"bilinear"`` (half-pixel centres, edge clamping) or ``"nearest"``.

    Returns:
      An :class:`ArraySource` with 10 classes; identical across calls and machines.

    Example:
      >>> train = digits(16)  # 1437 images of 16×16×1
      >>> test = digits(16, split="test")  # 360 images
    """
    if split not in ("train", "test", "all"):
        raise ValueError(f"digits: split must be 'train', 'test' or 'all', got {split!r}")
    if upsample not in ("bilinear", "nearest"):
        raise ValueError(f"digits: upsample must be 'bilinear' or 'nearest', got {upsample!r}")
    if (
        isinstance(image_size, bool)
        or not isinstance(image_size, (int, np.integer))
        or image_size < 8
        or image_size % 8
    ):
        raise ValueError(f"digits: image_size must be a positive multiple of 8, got {image_size!r}")
    images, labels = _digits_arrays(int(image_size), split, upsample)
    return ArraySource(images, labels, num_classes=10, name=f"digits-{split}-{image_size}")
