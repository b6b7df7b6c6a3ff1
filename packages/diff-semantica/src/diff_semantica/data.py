"""Grouped image data: the offline stand-in for the web pages of Semantica (arXiv 2405.14857, §2).

Semantica trains on pairs of images taken from the same web page. No web pages can be fetched
here, so a *group* plays the page: the digit class, the source photo of a crop, the shape class,
or a sub-folder of the user's images. Every dataset is a :class:`GroupedImages`.

* :func:`digits_groups`: scikit-learn's 8×8 digits through diff-pixel's fixed split (1437 train /
  360 test, values ``x/8 − 1``), group = class.
* :func:`photo_crops`: 32×32 crops of scikit-image sample photos, each photo rescaled by a
  random factor in [0.25, 1] before cropping; group = source photo (the two stereo motorcycle
  views are one group); ``coffee`` is the held-out photo.
* :func:`shapes10`: procedural 32×32 RGB shapes of 10 classes, deterministic from
  ``(seed, index)``.
* :func:`folder_groups`: the user's PNG/JPEG files, group = sub-folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from diff_pixel.data import digits as _pixel_digits
from diff_pixel.data import image_folder

__all__ = [
    "PHOTO_GROUPS",
    "SHAPE_NAMES",
    "GroupedImages",
    "digits_groups",
    "folder_groups",
    "load_dataset",
    "photo_crops",
    "shapes10",
]

SHAPE_NAMES: tuple[str, ...] = (
    "disc",
    "square",
    "triangle",
    "plus",
    "ring",
    "hstripes",
    "vstripes",
    "checker",
    "diamond",
    "x",
)

#: group name -> scikit-image photo names (the stereo motorcycle's two views are one group)
PHOTO_GROUPS: dict[str, tuple[str, ...]] = {
    "astronaut": ("astronaut",),
    "chelsea": ("chelsea",),
    "rocket": ("rocket",),
    "hubble_deep_field": ("hubble_deep_field",),
    "immunohistochemistry": ("immunohistochemistry",),
    "retina": ("retina",),
    "stereo_motorcycle": ("stereo_motorcycle",),
    "coffee": ("coffee",),
}


@dataclass(frozen=True)
class GroupedImages:
    """Images with a group ("page") per image.

    Attributes:
      images: (n, H, W, C) float32 in [−1, 1].
      groups: (n,) int group ids in [0, len(names)).
      names: one name per group id.
    """

    images: np.ndarray
    groups: np.ndarray
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        x = np.asarray(self.images)
        g = np.asarray(self.groups)
        if x.ndim != 4 or x.shape[0] < 1 or x.shape[-1] not in (1, 3):
            raise ValueError(
                f"GroupedImages: images must have shape (n, H, W, C), C in (1, 3), got {x.shape}"
            )
        if not np.issubdtype(x.dtype, np.floating) or not np.isfinite(x).all():
            raise ValueError("GroupedImages: images must be finite floats in [-1, 1]")
        if x.min() < -1.0001 or x.max() > 1.0001:
            raise ValueError(
                f"GroupedImages: images must lie in [-1, 1], got [{x.min():.3g}, {x.max():.3g}]"
            )
        if g.shape != (x.shape[0],) or not np.issubdtype(g.dtype, np.integer):
            raise ValueError(
                f"GroupedImages: groups must be ints shaped ({x.shape[0]},), got {g.dtype}{g.shape}"
            )
        names = tuple(str(n) for n in self.names)
        if g.min() < 0 or g.max() >= len(names):
            raise ValueError(
                f"GroupedImages: groups must lie in [0, {len(names)}) (one name per group), got "
                f"[{g.min()}, {g.max()}]"
            )
        object.__setattr__(self, "images", np.ascontiguousarray(x, np.float32))
        object.__setattr__(self, "groups", g.astype(np.int64))
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def subset(self, mask_or_index: np.ndarray) -> GroupedImages:
        """The images selected by a boolean mask or an index array (group ids kept)."""
        sel = np.asarray(mask_or_index)
        return GroupedImages(self.images[sel], self.groups[sel], self.names)

    def of_groups(self, groups: Sequence[int]) -> GroupedImages:
        """The images whose group is in ``groups``."""
        return self.subset(np.isin(self.groups, np.asarray(list(groups))))


def digits_groups(split: str = "train") -> GroupedImages:
    """scikit-learn's 8×8 digits (diff-pixel's split: ``"train"`` 1437, ``"test"`` 360), group =
    class."""
    if split not in ("train", "test", "all"):
        raise ValueError(f"digits_groups: split must be 'train', 'test' or 'all', got {split!r}")
    src = _pixel_digits(8, split)  # type: ignore[arg-type]
    return GroupedImages(
        np.asarray(src.images), np.asarray(src.labels), tuple(str(i) for i in range(10))
    )


def _photo(name: str) -> np.ndarray:
    from skimage import data as skdata

    img = np.asarray(getattr(skdata, name)())
    if name == "stereo_motorcycle":
        img = img[0]
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.dtype != np.uint8:
        img = np.clip(np.round(img * 255.0 if img.max() <= 1 else img), 0, 255).astype(np.uint8)
    return img


def _photo_views(name: str) -> list[np.ndarray]:
    if name == "stereo_motorcycle":
        from skimage import data as skdata

        left, right, _ = skdata.stereo_motorcycle()
        return [np.asarray(left), np.asarray(right)]
    return [_photo(name)]


def photo_crops(
    n_per_group: int = 256,
    *,
    size: int = 32,
    groups: Sequence[str] | None = None,
    held_out: bool = False,
    seed: int = 0,
) -> GroupedImages:
    """Random ``size×size`` crops of scikit-image photos, group = source photo.

    Each crop draws, from ``default_rng([seed, group, k])``, a rescale factor in [0.25, 1] (the
    photo is resized by it with Pillow's anti-aliased filter, never below ``size``), a view (for
    the stereo pair) and a uniform crop position. ``held_out=True`` gives the held-out group
    (``coffee``) alone; otherwise the seven training groups.
    """
    from PIL import Image

    if isinstance(n_per_group, bool) or not isinstance(n_per_group, int) or n_per_group < 2:
        raise ValueError(f"photo_crops: n_per_group must be an int >= 2, got {n_per_group!r}")
    if groups is None:
        groups = ("coffee",) if held_out else tuple(k for k in PHOTO_GROUPS if k != "coffee")
    unknown = [g for g in groups if g not in PHOTO_GROUPS]
    if unknown:
        raise ValueError(f"photo_crops: groups must be among {sorted(PHOTO_GROUPS)}, got {unknown}")
    images, labels = [], []
    for gi, gname in enumerate(groups):
        views = [v for name in PHOTO_GROUPS[gname] for v in _photo_views(name)]
        for k in range(n_per_group):
            rng = np.random.default_rng([seed, gi, k])
            scale = rng.uniform(0.25, 1.0)
            view = views[int(rng.integers(len(views)))]
            h, w = view.shape[:2]
            s = max(scale, size / min(h, w))
            new = (max(size, round(w * s)), max(size, round(h * s)))
            im = np.asarray(Image.fromarray(view).resize(new, Image.Resampling.LANCZOS))
            top = int(rng.integers(im.shape[0] - size + 1))
            left = int(rng.integers(im.shape[1] - size + 1))
            crop = im[top : top + size, left : left + size].astype(np.float32)
            images.append(crop / 127.5 - 1.0)
            labels.append(gi)
    return GroupedImages(np.stack(images), np.asarray(labels), tuple(groups))


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    return np.array([(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)][i])


def _shape_mask(kind: int, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Inside-mask of shape ``kind`` at offsets (u, v) from its centre, half-size r."""
    au, av = np.abs(u), np.abs(v)
    if kind == 0:  # disc
        return u**2 + v**2 <= r**2
    if kind == 1:  # square
        return (au <= r * 0.85) & (av <= r * 0.85)
    if kind == 2:  # triangle (apex up)
        return (v <= r * 0.8) & (v >= -r) & (au <= (v + r) * 0.55)
    if kind == 3:  # plus
        return ((au <= r * 0.3) & (av <= r)) | ((av <= r * 0.3) & (au <= r))
    if kind == 4:  # ring
        d = np.sqrt(u**2 + v**2)
        return (d <= r) & (d >= r * 0.55)
    if kind == 5:  # horizontal stripes
        return (au <= r) & (av <= r) & (np.floor((v + r) / (r / 2.5)) % 2 == 0)
    if kind == 6:  # vertical stripes
        return (au <= r) & (av <= r) & (np.floor((u + r) / (r / 2.5)) % 2 == 0)
    if kind == 7:  # checker
        c = (np.floor((u + r) / (r / 2)) + np.floor((v + r) / (r / 2))) % 2 == 0
        return (au <= r) & (av <= r) & c
    if kind == 8:  # diamond
        return au + av <= r
    return ((np.abs(u - v) <= r * 0.3) | (np.abs(u + v) <= r * 0.3)) & (au <= r) & (av <= r)


