"""Pictures: vorticity strips (PNG), side-by-side rollout GIFs, metric curves and energy spectra
(extra ``[viz]``).

Fields are drawn with the ``RdBu_r`` colour map and symmetric limits ±3 std of the truth. Every
file is written atomically (a temporary file in the same folder, then renamed).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["error_field", "require_viz", "save_curves", "save_gif", "save_spectra", "save_strip"]

VIZ_HINT = "needs the 'viz' extra: pip install diff-rolling[viz]"


def require_viz() -> Any:
    """Import matplotlib (Agg) or raise ``ImportError`` naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from PIL import Image  # noqa: F401
    except ImportError:
        raise ImportError(VIZ_HINT) from None
    return plt


def _write(path: str | Path, data: bytes) -> Path:
    from diff_protocol.io import atomic_write

    return atomic_write(Path(path), data)


def _field(x: np.ndarray) -> np.ndarray:
    """``(..., h, w, C)`` → a scalar field per frame (vorticity channel, or speed for velocity)."""
    if x.shape[-1] == 1:
        return x[..., 0]
    from .data.kolmogorov import velocity_to_vorticity

    return np.asarray(velocity_to_vorticity(x))[..., 0]


def error_field(pred: Any, truth: Any) -> np.ndarray:
    """``|field(pred − truth)|`` as ``(..., h, w, 1)``: the |error| row of a strip (the drawn
    field, vorticity, is linear in the velocity, so it is the field of the difference)."""
    diff = np.asarray(pred, np.float64) - np.asarray(truth, np.float64)
    return np.abs(_field(diff))[..., None]


def _rgb(field: np.ndarray, limit: float) -> np.ndarray:
    plt = require_viz()
    cmap = plt.get_cmap("RdBu_r")
    u = np.clip((field / limit + 1.0) / 2.0, 0.0, 1.0)
    return (cmap(u)[..., :3] * 255).astype(np.uint8)


def save_strip(
    path: str | Path, rows: Mapping[str, Any], *, every: int = 1, title: str | None = None
) -> Path:
    """A grid: one row per entry of ``rows`` (``(H, h, w, C)`` each, e.g. truth / model /
    |error|), columns every ``every`` lead times."""
    plt = require_viz()
    names = list(rows)
    arrays = [_field(np.asarray(rows[n], np.float64))[::every] for n in names]
    limit = 3.0 * float(np.std(arrays[0])) or 1.0
    cols = arrays[0].shape[0]
    fig, axes = plt.subplots(
        len(names), cols, figsize=(1.3 * cols, 1.4 * len(names)), squeeze=False
    )
    for r, (name, arr) in enumerate(zip(names, arrays)):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(arr[c], cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
            if r == 0:
                ax.set_title(f"lead {1 + c * every}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return _write(path, buf.getvalue())


def save_gif(path: str | Path, panels: Mapping[str, Any], *, fps: int = 8, scale: int = 4) -> Path:
    """An animated GIF with the ``panels`` (``(H, h, w, C)`` each) side by side, frame by frame."""
    require_viz()
    from PIL import Image, ImageDraw

    names = list(panels)
    arrays = [_field(np.asarray(panels[n], np.float64)) for n in names]
    limit = 3.0 * float(np.std(arrays[0])) or 1.0
    n = min(a.shape[0] for a in arrays)
    frames = []
    for i in range(n):
        tiles = [np.kron(_rgb(a[i], limit), np.ones((scale, scale, 1), np.uint8)) for a in arrays]
        pad = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
        row = np.concatenate(sum(([t, pad] for t in tiles), [])[:-1], axis=1)
        top = np.full((14, row.shape[1], 3), 255, np.uint8)
        img = Image.fromarray(np.concatenate([top, row], axis=0))
        draw = ImageDraw.Draw(img)
        x = 2
        for name, t in zip(names, tiles):
            draw.text((x, 1), f"{name} {i + 1}", fill=(0, 0, 0))
            x += t.shape[1] + 4
        frames.append(img.convert("P", palette=Image.ADAPTIVE))
    buf = io.BytesIO()
    frames[0].save(
        buf, format="GIF", save_all=True, append_images=frames[1:], duration=int(1000 / fps), loop=0
    )
    return _write(path, buf.getvalue())


def save_curves(
    path: str | Path,
    curves: Mapping[str, Any],
    *,
    dt: float = 1.0,
    ylabel: str = "nMSE",
    title: str | None = None,
    references: Mapping[str, float] | None = None,
    log: bool = False,
) -> Path:
    """Curves against lead time: ``{name: values (H,)}`` or ``{name: (mean (H,), std (H,))}``;
    ``references`` draws horizontal lines (e.g. ``{"mean regressor": 1}``)."""
    plt = require_viz()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, val in curves.items():
        if isinstance(val, (tuple, list)) and len(val) == 2 and np.ndim(val[0]) == 1:
            mean, std = np.asarray(val[0]), np.asarray(val[1])
        else:
            mean, std = np.asarray(val), None
        lead = dt * (1 + np.arange(mean.shape[0]))
        ax.plot(lead, mean, label=name, marker="o", ms=2.5)
        if std is not None:
            ax.fill_between(lead, mean - std, mean + std, alpha=0.25)
    for name, y in (references or {}).items():
        ax.axhline(y, color="gray", ls="--", lw=0.8)
        ax.text(dt * 0.6, y, name, fontsize=7, color="gray", va="bottom")
    ax.set_xlabel("lead time" if dt == 1.0 else "lead time (time units)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return _write(path, buf.getvalue())


def save_spectra(
    path: str | Path,
    spectra: Mapping[str, Any],
    *,
    k_max: int | None = None,
    title: str | None = None,
) -> Path:
    """Isotropic energy spectra on log-log axes: ``{name: E (K,)}`` indexed by the shell ``k``
    (``metrics.energy_spectrum``), drawn for ``1 <= k <= k_max`` (default: every shell); the
    first entry (the truth) is drawn black and thicker."""
    plt = require_viz()
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for i, (name, energy) in enumerate(spectra.items()):
        e = np.asarray(energy, np.float64)
        top = e.shape[0] - 1 if k_max is None else min(int(k_max), e.shape[0] - 1)
        k = np.arange(1, top + 1)
        style = {"color": "black", "lw": 2.0} if i == 0 else {"lw": 1.2}
        ax.loglog(k, np.maximum(e[1 : top + 1], 1e-300), label=name, **style)
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.xaxis.set_major_formatter(ScalarFormatter())  # k = 1, 2, 5, 10, not 2×10⁰
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("wavenumber k")
    ax.set_ylabel("energy E(k)")
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return _write(path, buf.getvalue())
