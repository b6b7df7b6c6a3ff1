"""Pictures of scenes, novel views, edits and training curves (PNG / GIF, atomic writes).

Pillow and matplotlib (the ``viz`` extra) are imported inside the functions, so ``import
diff_dorsal`` never imports them. Images are float arrays in [0, 1] shaped ``(V, h, w, 3)`` (a row
of views) unless said otherwise; pixels are enlarged by ``scale`` with nearest-neighbour upsampling
so 32² views stay crisp.

* :func:`view_grid` — labelled rows of views, e.g. ground truth / OSRT-lite / DORSal per scene.
* :func:`edit_panel` — original, edited, ``|Δ|`` heat map and the ground-truth change mask.
* :func:`path_gif` — a camera path as an animated GIF (several sequences side by side).
* :func:`loss_curve` — training curves (log scale, with a running mean).
* :func:`data_preview` — scenes × views with the instance ids overlaid.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from diff_protocol.errors import arg_error
from diff_protocol.io import atomic_write

__all__ = [
    "INSTANCE_PALETTE",
    "data_preview",
    "edit_panel",
    "instance_colours",
    "loss_curve",
    "path_gif",
    "view_grid",
]

#: Overlay colours: index 0 sky (−1), 1 floor (0), then object j (id j + 1) at index j + 2.
INSTANCE_PALETTE = np.array(
    [
        [0.55, 0.70, 0.95],
        [0.45, 0.45, 0.45],
        [0.90, 0.10, 0.10],
        [0.10, 0.65, 0.15],
        [0.15, 0.35, 0.95],
        [0.95, 0.75, 0.05],
        [0.80, 0.15, 0.80],
        [0.05, 0.80, 0.80],
        [0.95, 0.50, 0.05],
        [0.55, 0.30, 0.10],
    ],
    dtype=np.float32,
)


def _views(func: str, name: str, x: Any, ndim: int = 4) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError):
        raise arg_error(func, name, "an image array", x) from None
    if a.ndim == ndim - 1:
        a = a[None]
    if a.ndim != ndim or a.shape[-1] not in (1, 3):
        shape = "(V, h, w, 3)" if ndim == 4 else "(B, V, h, w, 3)"
        raise arg_error(func, name, f"images shaped {shape}", f"shape {a.shape}")
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if not np.all(np.isfinite(a)):
        raise arg_error(func, name, "finite", f"{int(np.sum(~np.isfinite(a)))} non-finite values")
    return np.clip(a, 0.0, 1.0)


def _scale(func: str, scale: Any) -> int:
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise arg_error(func, "scale", "an int >= 1", repr(scale))
    return int(scale)


def _u8(x: np.ndarray, scale: int) -> np.ndarray:
    img = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)
    if scale > 1:
        img = np.repeat(np.repeat(img, scale, axis=-3), scale, axis=-2)
    return img


def _write_png(path: str | os.PathLike, canvas: Any) -> Path:
    from PIL import Image

    buf = io.BytesIO()
    (canvas if isinstance(canvas, Image.Image) else Image.fromarray(canvas)).save(buf, "PNG")
    return atomic_write(path, buf.getvalue())


def _labelled(rows: list[tuple[str, np.ndarray]], scale: int, pad: int) -> Any:
    """A PIL image of labelled rows: each row a label column then its views."""
    from PIL import Image, ImageDraw

    font_w = 6
    label_w = (
        max([len(lb) for lb, _ in rows] + [0]) * font_w + 8 if any(lb for lb, _ in rows) else 0
    )
    h, w = rows[0][1].shape[1:3]
    tile_h, tile_w = h * scale, w * scale
    ncol = max(r.shape[0] for _, r in rows)
    width = label_w + ncol * (tile_w + pad) + pad
    height = len(rows) * (tile_h + pad) + pad
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for i, (label, views) in enumerate(rows):
        y = pad + i * (tile_h + pad)
        if label:
            draw.text((4, y + tile_h // 2 - 5), label, fill=(0, 0, 0))
        tiles = _u8(views, scale)
        for j, tile in enumerate(tiles):
            canvas.paste(Image.fromarray(tile), (label_w + pad + j * (tile_w + pad), y))
    return canvas


def view_grid(
    rows: Mapping[str, Any] | Sequence[Any],
    path: str | os.PathLike,
    *,
    scale: int = 3,
    pad: int = 2,
) -> Path:
    """Write labelled rows of views as a PNG.

    Args:
      rows: ``{label: views}`` (or a sequence of views, unlabelled). Views are ``(V, h, w, 3)``;
        ``(B, V, h, w, 3)`` arrays give one block of rows per scene (``"label 0"``, ...), scenes
        interleaved so that each scene's rows sit together (truth / OSRT-lite / DORSal).
      path: output ``.png`` (parent folders created; written atomically).
      scale: nearest-neighbour upsampling of each pixel.
      pad: white pixels between tiles.
    """
    scale = _scale("view_grid", scale)
    items = list(rows.items()) if isinstance(rows, Mapping) else [("", r) for r in rows]
    if not items:
        raise arg_error("view_grid", "rows", "at least one row", "none")
    arrays = []
    for label, r in items:
        a = np.asarray(r)
        a = _views("view_grid", f"rows[{label!r}]", a, ndim=5 if a.ndim == 5 else 4)
        arrays.append((str(label), a))
    size = arrays[0][1].shape[-3:-1]
    for label, a in arrays:
        if a.shape[-3:-1] != size:
            raise arg_error("view_grid", f"rows[{label!r}]", f"views of size {size}", a.shape)
    out: list[tuple[str, np.ndarray]] = []
    if any(a.ndim == 5 for _, a in arrays):
        n = max(a.shape[0] for _, a in arrays if a.ndim == 5)
        for b in range(n):
            for label, a in arrays:
                if a.ndim == 5 and b < a.shape[0]:
                    out.append((f"{label} {b}".strip(), a[b]))
                elif a.ndim == 4 and b == 0:
                    out.append((label, a))
    else:
        out = arrays
    return _write_png(path, _labelled(out, scale, pad))


def _heat(x: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB with matplotlib's 'magma' colour map."""
    from matplotlib import colormaps

    return colormaps["magma"](np.clip(x, 0, 1))[..., :3].astype(np.float32)


