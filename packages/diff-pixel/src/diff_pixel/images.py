"""Pictures of a run, drawn with Pillow only: sample grids and loss curves as PNG.

* :func:`make_grid` / :func:`save_grid`: images in [−1, 1] (N, H, W, C), C ∈ {1, 3} →
  uint8 ``round((x + 1)·127.5)``, tiled row-major, ``nrow`` images per row (or one row per
  class when ``labels`` are given), optional padding and integer nearest-neighbour scaling.
* :func:`save_loss_curve`: the training loss against the step, and, when the records carry
  per-λ-bin sums and counts, one thin curve per bin (the loss function's ``*_sum``/``*_count``
  metric pairs), on a log axis when the values span more than a decade.
* Trainer hooks (:class:`~diff_pixel.train.Hook`): :class:`SampleGridHook` writes
  ``samples/step_XXXXXXX.png`` every ``every`` steps and at the end from a fixed key;
  :class:`LossCurveHook` draws ``loss.png`` from ``metrics.jsonl`` at the end (and when stopped).

Files are written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from diff_pixel.train.hooks import Hook
from diff_pixel.train.logging import read_metrics
from diff_protocol.io import atomic_write

__all__ = [
    "LossCurveHook",
    "SampleGridHook",
    "make_grid",
    "save_grid",
    "save_loss_curve",
    "to_uint8",
]


def to_uint8(images: Any) -> np.ndarray:
    """Map [−1, 1] floats to uint8 ``round((x + 1)·127.5)`` (values outside are clipped)."""
    x = np.asarray(images, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError("to_uint8: images must be finite, got NaN or inf values")
    return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def make_grid(
    images: Any,
    nrow: int | None = None,
    *,
    labels: Any = None,
    padding: int = 0,
    pad_value: float = 1.0,
) -> np.ndarray:
    """Tile images into one uint8 array (rows·H + pads, cols·W + pads, C).

    Args:
      images: (N, H, W, C) with C ∈ {1, 3} (or (N, H, W)), values in [−1, 1].
      nrow: images per row; default ``ceil(sqrt(N))``. Ignored when ``labels`` are given.
      labels: optional (N,) ints; then row r holds the images of the r-th smallest label, in
        their original order, and missing cells are left at ``pad_value``.
      padding: pixels between (and around) images.
      pad_value: background in [−1, 1].
    """
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[0] == 0:
        raise ValueError(
            f"make_grid: images must have shape (N, H, W, C) with N >= 1 and C in (1, 3), "
            f"got {np.shape(images)}"
        )
    if isinstance(padding, bool) or not isinstance(padding, (int, np.integer)) or padding < 0:
        raise ValueError(f"make_grid: padding must be an int >= 0, got {padding!r}")
    n, h, w, c = x.shape
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
            raise ValueError(
                f"make_grid: labels must be an int array of shape ({n},), "
                f"got {lab.dtype} {lab.shape}"
            )
        classes = np.unique(lab)
        rows = [np.flatnonzero(lab == k) for k in classes]
        ncol = max(len(r) for r in rows)
        cells = [[int(i) for i in r] for r in rows]
    else:
        if nrow is None:
            nrow = math.ceil(math.sqrt(n))
        if isinstance(nrow, bool) or not isinstance(nrow, (int, np.integer)) or nrow < 1:
            raise ValueError(f"make_grid: nrow must be a positive int, got {nrow!r}")
        ncol = int(nrow)
        cells = [list(range(i, min(i + ncol, n))) for i in range(0, n, ncol)]
    pixels = to_uint8(x)
    bg = to_uint8(np.asarray(pad_value))
    gh = len(cells) * h + (len(cells) + 1) * padding
    gw = ncol * w + (ncol + 1) * padding
    grid = np.full((gh, gw, c), bg, dtype=np.uint8)
    for r, row in enumerate(cells):
        for col, i in enumerate(row):
            top = padding + r * (h + padding)
            left = padding + col * (w + padding)
            grid[top : top + h, left : left + w] = pixels[i]
    return grid


def _png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    mode_array = array[..., 0] if array.shape[-1] == 1 else array
    buf = io.BytesIO()
    Image.fromarray(mode_array, mode="L" if array.shape[-1] == 1 else "RGB").save(buf, format="PNG")
    return buf.getvalue()


def save_grid(
    path: str | os.PathLike,
    images: Any,
    nrow: int | None = None,
    *,
    labels: Any = None,
    padding: int = 0,
    scale: int = 1,
) -> np.ndarray:
    """Write a PNG grid of ``images`` (see :func:`make_grid`), scaled ``scale``× (nearest).

    Returns the uint8 grid before scaling. A 10×10 grid of 16×16 images without padding is
    160×160 pixels before scaling.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise ValueError(f"save_grid: scale must be a positive int, got {scale!r}")
    grid = make_grid(images, nrow, labels=labels, padding=padding)
    big = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1) if scale > 1 else grid
    atomic_write(path, _png_bytes(big))
    return grid


