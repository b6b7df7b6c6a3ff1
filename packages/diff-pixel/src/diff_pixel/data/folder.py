"""A user's folder of images, one class per subfolder, decoded once with Pillow.

Layout for ``labels="subfolders"``::

    root/
      cat/  a.png b.jpg ...
      dog/  c.png ...

Paths are sorted; class ``k`` is the k-th subfolder name in sorted order (files are collected
recursively inside each class folder). With ``labels="none"`` every image below ``root`` is used
with label 0.

Modes: ``"center_crop"`` rescales (anti-aliased) so the shorter side is the target size and
crops the centre; ``"resize"`` rescales to exactly the target size (aspect ratio not kept);
``"random_crop"`` rescales the shorter side to the target size and takes a random crop along the
longer side per example, drawn from the loader's ``default_rng([seed, n])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from diff_pixel.data.loader import ArraySource

__all__ = ["IMAGE_EXTENSIONS", "RandomCropSource", "image_folder"]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _decode(path: Path, size: tuple[int, int], mode: str, channels: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            im = im.convert("L" if channels == 1 else "RGB")
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ValueError(
            f"image_folder: file {str(path)!r} is not a readable image ({err})"
        ) from err
    h, w = size
    if mode == "resize":
        im = im.resize((w, h), Image.Resampling.LANCZOS)
    else:
        scale = max(h / im.height, w / im.width)
        new = (max(w, round(im.width * scale)), max(h, round(im.height * scale)))
        if new != (im.width, im.height):
            im = im.resize(new, Image.Resampling.LANCZOS)
        if mode == "center_crop":
            left = (im.width - w) // 2
            top = (im.height - h) // 2
            im = im.crop((left, top, left + w, top + h))
    x = np.asarray(im, dtype=np.float32)
    if x.ndim == 2:
        x = x[..., None]
    return x / 127.5 - 1.0


class RandomCropSource:
    """Images of varying size with a random (h, w) crop per example (``mode="random_crop"``)."""

    num_examples: int | None
    needs_rng = True

    def __init__(
        self,
        images: list[np.ndarray],
        labels: np.ndarray,
        num_classes: int,
        size: tuple[int, int],
        name: str = "folder",
    ) -> None:
        self.name = name
        self.images = images
        self.labels = labels.astype(np.int32)
        self.num_classes = num_classes
        self.num_examples = len(images)
        self.size = size
        self.image_shape = (size[0], size[1], int(images[0].shape[-1]))

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"RandomCropSource({self.name}, n={len(self)}, size={self.size})"

    def take(
        self, records: np.ndarray, rngs: list[np.random.Generator] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if rngs is None:
            raise ValueError("RandomCropSource.take: rngs must be given, got None")
        h, w = self.size
        out = np.empty((len(records), *self.image_shape), dtype=np.float32)
        for i, (r, rng) in enumerate(zip(records, rngs, strict=True)):
            img = self.images[int(r)]
            top = int(rng.integers(img.shape[0] - h + 1))
            left = int(rng.integers(img.shape[1] - w + 1))
            out[i] = img[top : top + h, left : left + w]
        return out, self.labels[records]


def _collect(
    root: Path, labels: str, extensions: tuple[str, ...]
) -> tuple[list[Path], list[int], int]:
    def is_image(p: Path) -> bool:
        return p.is_file() and p.suffix.lower() in extensions

    if labels == "none":
        files = sorted(p for p in root.rglob("*") if is_image(p))
        return files, [0] * len(files), 1
    stray = sorted(p for p in root.iterdir() if is_image(p))
    if stray:
        raise ValueError(
            f"image_folder: root must hold one subfolder per class when labels='subfolders', "
            f"got an image directly in root: {str(stray[0])!r}"
        )
    files: list[Path] = []
    ids: list[int] = []
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    for k, folder in enumerate(classes):
        found = sorted(p for p in folder.rglob("*") if is_image(p))
        files += found
        ids += [k] * len(found)
    return files, ids, max(len(classes), 1)


def image_folder(
    root: str | Path,
    image_size: int | tuple[int, int],
    *,
    labels: Literal["subfolders", "none"] = "subfolders",
    mode: Literal["center_crop", "random_crop", "resize"] = "center_crop",
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    channels: int = 3,
) -> ArraySource | RandomCropSource:
    """Load a folder of images as a source for :class:`Loader`.

    Args:
      root: the folder.
      image_size: output size S or (H, W).
      labels: ``"subfolders"`` (class = sorted subfolder index) or ``"none"`` (all label 0).
      mode: ``"center_crop"``, ``"random_crop"`` or ``"resize"`` (see the module docstring).
      extensions: accepted file suffixes (case-insensitive).
      channels: 1 (grey) or 3 (RGB).

    Returns:
      An :class:`ArraySource` (``center_crop``/``resize``) or a :class:`RandomCropSource`;
      images float32 in [−1, 1].

    Raises:
      ValueError: no matching files (names ``root`` and the extensions), an image directly in
        ``root`` with ``labels="subfolders"`` (names it), or an unreadable file (names it).

    Example:
      >>> source = image_folder("my_images", 64, mode="random_crop")
    """
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"image_folder: root must be an existing directory, got {str(root)!r}")
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        size = (int(image_size), int(image_size))
    elif (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in image_size)
    ):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise TypeError(f"image_folder: image_size must be an int or (H, W), got {image_size!r}")
    if min(size) < 1:
        raise ValueError(f"image_folder: image_size must be positive, got {image_size!r}")
    if labels not in ("subfolders", "none"):
        raise ValueError(f"image_folder: labels must be 'subfolders' or 'none', got {labels!r}")
    if mode not in ("center_crop", "random_crop", "resize"):
        raise ValueError(
            f"image_folder: mode must be 'center_crop', 'random_crop' or 'resize', got {mode!r}"
        )
    if channels not in (1, 3):
        raise ValueError(f"image_folder: channels must be 1 or 3, got {channels!r}")
    if (
        isinstance(extensions, str)
        or not isinstance(extensions, (list, tuple))
        or not extensions
        or not all(isinstance(e, str) and e.strip(".") for e in extensions)
    ):
        raise ValueError(
            f"image_folder: extensions must be a non-empty sequence of suffixes, got {extensions!r}"
        )
    exts = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    files, ids, num_classes = _collect(root, labels, exts)
    if not files:
        raise ValueError(
            f"image_folder: root must contain image files with extensions {exts}, "
            f"got none in {str(root)!r}"
        )
    label_arr = np.asarray(ids, dtype=np.int32)
    if mode == "random_crop":
        images = [_decode(p, size, "random_crop", channels) for p in files]
        return RandomCropSource(images, label_arr, num_classes, size, name=f"folder:{root}")
    stack = np.stack([_decode(p, size, mode, channels) for p in files])
    return ArraySource(stack, label_arr, num_classes=num_classes, name=f"folder:{root}")