def edit_panel(
    original: Any,
    edited: Any,
    path: str | os.PathLike,
    *,
    true_mask: Any | None = None,
    truth_edited: Any | None = None,
    scale: int = 3,
    title: str | None = None,
) -> Path:
    """Write an object-edit panel: rows original, edited, ``|Δ|`` heat map (per-pixel RGB change
    norm, divided by the panel's largest change, 'magma') and the ground-truth change mask.

    Args:
      original, edited: ``(V, h, w, 3)`` views sampled with the same noise before and after the
        edit.
      true_mask: ``(V, h, w)`` bool, the exact pixels the edit changes (e.g. the removed object's
        visible mask); omitted: no mask row.
      truth_edited: optional ``(V, h, w, 3)`` ground-truth render after the edit (an extra row).
      title: a caption line above the rows (the largest ``|Δ|`` is appended).
    """
    from PIL import Image, ImageDraw

    scale = _scale("edit_panel", scale)
    a = _views("edit_panel", "original", original)
    b = _views("edit_panel", "edited", edited)
    if a.shape != b.shape:
        raise arg_error("edit_panel", "edited", f"shaped like original {a.shape}", b.shape)
    delta = np.sqrt(np.sum((b - a) ** 2, axis=-1))
    peak = float(delta.max())
    rows = [("original", a), ("edited", b)]
    if truth_edited is not None:
        t = _views("edit_panel", "truth_edited", truth_edited)
        if t.shape != a.shape:
            raise arg_error(
                "edit_panel", "truth_edited", f"shaped like original {a.shape}", t.shape
            )
        rows.append(("truth edited", t))
    rows.append(("|delta|", _heat(delta / peak if peak > 0 else delta)))
    if true_mask is not None:
        m = np.asarray(true_mask)
        if m.shape != a.shape[:-1]:
            raise arg_error("edit_panel", "true_mask", f"shape {a.shape[:-1]}", f"{m.shape}")
        rows.append(("true change", np.repeat(m.astype(np.float32)[..., None], 3, axis=-1)))
    grid = _labelled(rows, scale, 2)
    caption = f"{title + '  ' if title else ''}max |delta| = {peak:.3g}"
    canvas = Image.new("RGB", (grid.width, grid.height + 14), (255, 255, 255))
    canvas.paste(grid, (0, 14))
    ImageDraw.Draw(canvas).text((4, 2), caption, fill=(0, 0, 0))
    return _write_png(path, canvas)


