"""Pictures of a run, drawn with Pillow only: sample grids and loss curves as PNG.

* :func:`make_grid` / :func:`save_grid` / :func:`to_uint8` are diff-core's grid helper
  (:mod:`diff_core.images`, the one every package uses): images in [−1, 1] (N, H, W, C),
  C ∈ {1, 3} → uint8 ``round((x + 1)·127.5)``, tiled row-major with ``nrow`` images per row, or
  one row per class when ``labels`` are given (the class numbers drawn as row labels), a gap of
  background between tiles, optional ``row_labels`` / ``col_labels``, integer nearest-neighbour
  ``scale``.
* :func:`save_loss_curve`: the training loss against the step, and, when the records carry
  per-λ-bin sums and counts, one thin curve per bin (the loss function's ``*_sum``/``*_count``
  metric pairs), on a log axis when the values span more than a decade.
* Trainer hooks (:class:`~diff_pixel.train.Hook`): :class:`SampleGridHook` writes
  ``samples/step_XXXXXXX.png`` every ``every`` steps and at the end from a fixed key;
  :class:`LossCurveHook` draws ``loss.png`` from ``metrics.jsonl`` at the end (and when stopped).

Files are written with :func:`diff_protocol.io.atomic_write` (temporary file + ``os.replace``,
the umask's permissions).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from diff_core.images import make_grid, save_grid, to_uint8
from diff_pixel.train.hooks import Hook, PeriodicHook
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

    if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Sequence):
        raise TypeError(
            f"save_loss_curve: records must be a list of dicts (metrics.jsonl records), got "
            f"{type(records).__name__}"
        )
    bad = next((i for i, r in enumerate(records) if not isinstance(r, Mapping)), None)
    if bad is not None:
        raise TypeError(
            f"save_loss_curve: records must be dicts, got {type(records[bad]).__name__} at "
            f"index {bad}"
        )
    if not (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and 64 <= v <= 8192 for v in size)
    ):
        raise ValueError(
            f"save_loss_curve: size must be (width, height) ints in [64, 8192], got {size!r}"
        )
    if not isinstance(key, str) or not isinstance(title, str):
        raise TypeError(
            f"save_loss_curve: key and title must be str, got {type(key).__name__} and "
            f"{type(title).__name__}"
        )

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


class SampleGridHook(PeriodicHook):
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
        if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
            raise ValueError(f"SampleGridHook: scale must be a positive int, got {scale!r}")
        super().__init__(every)
        self.sample_fn, self.scale = sample_fn, scale
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


class LossCurveHook(Hook):
    """Draw ``out_dir/loss.png`` from ``metrics.jsonl`` when the run ends (process 0)."""

    def __init__(self, key: str = "loss") -> None:
        if not isinstance(key, str) or not key:
            raise TypeError(f"LossCurveHook: key must be a non-empty str, got {key!r:.40}")
        self.key = key

    def on_end(self, trainer: Any) -> None:
        records = read_metrics(trainer.metrics_log.path)
        if trainer.is_main and any(self.key in r for r in records):
            save_loss_curve(os.path.join(trainer.out_dir, "loss.png"), records, key=self.key)
