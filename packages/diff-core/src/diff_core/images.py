"""Sample grids as pictures: the one grid helper of the diff-* monorepo (numpy + Pillow).

Every package that writes a grid of samples calls :func:`make_grid` / :func:`save_grid`, so grids
look alike everywhere: tiles scaled by an integer factor (nearest neighbour), separated by a gap
of background colour, with optional row labels (a band on the left) and column labels (a band on
top) drawn as text.

* ``images``: (N, H, W, C) with C in {1, 3}, or (N, H, W). Floats are mapped from
  ``value_range`` (default [−1, 1], the diffusion convention) to uint8 by
  ``round((x − lo) / (hi − lo) · 255)`` with clipping; uint8 arrays (rendered pictures) are used
  as they are. Non-finite values are a ``ValueError``.
* Layout: ``nrow`` images per row, row-major; or, with ``labels`` (N ints), one row per class
  in ascending order, each row holding that class's images in their original order, and the
  class numbers drawn as row labels (unless ``row_labels`` are given).
* Output: one uint8 array (height, width, C): C = 1 for grey tiles, 3 for colour. Without
  labels the tile in row ``r`` and column ``c`` starts at ``top = gap + r·(H·scale + gap)`` and
  ``left = gap + c·(W·scale + gap)``; labels add a band on the left / top, and a column label
  wider than a tile (a row label taller than one) widens every cell, the tile centred in it.
  :func:`make_grid` with ``boxes=True`` returns the box of every image.

Numpy alone tiles; Pillow (imported when labels are drawn or a PNG is written) is in the
``demo`` and ``all`` extras: ``pip install 'diff-core[demo]'``. :func:`save_grid` writes the PNG
with :func:`diff_protocol.io.atomic_write` (the umask's permissions, never a half-written file).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from diff_protocol.io import atomic_write

__all__ = ["GridLayout", "make_grid", "png_bytes", "save_grid", "to_uint8"]

#: Smallest default gap between tiles (and around them), in output pixels: the default gap is
#: ``max(GAP, scale)``, one source pixel of background at the tiles' magnification.
GAP = 2
#: Default background of gaps and label bands (white): uint8 grey level.
BACKGROUND = 255
_TEXT = 0  # label text colour (black)
_LABEL_PAD = 3  # pixels around label text


class GridLayout(NamedTuple):
    """Where :func:`make_grid` put things: ``boxes[i] = (top, left, bottom, right)`` of image i
    (bottom/right exclusive) in the final array, the grid's rows and columns, and the sizes of
    the label bands (``band_left`` for row labels, ``band_top`` for column labels; 0 if none)."""

    boxes: dict[int, tuple[int, int, int, int]]
    rows: int
    cols: int
    band_left: int
    band_top: int


def _pillow(what: str) -> Any:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise ImportError(
            f"{what} needs Pillow, which is not installed: pip install 'diff-core[demo]' "
            "(or 'diff-core[all]')"
        ) from None
    return Image, ImageDraw, ImageFont


def _positive_int(func: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{func}: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def to_uint8(images: Any, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Map floats in ``value_range`` to uint8 ``round((x − lo)/(hi − lo)·255)``, clipped;
    uint8 input is returned unchanged. Non-finite values are a ``ValueError``."""
    x = np.asarray(images)
    if x.dtype == np.uint8:
        return x
    if x.dtype == object or not (
        np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.bool_)
    ):
        raise TypeError(f"to_uint8: images must be a numeric array, got dtype {x.dtype}")
    try:
        lo, hi = (float(v) for v in value_range)
    except (TypeError, ValueError):
        raise ValueError(f"to_uint8: value_range must be (lo, hi), got {value_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"to_uint8: value_range must be finite with lo < hi, got {value_range!r}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("to_uint8: images must be finite, got NaN or inf values")
    return np.clip(np.round((x - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def _labels_text(func: str, name: str, values: Any, count: int) -> list[str] | None:
    if values is None:
        return None
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence | np.ndarray):
        raise TypeError(f"{func}: {name} must be a sequence of {count} strings, got {values!r}")
    out = [str(v) for v in values]
    if len(out) != count:
        raise ValueError(f"{func}: {name} must have {count} entries (one per), got {len(out)}")
    return out


def _font(size: int) -> Any:
    _, _, ImageFont = _pillow("make_grid (labels)")
    try:
        return ImageFont.load_default(size=size)  # scalable with FreeType (Pillow >= 10.1)
    except (TypeError, ValueError, OSError, ImportError):
        return ImageFont.load_default()


def _text_size(font: Any, text: str) -> tuple[int, int]:
    Image, ImageDraw, _ = _pillow("make_grid (labels)")
    box = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    return int(math.ceil(box[2])), int(math.ceil(box[3]))


def make_grid(
    images: Any,
    nrow: int | None = None,
    *,
    labels: Any = None,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    gap: int | None = None,
    scale: int = 1,
    background: int = BACKGROUND,
    value_range: tuple[float, float] = (-1.0, 1.0),
    font_size: int | None = None,
    boxes: bool = False,
) -> np.ndarray | tuple[np.ndarray, GridLayout]:
    """Tile ``images`` into one uint8 picture with gaps and optional row/column labels.

    Args:
      images: (N, H, W, C) with C in {1, 3}, or (N, H, W); floats in ``value_range`` or uint8.
      nrow: images per row (the number of columns); default ``ceil(sqrt(N))``. Not with
        ``labels``, which put one class per row.
      labels: optional (N,) ints: row r holds the images of the r-th smallest label in their
        original order (missing cells stay background) and is labelled with the class number.
      row_labels: one text per row, drawn left of the row (overrides the class numbers).
      col_labels: one text per column, drawn above it.
      gap: pixels of ``background`` between tiles and around them (output pixels), >= 0;
        default ``max(2, scale)``.
      scale: integer nearest-neighbour magnification of every tile, >= 1.
      background: uint8 grey level of the gaps and label bands (default 255, white); label
        text is drawn in black on it.
      value_range: (lo, hi) of float images (mapped to 0 and 255).
      font_size: label text size in pixels (default: scales with the tile, 10 to 16).
      boxes: also return a :class:`GridLayout` with every image's box.

    Returns:
      the uint8 array (height, width, C), or ``(array, GridLayout)`` with ``boxes=True``.
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or 0 in x.shape:
        raise ValueError(
            "make_grid: images must have shape (N, H, W, C) with N, H, W >= 1 and C in (1, 3), "
            f"got {np.shape(images)}"
        )
    scale = _positive_int("make_grid", "scale", scale, 1)
    gap = max(GAP, scale) if gap is None else _positive_int("make_grid", "gap", gap, 0)
    if isinstance(background, bool) or not isinstance(background, (int, np.integer)):
        raise TypeError(f"make_grid: background must be an int in [0, 255], got {background!r}")
    if not 0 <= background <= 255:
        raise ValueError(f"make_grid: background must be an int in [0, 255], got {background!r}")
    n, h, w, c = x.shape
    if labels is not None:
        if nrow is not None:
            raise ValueError("make_grid: give nrow or labels (one row per class), got both")
        lab = np.asarray(labels)
        if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(
                f"make_grid: labels must be an int array of shape ({n},), "
                f"got {lab.dtype} {lab.shape}"
            )
        classes = np.unique(lab)
        cells = [[int(i) for i in np.flatnonzero(lab == k)] for k in classes]
        ncol = max(len(r) for r in cells)
        default_rows: list[str] | None = [str(int(k)) for k in classes]
    else:
        ncol = math.ceil(math.sqrt(n)) if nrow is None else _positive_int("make_grid", "nrow", nrow)
        cells = [list(range(i, min(i + ncol, n))) for i in range(0, n, ncol)]
        default_rows = None
    rows_text = _labels_text("make_grid", "row_labels", row_labels, len(cells)) or default_rows
    cols_text = _labels_text("make_grid", "col_labels", col_labels, ncol)
    pixels = to_uint8(x, value_range)

    th, tw = h * scale, w * scale
    ch, cw = th, tw  # cell size: a tile, widened where a label is larger than it
    font = None
    band_left = band_top = 0
    if rows_text or cols_text:
        size = font_size if font_size is not None else int(np.clip(th // 2, 10, 16))
        font = _font(_positive_int("make_grid", "font_size", size))
        if rows_text:
            sizes = [_text_size(font, t) for t in rows_text]
            band_left = max(s[0] for s in sizes) + 2 * _LABEL_PAD
            ch = max(ch, max(s[1] for s in sizes))
        if cols_text:
            sizes = [_text_size(font, t) for t in cols_text]
            band_top = max(s[1] for s in sizes) + 2 * _LABEL_PAD
            cw = max(cw, max(s[0] for s in sizes) + 2 * _LABEL_PAD)
    height = band_top + gap + len(cells) * (ch + gap)
    width = band_left + gap + ncol * (cw + gap)
    grid = np.full((height, width, c), background, dtype=np.uint8)
    placed: dict[int, tuple[int, int, int, int]] = {}
    for r, row in enumerate(cells):
        top = band_top + gap + r * (ch + gap) + (ch - th) // 2
        for col, i in enumerate(row):
            left = band_left + gap + col * (cw + gap) + (cw - tw) // 2
            tile = pixels[i]
            if scale > 1:
                tile = np.repeat(np.repeat(tile, scale, axis=0), scale, axis=1)
            grid[top : top + th, left : left + tw] = tile
            placed[i] = (top, left, top + th, left + tw)
    if font is not None:
        grid = _draw_labels(grid, font, rows_text, cols_text, band_left, band_top, gap, ch, cw)
    if boxes:
        return grid, GridLayout(placed, len(cells), ncol, band_left, band_top)
    return grid


def _draw_labels(
    grid: np.ndarray,
    font: Any,
    rows_text: list[str] | None,
    cols_text: list[str] | None,
    band_left: int,
    band_top: int,
    gap: int,
    ch: int,
    cw: int,
) -> np.ndarray:
    Image, ImageDraw, _ = _pillow("make_grid (labels)")
    grey = grid.shape[-1] == 1
    img = Image.fromarray(grid[..., 0] if grey else grid, mode="L" if grey else "RGB")
    draw = ImageDraw.Draw(img)
    fill = _TEXT if grey else (_TEXT,) * 3
    for r, text in enumerate(rows_text or ()):
        tw_, th_ = _text_size(font, text)
        top = band_top + gap + r * (ch + gap) + (ch - th_) // 2
        draw.text((band_left - _LABEL_PAD - tw_, top), text, fill=fill, font=font)
    for col, text in enumerate(cols_text or ()):
        tw_, _ = _text_size(font, text)
        left = band_left + gap + col * (cw + gap) + (cw - tw_) // 2
        draw.text((left, _LABEL_PAD), text, fill=fill, font=font)
    out = np.asarray(img, dtype=np.uint8)
    return out[..., None] if grey else out


def png_bytes(array: np.ndarray) -> bytes:
    """PNG encoding of a uint8 (H, W, 1 | 3) or (H, W) array (grey or RGB)."""
    Image, _, _ = _pillow("save_grid")
    a = np.asarray(array)
    if a.dtype != np.uint8 or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (1, 3)):
        raise ValueError(
            f"png_bytes: array must be uint8 (H, W), (H, W, 1) or (H, W, 3), "
            f"got {a.dtype} {a.shape}"
        )
    grey = a.ndim == 2 or a.shape[-1] == 1
    buf = io.BytesIO()
    Image.fromarray(a.reshape(a.shape[:2]) if grey else a, mode="L" if grey else "RGB").save(
        buf, format="PNG"
    )
    return buf.getvalue()


def save_grid(path: str | os.PathLike, images: Any, nrow: int | None = None, **kwargs: Any) -> Any:
    """Write :func:`make_grid` ``(images, nrow, **kwargs)`` to ``path`` as a PNG (atomically,
    with the umask's permissions) and return what :func:`make_grid` returned."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"save_grid: path must be a str or path, got {type(path).__name__}")
    _pillow("save_grid")  # fail before tiling when Pillow is missing
    out = make_grid(images, nrow, **kwargs)
    grid = out[0] if isinstance(out, tuple) else out
    atomic_write(Path(path), png_bytes(grid))
    return out