def path_gif(
    frames: Any | Mapping[str, Any],
    path: str | os.PathLike,
    *,
    fps: float = 8.0,
    scale: int = 3,
    loop: int = 0,
) -> Path:
    """Write a camera path as an animated GIF.

    ``frames`` is ``(T, h, w, 3)``, or ``{label: (T, h, w, 3)}`` shown side by side (e.g. ground
    truth and DORSal). ``loop=0`` repeats forever. Written atomically.
    """
    from PIL import Image, ImageDraw

    scale = _scale("path_gif", scale)
    if not (isinstance(fps, (int, float)) and np.isfinite(fps) and fps > 0):
        raise arg_error("path_gif", "fps", "a positive number", repr(fps))
    seqs = list(frames.items()) if isinstance(frames, Mapping) else [("", frames)]
    if not seqs:
        raise arg_error("path_gif", "frames", "at least one sequence", "none")
    arrays = [(str(k), _views("path_gif", f"frames[{k!r}]" if k else "frames", v)) for k, v in seqs]
    t, h, w, _ = arrays[0][1].shape
    for k, v in arrays:
        if v.shape != (t, h, w, 3):
            raise arg_error("path_gif", f"frames[{k!r}]", f"shape {(t, h, w, 3)}", v.shape)
    labelled = any(k for k, _ in arrays)
    top = 12 if labelled else 0
    tw, th = w * scale, h * scale
    images = []
    for i in range(t):
        canvas = Image.new("RGB", (len(arrays) * (tw + 2) + 2, th + top + 4), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        for j, (k, v) in enumerate(arrays):
            x0 = 2 + j * (tw + 2)
            canvas.paste(Image.fromarray(_u8(v[i], scale)), (x0, top + 2))
            if k:
                draw.text((x0, 0), k, fill=(0, 0, 0))
        images.append(canvas.convert("P", palette=Image.Palette.ADAPTIVE, colors=255))
    buf = io.BytesIO()
    images[0].save(
        buf,
        "GIF",
        save_all=True,
        append_images=images[1:],
        duration=max(20, int(round(1000 / fps))),
        loop=loop,
        disposal=1,
    )
    return atomic_write(path, buf.getvalue())


def loss_curve(
    curves: Mapping[str, Sequence[float]] | Sequence[float],
    path: str | os.PathLike,
    *,
    title: str = "training loss",
    ylabel: str = "loss",
    log: bool = True,
    smooth: int = 25,
) -> Path:
    """Write training curves (one line per key; a running mean of ``smooth`` steps drawn over the
    raw values) as a PNG, log-scale y by default."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    items = list(curves.items()) if isinstance(curves, Mapping) else [(ylabel, curves)]
    fig = Figure(figsize=(5.0, 3.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, values in items:
        y = np.asarray(values, dtype=np.float64).ravel()
        if y.size == 0:
            raise arg_error("loss_curve", f"curves[{name!r}]", "at least one value", "none")
        x = np.arange(1, y.size + 1)
        (line,) = ax.plot(x, y, alpha=0.35, lw=0.8)
        k = max(1, min(int(smooth), y.size))
        if k > 1:
            ys = np.convolve(y, np.ones(k) / k, mode="valid")
            ax.plot(x[k - 1 :], ys, color=line.get_color(), lw=1.6, label=f"{name} (mean of {k})")
        else:
            line.set_label(name)
            line.set_alpha(1.0)
        if log and np.all(y > 0):
            ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write(path, buf.getvalue())


def instance_colours(instance: Any) -> np.ndarray:
    """RGB ``(..., 3)`` of instance ids ``(...)`` with :data:`INSTANCE_PALETTE` (ids beyond the
    palette wrap around its object colours)."""
    ids = np.asarray(instance).astype(np.int64)
    idx = ids + 1  # sky 0, floor 1, objects 2..
    obj = idx >= 2
    n_obj = INSTANCE_PALETTE.shape[0] - 2
    idx = np.where(obj, 2 + (idx - 2) % n_obj, np.clip(idx, 0, 1))
    return INSTANCE_PALETTE[idx]


def data_preview(
    images: Any,
    instance: Any,
    path: str | os.PathLike,
    *,
    n_scenes: int = 8,
    alpha: float = 0.55,
    scale: int = 2,
) -> Path:
    """Write a preview of a data set: for each of the first ``n_scenes`` scenes a row of its views
    and a row with the instance ids blended over them (sky blue, floor grey, objects in
    :data:`INSTANCE_PALETTE` order)."""
    x = _views("data_preview", "images", images, ndim=5)
    inst = np.asarray(instance)
    if inst.shape != x.shape[:-1]:
        raise arg_error("data_preview", "instance", f"shape {x.shape[:-1]}", f"{inst.shape}")
    if not 0 <= alpha <= 1:
        raise arg_error("data_preview", "alpha", "in [0, 1]", repr(alpha))
    rows = []
    for b in range(min(int(n_scenes), x.shape[0])):
        overlay = (1 - alpha) * x[b] + alpha * instance_colours(inst[b])
        rows += [(f"scene {b}", x[b]), ("instances", overlay)]
    return _write_png(path, _labelled(rows, _scale("data_preview", scale), 2))