def shapes10(n: int, *, seed: int = 0, start: int = 0, size: int = 32) -> GroupedImages:
    """Procedural shapes: image ``start + i`` is a pure function of ``(seed, start + i)``.

    Class ``k = (start + i) mod 10`` (balanced); a random hue, saturation and value in [0.6, 1],
    a dark random background, size 10–20 px, position jitter ±4 px, rendered with 4×
    supersampled anti-aliasing.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"shapes10: n must be a positive int, got {n!r}")
    ss = 4
    grid = (np.arange(size * ss) + 0.5) / ss
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    out = np.empty((n, size, size, 3), np.float32)
    labels = np.empty((n,), np.int64)
    for i in range(n):
        idx = start + i
        rng = np.random.default_rng([seed, idx])
        kind = idx % 10
        colour = _hsv_to_rgb(rng.uniform(), rng.uniform(0.6, 1.0), rng.uniform(0.6, 1.0))
        back = rng.uniform(0.0, 0.25, 3)
        r = rng.uniform(10, 20) / 2 * size / 32
        cy, cx = size / 2 + rng.uniform(-4, 4), size / 2 + rng.uniform(-4, 4)
        mask = _shape_mask(kind, xx - cx, yy - cy, r).astype(np.float64)
        cover = mask.reshape(size, ss, size, ss).mean(axis=(1, 3))[..., None]
        img = cover * colour + (1 - cover) * back
        out[i] = (img * 2.0 - 1.0).astype(np.float32)
        labels[i] = kind
    return GroupedImages(out, labels, SHAPE_NAMES)


def folder_groups(path: str | Path, size: int = 32, channels: int = 3) -> GroupedImages:
    """A user's image folder, one group per sub-folder (diff-pixel's ``image_folder``)."""
    src = image_folder(str(path), size, channels=channels, labels="subfolders")
    subdirs = sorted(d.name for d in Path(path).iterdir() if d.is_dir())
    names = (
        tuple(subdirs)
        if len(subdirs) == src.num_classes
        else tuple(map(str, range(src.num_classes)))
    )
    return GroupedImages(np.asarray(src.images), np.asarray(src.labels), names)


def load_dataset(spec: str, split: str = "train") -> GroupedImages:
    """``digits`` | ``photo_crops`` | ``shapes10`` | a folder path."""
    if spec == "digits":
        return digits_groups(split)
    if spec == "photo_crops":
        return photo_crops(held_out=split == "test", seed=0 if split == "train" else 1)
    if spec == "shapes10":
        return shapes10(2000 if split == "train" else 500, seed=0 if split == "train" else 1)
    p = Path(spec)
    if p.is_dir():
        return folder_groups(p)
    raise ValueError(
        f"load_dataset: data must be 'digits', 'photo_crops', 'shapes10' or a folder, got {spec!r}"
    )