def _bin_series(records: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """Per-bin mean loss series from ``<name>_sum``/``<name>_count`` list-valued metric pairs."""
    out: dict[str, np.ndarray] = {}
    first = records[0]
    for k, v in first.items():
        if not (k.endswith("_sum") and isinstance(v, list)):
            continue
        base = k[: -len("_sum")]
        count_key = next((c for c in (base + "_count", "bin_count", "count") if c in first), None)
        if count_key is None:
            continue
        s = np.array([r.get(k, [np.nan] * len(v)) for r in records], dtype=np.float64)
        n = np.array([r.get(count_key, [np.nan] * len(v)) for r in records], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[base] = np.where(n > 0, s / np.where(n > 0, n, 1), np.nan)
    return out


def save_loss_curve(
    path: str | os.PathLike,
    records: Sequence[Mapping[str, Any]],
    *,
    key: str = "loss",
    size: tuple[int, int] = (720, 440),
    title: str = "training loss",
) -> None:
    """Draw ``records[i][key]`` against ``records[i]["step"]`` (and per-λ-bin curves) as a PNG.

    Args:
      path: output PNG.
      records: ``metrics.jsonl`` records (dicts with ``step`` and ``key``).
      key: the metric on the main curve.
      size: (width, height) in pixels.
      title: text at the top.
    """
    from PIL import Image, ImageDraw, ImageFont

    def usable(r: Mapping[str, Any]) -> bool:
        v = r.get(key)
        return "step" in r and isinstance(v, (int, float)) and math.isfinite(v)

    recs = [r for r in records if usable(r)]
    if not recs:
        raise ValueError(f"save_loss_curve: records must contain finite {key!r} values, got none")
    steps = np.array([float(r["step"]) for r in recs])
    main = np.array([float(r[key]) for r in recs])
    bins = _bin_series(recs)
    series = [main] + [col for b in bins.values() for col in b.T]
    values = np.concatenate([np.asarray(s)[np.isfinite(s)] for s in series])
    positive = values[values > 0]
    log_y = positive.size == values.size and values.max() > 10 * values.min()
    lo, hi = (positive.min(), positive.max()) if log_y else (values.min(), values.max())
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0)

    def ty(v: np.ndarray) -> np.ndarray:
        return np.log10(v) if log_y else v

    y0, y1 = ty(np.array(lo)), ty(np.array(hi))
    x0, x1 = float(steps.min()), float(steps.max())
    if x1 <= x0:
        x1 = x0 + 1.0
    width, height = size
    ml, mr, mt, mb = 70, 20, 30, 40
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()

    def xy(sx: np.ndarray, sv: np.ndarray) -> list[tuple[float, float]]:
        px = ml + (sx - x0) / (x1 - x0) * (width - ml - mr)
        py = mt + (1 - (ty(sv) - y0) / (y1 - y0)) * (height - mt - mb)
        return [(float(a), float(b)) for a, b in zip(px, py, strict=True) if np.isfinite(b)]

    draw.rectangle([ml, mt, width - mr, height - mb], outline=(0, 0, 0))
    for i in range(5):
        f = i / 4
        yv = y0 + f * (y1 - y0)
        py = mt + (1 - f) * (height - mt - mb)
        label = f"{10**yv:.3g}" if log_y else f"{yv:.3g}"
        draw.line([(ml - 4, py), (ml, py)], fill=(0, 0, 0))
        draw.text((4, py - 6), label, fill=(0, 0, 0), font=font)
        xv = x0 + f * (x1 - x0)
        px = ml + f * (width - ml - mr)
        draw.line([(px, height - mb), (px, height - mb + 4)], fill=(0, 0, 0))
        draw.text((px - 12, height - mb + 8), f"{xv:.4g}", fill=(0, 0, 0), font=font)
    draw.text((ml, 8), title + (" (log scale)" if log_y else ""), fill=(0, 0, 0), font=font)
    draw.text((width - mr - 40, height - 14), "step", fill=(0, 0, 0), font=font)
    if bins:
        legend = f"black: {key}; thin: per-logsnr-bin {key} (blue = noisy ... red = clean)"
        draw.text((ml + 200, 8), legend, fill=(80, 80, 80), font=font)
    for b in bins.values():
        nb = b.shape[1]
        for j in range(nb):
            # blue (low λ, noisy) to red (high λ, clean)
            f = j / max(nb - 1, 1)
            colour = (int(60 + 180 * f), 120, int(240 - 180 * f))
            line = xy(steps, b[:, j])
            if len(line) > 1:
                draw.line(line, fill=colour, width=1)
    line = xy(steps, main)
    if len(line) > 1:
        draw.line(line, fill=(0, 0, 0), width=2)
    else:
        ((px, py),) = line
        draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=(0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    atomic_write(path, buf.getvalue())


class SampleGridHook(Hook):
    """Write a sample grid every ``every`` steps and at the end of a run.

    ``sample_fn(ema_model, key) -> images`` or ``(images, labels)`` (images in [−1, 1], NHWC);
    the key is the trainer's fixed sampling key, so the grids of a run are comparable. Written
    by process 0 to ``out_dir/samples/step_{step:07d}.png`` (``every=0``: only at the end).
    """

    def __init__(self, sample_fn: Any, every: int = 1000, *, scale: int = 1) -> None:
        if not callable(sample_fn):
            raise TypeError(
                f"SampleGridHook: sample_fn must be callable, got {type(sample_fn).__name__}"
            )
        if isinstance(every, bool) or not isinstance(every, int) or every < 0:
            raise ValueError(f"SampleGridHook: every must be an int >= 0, got {every!r}")
        self.sample_fn, self.every, self.scale = sample_fn, every, scale
        self.paths: list[str] = []

    def write(self, trainer: Any, step: int) -> str:
        import jax

        out = self.sample_fn(trainer.ema_model(), trainer.sample_key())
        images, labels = out if isinstance(out, tuple) else (out, None)
        path = os.path.join(trainer.out_dir, "samples", f"step_{step:07d}.png")
        if trainer.is_main:
            save_grid(
                path,
                np.asarray(jax.device_get(images)),
                labels=None if labels is None else np.asarray(jax.device_get(labels)),
                scale=self.scale,
            )
        self.paths.append(path)
        return path

    def on_step(self, trainer: Any, step: int, metrics: Mapping[str, Any]) -> None:
        if self.every and step % self.every == 0 and step != trainer.config.steps:
            self.write(trainer, step)

    def on_end(self, trainer: Any) -> None:
        self.write(trainer, trainer.config.steps)


class LossCurveHook(Hook):
    """Draw ``out_dir/loss.png`` from ``metrics.jsonl`` when the run ends (process 0)."""

    def __init__(self, key: str = "loss") -> None:
        self.key = key

    def on_end(self, trainer: Any) -> None:
        records = read_metrics(trainer.metrics_log.path)
        if trainer.is_main and any(self.key in r for r in records):
            save_loss_curve(os.path.join(trainer.out_dir, "loss.png"), records, key=self.key)
