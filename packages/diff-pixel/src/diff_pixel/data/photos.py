"""scikit-image's sample photographs as an infinite stream of random crops.

The photos ship inside scikit-image (nothing is downloaded). Each photo is decoded once and, by
default, rescaled once with an anti-aliased filter so that its shorter side is
``max(crop, min(4·crop, original))``. Element ``n`` of the stream draws, in this order, from
``rng = numpy.random.default_rng([seed, n])``: the photo ``rng.integers(len(names))``, the crop's
top row and left column (uniform over valid offsets), and a horizontal flip with probability ½
(when ``flip``). Its label is the photo's index in ``names``. So crop ``n`` is reproducible from
``(seed, n)`` alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from diff_pixel.data.extras import require

__all__ = ["DEFAULT_PHOTOS", "PhotoCrops", "photos"]

DEFAULT_PHOTOS: tuple[str, ...] = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
)

# ITU-R BT.601 luma weights, for channels=1 from colour photos.
_LUMA = np.array([0.299, 0.587, 0.114])


@lru_cache(maxsize=32)
def _load_photo(name: str, short_side: int | None, crop: int, channels: int) -> np.ndarray:
    from PIL import Image

    skimage_data = require("skimage.data", "photos", "photos()")
    loader = getattr(skimage_data, name, None)
    if loader is None or not callable(loader):
        raise ValueError(f"photos: names must be scikit-image sample photos, got {name!r}")
    img = np.asarray(loader())
    if img.ndim == 3 and img.shape[-1] == 4:  # RGBA → RGB
        img = img[..., :3]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[-1] != 3):
        raise ValueError(f"photos: {name!r} is not a grey or RGB photo, got shape {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(np.round(img.astype(np.float64) * 255.0 if img.max() <= 1 else img), 0, 255)
        img = img.astype(np.uint8)
    h, w = img.shape[:2]
    if short_side is None:
        short_side = max(crop, min(4 * crop, min(h, w)))
    scale = short_side / min(h, w)
    if scale != 1.0:
        new = (max(short_side, round(w * scale)), max(short_side, round(h * scale)))
        img = np.asarray(Image.fromarray(img).resize(new, Image.Resampling.LANCZOS))
    x = img.astype(np.float64)
    if channels == 3 and x.ndim == 2:
        x = np.repeat(x[..., None], 3, axis=-1)
    elif channels == 1:
        x = (x @ _LUMA)[..., None] if x.ndim == 3 else x[..., None]
    x = (x / 127.5 - 1.0).astype(np.float32)
    x.setflags(write=False)
    return x


class PhotoCrops:
    """Infinite source of random ``crop × crop`` crops (see the module docstring)."""

    num_examples = None
    needs_rng = True

    def __init__(
        self,
        crop: int,
        names: Sequence[str],
        short_side: int | None,
        flip: bool,
        channels: int,
    ) -> None:
        self.crop = crop
        self.names = tuple(names)
        self.flip = flip
        self.channels = channels
        self.num_classes = len(self.names)
        self.name = f"photos-{crop}"
        self.image_shape = (crop, crop, channels)
        self.images = [_load_photo(name, short_side, crop, channels) for name in self.names]

    def take(
        self, records: np.ndarray, rngs: list[np.random.Generator] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if rngs is None:
            raise ValueError(
                "PhotoCrops.take: rngs must be given (one generator per crop), got None"
            )
        out = np.empty((len(rngs), *self.image_shape), dtype=np.float32)
        labels = np.empty(len(rngs), dtype=np.int32)
        for i, rng in enumerate(rngs):
            k = int(rng.integers(len(self.images)))
            img = self.images[k]
            top = int(rng.integers(img.shape[0] - self.crop + 1))
            left = int(rng.integers(img.shape[1] - self.crop + 1))
            patch = img[top : top + self.crop, left : left + self.crop]
            if self.flip and rng.random() < 0.5:
                patch = patch[:, ::-1]
            out[i] = patch
            labels[i] = k
        return out, labels

    def crop_at(self, n: int, seed: int) -> tuple[np.ndarray, int]:
        """Crop number ``n`` of the stream for ``seed`` (what a :class:`Loader` yields at ``n``)."""
        x, y = self.take(np.array([n]), [np.random.default_rng([seed, int(n)])])
        return x[0], int(y[0])

    def __repr__(self) -> str:
        return f"PhotoCrops(crop={self.crop}, names={self.names}, channels={self.channels})"


def photos(
    crop: int = 32,
    names: Sequence[str] = DEFAULT_PHOTOS,
    short_side: int | None = None,
    flip: bool = True,
    channels: int = 3,
) -> PhotoCrops:
    """Random crops of scikit-image sample photos, float32 (crop, crop, channels) in [−1, 1].

    Args:
      crop: crop side in pixels.
      names: scikit-image photo names (``skimage.data.<name>``); grey photos are repeated to 3
        channels, colour photos reduced to luma for ``channels=1``.
      short_side: rescale each photo once so its shorter side is this many pixels; ``None``
        gives ``max(crop, min(4·crop, original))`` (anti-aliased Lanczos).
      flip: random horizontal flips.
      channels: 1 or 3.

    Returns:
      An infinite source for :class:`Loader`; label = index of the photo in ``names``.

    Example:
      >>> loader = Loader(photos(crop=32), 64, seed=0)
    """
    if isinstance(crop, bool) or not isinstance(crop, (int, np.integer)) or crop < 1:
        raise ValueError(f"photos: crop must be a positive int, got {crop!r}")
    if isinstance(names, str) or len(names) == 0:
        raise ValueError(
            f"photos: names must be a non-empty sequence of photo names, got {names!r}"
        )
    if channels not in (1, 3):
        raise ValueError(f"photos: channels must be 1 or 3, got {channels!r}")
    if short_side is not None and (
        isinstance(short_side, bool)
        or not isinstance(short_side, (int, np.integer))
        or short_side < crop
    ):
        raise ValueError(f"photos: short_side must be an int >= crop={crop}, got {short_side!r}")
    return PhotoCrops(int(crop), names, short_side, bool(flip), int(channels))
